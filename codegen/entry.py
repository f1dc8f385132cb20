"""The entry point of a generated module: `run`, plain Python beside the kernel.

`entry(_kernel, _threaded, _slow, _parallel, _missing)` returns `run(<inputs>)`: it tests the
classes of scalar arguments (Numba would silently convert an int or a bool), then calls the kernel,
whose dispatcher was compiled for exactly one signature and so refuses arrays of any other
dtype, rank, layout or writability (and a missing name's marker) with a TypeError; the kernel
checks sizes and labels and raises ValueError before it reads anything. The batch runs in 16
chunks when it is large enough to pay for threads (`chunk_rows` of the model's gradient), else
in one: its size alone decides, so the bits never depend on `parallel`, which only chooses
where the chunks run (`threaded()`, the threaded copy or the measured choice when there are
several threads; in turn with parallel=False). Anything refused, an
unknown name included, goes to `slow`, which converts it or raises a clear error. Per call, this
is all the overhead (a model's `step` and `sgd_step`, codegen/steps.py, bind and test their
arguments the same way). A scalar that came as a 0-d array (or a float for a float32 model) is converted in a
second branch that the usual call never enters, so every form of a scalar takes the fast path.
Every other name the text reads (parameters, closures, builtins) starts with an underscore or
is reserved (symdiff.ir.RESERVED), as no input's name may: an input may take any other name.
"""
from __future__ import annotations

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save
TO_SLOW = "_refused"  # the module's tuple of what sends a call the slow way


def chunk_rows(work: int) -> int:
    """The rows from which a batch runs in NCHUNKS chunks (on threads where there are some),
    for `work` statements or instructions per row. Every Program of a model takes its
    gradient's number, so the model's value, however it is asked for, adds the batch's sum
    in the same order and has the same bits."""
    return -(-PARALLEL_MIN_WORK // max(work, 1))


def emit_entry(specs, rows: int) -> str:
    """`entry(_kernel, _threaded, _slow, _parallel, _missing)`, which returns `run`; a batch
    of `rows` rows or more runs in chunks."""
    lines = ["", "", "_float64, _float32, _ndarray = np.float64, np.float32, np.ndarray",
             "_int, _len = int, len",
             "_refused = (TypeError, ValueError, AttributeError, IndexError)", "", "",
             "def entry(_kernel, _threaded, _slow, _parallel, _missing):",
             '    """`run`: the kernel on the fast path; `slow` takes what it refuses."""']
    lines += _run(specs, rows)
    return "\n".join(lines) + "\n"


def entry_parameters(specs, lead=()) -> tuple[str, str, str]:
    """(parameters, call arguments, keywords) of an entry point."""
    names = [spec.name for spec in specs]
    parameters = ", ".join([*lead, *(f"{n}=_missing" for n in names), "**_unknown"])
    keywords = ", ".join([*lead, *(f"{n}={n}" for n in names), "**_unknown"])
    return parameters, ", ".join([*lead, *names]), keywords


def _tests(specs, in_place=(), lead=(), pad="        ") -> str:
    """`if` text: no unknown names, and every scalar argument of its exact class."""
    tests = ["not _unknown"] + list(lead) + [spec.fast_test() for spec in specs
                                            if not spec.shape and spec.name not in in_place]
    return f"{pad}if " + ("(" + f"\n{pad}        and ".join(tests) + ")" if len(tests) > 1
                          else tests[0]) + ":"


def guarded(specs, attempt: list[str], in_place=(), lead=(), comment="") -> list[str]:
    """`if tests: try attempt`, and where a scalar came in another form than its test takes
    (a 0-d array, a float for a float32 model), the same again after a cheap conversion of
    each scalar: a branch the usual call never enters, so every form takes the fast path."""
    def tried(pad):
        return [_tests(specs, in_place, lead, pad), f"{pad}    try:"] + \
            [f"{pad}        {line}" for line in attempt] + \
            [f"{pad}    except {TO_SLOW}:{comment}", f"{pad}        pass"]
    lines = tried("        ")
    conversions = _scalar_conversions(specs, in_place, bool(lead))
    if conversions:
        lines += ["        elif not _unknown:"] + [f"            {c}" for c in conversions]
        lines += tried("            ")
    return lines


def _scalar_conversions(specs, in_place, rate: bool) -> list[str]:
    """Statements giving each scalar argument the class its test takes, where that is cheap."""
    scalars = [("lr", "float64")] * rate + [(spec.name, spec.dtype) for spec in specs
                                             if not spec.shape and spec.name not in in_place]
    lines = []
    for name, dtype in scalars:
        if dtype == "float32":
            lines.append(f"{name} = _float32({name}) if {name}.__class__ is float else "
                         f"{name}[()] if {name}.__class__ is _ndarray else {name}")
        elif dtype == "float64":
            lines.append(f"{name} = {name}[()] if {name}.__class__ is _ndarray else {name}")
    return lines


def big_batch(specs, rows: int) -> str | None:
    """The test for a batch of `rows` rows or more, which runs in NCHUNKS chunks, or None
    without a batch axis. The batch size alone decides the chunks, and so the bits; the
    model's `parallel` only chooses whether they run on threads."""
    for spec in specs:
        for axis, d in spec.axes:
            if isinstance(d, str):
                size = f"_len({spec.name})" if axis == 0 else f"{spec.name}.shape[{axis}]"
                # (len: no shape tuple made; a 0-d array raises TypeError, as a refusal)
                return f"{size} >= {rows}"
    return None


def _run(specs, rows: int) -> list[str]:
    parameters, args, keywords = entry_parameters(specs)
    args += ", " * bool(args)
    big = big_batch(specs, rows)
    attempt = [f"if {big}:  # in chunks: in turn with parallel=False, else maybe on threads",
               f"    return (_kernel if _parallel is False else _threaded())({args}{NCHUNKS})"
               ] if big else []
    attempt.append(f"return _kernel({args}1)")
    lines = ["", f"    def run({parameters}):",
             '        """The kernel if it accepts the arguments; else the slow path."""']
    lines += guarded(specs, attempt, comment="  # types, sizes or labels: slow says which")
    return lines + [f"        return _slow({keywords})", "", "    return run"]

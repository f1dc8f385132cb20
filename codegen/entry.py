"""The entry points of a generated module: `run` and `run_step`, plain Python beside the kernel.

`entry(kernel, threaded, slow, parallel, missing)` returns `run(<inputs>)`: it tests the classes
of scalar arguments (Numba would silently convert an int or a bool), then calls the kernel,
whose dispatcher was compiled for exactly one signature and so refuses arrays of any other
dtype, rank, layout or writability (and a missing name's marker) with a TypeError; the kernel
checks sizes and labels and raises ValueError before it reads anything. The batch runs in 16
chunks when it is large enough to pay for threads (on `threaded()`, the threaded copy when
there are several threads; the bits are the same either way), else in one. Anything refused,
an unknown name included, goes to `slow`, which converts it or raises a clear error.
`step_entry(step, slow_step, parallel, missing)` returns `run_step(lr, <inputs>)`, the same for
`step` on small batches; large batches and everything refused go to `slow_step`. Per call,
this is all the overhead. A scalar that came as a 0-d array (or a float for a float32 model)
is converted in a second branch that the usual call never enters, so every form of a scalar
takes the fast path.
"""
from __future__ import annotations

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save
TO_SLOW = "(TypeError, ValueError, AttributeError, IndexError)"  # what sends a call the slow way


def emit_entry(specs, statements: int, update=()) -> str:
    """`entry(...)`, and `step_entry(...)` when `update` names the parameters that `step`
    updates in place."""
    lines = ["", "", "_float64, _float32, _ndarray = np.float64, np.float32, np.ndarray", "", "",
             "def entry(kernel, threaded, slow, parallel, missing):",
             '    """`run`: the kernel on the fast path; `slow` takes what it refuses."""']
    lines += _run(specs, statements)
    if update:
        lines += ["", "", "def step_entry(step, slow_step, parallel, missing):",
                  '    """`run_step`: `step` on small batches; `slow_step` takes the rest."""']
        lines += _run_step(specs, statements, update)
    return "\n".join(lines) + "\n"


def _signature(specs, lead=()) -> tuple[str, str, str]:
    """(parameters, call arguments, keywords) of an entry point."""
    names = [spec.name for spec in specs]
    parameters = ", ".join([*lead, *(f"{n}=missing" for n in names), "**unknown"])
    keywords = ", ".join([*lead, *(f"{n}={n}" for n in names), "**unknown"])
    return parameters, ", ".join([*lead, *names]), keywords


def _tests(specs, in_place=(), lead=(), pad="        ") -> str:
    """`if` text: no unknown names, and every scalar argument of its exact class."""
    tests = ["not unknown"] + list(lead) + [spec.fast_test() for spec in specs
                                            if not spec.shape and spec.name not in in_place]
    return f"{pad}if " + ("(" + f"\n{pad}        and ".join(tests) + ")" if len(tests) > 1
                          else tests[0]) + ":"


def _guarded(specs, attempt: list[str], in_place=(), lead=(), comment="") -> list[str]:
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
        lines += ["        elif not unknown:"] + [f"            {c}" for c in conversions]
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


def _big(specs, statements: int) -> str | None:
    """The test for a batch large enough for threads, or None without a batch axis."""
    for spec in specs:
        for axis, d in spec.axes:
            if isinstance(d, str):
                minimum = -(-PARALLEL_MIN_WORK // max(statements, 1))
                return f"parallel or parallel is None and {spec.name}.shape[{axis}] >= {minimum}"
    return None


def _run(specs, statements: int) -> list[str]:
    parameters, args, keywords = _signature(specs)
    args += ", " * bool(args)
    big = _big(specs, statements)
    attempt = [f"if {big}:", f"    return threaded()({args}{NCHUNKS})"] if big else []
    attempt.append(f"return kernel({args}1)")
    lines = ["", f"    def run({parameters}):",
             '        """The kernel if it accepts the arguments; else the slow path."""']
    lines += _guarded(specs, attempt, comment="  # types, sizes or labels: slow says which")
    return lines + [f"        return slow({keywords})", "", "    return run"]


def _run_step(specs, statements: int, update) -> list[str]:
    parameters, args, keywords = _signature(specs, ("lr",))
    big = _big(specs, statements)
    call = f"return step({args}, 1)"
    attempt = [f"if not ({big}):", f"    {call}"] if big else [call]
    lines = ["", f"    def run_step({parameters}):",
             '        """`step` if it accepts the arguments; else the slow path."""']
    lines += _guarded(specs, attempt, update, ["(lr.__class__ is float or lr.__class__ is _float64)"])
    return lines + [f"        return slow_step({keywords})", "", "    return run_step"]

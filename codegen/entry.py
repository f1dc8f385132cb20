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
this is all the overhead.
"""
from __future__ import annotations

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save
TO_SLOW = "(TypeError, ValueError, AttributeError, IndexError)"  # what sends a call the slow way


def emit_entry(specs, statements: int, update=()) -> str:
    """`entry(...)`, and `step_entry(...)` when `update` names the parameters that `step`
    updates in place."""
    lines = ["", "", "_float64, _float32 = np.float64, np.float32", "", "",
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


def _tests(specs, in_place=(), lead=()) -> str:
    """`if` text: no unknown names, and every scalar argument of its exact class."""
    tests = ["not unknown"] + list(lead) + [spec.fast_test() for spec in specs
                                            if not spec.shape and spec.name not in in_place]
    return "        if " + ("(" + "\n                and ".join(tests) + ")" if len(tests) > 1
                            else tests[0]) + ":"


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
    lines = ["", f"    def run({parameters}):",
             '        """The kernel if it accepts the arguments; else the slow path."""',
             _tests(specs), "            try:"]
    if big:
        lines += [f"                if {big}:",
                  f"                    return threaded()({args}{NCHUNKS})"]
    lines += [f"                return kernel({args}1)",
              f"            except {TO_SLOW}:  # types, sizes or labels: slow says which",
              "                pass",
              f"        return slow({keywords})", "", "    return run"]
    return lines


def _run_step(specs, statements: int, update) -> list[str]:
    parameters, args, keywords = _signature(specs, ("lr",))
    big = _big(specs, statements)
    call = f"return step({args}, 1)"
    lines = ["", f"    def run_step({parameters}):",
             '        """`step` if it accepts the arguments; else the slow path."""',
             _tests(specs, update, ["(lr.__class__ is float or lr.__class__ is _float64)"]),
             "            try:"]
    if big:
        lines += [f"                if not ({big}):", f"                    {call}"]
    else:
        lines.append(f"                {call}")
    lines += [f"            except {TO_SLOW}:",
              "                pass",
              f"        return slow_step({keywords})", "", "    return run_step"]
    return lines

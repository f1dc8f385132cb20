"""The entry points of a generated module: `run` and `run_fast`, plain Python beside the kernel.

`entry(slow, parallel, missing)` returns them bound to the runtime's general path, its thread
choice and its marker of a name not passed. `run(<inputs>)` accepts arguments that
need nothing done to them with the attribute tests of their input specs, then calls the kernel:
in 16 chunks when the batch is large enough to pay for threads (run by threads only if there
are several, the bits the same either way), else in one. Anything else, a missing or an
unknown name included, goes to `slow`, which converts it or raises a clear error. Per call,
this is all the overhead. (The optimizer steps' entry points are made in codegen/optim.py.)
"""
from __future__ import annotations

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save


def emit_entry(specs, statements: int) -> str:
    """`entry(slow, parallel, missing)`: returns `run` and `run_fast`."""
    lines = ["", "", "_ndarray, _float64, _float32 = np.ndarray, np.float64, np.float32",
             "_f8, _f4, _i8 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)",
             "", "", "def entry(slow, parallel, missing):",
             '    """The entry points; `slow` takes what they do not accept."""']
    lines += _checked(specs, statements, "kernel", "run", ())
    lines += _gated(specs, statements, "kernel", "run", ())
    lines += ["", "    return run, run_fast"]
    return "\n".join(lines) + "\n"


def _signature(specs, function: str) -> tuple[str, str, str]:
    """(parameters, call arguments, keywords) of an entry point."""
    names = [spec.name for spec in specs]
    parameters = ", ".join([f"{n}=missing" for n in names] + ["**unknown"])
    keywords = ", ".join([f"{n}={n}" for n in names] + ["**unknown"])
    return parameters, ", ".join(names), keywords


def _scalar_tests(specs, function: str, in_place) -> list[str]:
    return [spec.fast_test() for spec in specs if not spec.shape and spec.name not in in_place]


def threaded_condition(specs, statements: int) -> str | None:
    """The test for a batch large enough for threads, or None without a batch axis."""
    for spec in specs:
        for axis, d in spec.axes:
            if isinstance(d, str):
                minimum = -(-PARALLEL_MIN_WORK // max(statements, 1))
                return f"parallel or parallel is None and {spec.name}.shape[{axis}] >= {minimum}"
    return None


def _checked(specs, statements: int, function: str, name: str, in_place) -> list[str]:
    """run: every spec's attribute test, then `function` in 1 or 16 chunks.
    Sizes and labels are checked in the kernel, where it costs nanoseconds; it raises
    ValueError before anything else, and the slow path then names what is wrong."""
    parameters, args, keywords = _signature(specs, function)
    tests = ["not unknown"] + _scalar_tests(specs, function, in_place) + [
        spec.fast_test(spec.name in in_place) for spec in specs
        if spec.shape or spec.name in in_place]
    pad = "        "
    lines = ["", f"    def {name}({parameters}):",
             f'        """Check the arguments, then run {function}; the slow path takes the rest."""',
             f"{pad}if (" + f"\n{pad}        and ".join(tests) + "):", f"{pad}    try:"]
    threaded = threaded_condition(specs, statements)
    if threaded:
        lines += [f"{pad}        if {threaded}:",
                  f"{pad}            threaded = True if get_num_threads() > 1 else None",
                  f"{pad}            return {function}({args}{', ' * bool(args)}{NCHUNKS}, "
                  f"threaded)"]
    lines += [f"{pad}        return {function}_gate({args}{', ' * bool(args)}1, None)",
              f"{pad}    except (TypeError, ValueError):  # sizes or labels: slow says which",
              f"{pad}        pass",
              f"{pad}return slow({keywords})"]
    return lines


def _gated(specs, statements: int, function: str, name: str, in_place) -> list[str]:
    """run_fast, once the gate has compiled: scalar class tests only, then
    the gate, whose dispatcher raises TypeError for arrays of other types than it compiled
    for (and for a missing name's marker); anything refused goes through the checked path."""
    if not any(spec.shape or spec.name in in_place for spec in specs):
        return ["", f"    {name}_fast = {name}"]  # scalars only: the class tests are all
    parameters, args, keywords = _signature(specs, function)
    tests = ["not unknown"] + _scalar_tests(specs, function, in_place)
    call = f"return {function}_gate({args}{', ' * bool(args)}1, None)"
    threaded = threaded_condition(specs, statements)
    lines = ["", f"    def {name}_fast({parameters}):",
             f'        """`{name}` once the gate has compiled."""',
             "        if " + ("(" + "\n                and ".join(tests) + ")" if len(tests) > 1
                             else tests[0]) + ":",
             "            try:"]
    if threaded:
        lines += [f"                if not ({threaded}):", f"                    {call}"]
    else:
        lines.append(f"                {call}")
    lines += ["            except (TypeError, ValueError, AttributeError, IndexError):",
              "                pass",
              f"        return {name}({keywords})"]
    return lines

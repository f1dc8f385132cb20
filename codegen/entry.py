"""The entry points of a generated module: `run` and `run_step`, plain Python beside the kernel.

`entry(slow, slow_step, parallel, missing)` returns them bound to the runtime's general paths,
its thread choice and its marker of a name not passed. `run(<inputs>)` accepts arguments that
need nothing done to them with the attribute tests of their input specs, then calls the kernel:
in 16 chunks when the batch is large enough to pay for threads (run by threads only if there
are several, the bits the same either way), else in one. Anything else, a missing or an
unknown name included, goes to `slow`, which converts it or raises a clear error; only a
scalar that came as a 0-d array (or a float for a float32 model) is converted here, in a
branch the usual call never enters, so every form of a scalar takes the fast path.
`run_step(lr, <inputs>)` does the same for `step`. Per call, this is all the overhead.
"""
from __future__ import annotations

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save


def emit_entry(specs, statements: int, update=()) -> str:
    """`entry(slow, slow_step, parallel, missing)`: returns `run`, `run_fast` and, when
    `update` names the parameters `step` updates in place, `run_step` and `run_step_fast`."""
    lines = ["", "", "_ndarray, _float64, _float32 = np.ndarray, np.float64, np.float32",
             "_f8, _f4, _i8 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)",
             "", "", "def entry(slow, slow_step, parallel, missing):",
             '    """The entry points; `slow` and `slow_step` take what they do not accept."""']
    functions = [("kernel", "run", ())] + ([("step", "run_step", update)] if update else [])
    for function, name, in_place in functions:
        lines += _checked(specs, statements, function, name, in_place)
        lines += _gated(specs, statements, function, name, in_place)
    steps = "run_step, run_step_fast" if update else "None, None"
    lines += ["", f"    return run, run_fast, {steps}"]
    return "\n".join(lines) + "\n"


def _signature(specs, function: str) -> tuple[str, str, str]:
    """(parameters, call arguments, keywords) of an entry point."""
    names = [spec.name for spec in specs]
    lead = ["lr"] if function == "step" else []
    parameters = ", ".join(lead + [f"{n}=missing" for n in names] + ["**unknown"])
    keywords = ", ".join(lead + [f"{n}={n}" for n in names] + ["**unknown"])
    return parameters, ", ".join(lead + names), keywords


def _scalar_tests(specs, function: str, in_place) -> list[str]:
    tests = ["(lr.__class__ is float or lr.__class__ is _float64)"] if function == "step" else []
    return tests + [spec.fast_test() for spec in specs
                    if not spec.shape and spec.name not in in_place]


def _threaded(specs, statements: int) -> str | None:
    """The test for a batch large enough for threads, or None without a batch axis."""
    for spec in specs:
        for axis, d in spec.axes:
            if isinstance(d, str):
                minimum = -(-PARALLEL_MIN_WORK // max(statements, 1))
                return f"parallel or parallel is None and {spec.name}.shape[{axis}] >= {minimum}"
    return None


def _checked(specs, statements: int, function: str, name: str, in_place) -> list[str]:
    """run or run_step: every spec's attribute test, then `function` in 1 or 16 chunks.
    Sizes and labels are checked in the kernel, where it costs nanoseconds; it raises
    ValueError before anything else, and the slow path then names what is wrong."""
    parameters, args, keywords = _signature(specs, function)
    tests = ["not unknown"] + _scalar_tests(specs, function, in_place) + [
        spec.fast_test(spec.name in in_place) for spec in specs
        if spec.shape or spec.name in in_place]
    pad = "        "
    attempt = []
    threaded = _threaded(specs, statements)
    if threaded:
        attempt += [f"    if {threaded}:",
                    "        threaded = True if get_num_threads() > 1 else None",
                    f"        return {function}({args}{', ' * bool(args)}{NCHUNKS}, threaded)"]
    attempt += [f"    return {function}_gate({args}{', ' * bool(args)}1, None)"]
    lines = ["", f"    def {name}({parameters}):",
             f'        """Check the arguments, then run {function}; the slow path takes the rest."""']
    lines += _attempts(specs, function, in_place, tests, attempt, pad,
                       ("TypeError", "ValueError"), "sizes or labels: slow says which")
    return lines + [f"{pad}return {'slow_step' if function == 'step' else 'slow'}({keywords})"]


def _attempts(specs, function, in_place, tests, attempt, pad, errors, why="") -> list[str]:
    """`if tests: try attempt`, and where scalars came in another form than the tests take
    (a 0-d array, a NumPy scalar of another class, a float for a float32 model), the same
    again after a cheap conversion of each: no extra work when the tests pass first time."""
    def tested(pad):
        condition = tests[0] if len(tests) == 1 else \
            "(" + f"\n{pad}        and ".join(tests) + ")"
        comment = f"  # {why}" if why else ""
        return [f"{pad}if {condition}:", f"{pad}    try:"] + [
            f"{pad}    {line}" for line in attempt] + [
            f"{pad}    except ({', '.join(errors)}):{comment}", f"{pad}        pass"]
    lines = tested(pad)
    conversions = _scalar_conversions(specs, function, in_place)
    if conversions:
        lines += [f"{pad}elif not unknown:"] + [f"{pad}    {c}" for c in conversions]
        lines += tested(pad + "    ")
    return lines


def _scalar_conversions(specs, function: str, in_place) -> list[str]:
    """Statements giving each scalar argument the class its test takes, where it can cheaply."""
    names = (["lr"] if function == "step" else []) + [
        spec.name for spec in specs if not spec.shape and spec.name not in in_place]
    dtypes = {spec.name: spec.dtype for spec in specs}
    lines = []
    for n in names:
        if dtypes.get(n, "float64") == "float32":
            lines.append(f"{n} = _float32({n}) if {n}.__class__ is float else "
                         f"{n}[()] if {n}.__class__ is _ndarray else {n}")
        else:
            lines.append(f"{n} = {n}[()] if {n}.__class__ is _ndarray else {n}")
    return lines


def _gated(specs, statements: int, function: str, name: str, in_place) -> list[str]:
    """run_fast or run_step_fast, once the gate has compiled: scalar class tests only, then
    the gate, whose dispatcher raises TypeError for arrays of other types than it compiled
    for (and for a missing name's marker); anything refused goes through the checked path."""
    if not any(spec.shape or spec.name in in_place for spec in specs):
        return ["", f"    {name}_fast = {name}"]  # scalars only: the class tests are all
    parameters, args, keywords = _signature(specs, function)
    tests = ["not unknown"] + _scalar_tests(specs, function, in_place)
    call = f"return {function}_gate({args}{', ' * bool(args)}1, None)"
    threaded = _threaded(specs, statements)
    attempt = [f"    if not ({threaded}):", f"        {call}"] if threaded else [f"    {call}"]
    lines = ["", f"    def {name}_fast({parameters}):",
             f'        """`{name}` once the gate has compiled."""']
    lines += _attempts(specs, function, in_place, tests, attempt, "        ",
                       ("TypeError", "ValueError", "AttributeError", "IndexError"))
    return lines + [f"        return {name}({keywords})"]

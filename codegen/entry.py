"""The entry points of a generated module: `run` and `run_step`, plain Python beside the kernel.

`entry(slow, slow_step, parallel)` returns them bound to the runtime's general paths and thread
choice.
`run(<inputs>)` accepts arguments that need nothing done to them (C-contiguous arrays of the
right dtype, rank and sizes, scalars of the right type, labels in range) with a few attribute
tests written out for this model, then calls the kernel: in 16 chunks when the batch is large
enough to pay for threads (run by threads only if there are several, the bits the same either
way), else in one. Anything else goes to `slow`, which converts it or raises a clear error.
`run_step(lr, <inputs>)` does the same for `step`. Per call, this is all the overhead.
"""
from __future__ import annotations

from symdiff.ir import Node
from symdiff.program import Program

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save
REFUSED = "symdiff: sizes or labels refused"  # the kernel's ValueError; run() goes the slow way


def emit_entry(program: Program, update=()) -> str:
    """`entry(slow, slow_step, parallel)`: returns `run`, `run_step`, `run_fast` and
    `run_step_fast` (the step ones None without `update`, the names of the parameters that
    `step` updates in place: it needs them as writable arrays, 0-d for scalars)."""
    names = [n.attr("name") for n in program.inputs]
    args = ", ".join(names)
    lines = ["", "", "_ndarray, _float64, _float32 = np.ndarray, np.float64, np.float32",
             "_f8, _f4, _i8 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)",
             "", "", "def entry(slow, slow_step, parallel):",
             '    """The entry points; `slow` and `slow_step` take what they do not accept."""',
             "",
             f"    def run({args}):",
             '        """Check the arguments, then run the kernel; `slow` handles the rest."""']
    lines += _checked_call(program, "kernel", names, ())
    if any(n.rank for n in program.inputs):
        lines += ["", f"    def run_fast({args}):",
                  '        """`run` once kernel_gate has compiled: its dispatcher matches array '
                  'types, the',
                  '        kernel sizes and labels; anything it refuses goes through `run`."""']
        lines += _gated_call(program, "kernel", names, ())
    else:  # scalars only: the class tests are all there is to check
        lines += ["", "    run_fast = run"]
    if update:
        lines += ["", f"    def run_step(lr, {args}):",
                  '        """Check the arguments, then take one SGD step."""']
        lines += _checked_call(program, "step", names, update)
        lines += ["", f"    def run_step_fast(lr, {args}):",
                  '        """`run_step` once step_gate has compiled."""']
        lines += _gated_call(program, "step", names, update)
    steps = "run_step, run_step_fast" if update else "None, None"
    lines += ["", f"    return run, run_fast, {steps}"]
    return "\n".join(lines) + "\n"


def _scalar_checks(program: Program, function: str, names: list[str], in_place) -> list[str]:
    """Class tests of the scalar arguments (and of lr): Numba would convert an int or a bool."""
    checks = ["(lr.__class__ is float or lr.__class__ is _float64)"] if function == "step" else []
    for node, name in zip(program.inputs, names):
        if not node.shape and name not in in_place:
            kinds = {"float64": ("float", "_float64"), "float32": ("_float32",),
                     "int64": ("int",)}[node.dtype]  # Numba types float and np.float64 alike
            test = " or ".join(f"{name}.__class__ is {k}" for k in kinds)
            checks.append(f"({test})" if len(kinds) > 1 else test)
    return checks


def _batch_size(program: Program, names: list[str]) -> str | None:
    """How run reads the batch size: the first symbolic dimension of an input."""
    for node, name in zip(program.inputs, names):
        for axis, d in enumerate(node.shape):
            if isinstance(d, str):
                return f"{name}.shape[{axis}]"
    return None


def _checked_call(program: Program, function: str, names: list[str], in_place) -> list[str]:
    """The body of run or run_step: types, ranks and layouts by attribute tests, then
    `function` in 1 or 16 chunks. Arrays must be C-contiguous, aligned and writable
    (`flags.carray`): the gate compiles for exactly those. Sizes and labels are checked in the
    kernel, where it costs nanoseconds; it raises ValueError before anything else."""
    dtype = {"float64": "_f8", "float32": "_f4", "int64": "_i8"}
    checks = _scalar_checks(program, function, names, in_place)
    for node, name in zip(program.inputs, names):
        if node.shape or name in in_place:
            checks.append(f"{name}.__class__ is _ndarray and {name}.dtype is {dtype[node.dtype]}"
                          f" and {name}.ndim == {node.rank} and {name}.flags.carray")
    args = ", ".join((["lr"] if function == "step" else []) + names)
    pad = "        "
    lines = [f"{pad}if (" + f"\n{pad}        and ".join(checks or ["True"]) + "):",
             f"{pad}    try:"]
    batch = _batch_size(program, names)
    if batch:
        minimum = -(-PARALLEL_MIN_WORK // len(program.stmts))
        lines += [f"{pad}        if parallel or parallel is None and {batch} >= {minimum}:",
                  f"{pad}            threaded = True if get_num_threads() > 1 else None",
                  f"{pad}            return {function}({args}, {NCHUNKS}, threaded)"]
    lines += [f"{pad}        return {function}_gate({args}{', ' * bool(args)}1, None)",
              f"{pad}    except (TypeError, ValueError):  # sizes or labels: slow says which",
              f"{pad}        pass"]
    keywords = ", ".join(f"{n}={n}" for n in names)
    slow = "slow_step(lr, " if function == "step" else "slow("
    lines.append(f"{pad}return {slow}{keywords})")
    return lines


def _gated_call(program: Program, function: str, names: list[str], in_place) -> list[str]:
    """The body of run_fast or run_step_fast: scalar class tests only, then the gate, which
    raises TypeError for arrays of other types than it compiled for."""
    checks = _scalar_checks(program, function, names, in_place)
    args = ", ".join((["lr"] if function == "step" else []) + names)
    pad = "        " + "    " * bool(checks)
    test = checks[0] if len(checks) == 1 else "(" + "\n                and ".join(checks) + ")"
    lines = [f"        if {test}:"] if checks else []
    lines.append(f"{pad}try:")
    batch = _batch_size(program, names)
    call = f"return {function}_gate({args}{', ' * bool(args)}1, None)"
    if batch:
        minimum = -(-PARALLEL_MIN_WORK // len(program.stmts))
        lines += [f"{pad}    if not (parallel or parallel is None and {batch} >= {minimum}):",
                  f"{pad}        {call}"]
    else:
        lines.append(f"{pad}    {call}")
    lines += [f"{pad}except (TypeError, ValueError, AttributeError, IndexError):",
              f"{pad}    pass",
              f"        return {'run_step' if function == 'step' else 'run'}({args})"]
    return lines


def fresh(name: str, taken: set) -> str:
    """`name`, or `name_` (`name__`, ...) if the model already uses it; then taken."""
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def label_bound(program: Program, node: Node):
    """For an integer input used as labels, the dimension its values must stay below."""
    for s in program.stmts:
        if s.node.op == "take_along" and s.node.inputs[1] is node:
            return s.node.inputs[0].shape[1]
    return None

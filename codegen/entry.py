"""The entry point of a generated module: `run`, plain Python beside the Numba kernel.

`run(slow, parallel, <inputs>)` accepts arguments that need nothing done to them (C-contiguous
arrays of the right dtype, rank and sizes, scalars of the right type, labels in range) with a
few attribute tests written out for this model, then calls the kernel: in 16 chunks when the
batch is large enough to pay for threads (run by threads only if there are several, the bits
the same either way), else in one. Anything else goes to `slow`, the runtime's
general path, which converts it or raises a clear error. Per call, this is all the overhead.
"""
from __future__ import annotations

from symdiff.ir import Node, Program

JIT = '@njit(cache=True, error_model="numpy")'  # strict IEEE: fastmath would drop NaN checks
NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save


def emit_entry(program: Program) -> str:
    """`run`: plain Python that checks every argument with attribute tests and calls the
    kernel; anything unusual goes to `slow`, which converts or raises a clear error."""
    names = [n.attr("name") for n in program.inputs]
    dtype = {"float64": "_f8", "float32": "_f4", "int64": "_i8"}
    checks, sizes, seen = [], [], {}
    for node, name in zip(program.inputs, names):
        if not node.shape:
            kinds = {"float64": ("float", "np.float64"), "float32": ("np.float32",),
                     "int64": ("int",)}[node.dtype]  # Numba types float and np.float64 alike
            test = " or ".join(f"{name}.__class__ is {k}" for k in kinds)
            checks.append(f"({test})" if len(kinds) > 1 else test)
            continue
        checks.append(f"{name}.__class__ is _ndarray and {name}.dtype is {dtype[node.dtype]}"
                      f" and {name}.ndim == {node.rank} and {name}.flags.c_contiguous")
        for axis, d in enumerate(node.shape):
            if isinstance(d, str) and d not in seen:
                seen[d] = f"{name}.shape[{axis}]"
                sizes.append(f"{seen[d]} > 0")
            else:
                sizes.append(f"{name}.shape[{axis}] == {seen.get(d, d)}")
    for node in program.inputs:
        bound = label_bound(program, node)
        if bound is not None:
            sizes.append(f"_in_range({node.attr('name')}, {seen.get(bound, bound)})")
    work = len(program.stmts)
    batch = " * ".join(dict.fromkeys(seen.values())) or "0"
    args = ", ".join(names)
    lines = ["", "", "_ndarray = np.ndarray",
             "_f8, _f4, _i8 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)",
             "", "", JIT, "def _in_range(labels, bound):",
             "    for label in labels:", "        if label < 0 or label >= bound:",
             "            return False", "    return True", "", "",
             f"def run(slow, parallel, {args}):",
             '    """Check the arguments, then run the kernel; `slow` handles the rest."""',
             "    if (" + "\n            and ".join(checks + sizes or ["True"]) + "):"]
    if seen:
        lines += [f"        if parallel or parallel is None and ({batch}) * {work} >= "
                  f"{PARALLEL_MIN_WORK}:",
                  "            threaded = True if get_num_threads() > 1 else None",
                  f"            return kernel({args}, {NCHUNKS}, threaded)"]
    lines.append(f"        return kernel({args}, 1, None)")
    lines.append(f"    return slow({', '.join(f'{n}={n}' for n in names)})")
    return "\n".join(lines) + "\n"


def label_bound(program: Program, node: Node):
    """For an integer input used as labels, the dimension its values must stay below."""
    for s in program.stmts:
        if s.node.op == "take_along" and s.node.inputs[1] is node:
            return s.node.inputs[0].shape[1]
    return None

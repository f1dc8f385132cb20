"""A thread's run of blocks in one compiled call, without the interpreter lock.

Input: a blocks kernel (codegen/blocks.py: serial, each block one chunk) and its batch inputs'
names. Output: a `Driver`, whose module's `drive` runs a program of operations: k >= 0 runs
block k (rows k*rows up to n) and pushes its outputs on a stack, MERGE adds the top entry into
the one below (lower + upper, as blocks.node adds a node's halves) and TILE ends a node, whose
sums become that node's row of the results. blocks.py writes the programs, so the tree of
additions, and with it the bits, are the ones the Python path computes.

Why: run from Python, a block's kernel call, its slices and its additions hold the interpreter
lock; for a 30-32-10 MLP over 50,000 rows (196 blocks of 256 rows) that was about 8 us of each
block's 75 us, during which the other thread's blocks waited. With a driver call per thread,
one thread ran that batch 13-16% faster, and two threads 1.90 and 1.97 times as fast as one
(two runs), against 1.58 to 1.66 before (`python -m benchmarks threads`). A stack entry is
one row of numbers, each output's entries in turn, copied and added by plain loops: Numba
compiled the same driver written with slices and whole-array additions in 2.6 to 4.7 s, with
loops in 0.7 s.
"""
from __future__ import annotations

import math

import numpy as np

from .build import load_module, module_name

MERGE, TILE = -1, -2  # a program's operations besides running a block (k >= 0)
DEPTH = 64  # stack entries: a node of 2**63 blocks at most


class Driver:
    """The driver of one loaded float64 blocks kernel. `drive` is None until `load` has
    compiled it (or loaded it from the cache)."""

    def __init__(self, kernel, batch: list[str]):
        self.inputs = kernel.inputs
        nodes = {n.attr("name"): n for n in kernel.program.inputs}
        # each output's entries are laid out like the input of its shape (None: a number)
        self.like = [None if not node.rank else
                     next(name for name, n in nodes.items() if n.shape == node.shape)
                     for _, node in kernel.program.outputs]
        self.source = _source(kernel, batch, self.like)
        self.drive = None

    @staticmethod
    def possible(kernel) -> bool:
        """Whether every array output of `kernel` has the shape of an input (gradients and
        their products do), so that its entries can be laid out like that input."""
        shapes = {n.shape for n in kernel.program.inputs}
        return kernel.dtype == "float64" and all(
            not node.rank or node.shape in shapes for _, node in kernel.program.outputs)

    def load(self) -> None:
        self.drive = load_module(self.source)[0].drive

    def __call__(self, arguments: dict, rows: int, n: int, program: np.ndarray,
                 tiles: int) -> list:
        """[(each output's sum) per TILE of `program`] (int64) over the blocks of `arguments`,
        as the kernel takes them."""
        sums = self.drive(*[arguments[name] for name in self.inputs], rows, n, program, tiles)
        parts, at = [], 0
        for like in self.like:
            if like is None:
                parts.append(sums[:, at])
                at += 1
            else:
                shape = np.shape(arguments[like])
                size = math.prod(shape)
                parts.append(sums[:, at:at + size].reshape((tiles,) + shape))
                at += size
        return [tuple(part[t] for part in parts) for t in range(tiles)]


def _source(kernel, batch: list[str], like: list) -> str:
    inputs = kernel.inputs
    args = [f"{name}[_lo:_hi]" if name in batch else name for name in inputs]
    rest = ", ".join(f"_v{k}" for k in range(1, len(like)))
    size = ["1" if shape_of is None else f"{shape_of}.size" for shape_of in like]
    starts = ["_at0 = 0"]  # where each output's entries start in a stack entry
    starts += [f"_at{k} = _at{k - 1} + {size[k - 1]}" for k in range(1, len(like))]
    starts.append(f"_width = _at{len(like) - 1} + {size[-1]}")
    ranks = {n.attr("name"): n.rank for n in kernel.program.inputs}
    push = []
    for k, shape_of in enumerate(like):
        if shape_of is None:
            push.append(f"_stack[_top, _at{k}] = _v{k}")
            continue
        rank = ranks[shape_of]
        push.append(f"_j = _at{k}")
        for a in range(rank):
            push.append("    " * a + f"for _a{a} in range(_v{k}.shape[{a}]):")
        indices = ", ".join(f"_a{a}" for a in range(rank))
        push += ["    " * rank + f"_stack[_top, _j] = _v{k}[{indices}]", "    " * rank + "_j += 1"]
    return "\n".join([
        f'"""symdiff blocks driver for {kernel.title}: a thread\'s blocks and their additions '
        f'in one call."""',
        "import numpy as np",
        "from numba import njit",
        "from numba.types import Array, int64", "",
        f"from {module_name(kernel.source)} import kernel as _kernel, SIGNATURE as _KERNEL", "",
        "# the kernel's inputs (its chunks last, always 1 here), then rows, n, program, tiles",
        "# (the driver's own names start with an underscore, as no input's can)",
        "SIGNATURE = _KERNEL[:-1] + (int64, int64, Array(int64, 1, 'C'), int64)", "", "",
        '@njit(SIGNATURE, nogil=True, cache=True, error_model="numpy")',
        f"def drive({', '.join([*inputs, '_rows', '_n', '_program', '_tiles'])}):",
        '    """The sums of the nodes `program` computes, one row per TILE, each output\'s '
        'entries in turn."""',
        *[f"    {line}" for line in starts],
        f"    _stack = np.empty(({DEPTH}, _width))",
        "    _out = np.empty((_tiles, _width))",
        "    _top = _t = 0",
        "    for _op in _program:",
        "        if _op >= 0:",
        "            _lo = _op * _rows",
        "            _hi = min(_lo + _rows, _n)",
        f"            _v0, {f'({rest},)' if rest else '_'} = _kernel({', '.join(args)}, 1)",
        *[f"            {line}" for line in push],
        "            _top += 1",
        f"        elif _op == {MERGE}:  # MERGE",
        "            _top -= 1",
        "            for _j in range(_width):",
        "                _stack[_top - 1, _j] += _stack[_top, _j]",
        "        else:  # TILE",
        "            for _j in range(_width):",
        "                _out[_t, _j] = _stack[0, _j]",
        "            _t += 1",
        "            _top = 0",
        "    return _out"]) + "\n"

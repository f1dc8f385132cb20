"""Cumulative sums along one axis: cumsum, and cumsum run from the far end (`reverse`), which
is its adjoint. Linear in its input, so its tangent is itself. Emitted as scalar loops along
the axis (Numba's np.cumsum takes no axis), or, along an axis other than a batch's, row by row
as a stage of the loop over the batch's rows; the tape does not run it. The scalar loops here
serve the other scans too (ops/structure.py).
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import along_other_axis
from ..optable import linear


def _evaluate(node, args, dims):
    axis = node.attr("axis")
    if node.attr("reverse"):
        return np.flip(np.cumsum(np.flip(args[0], axis), axis=axis), axis)
    return np.cumsum(args[0], axis=axis)


def scan_lines(e, node, row, first, update) -> list[str]:
    """Scalar loops computing node entry by entry along its axis, in the op's direction, for
    each entry of its other axes; with a `row`, that row of a batch's rows on axis 0 alone (a
    stage of the loop over them). `first(at)` and `update(at)` are the texts of the first and
    the later entries' values, `at(d)` the index d entries further along the axis (a list of
    index texts). Scalar code, as an array expression in the kernel keeps Numba from
    threading its prange loops."""
    name, axis, k = e.name(node), node.attr("axis"), e.fresh("step")
    size, reverse = node.shape[axis], node.attr("reverse")
    last, down = (str(size - 1), str(size - 2)) if isinstance(size, int) else \
        (f"{e.dim(size)} - 1", f"{e.dim(size)} - 2")
    others = {a: e.fresh("m") for a in range(node.rank) if a != axis and (row is None or a)}

    def index(step):
        def at(d=0):
            moved = f"{step} {'+' if d > 0 else '-'} {abs(d)}" if d else step
            return [moved if a == axis else others.get(a, row) for a in range(node.rank)]
        return at
    start = last if reverse else "0"
    steps = f"range({down}, -1, -1)" if reverse else f"range(1, {e.dim(size)})"
    lines = [f"{name}[{', '.join(index(start)())}] = {first(index(start))}",
             f"for {k} in {steps}:",
             f"    {name}[{', '.join(index(k)())}] = {update(index(k))}"]
    for a, var in reversed(others.items()):
        lines = [f"for {var} in range({e.dim(node.shape[a])}):"] + ["    " + l for l in lines]
    return lines


def statement_rule(lines):
    """An op's `emit` rule from its `in_row` lines: the output allocated, then every row."""
    def emit(e, node):
        def read(x, index):
            return f"{e.name(x)}[{', '.join(index)}]"
        return [f"{e.name(node)} = np.empty({e.shape(node.shape)}, dtype=np.{e.float_type})"] \
            + lines(e, node, None, read)
    return emit


def _format(node, args):
    reverse = ", reverse=True" if node.attr("reverse") else ""
    return f"cumsum({args[0]}, axis={node.attr('axis')}{reverse})"


def _lines(e, node, row, read):  # y_k = y_(k-1) + x_k (reverse: y_(k+1) + x_k)
    (x,), name = node.inputs, e.name(node)
    before = 1 if node.attr("reverse") else -1
    return scan_lines(e, node, row, lambda at: read(x, at()),
                      lambda at: f"{name}[{', '.join(at(before))}] + {read(x, at())}")


linear("cumsum", "structural", T.cumsum,  # its transpose sums from the other end
       lambda dy, x_shape, *, axis, reverse: T.cumsum(dy, axis, reverse=not reverse),
       lambda attrs: dict(attrs, axis=attrs["axis"] + 1),
       shape=lambda x, *, axis, reverse: (x.shape, x.dtype), per_example=None,
       evaluate=_evaluate, emit=statement_rule(_lines), in_loop=None,
       in_row=lambda e, node, row: _lines(e, node, row, e.read), tape=None,
       batching=along_other_axis, format=_format)

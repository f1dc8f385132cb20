"""Cumulative sums along one axis: cumsum, and cumsum run from the far end (`reverse`), which
is its adjoint. Linear in its input, so its tangent is itself. Emitted as a loop over the axis
(Numba's np.cumsum takes no axis), or, along an axis other than a batch's, row by row as a
stage of the loop over the batch's rows; the tape does not run it.
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


def _emit(e, node):  # out[..., k, ...] += out[..., k -+ 1, ...] along the axis, in order
    name, axis, k = e.name(node), node.attr("axis"), e.fresh("step")

    def at(i):
        return ", ".join(i if a == axis else ":" for a in range(node.rank))
    steps = (f"range({name}.shape[{axis}] - 2, -1, -1)", f"{k} + 1") if node.attr("reverse") \
        else (f"range(1, {name}.shape[{axis}])", f"{k} - 1")
    return [f"{name} = {e.name(node.inputs[0])}.copy()", f"for {k} in {steps[0]}:",
            f"    {name}[{at(k)}] += {name}[{at(steps[1])}]"]


def _format(node, args):
    reverse = ", reverse=True" if node.attr("reverse") else ""
    return f"cumsum({args[0]}, axis={node.attr('axis')}{reverse})"


def _in_row(e, node, row):
    """Row `row`, along the axis from its first (last) entry on, for each entry of the other
    axes: scalar code, as the threaded kernel's prange compiles no array expression."""
    name, axis, x, k = e.name(node), node.attr("axis"), node.inputs[0], e.fresh("step")
    size = node.shape[axis]
    last, down = (str(size - 1), str(size - 2)) if isinstance(size, int) else \
        (f"{e.dim(size)} - 1", f"{e.dim(size)} - 2")
    first, steps, before = (last, f"range({down}, -1, -1)", f"{k} + 1") \
        if node.attr("reverse") else ("0", f"range(1, {e.dim(size)})", f"{k} - 1")
    others = {a: e.fresh("m") for a in range(1, node.rank) if a != axis}

    def at(i):
        return [row if a == 0 else i if a == axis else others[a] for a in range(node.rank)]
    lines = [f"{name}[{', '.join(at(first))}] = {e.read(x, at(first))}",
             f"for {k} in {steps}:",
             f"    {name}[{', '.join(at(k))}] = {name}[{', '.join(at(before))}] + "
             f"{e.read(x, at(k))}"]
    for a, var in reversed(others.items()):
        lines = [f"for {var} in range({e.dim(node.shape[a])}):"] + ["    " + l for l in lines]
    return lines


linear("cumsum", "structural", T.cumsum,  # its transpose sums from the other end
       lambda dy, x_shape, *, axis, reverse: T.cumsum(dy, axis, reverse=not reverse),
       lambda attrs: dict(attrs, axis=attrs["axis"] + 1),
       shape=lambda x, *, axis, reverse: (x.shape, x.dtype), per_example=None,
       evaluate=_evaluate, emit=_emit, in_loop=None, in_row=_in_row, tape=None,
       batching=along_other_axis, format=_format)

"""Cumulative sums along one axis: cumsum, and cumsum run from the far end (`reverse`), which
is its adjoint. Linear in its input, so its tangent is itself. Emitted as a loop over the axis
(Numba's np.cumsum takes no axis); the tape does not run it.
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import MIXES
from ..optable import define, linear_tangent


def _evaluate(node, args, dims):
    axis = node.attr("axis")
    if node.attr("reverse"):
        return np.flip(np.cumsum(np.flip(args[0], axis), axis=axis), axis)
    return np.cumsum(args[0], axis=axis)


def _emit(e, node):  # out[..., k, ...] += out[..., k -+ 1, ...] along the axis, in order
    name, axis, k = e.name(node), node.attr("axis"), e.index[0]

    def at(i):
        return ", ".join(i if a == axis else ":" for a in range(node.rank))
    steps = (f"range({name}.shape[{axis}] - 2, -1, -1)", f"{k} + 1") if node.attr("reverse") \
        else (f"range(1, {name}.shape[{axis}])", f"{k} - 1")
    return [f"{name} = {e.name(node.inputs[0])}.copy()", f"for {k} in {steps[0]}:",
            f"    {name}[{at(k)}] += {name}[{at(steps[1])}]"]


def _batching(node, axes, batch):  # entry i along the axis reads entries before it
    (a,) = axes
    return MIXES if a is not None and a == node.attr("axis") else a


def _format(node, args):
    reverse = ", reverse=True" if node.attr("reverse") else ""
    return f"cumsum({args[0]}, axis={node.attr('axis')}{reverse})"


define("cumsum", "structural", shape=lambda x, *, axis, reverse: (x.shape, x.dtype),
       adjoint=lambda dy, y, x, *, axis, reverse: [T.cumsum(dy, axis, reverse=not reverse)],
       tangent=linear_tangent(lambda dx, axis, reverse: T.cumsum(dx, axis, reverse=reverse)),
       lift=lambda dy, y, x, *, batch, axis, reverse: [T.cumsum(dy, axis + 1,
                                                                 reverse=not reverse)],
       per_example=None, evaluate=_evaluate, emit=_emit, in_loop=None, tape=None,
       batching=_batching, format=_format)

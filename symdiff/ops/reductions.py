"""Reductions over axes: sum and max. Codegen runs them as accumulators inside the fused loop
that computes their operand (batch sums per chunk, added in order afterwards).
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import reduction
from ..optable import define, rule


def _shape(x, *, axes):
    return tuple(d for a, d in enumerate(x.shape) if a not in axes), x.dtype


def _kept(x, axes):
    return tuple(a for a in range(len(x.shape)) if a not in axes)


def _format(node, args):
    axes = node.attr("axes")
    return f"{node.op}({args[0]}, axis={axes[0] if len(axes) == 1 else axes})"


REDUCTION = dict(shape=_shape, per_example=None, emit=None, in_loop=None, format=_format,
                 fusable=True, batching=reduction)

define("sum", "reduce", **REDUCTION, identity=0.0,
       evaluate=lambda node, args, dims: np.sum(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} += {value}",
       tangent=lambda y, inputs, tangents, axes: None if tangents[0] is None
       else T.sum(tangents[0], axis=axes),
       tape=lambda tape, phase, node: tape.batch_sum(phase, node))

define("max", "reduce", **REDUCTION, identity=-np.inf, tape=None,
       evaluate=lambda node, args, dims: np.max(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} = np.maximum({target}, {value})")


@rule("adjoint", "sum")  # y = sum(x, axes): dx = dy broadcast back
def _sum(dy, y, x, *, axes):
    return [T.broadcast_in_dim(dy, x.shape, _kept(x, axes))]


@rule("adjoint", "max")  # y = max(x, axes): dy routed to the maxima, split evenly between ties
def _max(dy, y, x, *, axes):
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    share = dy / T.sum(T.where(hit, 1.0, 0.0), axis=axes)
    return [T.where(hit, T.broadcast_in_dim(share, x.shape, _kept(x, axes)), 0.0)]


@rule("tangent", "max")  # the tangent of the maxima, split evenly between ties as the adjoint
def _max_tangent(y, inputs, tangents, *, axes):
    (x,), (dx,) = inputs, tangents
    if dx is None:
        return None
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    return T.sum(T.where(hit, dx, 0.0), axis=axes) / T.sum(T.where(hit, 1.0, 0.0), axis=axes)

"""Reductions over axes: sum, max, min and prod. Codegen runs them as accumulators inside the fused
loop that computes their operand (batch sums per chunk, combined in order afterwards).
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import reduction
from ..optable import define, linear, rule


def _shape(x, *, axes):
    return tuple(d for a, d in enumerate(x.shape) if a not in axes), x.dtype


def _kept(x, axes):
    return tuple(a for a in range(len(x.shape)) if a not in axes)


def _format(node, args):
    axes = node.attr("axes")
    return f"{node.op}({args[0]}, axis={axes[0] if len(axes) == 1 else axes})"


REDUCTION = dict(shape=_shape, per_example=None, emit=None, in_loop=None, format=_format,
                 fusable=True, batching=reduction)

# y = sum(x, axes): dx = dy broadcast back
linear("sum", "reduce", lambda x, axes: T.sum(x, axis=axes),
       lambda dy, x_shape, *, axes: T.broadcast_in_dim(
           dy, x_shape, tuple(a for a in range(len(x_shape)) if a not in axes)),
       **REDUCTION, identity=0.0, passes_zeros=True,
       evaluate=lambda node, args, dims: np.sum(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} += {value}",
       tape=lambda tape, phase, node: tape.batch_sum(phase, node))

define("max", "reduce", **REDUCTION, identity=-np.inf, tape=None,
       evaluate=lambda node, args, dims: np.max(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} = np.maximum({target}, {value})")

define("min", "reduce", **REDUCTION, identity=np.inf, tape=None,
       evaluate=lambda node, args, dims: np.min(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} = np.minimum({target}, {value})")

define("prod", "reduce", **REDUCTION, identity=1.0, tape=None,
       evaluate=lambda node, args, dims: np.prod(args[0], axis=node.attr("axes")),
       accumulate=lambda target, value: f"{target} *= {value}")


@rule("adjoint", "max", "min")  # y = max(x, axes): dy routed to the maxima, ties split evenly
def _max(dy, y, x, *, axes):
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    share = dy / T.sum(T.where(hit, 1.0, 0.0), axis=axes)
    return [T.where(hit, T.broadcast_in_dim(share, x.shape, _kept(x, axes)), 0.0)]


@rule("tangent", "max", "min")  # the maxima's tangent, split evenly between ties as the adjoint
def _max_tangent(y, inputs, tangents, *, axes):
    (x,), (dx,) = inputs, tangents
    if dx is None:
        return None
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    return T.sum(T.where(hit, dx, 0.0), axis=axes) / T.sum(T.where(hit, 1.0, 0.0), axis=axes)


def _others(y, x, axes):
    """The product of the other entries, for each entry of x: y / x where x != 0 (an open set,
    so its derivatives are right too, with other entries 0 or not); where x == 0 the nonzero
    entries' product times the product of the other zeros, written so that its first
    derivatives are exact as well (Hessians and hvp at any number of zeros)."""
    kept = _kept(x, axes)

    def back(t):
        return T.broadcast_in_dim(t, x.shape, kept)
    zero = x == 0.0
    count = back(T.sum(T.where(zero, 1.0, 0.0), axis=axes))
    rest = back(T.prod(T.where(zero, 1.0, x), axis=axes))
    other = back(T.sum(T.where(zero, x, 0.0), axis=axes)) - x  # the other 0 when there are two
    at_zero = rest * T.where(count == 1.0, 1.0, T.where(count == 2.0, other, 0.0))
    return T.where(zero, at_zero, back(y) / x)


@rule("adjoint", "prod")  # y = prod(x, axes): dx_i = dy * prod_{j != i} x_j
def _prod(dy, y, x, *, axes):
    return [T.broadcast_in_dim(dy, x.shape, _kept(x, axes)) * _others(y, x, axes)]


@rule("tangent", "prod")  # dy = sum_i prod_{j != i} x_j dx_i
def _prod_tangent(y, inputs, tangents, *, axes):
    (x,), (dx,) = inputs, tangents
    return None if dx is None else T.sum(_others(y, x, axes) * dx, axis=axes)

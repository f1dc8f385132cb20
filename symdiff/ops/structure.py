"""Cumulative products along one axis, and the linear recurrence their derivatives are.

`cumprod(x)` is y_i = x_i y_(i-1). Its adjoint is not g * y / x, which divides by zero where an
entry is 0 (and is wrong there): it is dx_i = P_(i-1) R_i, with P the exclusive prefix products
(y shifted by one, 1 first) and R_i = g_i + x_(i+1) R_(i+1), a linear recurrence run from the
far end. As JAX's associative scan gives it, this is exact with any number of zeros.

`recurrence(a, b)` is h_i = b_i + a_i h_(i-1) (a_0 unused), or with `reverse`
h_i = b_i + a_(i+1) h_(i+1): a_i links entries i - 1 and i either way. Linear in b, it is its
own family under differentiation: the adjoint of one direction is the other, with the same a,
so gradients, tangents and Hessian-vector products all stay in these two ops and selects.
Both are emitted as scalar loops along the axis, a stage of the loop over a batch's rows where
the axis is another (as cumsum); the tape does not run them.
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import MIXES, along_other_axis, same_axis
from ..errors import ShapeError
from ..ir import format_shape
from ..optable import define
from .cumulative import scan_lines, statement_rule


def recurrence(a, b, axis: int, reverse: bool = False) -> T.Tensor:
    return T.apply_op("recurrence", (a, b), axis=axis, reverse=bool(reverse))


def _shifted(v, axis: int, fill: float, down: bool = True) -> T.Tensor:
    """v_(i-1) at entry i, `fill` first (with `down`), or v_(i+1), `fill` last."""
    v = T.as_tensor(v)
    edge = T.iota(v.shape, axis) == (0 if down else v.shape[axis] - 1)
    return T.where(edge, fill, T.roll(v, 1 if down else -1, axis))


# ---------------------------------------------------------------- cumprod


def _cumprod_lines(e, node, row, read):  # y_k = y_(k-1) x_k
    (x,), name = node.inputs, e.name(node)
    return scan_lines(e, node, row, lambda at: read(x, at()),
                      lambda at: f"{name}[{', '.join(at(-1))}] * {read(x, at())}")


def _cumprod_adjoint(dy, y, x, *, axis):  # dx_i = P_(i-1) R_i, R_i = dy_i + x_(i+1) R_(i+1)
    return [recurrence(x, dy, axis, reverse=True) * _shifted(y, axis, 1.0)]


def _cumprod_tangent(y, inputs, tangents, *, axis):  # dy_i = x_i dy_(i-1) + P_(i-1) dx_i
    (x,), (dx,) = inputs, tangents
    return None if dx is None else recurrence(x, dx * _shifted(y, axis, 1.0), axis)


define("cumprod", "structural", shape=lambda x, *, axis: (x.shape, x.dtype),
       adjoint=_cumprod_adjoint, tangent=_cumprod_tangent, per_example=None,
       evaluate=lambda node, args, dims: np.cumprod(args[0], axis=node.attr("axis")),
       emit=statement_rule(_cumprod_lines), in_loop=None,
       in_row=lambda e, node, row: _cumprod_lines(e, node, row, e.read), tape=None,
       batching=along_other_axis,
       format=lambda node, args: f"cumprod({args[0]}, axis={node.attr('axis')})")


# ---------------------------------------------------------------- recurrence


def _recurrence_evaluate(node, args, dims):
    axis, reverse = node.attr("axis"), node.attr("reverse")
    a, h = np.moveaxis(args[0], axis, 0), np.moveaxis(np.array(args[1]), axis, 0)  # a copy
    for i in (range(len(h) - 2, -1, -1) if reverse else range(1, len(h))):
        h[i] += (a[i + 1] * h[i + 1]) if reverse else (a[i] * h[i - 1])
    return np.moveaxis(h, 0, axis)


def _recurrence_lines(e, node, row, read):  # h_k = b_k + a_k h_(k-1) (reverse: k + 1)
    (a, b), name = node.inputs, e.name(node)
    before = 1 if node.attr("reverse") else -1
    link = before if node.attr("reverse") else 0
    return scan_lines(e, node, row, lambda at: read(b, at()),
                      lambda at: f"{read(b, at())} + {read(a, at(link))} * "
                                 f"{name}[{', '.join(at(before))}]")


def _recurrence_adjoint(dh, h, a, b, *, axis, reverse):  # the other direction, the same a
    lam = recurrence(a, dh, axis, not reverse)
    if reverse:  # da_i = lam_(i-1) h_i
        return [_shifted(lam, axis, 0.0) * h, lam]
    return [lam * _shifted(h, axis, 0.0), lam]  # da_i = lam_i h_(i-1)


def _recurrence_tangent(h, inputs, tangents, *, axis, reverse):
    (a, _), (da, db) = inputs, tangents  # dh_i = db_i + da_i h_(i-1) + a_i dh_(i-1)
    if da is not None:  # (reverse: db_i + da_(i+1) h_(i+1) + a_(i+1) dh_(i+1))
        link = _shifted(da * h, axis, 0.0, down=False) if reverse else \
            da * _shifted(h, axis, 0.0)
        db = link if db is None else db + link
    return None if db is None else recurrence(a, db, axis, reverse)


def _recurrence_batching(node, axes, batch):  # a and b side by side, mixed along the axis
    found = same_axis(node, axes, batch)
    return MIXES if found is not None and found == node.attr("axis") else found


def _recurrence_shape(a, b, *, axis, reverse):
    if a.shape != b.shape:
        raise ShapeError(f"recurrence: coefficients of shape {format_shape(a.shape)} and terms "
                         f"of shape {format_shape(b.shape)} differ")
    return b.shape, b.dtype


define("recurrence", "structural", shape=_recurrence_shape,
       adjoint=_recurrence_adjoint, tangent=_recurrence_tangent, per_example=None,
       evaluate=_recurrence_evaluate, emit=statement_rule(_recurrence_lines), in_loop=None,
       in_row=lambda e, node, row: _recurrence_lines(e, node, row, e.read), tape=None,
       hint="recur", batching=_recurrence_batching,
       format=lambda node, args: f"recurrence({args[0]}, {args[1]}, axis={node.attr('axis')}"
                                 f"{', reverse=True' if node.attr('reverse') else ''})")

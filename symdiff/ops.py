"""The op table: every op's shape rule, its adjoint (vector-Jacobian product) rule, its
tangent (forward-mode) rule and, where parameters meet the batch, its per-example rule.

Elementwise ops carry a SymPy body over placeholders a0, a1, ... (see functions.py) and share
one generic rule built on their memoised local derivatives. Structural ops register their
rules here, side by side. Rules receive Tensors and build IR with the same operators users
write, so an adjoint can be differentiated again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from . import tensors as T
from .errors import ShapeError
from .functions import (FUNCTIONS, OUT, body_dtype, local_derivative, placeholder,  # noqa: F401
                        relu, sigmoid, softplus, times)
from .ir import Dim, Node, Shape

_G = sp.Symbol("g", real=True)  # the incoming adjoint, in an adjoint body under construction

# ---------------------------------------------------------------- shapes


def same_dim(a: Dim, b: Dim) -> bool:
    return a == b


def broadcast_shapes(*shapes: Shape, what: str = "operands") -> Shape:
    """NumPy broadcasting of shapes that may hold symbolic dimensions."""
    rank = max(len(s) for s in shapes)
    result = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            listed = " and ".join(map(format_shape, shapes))
            raise ShapeError(f"cannot broadcast the shapes {listed} "
                             f"of {what}: dimensions {sorted(map(str, dims))} differ")
        result.append(dims.pop() if dims else 1)
    return tuple(result)


def format_shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------- the table


@dataclass
class OpDef:
    kind: str  # leaf | elementwise | broadcast | reduce | structural
    shape: Callable | None = None  # (*input nodes, **attrs) -> (shape, dtype)
    adjoint: Callable | None = None  # (dy, y, *inputs, **attrs) -> one adjoint or None per input
    # (dy, y, *inputs, k, batch, **attrs) -> the adjoint of input k (a parameter, no batch axis)
    # per example: shape (batch, *input k shape), the batch sum not taken
    per_example: Callable | None = None
    # (y, inputs, tangents, **attrs) -> the tangent of y (forward mode; None tangents are zero)
    tangent: Callable | None = None


OPS: dict[str, OpDef] = {
    "input": OpDef("leaf"), "const": OpDef("leaf"), "dim": OpDef("leaf"), "iota": OpDef("leaf"),
    "elementwise": OpDef("elementwise"), "broadcast": OpDef("broadcast"),
    "sum": OpDef("reduce"), "max": OpDef("reduce"),
}


def shape_rule(name: str, kind: str = "structural"):
    def register(fn):
        OPS.setdefault(name, OpDef(kind)).shape = fn
        return fn
    return register


def _rule(kind: str):
    """A decorator factory registering an op's `kind` rule: @adjoint("matmul") etc."""
    def for_op(name: str):
        def register(fn):
            setattr(OPS[name], kind, fn)
            return fn
        return register
    return for_op


adjoint, per_example, tangent = _rule("adjoint"), _rule("per_example"), _rule("tangent")


def _linear(build):
    """A tangent rule for an op linear in its only input: apply the op to the tangent."""
    def rule(y, inputs, tangents, **attrs):
        return None if tangents[0] is None else build(tangents[0], **attrs)
    return rule


def output_type(op: str, inputs: tuple[Node, ...], attrs: dict) -> tuple[Shape, str]:
    """Shape and dtype of `op(inputs)`; raises ShapeError naming both shapes on a mismatch."""
    return OPS[op].shape(*inputs, **attrs)


@shape_rule("elementwise", "elementwise")
def _elementwise_shape(*inputs, body):
    shapes = {x.shape for x in inputs}
    assert len(shapes) <= 1, f"elementwise inputs must be broadcast first: {shapes}"
    return (inputs[0].shape if inputs else ()), body_dtype(body)


@adjoint("elementwise")  # y = f(a0, a1, ...): da_k = dy * df/da_k
def _elementwise(dy, y, *args, body):
    grads = []
    for k, a in enumerate(args):
        local = local_derivative(body, k)
        if a.dtype not in ("float64", "float32") or local == 0:
            grads.append(None)
            continue
        env = {placeholder(i): x for i, x in enumerate(args)}
        env.update({OUT: y, _G: dy})
        grads.append(T.apply_body(times(_G, local), env))
    return grads


@tangent("elementwise")  # dy = sum_k df/da_k * da_k
def _elementwise_tangent(y, inputs, tangents, *, body):
    terms, env = [], {OUT: y}
    for k, (a, da) in enumerate(zip(inputs, tangents)):
        env[placeholder(k)] = a
        local = local_derivative(body, k)
        if da is not None and local != 0:
            symbol = sp.Symbol(f"_t{k}", real=True)
            env[symbol] = da
            terms.append(times(symbol, local))
    return T.apply_body(sp.Add(*terms), env) if terms else None


@shape_rule("broadcast", "broadcast")
def _broadcast_shape(x, *, shape, dims):
    for axis, out_axis in enumerate(dims):
        if x.shape[axis] != 1 and not same_dim(x.shape[axis], shape[out_axis]):
            raise ShapeError(f"cannot broadcast shape {format_shape(x.shape)} "
                             f"to {format_shape(shape)}")
    return shape, x.dtype


@adjoint("broadcast")  # y = broadcast(x): dx = dy summed over the broadcast axes
def _broadcast(dy, y, x, *, shape, dims):
    summed = tuple(a for a in range(len(shape)) if a not in dims) + tuple(
        out for axis, out in enumerate(dims) if x.shape[axis] == 1 and shape[out] != 1)
    return [T.reshape(T.sum(dy, axis=tuple(sorted(summed))), x.shape)]


@per_example("broadcast")  # y = broadcast(p) over the batch: sample i's share is dy[i]
def _broadcast_per_example(dy, y, p, *, k, batch, shape, dims):
    if not shape or shape[0] != batch or 0 in dims:
        return None
    summed = tuple(a for a in range(1, len(shape)) if a not in dims) + tuple(
        out for axis, out in enumerate(dims) if p.shape[axis] == 1 and shape[out] != 1)
    return T.reshape(T.sum(dy, axis=tuple(sorted(summed))) if summed else dy, (batch,) + p.shape)


@tangent("max")  # the tangent of the maxima, split evenly between ties as in the adjoint
def _max_tangent(y, inputs, tangents, *, axes):
    (x,), (dx,) = inputs, tangents
    if dx is None:
        return None
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    return T.sum(T.where(hit, dx, 0.0), axis=axes) / T.sum(T.where(hit, 1.0, 0.0), axis=axes)


def _reduce_shape(x, *, axes):
    return tuple(d for a, d in enumerate(x.shape) if a not in axes), x.dtype


shape_rule("sum", "reduce")(_reduce_shape)
shape_rule("max", "reduce")(_reduce_shape)


def _kept(x, axes):
    return tuple(a for a in range(len(x.shape)) if a not in axes)


@adjoint("sum")  # y = sum(x, axes): dx = dy broadcast back
def _sum(dy, y, x, *, axes):
    return [T.broadcast_in_dim(dy, x.shape, _kept(x, axes))]


@adjoint("max")  # y = max(x, axes): dy routed to the maxima, split evenly between ties
def _max_adjoint(dy, y, x, *, axes):
    hit = x == T.broadcast_in_dim(y, x.shape, _kept(x, axes))
    share = dy / T.sum(T.where(hit, 1.0, 0.0), axis=axes)
    return [T.where(hit, T.broadcast_in_dim(share, x.shape, _kept(x, axes)), 0.0)]


@shape_rule("stop_gradient")
def _stop_gradient_shape(x):
    return x.shape, x.dtype


@adjoint("stop_gradient")
def _stop_gradient(dy, y, x):
    return [None]


@shape_rule("reshape")
def _reshape_shape(x, *, shape):
    if _size(x.shape) != _size(shape):
        raise ShapeError(f"cannot reshape {format_shape(x.shape)} to {format_shape(shape)}")
    return shape, x.dtype


def _size(shape):
    ints, names = 1, []
    for d in shape:
        if isinstance(d, int):
            ints *= d
        else:
            names.append(d)
    return ints, tuple(sorted(names))


@adjoint("reshape")
def _reshape(dy, y, x, *, shape):
    return [T.reshape(dy, x.shape)]


@shape_rule("transpose")
def _transpose_shape(x, *, perm):
    return tuple(x.shape[p] for p in perm), x.dtype


@adjoint("transpose")  # y = transpose(x, perm): dx = transpose(dy, inverse perm)
def _transpose(dy, y, x, *, perm):
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    return [T.transpose(dy, inverse)]


@shape_rule("matmul")
def _matmul_shape(A, B):
    if A.rank not in (1, 2) or B.rank not in (1, 2):
        raise ShapeError(f"@ takes vectors and matrices, not shapes {format_shape(A.shape)} "
                         f"and {format_shape(B.shape)}")
    if not same_dim(A.shape[-1], B.shape[0]):
        raise ShapeError(f"shapes {format_shape(A.shape)} and {format_shape(B.shape)} do not fit "
                         f"A @ B: {A.shape[-1]} != {B.shape[0]}")
    if A.dtype not in ("float64", "float32") or B.dtype not in ("float64", "float32"):
        raise ShapeError(f"@ needs float arrays, not {A.dtype} and {B.dtype}")
    return A.shape[:-1] + B.shape[1:], A.dtype


@adjoint("matmul")  # C = A @ B
def _matmul(dC, C, A, B):
    if A.ndim == 2 and B.ndim == 2:
        return [dC @ B.T, A.T @ dC]
    if A.ndim == 1 and B.ndim == 2:  # c = a @ B
        return [B @ dC, T.outer(A, dC)]
    if A.ndim == 2:  # c = A @ b
        return [T.outer(dC, B), A.T @ dC]
    return [dC * B, dC * A]  # c = a . b


@tangent("matmul")  # dC = dA @ B + A @ dB
def _matmul_tangent(C, inputs, tangents):
    (A, B), (dA, dB) = inputs, tangents
    terms = ([dA @ B] if dA is not None else []) + ([A @ dB] if dB is not None else [])
    return terms[0] + terms[1] if len(terms) == 2 else (terms[0] if terms else None)


@per_example("matmul")  # C = A @ B, B a parameter, A one row per sample: dB_i = outer(A_i, dC_i)
def _matmul_per_example(dC, C, A, B, *, k, batch):
    if k != 1 or A.ndim != 2 or A.shape[0] != batch:
        return None
    if B.ndim == 1:
        return A * T.broadcast_in_dim(dC, A.shape, (0,))
    shape = (batch,) + B.shape
    return T.broadcast_in_dim(A, shape, (0, 1)) * T.broadcast_in_dim(dC, shape, (0, 2))


@shape_rule("take_along")
def _take_along_shape(x, labels):
    if x.rank != 2 or labels.rank != 1 or not same_dim(x.shape[0], labels.shape[0]):
        raise ShapeError(f"take_along needs x of shape (rows, classes) and labels of shape "
                         f"(rows,), not {format_shape(x.shape)} and {format_shape(labels.shape)}")
    if labels.dtype != "int64":
        raise ShapeError(f"labels must be integers, not {labels.dtype}")
    return labels.shape, x.dtype


@adjoint("take_along")  # y[i] = x[i, labels[i]]: dx = dy selected on the picked entries
def _take_along(dy, y, x, labels):
    picked = T.iota(x.shape, axis=1) == T.broadcast_in_dim(labels, x.shape, (0,))
    return [T.where(picked, T.broadcast_in_dim(dy, x.shape, (0,)), 0.0), None]


@tangent("take_along")
def _take_along_tangent(y, inputs, tangents):
    return None if tangents[0] is None else T.take_along(tangents[0], inputs[1])


@shape_rule("concatenate")
def _concatenate_shape(*parts, axis):
    first = parts[0].shape
    for p in parts[1:]:
        if len(p.shape) != len(first) or any(
                not same_dim(a, b) for i, (a, b) in enumerate(zip(first, p.shape)) if i != axis):
            raise ShapeError(f"cannot concatenate shapes {format_shape(first)} and "
                             f"{format_shape(p.shape)} along axis {axis}")
    sizes = [p.shape[axis] for p in parts]
    if not all(isinstance(s, int) for s in sizes):
        raise ShapeError(f"concatenate along a symbolic axis ({sizes}) is not supported")
    return first[:axis] + (sum(sizes),) + first[axis + 1:], parts[0].dtype


@adjoint("concatenate")  # y = concatenate(parts): each part gets its slice of dy
def _concatenate(dy, y, *parts, axis):
    grads, start = [], 0
    for p in parts:
        grads.append(T.slice_axis(dy, axis, start, start + p.shape[axis]))
        start += p.shape[axis]
    return grads


@tangent("concatenate")
def _concatenate_tangent(y, inputs, tangents, *, axis):
    if all(t is None for t in tangents):
        return None
    return T.concatenate([T.zeros(x.shape) if t is None else t
                          for x, t in zip(inputs, tangents)], axis=axis)


@shape_rule("slice")
def _slice_shape(x, *, axis, start, stop):
    if not (0 <= start <= stop <= x.shape[axis]):
        raise ShapeError(f"slice {start}:{stop} is out of range for axis {axis} of "
                         f"{format_shape(x.shape)}")
    return x.shape[:axis] + (stop - start,) + x.shape[axis + 1:], x.dtype


@adjoint("slice")  # y = x[start:stop] along axis: dx = dy padded with zeros
def _slice(dy, y, x, *, axis, start, stop):
    pieces = []
    if start:
        pieces.append(T.zeros(x.shape[:axis] + (start,) + x.shape[axis + 1:]))
    pieces.append(dy)
    if stop < x.shape[axis]:
        pieces.append(T.zeros(x.shape[:axis] + (x.shape[axis] - stop,) + x.shape[axis + 1:]))
    return [T.concatenate(pieces, axis=axis) if len(pieces) > 1 else dy]


# ops linear in their one input: the tangent goes through the op itself
tangent("broadcast")(_linear(lambda dx, shape, dims: T.broadcast_in_dim(dx, shape, dims)))
tangent("sum")(_linear(lambda dx, axes: T.sum(dx, axis=axes)))
tangent("reshape")(_linear(lambda dx, shape: T.reshape(dx, shape)))
tangent("transpose")(_linear(lambda dx, perm: T.transpose(dx, perm)))
tangent("slice")(_linear(lambda dx, axis, start, stop: T.slice_axis(dx, axis, start, stop)))
tangent("stop_gradient")(lambda y, inputs, tangents: None)

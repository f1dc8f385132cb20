"""Linear algebra: the Cholesky factor, triangular and general solves, and log|det| with its
sign, each one LAPACK/BLAS call in the generated code (codegen/runtime.py), a failure raising
LinAlgError that names the statement. Adjoints as the literature gives them: Murray (2016) for
the Cholesky factor, the transposed solve for a solve, a⁻ᵀ for log|det a|.
"""
from __future__ import annotations

import numpy as np

from .. import linalg as L
from .. import tensors as T
from ..batching import MIXES
from ..errors import DtypeError, LinAlgError
from ..optable import define


def _float64(*matrices):
    if any(m.dtype != "float64" for m in matrices):
        raise DtypeError("linear algebra runs in float64: give float64 inputs")


def _whole(node, axes, batch):  # a matrix's entries all meet in a factorization or a solve
    return None if all(a is None for a in axes) else MIXES


# ---------------------------------------------------------------- cholesky


def _cholesky_shape(a):
    _float64(a)
    return a.shape, a.dtype


def _cholesky_adjoint(dL, Lf, a):  # Murray: S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹, Ā = (S + Sᵀ)/2, Φ the
    phi = L.triangle(T.transpose(Lf) @ dL, diagonal_scale=0.5)  # lower triangle, half the
    # diagonal
    m = L.solve_triangular(Lf, phi, transpose=True)
    s = T.transpose(L.solve_triangular(Lf, T.transpose(m), transpose=True))
    return [0.5 * (s + T.transpose(s))]


def _cholesky_tangent(Lf, inputs, tangents):  # dL = L Φ(L⁻¹ dA L⁻ᵀ)
    (da,) = tangents
    if da is None:
        return None
    w = L.solve_triangular(Lf, da)
    v = T.transpose(L.solve_triangular(Lf, T.transpose(w)))
    return Lf @ L.triangle(v, diagonal_scale=0.5)


def _cholesky_emit(e, node):
    name, a, info = e.name(node), e.name(node.inputs[0]), e.fresh("info")
    message = f"{name} = cholesky({a}): the matrix is not positive definite"
    return [f"{name}, {info} = _cholesky({a})",
            f"if {info}:",
            f"    raise _LinAlgError({message!r})"]


def _cholesky_evaluate(node, args, dims):
    try:
        return np.linalg.cholesky(args[0])
    except np.linalg.LinAlgError:
        raise LinAlgError("cholesky: the matrix is not positive definite") from None


define("cholesky", "structural", shape=_cholesky_shape, adjoint=_cholesky_adjoint,
       tangent=_cholesky_tangent, per_example=None, evaluate=_cholesky_evaluate,
       emit=_cholesky_emit, in_loop=None, tape=None, batching=_whole, hint="chol")


# ---------------------------------------------------------------- solve_triangular


def _solve_shape(t, b, *, lower, transpose):
    _float64(t, b)
    return b.shape, b.dtype


def _op(t, transpose):
    return T.transpose(t) if transpose else t


def _solve_adjoint(dx, x, t, b, *, lower, transpose):  # x = op(t)⁻¹ b: b̄ = op(t)⁻ᵀ x̄,
    db = L.solve_triangular(t, dx, lower, not transpose)  # op(t)̄ = -b̄ xᵀ, on t's triangle
    product = T.outer(db, x) if b.ndim == 1 else db @ T.transpose(x)
    return [L.triangle(-_op(product, transpose), lower), db]


def _solve_tangent(x, inputs, tangents, *, lower, transpose):  # dx = op(t)⁻¹ (db - op(dt) x),
    (t, _), (dt, db) = inputs, tangents  # dt on t's triangle, the part the solve reads
    if dt is None and db is None:
        return None
    dt = None if dt is None else L.triangle(dt, lower)
    rhs = db if dt is None else (-(_op(dt, transpose) @ x) if db is None
                                 else db - _op(dt, transpose) @ x)
    return L.solve_triangular(t, rhs, lower, transpose)


def _solve_emit(e, node):
    t, b = node.inputs
    flags = f"{node.attr('lower')}, {node.attr('transpose')}"
    failure = f"{_format(node, [e.name(t), e.name(b)])}: a zero on the diagonal"
    return _solve_lines(e, node, "_solve_triangular", flags, failure)


def _solve_lines(e, node, call, flags, failure):
    """x = call(a, b as columns, flags), LinAlgError naming the statement where it fails."""
    a, b = node.inputs
    name, x, info = e.name(node), e.fresh("x"), e.fresh("info")
    columns = f"np.ascontiguousarray({e.name(b)})" + (f".reshape(({e.dim(b.shape[0])}, 1))"
                                                       if b.rank == 1 else "")
    return [f"{x}, {info} = {call}({e.name(a)}, {columns}{', ' + flags if flags else ''})",
            f"if {info}:",
            f"    raise _LinAlgError({f'{name} = {failure}'!r})",
            f"{name} = {x}.ravel()" if b.rank == 1 else f"{name} = {x}"]


def _solve_evaluate(node, args, dims):
    from scipy.linalg import solve_triangular
    t, b = args
    if np.any(np.diag(t) == 0.0):
        raise LinAlgError("solve_triangular: a zero on the diagonal")
    return solve_triangular(t, b, lower=node.attr("lower"), trans=int(node.attr("transpose")))


def _solve_batching(node, axes, batch):  # columns of b are solved apart
    t_axis, b_axis = axes
    if t_axis is None and b_axis is None:
        return None
    return 1 if t_axis is None and b_axis == 1 else MIXES


def _format(node, args):
    flags = "" if node.attr("lower") else ", lower=False"
    flags += ", transpose=True" if node.attr("transpose") else ""
    return f"solve_triangular({args[0]}, {args[1]}{flags})"


define("solve_triangular", "structural", shape=_solve_shape, adjoint=_solve_adjoint,
       tangent=_solve_tangent, per_example=None, evaluate=_solve_evaluate, emit=_solve_emit,
       in_loop=None, tape=None, batching=_solve_batching, format=_format, hint="solve")


# ---------------------------------------------------------------- solve, slogdet (LU)


def _solve_general_shape(a, b):
    _float64(a, b)
    return b.shape, b.dtype


def _solve_general_adjoint(dx, x, a, b):  # x = a⁻¹ b: b̄ = a⁻ᵀ x̄, ā = -b̄ xᵀ
    db = L.solve(T.transpose(a), dx)
    return [-(T.outer(db, x) if b.ndim == 1 else db @ T.transpose(x)), db]


def _solve_general_tangent(x, inputs, tangents):  # dx = a⁻¹ (db - da x)
    (a, _), (da, db) = inputs, tangents
    if da is None and db is None:
        return None
    rhs = db if da is None else (-(da @ x) if db is None else db - da @ x)
    return L.solve(a, rhs)


def _solve_general_emit(e, node):
    a, b = node.inputs
    failure = f"solve({e.name(a)}, {e.name(b)}): the matrix is singular"
    return _solve_lines(e, node, "_solve", "", failure)


def _solve_general_evaluate(node, args, dims):
    try:
        return np.linalg.solve(*args)
    except np.linalg.LinAlgError:
        raise LinAlgError("solve: the matrix is singular") from None


define("solve", "structural", shape=_solve_general_shape, adjoint=_solve_general_adjoint,
       tangent=_solve_general_tangent, per_example=None, evaluate=_solve_general_evaluate,
       emit=_solve_general_emit, in_loop=None, tape=None, batching=_solve_batching)


def _scalar_of(a):
    _float64(a)
    return (), a.dtype


def _logabsdet_adjoint(dy, y, a):  # d log|det a| = tr(a⁻¹ da): ā = ȳ a⁻ᵀ
    n = a.shape[0]
    return [T.transpose(L.solve(a, L.eye(n))) * dy]


def _logabsdet_tangent(y, inputs, tangents):
    (a,), (da,) = inputs, tangents
    return None if da is None else T.sum(L.diagonal(L.solve(a, da)))


define("logabsdet", "structural", shape=_scalar_of, adjoint=_logabsdet_adjoint,
       tangent=_logabsdet_tangent, per_example=None,
       evaluate=lambda node, args, dims: np.linalg.slogdet(args[0])[1],
       emit=lambda e, node: [f"{e.fresh('sign')}, {e.name(node)} = "
                             f"_slogdet({e.name(node.inputs[0])})"],
       in_loop=None, tape=None, batching=_whole)
define("det_sign", "structural", shape=_scalar_of,  # constant where it is defined: no slope
       adjoint=lambda dy, y, a: [None], tangent=lambda y, inputs, tangents: None,
       per_example=None, evaluate=lambda node, args, dims: np.linalg.slogdet(args[0])[0],
       emit=lambda e, node: [f"{e.name(node)}, {e.fresh('log_det')} = "
                             f"_slogdet({e.name(node.inputs[0])})"],
       in_loop=None, tape=None, batching=_whole, hint="sign")

"""Linear algebra on Tensors: the Cholesky factor, triangular solves, diagonals and identity
matrices, as `sd.cholesky`, `sd.solve_triangular`, `sd.diagonal`, `sd.eye`. A Gaussian
process's log-determinant is 2 sum(log(diagonal(L))) of its Cholesky factor L, and its
quadratic form the squared norm of solve_triangular(L, y). The factorization and the solves
are LAPACK's and BLAS's (codegen/runtime.py), each one statement of the generated code.
"""
from __future__ import annotations

from . import tensors as T
from .errors import ShapeError
from .ir import format_shape


def _square(x: T.Tensor, what: str) -> int:
    if x.ndim != 2 or x.shape[0] != x.shape[1] or not isinstance(x.shape[0], int):
        raise ShapeError(f"{what} takes a square matrix of known size, not shape "
                         f"{format_shape(x.shape)}")
    return x.shape[0]


def cholesky(a) -> T.Tensor:
    """The lower-triangular L with a = L Lᵀ, for a symmetric positive definite matrix a (of
    (a + aᵀ)/2, as jax.numpy.linalg.cholesky: its gradient is symmetric). A matrix that is not
    positive definite raises sd.LinAlgError naming the statement, never NaN."""
    a = T.as_tensor(a)
    _square(a, "cholesky")
    return T.apply_op("cholesky", ((a + T.transpose(a)) * 0.5,))  # symmetric, as JAX's


def solve_triangular(t, b, lower: bool = True, transpose: bool = False) -> T.Tensor:
    """x with t x = b (tᵀ x = b with `transpose`), t triangular (its `lower` or upper triangle
    is read), b a vector or a matrix of columns, as scipy.linalg.solve_triangular. A zero on
    t's diagonal raises sd.LinAlgError."""
    t, b = T.as_tensor(t), T.as_tensor(b)
    n = _square(t, "solve_triangular")
    if b.ndim not in (1, 2) or b.shape[0] != n:
        raise ShapeError(f"solve_triangular: b of shape {format_shape(b.shape)} does not fit "
                         f"a triangular matrix of shape {format_shape(t.shape)}")
    return T.apply_op("solve_triangular", (t, b), lower=bool(lower), transpose=bool(transpose))


def diagonal(a) -> T.Tensor:
    """The diagonal of a square matrix, as a vector."""
    a = T.as_tensor(a)
    n = _square(a, "diagonal")
    return T.reshape(a, (n * n,))[[k * (n + 1) for k in range(n)]]


def eye(n: int) -> T.Tensor:
    """The n-by-n identity matrix."""
    rows, cols = T.iota((n, n), 0), T.iota((n, n), 1)
    return T.where(rows == cols, 1.0, 0.0)


def triangle(a: T.Tensor, lower: bool = True, diagonal_scale: float = 1.0) -> T.Tensor:
    """a's lower (upper) triangle, its diagonal times `diagonal_scale`, zeros elsewhere."""
    rows, cols = T.iota(a.shape, 0), T.iota(a.shape, 1)
    strict = rows > cols if lower else rows < cols
    return T.where(strict, a, T.where(rows == cols, a * diagonal_scale, 0.0))


def solve(a, b) -> T.Tensor:
    """x with a x = b, for a square matrix a and b a vector or a matrix of columns, by LU with
    partial pivoting (LAPACK's dgesv). A singular a raises sd.LinAlgError."""
    a, b = T.as_tensor(a), T.as_tensor(b)
    n = _square(a, "solve")
    if b.ndim not in (1, 2) or b.shape[0] != n:
        raise ShapeError(f"solve: b of shape {format_shape(b.shape)} does not fit a matrix of "
                         f"shape {format_shape(a.shape)}")
    return T.apply_op("solve", (a, b))


def inv(a) -> T.Tensor:
    """The inverse of a square matrix (prefer solve: it is cheaper and more accurate)."""
    a = T.as_tensor(a)
    return solve(a, eye(_square(a, "inv")))


def slogdet(a) -> tuple[T.Tensor, T.Tensor]:
    """(sign, log|det a|) of a square matrix, as np.linalg.slogdet: (0, -inf) where a is
    singular. The sign has no slope; log|det a|'s gradient is a⁻ᵀ."""
    a = T.as_tensor(a)
    _square(a, "slogdet")
    return T.apply_op("det_sign", (a,)), T.apply_op("logabsdet", (a,))


def det(a) -> T.Tensor:
    """The determinant of a square matrix, sign times exp(log|det a|)."""
    sign, logabsdet = slogdet(a)
    return sign * T.function("exp", logabsdet)


def trace(a) -> T.Tensor:
    """The sum of a square matrix's diagonal."""
    return T.sum(diagonal(a))

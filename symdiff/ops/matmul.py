"""Matrix products of vectors and matrices. Codegen calls BLAS (np.dot inside Numba), with a
transpose read only by products passed as a `.T` view instead of a copy.
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import MIXES
from ..errors import ShapeError
from ..ir import format_shape
from ..optable import define


def _shape(A, B):
    if A.rank not in (1, 2) or B.rank not in (1, 2):
        raise ShapeError(f"@ takes vectors and matrices, not shapes {format_shape(A.shape)} "
                         f"and {format_shape(B.shape)}")
    if A.shape[-1] != B.shape[0]:
        raise ShapeError(f"shapes {format_shape(A.shape)} and {format_shape(B.shape)} do not fit "
                         f"A @ B: {A.shape[-1]} != {B.shape[0]}")
    if A.dtype not in ("float64", "float32") or B.dtype not in ("float64", "float32"):
        raise ShapeError(f"@ needs float arrays, not {A.dtype} and {B.dtype}")
    return A.shape[:-1] + B.shape[1:], A.dtype


def _adjoint(dC, C, A, B):  # C = A @ B
    if A.ndim == 2 and B.ndim == 2:
        return [dC @ B.T, A.T @ dC]
    if A.ndim == 1 and B.ndim == 2:  # c = a @ B
        return [B @ dC, T.outer(A, dC)]
    if A.ndim == 2:  # c = A @ b
        return [T.outer(dC, B), A.T @ dC]
    return [dC * B, dC * A]  # c = a . b


def _tangent(C, inputs, tangents):  # dC = dA @ B + A @ dB
    (A, B), (dA, dB) = inputs, tangents
    terms = ([dA @ B] if dA is not None else []) + ([A @ dB] if dB is not None else [])
    return terms[0] + terms[1] if len(terms) == 2 else (terms[0] if terms else None)


def _per_example(dC, C, A, B, *, k, batch):  # B a parameter, A one row per sample:
    if k != 1 or A.ndim != 2 or A.shape[0] != batch:  # dB_i = outer(A_i, dC_i)
        return None
    if B.ndim == 1:
        return A * T.broadcast_in_dim(dC, A.shape, (0,))
    shape = (batch,) + B.shape
    return T.broadcast_in_dim(A, shape, (0, 1)) * T.broadcast_in_dim(dC, shape, (0, 2))


def _batching(node, axes, batch):  # a contraction over the examples, or an outer product of
    A, B = node.inputs                # examples (X @ X.T), mixes them
    a, b = axes
    out = []
    if a is not None:
        out.append(MIXES if a == A.rank - 1 else a)
    if b is not None:
        out.append(MIXES if b == 0 else A.rank - 1 + b - 1)
    if len(out) > 1 or MIXES in out:
        return MIXES
    return out[0] if out else None


def _emit(e, node):
    return [f"{e.name(node)} = _dot({e.name(node.inputs[0])}, {e.name(node.inputs[1])})"]


define("matmul", "structural", shape=_shape, adjoint=_adjoint, tangent=_tangent,
       per_example=_per_example, evaluate=lambda node, args, dims: np.matmul(*args),
       emit=_emit, in_loop=None, tape=None, batching=_batching, transposed_view=True,
       fresh_array=True, format=lambda node, args: f"{args[0]} @ {args[1]}")


# ---------------------------------------------------------------- stacked matrices


def _swap(X):
    """X with its last two axes swapped: the matrices transposed."""
    return T.transpose(X, _swap_perm(X.ndim))


def _swap_perm(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


def _swapped(X) -> bool:
    """Whether X is a transpose of its source's matrices (read as a `.T` view)."""
    node = getattr(X, "node", X)
    return node.op == "transpose" and node.attr("perm") == _swap_perm(node.rank)


def _bmm_shape(A, B):  # A (..., m, k) @ B (..., k, n) with the same leading axes, or B (k, n)
    if A.rank < 3 or B.rank not in (2, A.rank) or B.rank == A.rank and A.shape[:-2] != \
            B.shape[:-2] or A.shape[-1] != B.shape[-2]:
        raise ShapeError(f"shapes {format_shape(A.shape)} and {format_shape(B.shape)} do not "
                         f"fit a product of stacked matrices")
    if A.dtype not in ("float64", "float32") or B.dtype != A.dtype:
        raise ShapeError(f"@ needs float arrays of one dtype, not {A.dtype} and {B.dtype}")
    return A.shape[:-1] + B.shape[-1:], A.dtype


def _bmm_adjoint(dC, C, A, B):  # C_q = A_q @ B_q: dA_q = dC_q B_qᵀ, dB_q = A_qᵀ dC_q
    if B.ndim == 2:  # one B for every matrix of A: its adjoint summed over them
        return [T.apply_op("bmm", (dC, _swap(B))), T.apply_op("contract_rows", (A, dC))]
    # an operand that is a transposed view gets its adjoint as one too, (dC Bᵀ)ᵀ = B dCᵀ and
    # (Aᵀ dC)ᵀ = dCᵀ A: the transpose's own adjoint then reads the product itself, no copy
    dA = _swap(T.apply_op("bmm", (B, _swap(dC)))) if _swapped(A) else \
        T.apply_op("bmm", (dC, _swap(B)))
    dB = _swap(T.apply_op("bmm", (_swap(dC), A))) if _swapped(B) else \
        T.apply_op("bmm", (_swap(A), dC))
    return [dA, dB]


def _bmm_tangent(C, inputs, tangents):
    (A, B), (dA, dB) = inputs, tangents
    terms = ([T.apply_op("bmm", (dA, B))] if dA is not None else []) + \
        ([T.apply_op("bmm", (A, dB))] if dB is not None else [])
    return terms[0] + terms[1] if len(terms) == 2 else (terms[0] if terms else None)


def _bmm_per_example(dC, C, A, B, *, k, batch):  # a shared B, the examples along A's axis 0:
    if k != 1 or B.ndim != 2 or A.shape[0] != batch:  # dB_i = sum over example i's
        return None                                     # matrices of A_qᵀ dC_q
    products = T.apply_op("bmm", (_swap(A), dC))
    return T.sum(products, axis=tuple(range(1, A.ndim - 2))) if A.ndim > 3 else products


def _bmm_batching(node, axes, batch):  # a leading axis or a row of A, a column of B, is
    A, B = node.inputs                  # kept; the contracted axis mixes
    lead = A.rank - 2
    found = []
    if axes[0] is not None:
        found.append(MIXES if axes[0] == lead + 1 else axes[0])
    if axes[1] is not None:
        b = axes[1] + (lead if B.rank == 2 else 0)  # B's axes as the output's
        found.append(MIXES if b == lead else b)
    if MIXES in found or len(set(found)) > 1:
        return MIXES
    return found[0] if found else None


def _bmm_emit(e, node):
    """One BLAS product per matrix, written into its place in the stack; by a shared B, one
    for all the rows."""
    A, B = node.inputs
    m, k, n = (e.dim(d) for d in (A.shape[-2], A.shape[-1], B.shape[-1]))
    name = e.name(node)
    if B.rank == 2:
        rows = f"np.ascontiguousarray({e.name(A)})"
        return [f"{name} = _dot({rows}.reshape((-1, {k})), {e.name(B)})"
                f".reshape({e.shape(node.shape)})"]
    left, right, out, q = e.fresh("left"), e.fresh("right"), e.fresh("out"), e.fresh("q")
    (a, ta), (b, tb) = _stack(e, A, m, k), _stack(e, B, k, n)
    return [f"{left} = {a}", f"{right} = {b}",
            f"{out} = np.empty(({left}.shape[0], {m}, {n}), dtype=np.{e.float_type})",
            f"for {q} in range({left}.shape[0]):",
            f"    _dot_into({left}[{q}]{ta}, {right}[{q}]{tb}, {out}[{q}])",
            f"{name} = {out}.reshape({e.shape(node.shape)})"]


def _stack(e, X, rows, cols):
    """(X as a C-ordered stack of rows-by-cols matrices, ".T" if each is to be read
    transposed): a transpose of the last two axes is read from its source, as np.dot takes a
    transposed matrix without a copy."""
    if _swapped(X):
        source = f"np.ascontiguousarray({e.name(X.inputs[0])})"
        return f"{source}.reshape((-1, {cols}, {rows}))", ".T"
    return f"np.ascontiguousarray({e.name(X)}).reshape((-1, {rows}, {cols}))", ""


define("bmm", "structural", shape=_bmm_shape, adjoint=_bmm_adjoint, tangent=_bmm_tangent,
       per_example=_bmm_per_example, evaluate=lambda node, args, dims: np.matmul(*args),
       emit=_bmm_emit, in_loop=None, tape=None, batching=_bmm_batching, fresh_array=True,
       # a product per matrix (a stack for B) reads a transposed stack from its source
       transposed_view=lambda node, X: node.inputs[1].rank > 2 and _swapped(X),
       format=lambda node, args: f"{args[0]} @ {args[1]}")


# ---------------------------------------------------------------- a sum of products


def _contract_shape(A, C):  # sum over q of A_qᵀ C_q, A (..., m, k) and C (..., m, n)
    if A.shape[:-1] != C.shape[:-1]:
        raise ShapeError(f"contract_rows: shapes {format_shape(A.shape)} and "
                         f"{format_shape(C.shape)} do not share their rows")
    return (A.shape[-1], C.shape[-1]), A.dtype


def _contract_adjoint(dY, Y, A, C):  # Y = sum A_qᵀ C_q: dA_q = C_q dYᵀ, dC_q = A_q dY
    return [T.apply_op("bmm", (C, T.transpose(dY))), T.apply_op("bmm", (A, dY))]


def _contract_tangent(Y, inputs, tangents):
    (A, C), (dA, dC) = inputs, tangents
    terms = ([T.apply_op("contract_rows", (dA, C))] if dA is not None else []) + \
        ([T.apply_op("contract_rows", (A, dC))] if dC is not None else [])
    return terms[0] + terms[1] if len(terms) == 2 else (terms[0] if terms else None)


def _contract_emit(e, node):  # every row of every matrix at once: one BLAS product
    A, C = node.inputs
    k, n = (e.dim(d) for d in node.shape)
    return [f"{e.name(node)} = _dot(np.ascontiguousarray({e.name(A)}).reshape((-1, {k})).T, "
            f"np.ascontiguousarray({e.name(C)}).reshape((-1, {n})))"]


define("contract_rows", "structural", shape=_contract_shape, adjoint=_contract_adjoint,
       tangent=_contract_tangent, per_example=None,
       evaluate=lambda node, args, dims: args[0].reshape(-1, args[0].shape[-1]).T
       @ args[1].reshape(-1, args[1].shape[-1]),
       emit=_contract_emit, in_loop=None, tape=None, hint="contract", fresh_array=True,
       batching=lambda node, axes, batch: None if axes == (None, None) else MIXES,
       format=lambda node, args: f"contract_rows({args[0]}, {args[1]})")

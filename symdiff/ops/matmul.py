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
    args = [f"{e.name(i.inputs[0])}.T" if i.uid in e.inline_transposes else e.name(i)
            for i in node.inputs]
    return [f"{e.name(node)} = _dot({args[0]}, {args[1]})"]


define("matmul", "structural", shape=_shape, adjoint=_adjoint, tangent=_tangent,
       per_example=_per_example, evaluate=lambda node, args, dims: np.matmul(*args),
       emit=_emit, in_loop=None, tape=None, batching=_batching, format=lambda node, args: f"{args[0]} @ {args[1]}")

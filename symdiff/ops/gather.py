"""Gathers by integer label: take_along picks x[i, labels[i]] for each row i. Labels are
range-checked before any kernel reads them (Numba runs without bounds checks).
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import MIXES
from ..errors import ShapeError
from ..ir import format_shape
from ..optable import define


def _shape(x, labels):
    if x.rank != 2 or labels.rank != 1 or x.shape[0] != labels.shape[0]:
        raise ShapeError(f"take_along needs x of shape (rows, classes) and labels of shape "
                         f"(rows,), not {format_shape(x.shape)} and {format_shape(labels.shape)}")
    if labels.dtype != "int64":
        raise ShapeError(f"labels must be integers, not {labels.dtype}")
    return labels.shape, x.dtype


def _adjoint(dy, y, x, labels):  # dx = dy selected on the picked entries, 0 elsewhere
    picked = T.iota(x.shape, axis=1) == T.broadcast_in_dim(labels, x.shape, (0,))
    return [T.where(picked, T.broadcast_in_dim(dy, x.shape, (0,)), 0.0), None]


def _batching(node, axes, batch):  # row i picks from row i of x; examples along the classes mix
    x_axis, label_axis = axes
    if x_axis == 1:
        return MIXES
    return None if x_axis is None and label_axis is None else 0


def _in_loop(e, loop, node, idx):
    x, labels = node.inputs
    return e.operand(loop, x, [idx[0], e.operand(loop, labels, idx)])


define("take_along", "structural", shape=_shape, adjoint=_adjoint,
       tangent=lambda y, inputs, tangents: None if tangents[0] is None
       else T.take_along(tangents[0], inputs[1]),
       per_example=None, fusable=True, emit=None, in_loop=_in_loop, tape=None,
       batching=_batching,
       labels=lambda node: (node.inputs[1], node.inputs[0].shape[1]),
       evaluate=lambda node, args, dims: np.take_along_axis(args[0], args[1][:, None],
                                                            axis=1)[:, 0], hint="take")

"""Gathers by integer input: take_along picks x[i, labels[i]] for each row i; take picks
rows, x[idx] (an embedding lookup), and scatter_rows, its adjoint, adds rows back at their
indices. Labels and indices are range-checked before any kernel reads them (Numba runs
without bounds checks).
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


def _in_loop(e, node, idx):
    x, labels = node.inputs
    return e.read(x, [idx[0], e.read(labels, idx)])


define("take_along", "structural", shape=_shape, adjoint=_adjoint,
       tangent=lambda y, inputs, tangents: None if tangents[0] is None
       else T.take_along(tangents[0], inputs[1]),
       per_example=None, fusable=True, emit=None, in_loop=_in_loop, tape=None,
       batching=_batching,
       labels=lambda node: (node.inputs[1], node.inputs[0].shape[1]),
       evaluate=lambda node, args, dims: np.take_along_axis(args[0], args[1][:, None],
                                                            axis=1)[:, 0], hint="take")


# ---------------------------------------------------------------- take: rows by integer index


def _take_shape(x, indices):
    if indices.dtype != "int64":
        raise ShapeError(f"take: indices must be integers, not {indices.dtype}")
    if x.rank == 0:
        raise ShapeError("take: picks rows, and a scalar has none")
    return indices.shape + x.shape[1:], x.dtype


def _take_batching(node, axes, batch):  # each index picks a row of x: rows of examples mix
    x_axis, index_axis = axes
    if x_axis is not None:
        return MIXES
    return index_axis


def _take_in_loop(e, node, idx):
    x, indices = node.inputs
    return e.read(x, [e.read(indices, idx[:indices.rank])] + list(idx[indices.rank:]))


def _take_emit(e, node):  # a loop over the indices, a row copied at each
    x = node.inputs[0]
    return _by_index(e, node, x, x.shape[1:], "empty", lambda out, rows, i, q, k:
                     f"{out}[{q}, {k}] = {rows}[{i}, {k}]")


def _by_index(e, node, table, row, fill, entry):
    """node allocated (np.empty or np.zeros), then for each index q (in the flat indices) and
    entry k of a row of shape `row`, entry(node's rows, table's rows, the index, q, k): a line
    of code."""
    indices = node.inputs[1]
    q, k, flat = e.fresh("entry"), e.fresh("m"), e.fresh("flat")
    out, rows = e.fresh("out"), e.fresh("rows")
    width = " * ".join(e.dim(d) for d in row) or "1"
    return [f"{flat} = {e.name(indices)}.ravel()",
            f"{e.name(node)} = np.{fill}({e.shape(node.shape)}, dtype=np.{e.float_type})",
            f"{out} = {e.name(node)}.reshape((-1, {width}))",
            f"{rows} = np.ascontiguousarray({e.name(table)}).reshape((-1, {width}))",
            f"for {q} in range({flat}.size):",
            f"    for {k} in range({width}):",
            f"        {entry(out, rows, f'{flat}[{q}]', q, k)}"]


def _take_per_example(dy, y, x, indices, *, k, batch):  # x a parameter, indices one row
    if k != 0 or not indices.shape or indices.shape[0] != batch:  # of ids per example: its
        return None                                                # rows' adjoints, added
    r = indices.ndim
    shape = indices.shape + x.shape  # (batch, ..., rows, ...): the row each entry picked
    hit = T.iota(shape, axis=r) == T.broadcast_in_dim(indices, shape, tuple(range(r)))
    rows = T.broadcast_in_dim(dy, shape, tuple(range(r)) + tuple(range(r + 1, len(shape))))
    picked = T.where(hit, rows, 0.0)
    return T.sum(picked, axis=tuple(range(1, r))) if r > 1 else picked


define("take", "structural", shape=_take_shape,
       adjoint=lambda dy, y, x, indices: [T.apply_op("scatter_rows", (dy, indices),
                                                      rows=x.shape[0]), None],
       tangent=lambda y, inputs, tangents: None if tangents[0] is None
       else T.take(tangents[0], inputs[1]),
       per_example=_take_per_example, fusable=True, index_map=True, emit=_take_emit,
       in_loop=_take_in_loop,
       tape=None, batching=_take_batching, passes_zeros=False,
       labels=lambda node: (node.inputs[1], node.inputs[0].shape[0]),
       evaluate=lambda node, args, dims: np.take(args[0], args[1], axis=0),
       format=lambda node, args: f"{args[0]}[{args[1]}]")


def _scatter_rows_shape(dy, indices, *, rows):
    return (rows,) + dy.shape[indices.rank:], dy.dtype


def _scatter_rows_emit(e, node):  # zeros, each row of dy added at its index
    return _by_index(e, node, node.inputs[0], node.shape[1:], "zeros",
                     lambda out, rows, i, q, k: f"{out}[{i}, {k}] += {rows}[{q}, {k}]")


def _scatter_rows_evaluate(node, args, dims):
    out = np.zeros((node.attr("rows"),) + args[0].shape[args[1].ndim:], dtype=args[0].dtype)
    np.add.at(out, args[1], args[0])
    return out


define("scatter_rows", "structural", shape=_scatter_rows_shape,
       adjoint=lambda dz, z, dy, indices, *, rows: [T.take(dz, indices), None],
       tangent=lambda z, inputs, tangents, *, rows: None if tangents[0] is None
       else T.apply_op("scatter_rows", (tangents[0], inputs[1]), rows=rows),
       per_example=None, emit=_scatter_rows_emit, in_loop=None, tape=None, hint="scatter",
       batching=lambda node, axes, batch: None if axes == (None, None) else MIXES,
       evaluate=_scatter_rows_evaluate,
       format=lambda node, args: f"scatter_rows({args[0]}, {args[1]}, rows={node.attr('rows')})")

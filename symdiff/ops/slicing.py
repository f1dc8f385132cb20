"""Indexing ops: strided slices and integer-array gathers, and their transposes (pad, scatter_add).

A slice's `index` holds one entry per input axis: None keeps the whole axis (the only entry a
symbolic axis takes), an int k picks entry k and drops the axis, and (start, step, count) keeps
`count` entries from `start` in steps of `step` (negative steps too). A gather picks the
entries `indices` (a tuple of ints, repeats allowed) along `axis`. Both are index maps: loops
read their source in place at the mapped index, nothing is copied. Their adjoints put the
incoming adjoint back where the entries came from, into zeros: `pad` writes it, `scatter_add`
adds it (a repeated index receives the sum of its adjoints).
"""
from __future__ import annotations

import numpy as np

from .. import indexing as I
from ..batching import MIXES, along_other_axis, kept_axes
from ..ir import format_shape, sizes
from ..optable import linear




# ---------------------------------------------------------------- slice, pad


def _slice_shape(x, *, index):
    return I.sliced_shape(x.shape, index), x.dtype


def _source_index(node, idx):
    """The source's index expressions for the output's loop variables `idx`."""
    out, picks = iter(idx), []
    for entry in node.attr("index"):
        if entry is None:
            picks.append(next(out))
        elif isinstance(entry, int):
            picks.append(str(entry))
        else:
            start, step, _ = entry
            term = next(out) if abs(step) == 1 else f"{abs(step)}*{next(out)}"
            sign = "-" if step < 0 else "+"
            picks.append(term if start == 0 and step > 0 else f"{start} {sign} {term}")
    return picks


def _slice_batching(node, axes, batch):  # a whole example axis is kept; any pick on it mixes
    index, (a,) = node.attr("index"), axes
    if a is not None and index[a] is not None:
        return MIXES
    return kept_axes(a, [k for k, entry in enumerate(index) if isinstance(entry, int)])


def _pad_batching(node, axes, batch):  # input axis k is the k-th axis the slice kept
    (a,) = axes
    if a is None:
        return None
    kept = [k for k, entry in enumerate(node.attr("index")) if not isinstance(entry, int)]
    return kept[a] if node.attr("index")[kept[a]] is None else MIXES


def _slice_emit(e, node):  # a scalar picked outside loops (loops read slices in place)
    text = f"{e.name(node.inputs[0])}[{I.index_text(node.attr('index'))}]"
    return [f"{e.name(node)} = {text if node.rank == 0 else f'np.ascontiguousarray({text})'}"]


linear("slice", "structural", I.slice_axes, I.pad,
       lambda attrs: dict(index=(None,) + attrs["index"]), shape=_slice_shape,
       per_example=None,
       evaluate=lambda node, args, dims: args[0][I.numpy_index(node.attr("index"))],
       emit=_slice_emit, fusable=True, index_map=True, tape=None,
       batching=_slice_batching,
       in_loop=lambda e, node, idx: e.read(node.inputs[0], _source_index(node, idx)),
       format=lambda node, args: f"{args[0]}[{I.index_text(node.attr('index'))}]")


def _pad_evaluate(node, args, dims):
    out = np.zeros(sizes(node.attr("shape"), dims), dtype=args[0].dtype)
    out[I.numpy_index(node.attr("index"))] = args[0]
    return out


def _entry(name: str, idx) -> str:
    return f"{name}[{', '.join(idx)}]" if idx else name


def _pad_emit(e, node):  # zeros, the adjoint written where the slice read
    name, dy = e.name(node), node.inputs[0]
    return [f"{name} = np.zeros({e.shape(node.shape)}, dtype=np.{e.float_type})"] + e.nest(
        dy.shape, lambda idx: [f"{_entry(name, _source_index(node, idx))} = "
                               f"{_entry(e.name(dy), idx)}"])


linear("pad", "structural", I.pad, lambda dz, dy_shape, *, shape, index:
       I.slice_axes(dz, index), shape=lambda dy, *, shape, index: (shape, dy.dtype),
       per_example=None, evaluate=_pad_evaluate, emit=_pad_emit, in_loop=None, tape=None,
       batching=_pad_batching,
       format=lambda node, args: f"pad({args[0]}, {format_shape(node.attr('shape'))}, "
                                 f"[{I.index_text(node.attr('index'))}])")


# ---------------------------------------------------------------- gather, scatter_add


def _gather_shape(x, *, axis, indices):
    return x.shape[:axis] + (len(indices),) + x.shape[axis + 1:], x.dtype


def _gather_in_loop(e, node, idx):
    axis, indices = node.attr("axis"), node.attr("indices")
    picks = list(idx)
    picks[axis] = f"{e.table(indices)}[{idx[axis]}]"
    return e.read(node.inputs[0], picks)


def _shift_axis(attrs):
    return dict(attrs, axis=attrs["axis"] + 1)


linear("gather", "structural", I.gather, I.scatter_add, _shift_axis, shape=_gather_shape,
       per_example=None, evaluate=lambda node, args, dims: np.take(args[0], node.attr("indices"),
                                                 axis=node.attr("axis")),
       emit=None, in_loop=_gather_in_loop, fusable=True, index_map=True, tape=None,
       batching=along_other_axis,
       format=lambda node, args: f"gather({args[0]}, axis={node.attr('axis')}, "
                                 f"indices={list(node.attr('indices'))})")


def _scatter_evaluate(node, args, dims):
    out = np.zeros(sizes(node.attr("shape"), dims), dtype=args[0].dtype)
    axis = node.attr("axis")
    np.add.at(out, (slice(None),) * axis + (list(node.attr("indices")),), args[0])
    return out


def _scatter_emit(e, node):  # zeros, each entry of the adjoint added where it was read
    name, dy, axis = e.name(node), node.inputs[0], node.attr("axis")

    def add(idx):
        at = list(idx)
        at[axis] = f"{e.table(node.attr('indices'))}[{idx[axis]}]"
        return [f"{_entry(name, at)} += {_entry(e.name(dy), idx)}"]
    return [f"{name} = np.zeros({e.shape(node.shape)}, dtype=np.{e.float_type})"] + e.nest(
        dy.shape, add)


linear("scatter_add", "structural", I.scatter_add,
       lambda dz, dy_shape, *, shape, axis, indices: I.gather(dz, axis, indices),
       shape=lambda dy, *, shape, axis, indices: (shape, dy.dtype), per_example=None,
       evaluate=_scatter_evaluate, emit=_scatter_emit, in_loop=None,
       tape=None, hint="scatter", batching=along_other_axis,
       format=lambda node, args: f"scatter_add({args[0]}, {format_shape(node.attr('shape'))}, "
                                 f"axis={node.attr('axis')}, "
                                 f"indices={list(node.attr('indices'))})")

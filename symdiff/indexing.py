"""NumPy indexing of Tensors: `x[key]` -> slice, gather and broadcast nodes.

A key holds ints (negative too), slices (steps too, negative ones included), one `...`,
`None` (a new axis of size 1) and at most one one-dimensional integer array (a gather along
that axis), with NumPy's meaning. It is normalised here to one `slice` node (one entry per
axis: see symdiff/ops/indexing.py), a `gather` for the array and a broadcast for new axes.
Static indices are checked against static sizes when the model is built; a symbolic axis
(the batch "n") is taken whole, since its size is known only at call time. Also here: the
builders of the indexing ops and the text of an index in generated code.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import tensors as T
from .errors import ArgumentError, ShapeError
from .ir import format_shape, make_node
from .optable import output_type


def getitem(x: T.Tensor, key) -> T.Tensor:
    """`x[key]` with NumPy's semantics (see the module docstring)."""
    key = _expand(x, key if isinstance(key, tuple) else (key,))
    index, new_axes, array, out_axis = [], [], None, 0
    for axis_or_new, entry in key:
        if axis_or_new is None:
            new_axes.append(out_axis)
            out_axis += 1
            continue
        axis, size = axis_or_new, x.shape[axis_or_new]
        if isinstance(entry, np.ndarray):
            if array is not None:
                raise ShapeError(f"{_what(x)}: one integer-array index per subscript")
            array = (sum(1 for e in index if not isinstance(e, int)),
                     _array_entry(x, axis, size, entry))
            index.append(None)
        else:
            index.append(_entry(x, axis, size, entry))
        out_axis += not isinstance(index[-1], int)
    y = slice_axes(x, tuple(index))
    if array is not None:
        y = gather(y, *array)
    if new_axes:
        shape, dims = list(y.shape), []
        for position in new_axes:
            shape.insert(position, 1)
        dims = tuple(a for a in range(len(shape)) if a not in new_axes)
        y = T.broadcast_in_dim(y, tuple(shape), dims)
    return y


def _what(x: T.Tensor) -> str:
    name = x.node.attr("name") if x.node.op == "input" else None
    return name or f"a tensor of shape {format_shape(x.shape)}"


def _expand(x: T.Tensor, key: tuple) -> list:
    """[(input axis, or None for a new axis; entry)], `...` replaced by whole slices."""
    if sum(e is Ellipsis for e in key) > 1:
        raise ShapeError(f"{_what(x)}: an index can only have a single ellipsis ('...')")
    used = sum(e is not None and e is not Ellipsis for e in key)
    if used > x.ndim:
        raise ShapeError(f"too many indices for {_what(x)}: it has rank {x.ndim} "
                         f"(shape {format_shape(x.shape)}), {used} were given")
    result, axis = [], 0
    for entry in key:
        if isinstance(entry, (list, np.ndarray)):
            entry = np.asarray(entry)
            entry = int(entry) if entry.ndim == 0 and entry.dtype.kind in "iu" else entry
        if entry is Ellipsis:
            for _ in range(x.ndim - used):
                result.append((axis, slice(None)))
                axis += 1
        elif entry is None:
            result.append((None, None))
        else:
            result.append((axis, entry))
            axis += 1
    return result + [(a, slice(None)) for a in range(axis, x.ndim)]


def _entry(x, axis: int, size, entry):
    """One axis's slice entry: None (whole), an int, or (start, step, count)."""
    if isinstance(entry, T.Tensor):
        raise ArgumentError(f"{_what(x)} is indexed by a Tensor: index with ints, slices, "
                            f"..., None or integer arrays; sd.take_along picks by labels")
    if isinstance(entry, (numbers.Integral, np.integer)) and not isinstance(entry, bool):
        if isinstance(size, str):
            raise ShapeError(f"{_what(x)}: axis {axis} has the symbolic size {size}; only a "
                             f"whole slice ':' can index it")
        if not -size <= entry < size:
            raise ShapeError(f"index {entry} is out of range for axis {axis} of {_what(x)}, "
                             f"of size {size}")
        return int(entry) % size
    if not isinstance(entry, slice) or not all(
            p is None or isinstance(p, (numbers.Integral, np.integer)) and not isinstance(p, bool)
            for p in (entry.start, entry.stop, entry.step)):
        raise ArgumentError(f"{_what(x)}: an index entry must be an int, a slice of ints, "
                            f"..., None or an integer array, not {entry!r}")
    if isinstance(size, str):
        if entry.start not in (None, 0) or entry.stop is not None or entry.step not in (None, 1):
            raise ShapeError(f"{_what(x)}: axis {axis} has the symbolic size {size}; only a "
                             f"whole slice ':' can index it, not {_slice_text(entry)}")
        return None
    if entry.step == 0:
        raise ShapeError(f"{_what(x)}: a slice step cannot be zero")
    start, stop, step = entry.indices(size)
    count = len(range(start, stop, step))
    if count == 0:
        raise ShapeError(f"{_slice_text(entry)} selects nothing from axis {axis} of "
                         f"{_what(x)}, of size {size}")
    return None if (start, step, count) == (0, 1, size) else (start, step, count)


def _array_entry(x, axis: int, size, entry: np.ndarray) -> tuple[int, ...]:
    if entry.dtype.kind not in "iu" or entry.ndim != 1 or not entry.size:
        raise ShapeError(f"{_what(x)}: an integer-array index must be a non-empty "
                         f"one-dimensional array of ints, not {entry.dtype} of shape "
                         f"{entry.shape}")
    if isinstance(size, str):
        raise ShapeError(f"{_what(x)}: axis {axis} has the symbolic size {size}; an integer "
                         f"array cannot index it (its range is unknown until the call)")
    bad = entry[(entry < -size) | (entry >= size)]
    if bad.size:
        raise ShapeError(f"index {bad[0]} is out of range for axis {axis} of {_what(x)}, "
                         f"of size {size}")
    return tuple(int(k) % size for k in entry)


def _slice_text(s: slice) -> str:
    parts = ["" if p is None else str(p) for p in (s.start, s.stop, s.step)]
    return ":".join(parts[:2] + ([parts[2]] if s.step is not None else []))


# ---------------------------------------------------------------- the ops' builders


def slice_axes(x: T.Tensor, index: tuple) -> T.Tensor:
    """x sliced by a normalised `index` (one entry per axis); a slice of a slice is one slice
    of the source, a slice of a broadcast the broadcast of a slice, and a slice of a constant
    a constant."""
    if all(e is None for e in index):
        return x
    if x.node.op == "broadcast":
        return _through_broadcast(x.node, index)
    if x.node.op == "slice":
        index, x = _compose(x.node.attr("index"), index), T.Tensor(x.node.inputs[0])
    shape, dtype = output_type("slice", (x.node,), dict(index=index))
    if x.node.op == "const":
        return T.full(shape, x.node.attr("value"))
    return T.Tensor(make_node("slice", (x.node,), shape, dtype, index=index))


def _through_broadcast(node, index: tuple) -> T.Tensor:
    """broadcast(src)[index] as broadcast(src[index on src's own axes])."""
    src, dims, shape = node.inputs[0], node.attr("dims"), node.attr("shape")
    src_index, kept, out_shape = [None] * src.rank, [], []
    for a, entry in enumerate(index):
        k = dims.index(a) if a in dims else None
        if k is not None and src.shape[k] == shape[a]:
            src_index[k] = entry
        elif k is not None and isinstance(entry, int):
            src_index[k] = 0  # a stretched axis of size 1, dropped
        if isinstance(entry, int):
            continue
        if k is not None:
            kept.append((k, len(out_shape)))
        out_shape.append(shape[a] if entry is None else entry[2])
    y = slice_axes(T.Tensor(src), tuple(src_index))
    return T.broadcast_in_dim(y, tuple(out_shape), tuple(p for _, p in sorted(kept)))


def _compose(inner: tuple, outer: tuple) -> tuple:
    """The index of `source[inner][outer]` into the source."""
    result, rest = [], iter(outer)
    for entry in inner:
        if isinstance(entry, int):
            result.append(entry)
            continue
        o = next(rest)
        if entry is None or o is None:
            result.append(o if entry is None else entry)
        elif isinstance(o, int):
            result.append(entry[0] + entry[1] * o)
        else:
            result.append((entry[0] + entry[1] * o[0], entry[1] * o[1], o[2]))
    return tuple(result)


def slice_axis(x: T.Tensor, axis: int, start: int, stop: int) -> T.Tensor:
    """Entries start..stop-1 of `axis`."""
    return slice_axes(x, tuple((start, 1, stop - start) if a == axis else None
                               for a in range(x.ndim)))


def gather(x: T.Tensor, axis: int, indices: tuple) -> T.Tensor:
    """The entries `indices` of `x` along `axis`."""
    shape, dtype = output_type("gather", (x.node,), dict(axis=axis, indices=indices))
    return T.Tensor(make_node("gather", (x.node,), shape, dtype, axis=axis, indices=indices))


def pad(dy: T.Tensor, shape, index: tuple) -> T.Tensor:
    """Zeros of `shape` with `dy` written at the slice `index`: the transpose of a slice."""
    return T.Tensor(make_node("pad", (dy.node,), tuple(shape), dy.dtype, shape=tuple(shape),
                              index=index))


def scatter_add(dy: T.Tensor, shape, axis: int, indices: tuple) -> T.Tensor:
    """Zeros of `shape`, entry k of `dy` along `axis` added at `indices[k]`: the transpose of
    a gather (a repeated index receives the sum)."""
    shape = tuple(shape)
    return T.Tensor(make_node("scatter_add", (dy.node,), shape, dy.dtype, shape=shape,
                              axis=axis, indices=indices))


# ---------------------------------------------------------------- shapes and text


def sliced_shape(shape, index: tuple):
    if len(index) != len(shape):
        raise ShapeError(f"a slice of {format_shape(shape)} needs {len(shape)} index entries, "
                         f"not {len(index)}")
    return tuple(d if e is None else e[2] for d, e in zip(shape, index)
                 if not isinstance(e, int))


def _python_slice(entry) -> slice:
    start, step, count = entry
    stop = start + step * count
    return slice(start, None if stop < 0 else stop, step)


def numpy_index(index: tuple) -> tuple:
    return tuple(slice(None) if e is None else e if isinstance(e, int) else _python_slice(e)
                 for e in index)


def index_text(index: tuple) -> str:
    """The index as Python text: `:, 2, 1:7:2`."""
    parts = []
    for e in numpy_index(index):
        if isinstance(e, int):
            parts.append(str(e))
            continue
        step = 1 if e.step is None else e.step
        start = None if e.start in (None, 0) and step > 0 else e.start
        parts.append(_slice_text(slice(start, e.stop, None if step == 1 else step)))
    return ", ".join(p or ":" for p in parts)


def tuple_text(indices: tuple) -> str:
    return "(" + ", ".join(map(str, indices)) + ("," if len(indices) == 1 else "") + ")"

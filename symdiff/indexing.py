"""NumPy indexing of Tensors: `x[key]` -> slice, transpose, reshape, gather and broadcast nodes.

A key follows NumPy's rules. It holds ints (negative too), slices (steps too, negative ones
included), one `...`, `None` (a new axis of size 1), integer arrays (lists, tuples or NumPy
arrays of any rank) and boolean masks (each the integer arrays of its True entries, as
`np.nonzero` gives them). Without arrays an int drops its axis. With arrays, the arrays and the
ints are the advanced indices: the arrays broadcast together to one shape, whose axes replace
the indexed ones, in place of the first advanced index when the advanced indices stand side by
side in the key, else at the front of the result (a slice, `...` or `None` between them
separates them). A key becomes one `slice` node (one entry per axis: see
symdiff/ops/slicing.py) for its ints and slices; the axes the arrays index are then moved
side by side (a transpose), merged into one (a reshape), read at the flat indices of the
broadcast arrays (one gather) and split into the broadcast shape (a reshape); new axes come from
a broadcast. Static indices are checked against static sizes when the model is built; a
symbolic axis (the batch "n") is taken whole, since its size is known only at call time; an
empty selection is refused. Also here: the builders of the indexing ops and the text of an
index in generated code.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import tensors as T
from .errors import ArgumentError, ShapeError
from .ir import format_shape
from .optable import OPS


def getitem(x: T.Tensor, key) -> T.Tensor:
    """`x[key]` with NumPy's semantics (see the module docstring).

    >>> X = T.tensor("X", (5, 6, 4))
    >>> X[3, 2:, [1, 3]].shape, X[[0, 1], :, [2, 3]].shape, X[:, [[0], [1]], [0, 2]].shape
    ((2, 4), (2, 6), (5, 2, 2))
    """
    if isinstance(key, T.Tensor):  # rows picked by an integer input: an embedding lookup
        return T.take(x, key)
    entries = [(position, axis, entry if axis is None else _normalised(x, axis, entry))
               for position, axis, entry in _expand(x, key if isinstance(key, tuple) else (key,))]
    y = slice_axes(x, tuple(None if isinstance(e, np.ndarray) else e
                            for _, axis, e in entries if axis is not None))
    arrays = [(axis, e) for _, axis, e in entries if isinstance(e, np.ndarray)]
    before, picked, after = _layout(entries, bool(arrays))
    y = T.transpose(y, [a for a in before + picked + after if a is not None])
    if arrays:
        y = _gather_block(x, y, sum(a is not None for a in before), arrays)
    width = y.ndim - sum(a is not None for a in before + after)  # the arrays' broadcast axes
    layout = [a is None for a in before] + [False] * width + [a is None for a in after]
    return _new_axes(y, [k for k, new in enumerate(layout) if new])


def _layout(entries: list, arrays: bool) -> tuple[list, list, list]:
    """(before, picked, after): the axes of the sliced x (None for a new axis) that come before
    the arrays' broadcast axes in the result, the axes the arrays index, and those after."""
    advanced = sorted({p for p, axis, e in entries if axis is not None
                       and isinstance(e, (int, np.ndarray))}) if arrays else []
    side_by_side = advanced and advanced[-1] - advanced[0] == len(advanced) - 1
    first = advanced[0] if side_by_side else -1  # -1: the arrays' axes come first
    before, picked, after, k = [], [], [], 0
    for position, axis, entry in entries:
        if isinstance(entry, np.ndarray):
            picked.append(k)
        elif axis is None or not isinstance(entry, int):
            (before if position < first else after).append(None if axis is None else k)
        k += axis is not None and not isinstance(entry, int)
    return before, picked, after


def _gather_block(x: T.Tensor, y: T.Tensor, start: int, arrays: list) -> T.Tensor:
    """y with its axes start, start + 1, ... (one per array, in order) replaced by the axes of
    the arrays' broadcast shape: merged into one axis, read at the flat indices, split."""
    try:
        shape = np.broadcast_shapes(*(e.shape for _, e in arrays))
    except ValueError:
        raise ShapeError(f"{_what(x)}: the integer arrays indexing axes "
                         f"{', '.join(str(a) for a, _ in arrays)} have shapes "
                         f"{', '.join(format_shape(e.shape) for _, e in arrays)}, which do not "
                         f"broadcast together") from None
    stop = start + len(arrays)
    sizes = y.shape[start:stop]
    flat = np.ravel_multi_index(tuple(np.broadcast_to(e, shape) for _, e in arrays), sizes)
    y = T.reshape(y, y.shape[:start] + (math.prod(sizes),) + y.shape[stop:])
    y = gather(y, start, tuple(int(k) for k in flat.ravel()))
    return T.reshape(y, y.shape[:start] + shape + y.shape[start + 1:])


def _new_axes(y: T.Tensor, positions: list) -> T.Tensor:
    """y with axes of size 1 at `positions` of the result."""
    shape = list(y.shape)
    for position in positions:
        shape.insert(position, 1)
    return T.broadcast_in_dim(y, tuple(shape),
                              tuple(a for a in range(len(shape)) if a not in positions))


def _what(x: T.Tensor) -> str:
    name = x.node.attr("name") if x.node.op == "input" else None
    return name or f"a tensor of shape {format_shape(x.shape)}"


def _expand(x: T.Tensor, key: tuple) -> list:
    """[(position in the key, input axis or None for a new axis, entry)]: `...` replaced by
    whole slices, a boolean mask by the integer arrays of its True entries."""
    key = [_as_array(x, e) for e in key]
    if sum(e is Ellipsis for e in key) > 1:
        raise ShapeError(f"{_what(x)}: an index can only have a single ellipsis ('...')")
    used = sum(e.ndim if _is_mask(e) else e is not None and e is not Ellipsis for e in key)
    if used > x.ndim:
        raise ShapeError(f"too many indices for {_what(x)}: it has rank {x.ndim} "
                         f"(shape {format_shape(x.shape)}), {used} were given")
    result, axis = [], 0
    for position, entry in enumerate(key):
        if entry is Ellipsis:
            result += [(position, a, slice(None)) for a in range(axis, axis + x.ndim - used)]
            axis += x.ndim - used
        elif entry is None:
            result.append((position, None, None))
        elif _is_mask(entry):
            result += [(position, axis + k, a) for k, a in enumerate(_mask_arrays(x, axis, entry))]
            axis += entry.ndim
        else:
            result.append((position, axis, entry))
            axis += 1
    return result + [(len(key), a, slice(None)) for a in range(axis, x.ndim)]


def _as_array(x: T.Tensor, entry):
    """A list, tuple or array entry as a NumPy array (a 0-d integer one as an int, as NumPy
    takes it); any other entry as it is."""
    if not isinstance(entry, (list, tuple, np.ndarray)):
        return entry
    try:
        entry = np.asarray(entry)
    except ValueError:
        raise ArgumentError(f"{_what(x)}: an index array must be rectangular, not "
                            f"{entry!r}") from None
    return int(entry) if entry.ndim == 0 and entry.dtype.kind in "iu" else entry


def _is_mask(entry) -> bool:
    return isinstance(entry, np.ndarray) and entry.dtype == bool


def _mask_arrays(x: T.Tensor, axis: int, mask: np.ndarray) -> tuple:
    """The integer arrays of the True entries of a boolean mask over axes axis, axis + 1, ..."""
    shape = x.shape[axis:axis + mask.ndim]
    where = (f"axis {axis}, of size {shape[0]}" if mask.ndim == 1 else
             f"axes {axis} to {axis + mask.ndim - 1}, of shape {format_shape(shape)}")
    if mask.ndim == 0:
        raise ShapeError(f"{_what(x)}: a boolean scalar (True or False) cannot be an index; "
                         f"a boolean mask has the shape of the axes it picks from")
    if any(isinstance(d, str) for d in shape):
        raise ShapeError(f"{_what(x)}: a boolean mask cannot index {where}, whose size is "
                         f"known only at the call")
    if mask.shape != shape:
        raise ShapeError(f"{_what(x)}: a boolean mask of shape {format_shape(mask.shape)} "
                         f"cannot index {where}: a mask has the shape of the axes it indexes")
    if not mask.any():
        raise ShapeError(f"{_what(x)}: a boolean mask with no True entry selects nothing "
                         f"from {where}")
    return np.nonzero(mask)


def _normalised(x: T.Tensor, axis: int, entry):
    size = x.shape[axis]
    if isinstance(entry, np.ndarray):
        return _array_entry(x, axis, size, entry)
    return _entry(x, axis, size, entry)


def _entry(x, axis: int, size, entry):
    """One axis's slice entry: None (whole), an int, or (start, step, count)."""
    if isinstance(entry, T.Tensor):
        raise ArgumentError(f"{_what(x)} is indexed by a Tensor among other entries: index "
                            f"with ints, slices, ..., None, integer arrays or boolean masks; "
                            f"x[idx] or sd.take(x, idx, axis) picks by an integer input, "
                            f"sd.take_along by labels")
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
                            f"..., None, an integer array or a boolean mask, not {entry!r}")
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


def _array_entry(x, axis: int, size, entry: np.ndarray) -> np.ndarray:
    if entry.dtype.kind not in "iu" or not entry.size:
        raise ShapeError(f"{_what(x)}: an integer-array index must be a non-empty array of "
                         f"ints (or a boolean mask), not {entry.dtype} of shape "
                         f"{format_shape(entry.shape)}")
    if isinstance(size, str):
        raise ShapeError(f"{_what(x)}: axis {axis} has the symbolic size {size}; an integer "
                         f"array cannot index it (its range is unknown until the call)")
    bad = entry[(entry < -size) | (entry >= size)]
    if bad.size:
        raise ShapeError(f"index {bad.flat[0]} is out of range for axis {axis} of {_what(x)}, "
                         f"of size {size}")
    return entry.astype(np.int64) % size


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
    if x.node.op == "const":
        shape, _ = OPS["slice"].shape(x.node, index=index)
        return T.full(shape, x.node.attr("value"))
    return T.apply_op("slice", (x,), index=index)


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
    return T.apply_op("gather", (x,), axis=axis, indices=indices)


def pad(dy: T.Tensor, shape, index: tuple) -> T.Tensor:
    """Zeros of `shape` with `dy` written at the slice `index`: the transpose of a slice."""
    return T.apply_op("pad", (dy,), shape=tuple(shape), index=index)


def scatter_add(dy: T.Tensor, shape, axis: int, indices: tuple) -> T.Tensor:
    """Zeros of `shape`, entry k of `dy` along `axis` added at `indices[k]`: the transpose of
    a gather (a repeated index receives the sum)."""
    return T.apply_op("scatter_add", (dy,), shape=tuple(shape), axis=axis, indices=indices)


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


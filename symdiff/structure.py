"""Array structure on Tensors, as NumPy spells it: `flip`, `diff`, `triu`, `tril`, `tile`,
`repeat`, `pad`, `outer`, `kron` and `cumprod`.

All but cumprod are built from ops symdiff has, so each comes with every rule (adjoint,
tangent, per-example gradients, batching): a flip is a slice with negative steps, a difference
two slices subtracted, a triangle a select over index ramps, tile, repeat, outer and kron a
broadcast (multiplied) and reshaped, a zero pad the transpose of a slice, and the edge,
reflect, symmetric and wrap pads a gather of the entries NumPy's own np.pad of the indices
names. cumprod is a record of its own (symdiff/ops/structure.py).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import indexing as I
from . import tensors as T
from .errors import ArgumentError, ShapeError
from .ir import format_shape

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _known(x: T.Tensor, axis: int, what: str) -> int:
    size = x.shape[axis]
    if not isinstance(size, int):
        raise ShapeError(f"{what} along axis {axis} of size {size!r}: the size must be known")
    return size


def _count(value, what: str, least: int | None = 1) -> int:
    """A Python or NumPy integer (of at least `least`), as an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or least is not None and value < least:
        at_least = "" if least is None else f" of at least {least}"
        raise ArgumentError(f"{what} must be an integer{at_least}, not {value!r}")
    return int(value)


def _flat(x: T.Tensor, what: str) -> T.Tensor:
    """x as a vector, as NumPy flattens it for an axis of None."""
    if x.ndim == 1:
        return x
    if not all(isinstance(d, int) for d in x.shape):
        raise ShapeError(f"{what} of shape {format_shape(x.shape)} without an axis flattens "
                         f"it: the sizes must be known (or give an axis)")
    return T.reshape(x, (int(np.prod(x.shape, dtype=int)),))


def _lead(x: T.Tensor, ndim: int) -> T.Tensor:
    """x with leading axes of size 1 up to rank `ndim`."""
    return T.reshape(x, (1,) * (ndim - x.ndim) + x.shape) if x.ndim < ndim else x


def _merged(outer, inner, what: str):
    """The size of axis pairs (outer, inner) reshaped into one."""
    if outer == 1 or inner == 1:
        return inner if outer == 1 else outer
    if not (isinstance(outer, int) and isinstance(inner, int)):
        raise ShapeError(f"{what} makes one axis of axes of sizes {outer!r} and {inner!r}: "
                         f"the sizes must be known")
    return outer * inner


def _interleaved(x: T.Tensor, reps, inner: bool) -> T.Tensor:
    """x broadcast with axis k of x beside a new axis of reps[k] copies (after it with
    `inner`, before it otherwise), the pairs merged: repeat (inner) and tile."""
    shape, dims = [], []
    for size, r in zip(x.shape, reps):
        if r != 1 and not inner:
            shape.append(r)
        dims.append(len(shape))
        shape.append(size)
        if r != 1 and inner:
            shape.append(r)
    merged = tuple(_merged(*((s, r) if inner else (r, s)), "repeat" if inner else "tile")
                   for s, r in zip(x.shape, reps))
    return T.reshape(T.broadcast_in_dim(x, tuple(shape), tuple(dims)), merged)


def flip(x, axis=None) -> T.Tensor:
    """x with the order of entries reversed along `axis` (every axis by default), as np.flip:
    a slice with step -1, which loops read in place.

    >>> flip(T.tensor("x", (3,)))
    Tensor(shape=(3,), dtype=float64)
    """
    x = T.as_tensor(x)
    axes = T._axes(axis, x.ndim)
    return I.slice_axes(x, tuple((_known(x, a, "flip") - 1, -1, x.shape[a]) if a in axes
                                 and x.shape[a] != 1 else None for a in range(x.ndim)))


def diff(x, n=1, axis=-1) -> T.Tensor:
    """The n-th difference along `axis`, out[i] = x[i + 1] - x[i] applied n times, as np.diff."""
    x = T.as_tensor(x)
    n = _count(n, "diff: n", least=0)
    (axis,) = T._axes(axis, x.ndim)
    size = _known(x, axis, "diff")
    if n >= size:
        raise ShapeError(f"diff of order {n} along axis {axis} of size {size}: the order must "
                         f"be less than the size")
    for _ in range(n):
        size -= 1
        x = I.slice_axis(x, axis, 1, size + 1) - I.slice_axis(x, axis, 0, size)
    return x


def _triangle(x, k, lower: bool, what: str) -> T.Tensor:
    x = T.as_tensor(x)
    if x.ndim < 2:
        raise ShapeError(f"{what} takes matrices (the last two axes), not shape "
                         f"{format_shape(x.shape)}")
    k = _count(k, f"{what}: k", least=None)
    rows, cols = T.iota(x.shape, x.ndim - 2), T.iota(x.shape, x.ndim - 1)
    keep = cols - rows <= k if lower else cols - rows >= k  # the k-th diagonal kept
    return T.where(keep, x, 0.0)


def tril(x, k=0) -> T.Tensor:
    """x's lower triangle (entries on and below the k-th diagonal), zeros above, over the last
    two axes, as np.tril: a select, whose adjoint selects the incoming adjoint."""
    return _triangle(x, k, True, "tril")


def triu(x, k=0) -> T.Tensor:
    """x's upper triangle (entries on and above the k-th diagonal), zeros below, over the last
    two axes, as np.triu."""
    return _triangle(x, k, False, "triu")


def tile(x, reps) -> T.Tensor:
    """x repeated `reps` times along each axis, as np.tile (reps and x's shape aligned at their
    last axes): a broadcast reshaped, whose adjoint sums the copies.

    >>> tile(T.tensor("x", (2, 3)), (2, 1))
    Tensor(shape=(4, 3), dtype=float64)
    """
    x = T.as_tensor(x)
    reps = tuple(_count(r, "tile: reps") for r in (
        (reps,) if isinstance(reps, numbers.Integral) else reps))
    ndim = max(x.ndim, len(reps))
    x, reps = _lead(x, ndim), (1,) * (ndim - len(reps)) + reps
    return x if set(reps) <= {1} else _interleaved(x, reps, inner=False)


def repeat(x, repeats, axis=None) -> T.Tensor:
    """Each entry of x repeated along `axis` (of the flattened x by default), as np.repeat:
    `repeats` times each for an int (a broadcast reshaped), or repeats[i] times entry i for a
    sequence (a gather, whose adjoint adds the copies back)."""
    x = T.as_tensor(x)
    if axis is None:
        x, axis = _flat(x, "repeat"), 0
    (axis,) = T._axes(axis, x.ndim)
    if isinstance(repeats, numbers.Integral):
        r = _count(repeats, "repeat: repeats")
        return x if r == 1 else _interleaved(
            x, tuple(r if a == axis else 1 for a in range(x.ndim)), inner=True)
    counts = np.asarray(repeats)
    size = _known(x, axis, "repeat")
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or len(counts) not in (1, size) \
            or counts.min() < 0 or counts.sum() == 0:
        raise ArgumentError(f"repeat: repeats must be an int or non-negative ints, one per entry "
                            f"of axis {axis} (size {size}), not all zero; got {repeats!r}")
    return I.gather(x, axis, tuple(int(i) for i in np.repeat(np.arange(size), counts)))


def _pad_widths(x: T.Tensor, pad_width) -> list[tuple[int, int]]:
    widths = np.asarray(pad_width)
    try:
        if widths.dtype.kind not in "iu" or widths.ndim > 2:
            raise ValueError
        pairs = np.broadcast_to(widths, (x.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width must be an int, a (before, after) pair, or one pair "
                         f"per axis ({x.ndim}) of non-negative ints, not {pad_width!r}") from None
    if pairs.min(initial=0) < 0:
        raise ShapeError(f"pad: pad_width must be non-negative, not {pad_width!r}")
    return [(int(b), int(a)) for b, a in pairs]


def pad(x, pad_width, mode="constant", constant_values=0) -> T.Tensor:
    """x padded by pad_width[k] = (before, after) entries along each axis k, as np.pad.
    Modes: "constant" (constant_values, a number: zeros are the transpose of a slice, other
    values selected around it), and "edge", "reflect", "symmetric", "wrap" (a gather of
    x's own entries, whose adjoint adds each copy's adjoint back where it was read).

    >>> pad(T.tensor("x", (3,)), (1, 2))
    Tensor(shape=(6,), dtype=float64)
    """
    x = T.as_tensor(x)
    if mode not in PAD_MODES:
        raise ArgumentError(f"pad: mode {mode!r} is not supported; symdiff pads with the modes "
                            f"{', '.join(map(repr, PAD_MODES))}")
    fill = T._number(constant_values)
    if fill is None:
        raise ArgumentError(f"pad: constant_values must be one finite number, not "
                            f"{constant_values!r}")
    if mode != "constant" and fill != 0:
        raise ArgumentError(f"pad: constant_values applies to mode 'constant', not {mode!r}")
    widths = _pad_widths(x, pad_width)
    padded = [a for a, (b, e) in enumerate(widths) if b or e]
    sizes = {a: _known(x, a, "pad") for a in padded}
    if mode != "constant":
        for a in padded:  # the indices NumPy's pad would copy, along each axis in turn
            x = I.gather(x, a, tuple(int(i) for i in np.pad(np.arange(sizes[a]), widths[a],
                                                            mode=mode)))
        return x
    if not padded:
        return x
    shape = tuple(d + sum(widths[a]) if a in sizes else d for a, d in enumerate(x.shape))
    y = I.pad(x, shape, tuple((widths[a][0], 1, sizes[a]) if a in sizes else None
                              for a in range(x.ndim)))
    if fill != 0:
        for a in padded:
            at, start = T.iota(shape, a), widths[a][0]
            y = T.where(at < start, float(fill), T.where(at < start + sizes[a], y, float(fill)))
    return y


def outer(a, b) -> T.Tensor:
    """out[i, j] = a[i] * b[j] of the flattened a and b, as np.outer."""
    return T.outer(_flat(T.as_tensor(a), "outer"), _flat(T.as_tensor(b), "outer"))


def kron(a, b) -> T.Tensor:
    """The Kronecker product, as np.kron: blocks a[i, j] * b, in any number of axes (the
    operand of lower rank takes leading axes of size 1)."""
    a, b = T.as_tensor(a), T.as_tensor(b)
    ndim = max(a.ndim, b.ndim)
    a, b = _lead(a, ndim), _lead(b, ndim)
    shape = tuple(d for pair in zip(a.shape, b.shape) for d in pair)
    product = T.broadcast_in_dim(a, shape, tuple(range(0, 2 * ndim, 2))) * \
        T.broadcast_in_dim(b, shape, tuple(range(1, 2 * ndim, 2)))
    return T.reshape(product, tuple(_merged(p, q, "kron") for p, q in zip(a.shape, b.shape)))


def cumprod(x, axis=None) -> T.Tensor:
    """Cumulative product along `axis` (of the flattened x by default), as np.cumprod. Its
    gradient is exact where entries are zero (no division): see symdiff/ops/structure.py."""
    x = T.as_tensor(x)
    if axis is None:
        x, axis = _flat(x, "cumprod"), 0
    (axis,) = T._axes(axis, x.ndim)
    _known(x, axis, "cumprod")
    return T.apply_op("cumprod", (x,), axis=axis)

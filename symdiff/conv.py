"""Convolutions and pooling over NCHW images, built from the ops symdiff has: no records of
their own, so every rule (adjoint, tangent, per-example gradients, batching) comes with them.

A convolution reads each output position's window of the (zero-padded) input: one gather of
the windows' entries, `cols`, of shape (n, c, kh*kw, oh*ow) (im2col), whose adjoint adds each
window's adjoint back where it was read (col2im). The sum over channels and window is then one
BLAS product of the weights, (o, c*kh*kw), with each image's windows. Pooling takes the max or
the mean over the same windows.
"""
from __future__ import annotations

import numpy as np

from . import indexing as I
from . import tensors as T
from .errors import ShapeError
from .ir import format_shape


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise ShapeError(f"{what} must be a non-negative int or a pair of them, not {value!r}")
    return int(pair[0]), int(pair[1])


def _windows(x: T.Tensor, size, stride, padding, dilation, fill: float = 0.0):
    """(the windows' entries of x, (n, c, kh*kw, oh*ow), and (oh, ow)), x padded by `fill`."""
    if x.ndim != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        raise ShapeError(f"images must be (n, channels, height, width) with known channels and "
                         f"sizes, not {format_shape(x.shape)}")
    (kh, kw), (sh, sw) = size, _pair(stride, "stride")
    (ph, pw), (dh, dw) = _pair(padding, "padding"), _pair(dilation, "dilation")
    if sh == 0 or sw == 0 or dh == 0 or dw == 0:
        raise ShapeError("stride and dilation must be positive")
    n, c, h, w = x.shape
    height, width = h + 2 * ph, w + 2 * pw
    oh, ow = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"a window of {kh}x{kw} (dilation {dh}, {dw}) does not fit images of "
                         f"{h}x{w} padded by {ph}, {pw}")
    if ph or pw:
        index = (None, None, (ph, 1, h), (pw, 1, w))
        padded = I.pad(x, (n, c, height, width), index)
        if fill:  # outside the image: fill, by a mask of the image's place
            inside = I.pad(T.full(x.shape, 1.0), (n, c, height, width), index)
            padded = T.where(inside > 0.5, padded, fill)
        x = padded
    rows = (np.arange(kh)[:, None] * dh)[:, :, None, None] + (np.arange(oh) * sh)[None, None, :,
                                                                                   None]
    cols = (np.arange(kw)[None, :] * dw)[:, :, None, None] + (np.arange(ow) * sw)[None, None,
                                                                                  None, :]
    rows, cols = np.broadcast_arrays(rows, cols)  # (kh, kw, oh, ow): window entry, position
    windows = x[:, :, rows.reshape(kh * kw, oh * ow), cols.reshape(kh * kw, oh * ow)]
    return windows, (oh, ow)


def conv2d(x, w, stride=1, padding=0, dilation=1) -> T.Tensor:
    """The 2-D convolution (cross-correlation, as PyTorch's and JAX's `conv`) of images x,
    (n, c, h, w), with weights w, (o, c, kh, kw): (n, o, oh, ow). `stride`, `padding` (zeros)
    and `dilation` are ints or (height, width) pairs."""
    x, w = T.as_tensor(x), T.as_tensor(w)
    if w.ndim != 4 or x.ndim != 4 or w.shape[1] != x.shape[1]:
        raise ShapeError(f"conv2d: weights {format_shape(w.shape)} do not fit images "
                         f"{format_shape(x.shape)}: (out, in channels, kh, kw) against "
                         f"(n, in channels, h, w)")
    o, c, kh, kw = w.shape
    windows, (oh, ow) = _windows(x, (kh, kw), stride, padding, dilation)
    columns = T.reshape(windows, (x.shape[0], c * kh * kw, oh * ow))
    out = T.reshape(w, (o, c * kh * kw)) @ columns  # (n, o, oh*ow): one product per image
    return T.reshape(out, (x.shape[0], o, oh, ow))


def conv1d(x, w, stride=1, padding=0, dilation=1) -> T.Tensor:
    """The 1-D convolution of signals x, (n, c, length), with weights w, (o, c, k)."""
    x, w = T.as_tensor(x), T.as_tensor(w)
    if x.ndim != 3 or w.ndim != 3:
        raise ShapeError(f"conv1d takes signals (n, c, length) and weights (o, c, k), not "
                         f"{format_shape(x.shape)} and {format_shape(w.shape)}")
    y = conv2d(T.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])),
               T.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2])),
               (1, stride), (0, padding), (1, dilation))
    return T.reshape(y, (y.shape[0], y.shape[1], y.shape[3]))


def _pool(x, size, stride, padding, reduce, fill):
    x = T.as_tensor(x)
    size = _pair(size, "size")
    stride = size if stride is None else _pair(stride, "stride")
    n, c, h, w = x.shape if x.ndim == 4 else (None,) * 4
    if stride == size and not padding and isinstance(h, int) and isinstance(w, int) \
            and h % size[0] == 0 and w % size[1] == 0:  # windows that tile the image: a
        tiles = T.reshape(x, (n, c, h // size[0], size[0], w // size[1], size[1]))  # reshape
        return reduce(tiles, axis=(3, 5))
    windows, (oh, ow) = _windows(x, size, stride, padding, 1, fill)
    return T.reshape(reduce(windows, axis=2), (n, c, oh, ow))


def max_pool2d(x, size, stride=None, padding=0) -> T.Tensor:
    """The maximum over each size-by-size window (stride: the window's size by default;
    padding counts as -inf), as PyTorch's max_pool2d; ties share the gradient evenly."""
    return _pool(x, size, stride, padding, T.max, -np.inf)


def avg_pool2d(x, size, stride=None, padding=0) -> T.Tensor:
    """The mean over each window (padding counts as zeros, as PyTorch's default)."""
    return _pool(x, size, stride, padding, T.mean, 0.0)

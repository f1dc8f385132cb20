"""Convolutions and pooling against a direct NumPy loop (the definition, sharing no code with
symdiff's im2col) and central differences: strides, padding, dilation, max and average
pooling, forward mode, and per-example gradients of the weights."""
import numpy as np
import pytest

import symdiff as sd
from differences import central

RNG = np.random.default_rng(51)


def conv2d(x, w, stride, padding, dilation):
    """NumPy: out[n, o, i, j] = sum over c, a, b of w[o, c, a, b] x[n, c, i s + a d, j s + b d]
    of the zero-padded x."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, width = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1)
                       + 1:dw]
            out[:, :, i, j] = np.einsum("ncab,ocab->no", window, w)
    return out


def pool(x, size, stride, padding, reduce, fill):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
               constant_values=fill)
    oh, ow = (x.shape[2] - size) // stride + 1, (x.shape[3] - size) // stride + 1
    return np.stack([np.stack([reduce(x[:, :, i * stride:i * stride + size,
                                        j * stride:j * stride + size], axis=(2, 3))
                               for j in range(ow)], -1) for i in range(oh)], -2)


def _loss(x, w):
    y = conv2d(x, w, (1, 2), (1, 1), (2, 1))
    z = pool(np.maximum(y, 0), 2, 1, 1, np.max, -np.inf)
    return np.sum(np.tanh(z) ** 2, axis=(1, 2, 3)) + 0.1 * np.sum(pool(y, 2, 2, 0, np.mean, 0),
                                                                    axis=(1, 2, 3))


def _model():
    x = sd.tensor("x", ("n", 2, 6, 5)); w = sd.tensor("w", (3, 2, 3, 2))
    y = sd.conv2d(x, w, stride=(1, 2), padding=1, dilation=(2, 1))
    z = sd.max_pool2d(sd.relu(y), 2, stride=1, padding=1)
    return (sd.sum(sd.tanh(z) ** 2, axis=(1, 2, 3))
            + 0.1 * sd.sum(sd.avg_pool2d(y, 2), axis=(1, 2, 3))), x, w


def test_conv_and_pooling_match_the_definition_and_central_differences():
    rows, x, w = _model()
    assert sd.conv2d(x, w, stride=(1, 2), padding=1, dilation=(2, 1)).shape == ("n", 3, 4, 3)
    f = sd.compile(sd.mean(rows), wrt=[x, w], tier="kernel")
    xv, wv = RNG.normal(size=(4, 2, 6, 5)), RNG.normal(size=(3, 2, 3, 2))
    value, grads = f.value_and_grad(x=xv, w=wv)
    assert np.isclose(value, np.mean(_loss(xv, wv)), rtol=1e-12)
    assert np.allclose(grads["w"], central(lambda v: np.mean(_loss(xv, v)), wv), rtol=1e-6,
                       atol=1e-8)
    assert np.allclose(grads["x"], central(lambda v: np.mean(_loss(v, wv)), xv), rtol=1e-6,
                       atol=1e-8)


@pytest.mark.campaign  # a kernel of its own, seconds to compile
def test_forward_mode_of_conv_and_pooling_agrees_with_the_gradient():
    rows, x, w = _model()
    f = sd.compile(sd.mean(rows), wrt=[x, w], tier="kernel")
    xv, wv = RNG.normal(size=(4, 2, 6, 5)), RNG.normal(size=(3, 2, 3, 2))
    v = RNG.normal(size=wv.shape)
    _, grads = f.value_and_grad(x=xv, w=wv)
    _, derivative = f.jvp({"w": v}, x=xv, w=wv)
    assert np.isclose(derivative, np.sum(grads["w"] * v), rtol=1e-9)


def test_per_example_gradients_of_the_weights_and_conv1d():
    rows, x, w = _model()
    f = sd.compile(rows, wrt=[w], batch=["x"], reduce=None, tier="kernel")
    xv, wv = RNG.normal(size=(3, 2, 6, 5)), RNG.normal(size=(3, 2, 3, 2))
    grads = f.grad(x=xv, w=wv)["w"]
    for i in range(3):
        expected = central(lambda v: _loss(xv[i:i + 1], v)[0], wv)
        assert np.allclose(grads[i], expected, rtol=1e-6, atol=1e-8)
    s = sd.tensor("s", (2, 3, 9)); k = sd.tensor("k", (4, 3, 3))
    g = sd.compile(sd.sum(sd.sin(sd.conv1d(s, k, stride=2, padding=1))), wrt=[k],
                   tier="kernel")
    sv, kv = RNG.normal(size=(2, 3, 9)), RNG.normal(size=(4, 3, 3))

    def one_d(k):
        return np.sum(np.sin(conv2d(sv[:, :, None], k[:, :, None], (1, 2), (0, 1), (1, 1))))
    value, grads = g.value_and_grad(s=sv, k=kv)
    assert np.isclose(value, one_d(kv), rtol=1e-12)
    assert np.allclose(grads["k"], central(one_d, kv), rtol=1e-6, atol=1e-8)


def test_shapes_that_do_not_fit_are_refused():
    x = sd.tensor("x", ("n", 2, 6, 5))
    with pytest.raises(sd.ShapeError, match="do not fit"):
        sd.conv2d(x, sd.tensor("w", (3, 4, 3, 3)))
    with pytest.raises(sd.ShapeError, match="does not fit images"):
        sd.conv2d(x, sd.tensor("w", (3, 2, 7, 3)))
    with pytest.raises(sd.ShapeError, match="stride"):
        sd.max_pool2d(x, 2, stride=0)


def test_pooling_windows_that_tile_the_image():
    """Windows that tile the image are a reshape and a reduction (no gather): the same
    numbers, ties in a max window sharing the gradient."""
    x = sd.tensor("x", (2, 3, 6, 4))
    f = sd.compile(sd.sum(sd.max_pool2d(x, 2) ** 2) + sd.avg_pool2d(x, (3, 2)).sum(),
                   wrt=[x], tier="kernel")
    xv = RNG.normal(size=(2, 3, 6, 4))

    def loss(v):
        return np.sum(pool(v, 2, 2, 0, np.max, -np.inf) ** 2) + np.sum(
            [v[:, :, 3 * i:3 * i + 3, 2 * j:2 * j + 2].mean(axis=(2, 3)) for i in range(2)
             for j in range(2)])
    value, grads = f.value_and_grad(x=xv)
    assert np.isclose(value, loss(xv), rtol=1e-12)
    assert np.allclose(grads["x"], central(loss, xv), rtol=1e-6, atol=1e-8)

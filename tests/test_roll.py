"""sd.roll (and np.roll on a Tensor): an index map read in place by the loops, linear, so its
adjoint is the roll back; checked against NumPy forward passes and central differences."""
import numpy as np
import pytest

import symdiff as sd
from differences import central

RNG = np.random.default_rng(11)
DATA = RNG.normal(size=(6, 5))
W0 = RNG.normal(size=5)


def _loss(w):  # an independent NumPy forward pass of the model below
    h = np.tanh(DATA * w)
    return np.mean(np.sum((np.roll(h, 2, axis=1) - h) ** 2 * np.roll(w, -1), axis=1))


@pytest.fixture(scope="module")
def model():
    X = sd.tensor("X", ("n", 5)); w = sd.tensor("w", (5,))
    h = sd.tanh(X * w)
    return sd.compile(sd.mean(sd.sum((np.roll(h, 2, axis=1) - h) ** 2 * sd.roll(w, -1),
                                     axis=1)), wrt=[w], tier="kernel")


def test_roll_matches_numpy_and_central_differences(model):
    value, grads = model.value_and_grad(X=DATA, w=W0)
    assert np.isclose(value, _loss(W0), rtol=1e-12)
    assert np.allclose(grads["w"], central(_loss, W0), rtol=1e-6, atol=1e-8)


def test_roll_is_read_in_place_by_the_loop(model):
    loops = model.kernel_source.split("def kernel(")[0]
    assert "tanh2[i, (j + 3) % 5]" in loops  # h rolled by 2: entry j reads entry j - 2
    assert "np.concatenate" not in model.kernel_source


def test_roll_forward_mode_and_hessian_vector_products(model):
    v = RNG.normal(size=5)
    _, derivative = model.jvp({"w": v}, X=DATA, w=W0)
    assert np.isclose(derivative, central(_loss, W0) @ v, rtol=1e-6)
    h = 1e-5  # H v by central differences of the gradient
    grad = lambda w: model.grad(X=DATA, w=w)["w"]  # noqa: E731
    expected = (grad(W0 + h * v) - grad(W0 - h * v)) / (2 * h)
    assert np.allclose(model.hvp({"w": v}, X=DATA, w=W0)["w"], expected, rtol=1e-5, atol=1e-7)


def test_roll_as_a_statement_and_tuples_of_shifts():
    A = sd.tensor("A", (3, 4))
    f = sd.compile(sd.sum(sd.roll(A, (1, -1), axis=(0, 1)) * np.arange(12.0).reshape(3, 4)),
                   wrt=[A], tier="kernel")
    a = RNG.normal(size=(3, 4))
    weights = np.arange(12.0).reshape(3, 4)
    value, grads = f.value_and_grad(A=a)
    assert np.isclose(value, np.sum(np.roll(a, (1, -1), axis=(0, 1)) * weights))
    assert np.array_equal(grads["A"], np.roll(weights, (-1, 1), axis=(0, 1)))


def test_rolling_the_batch_axis_mixes_examples():
    X = sd.tensor("X", ("n", 3)); w = sd.tensor("w", (3,))
    with pytest.raises(sd.ShapeError, match="must be known"):
        sd.roll(X, 1, axis=0)
    with pytest.raises(sd.ShapeError, match="needs an axis"):
        sd.roll(X * w, 1)
    Y = sd.tensor("Y", (4, 3))
    with pytest.raises(sd.DifferentiationError, match="examples interact"):
        sd.compile(sd.sum(sd.roll(Y * w, 1, axis=0), axis=1), wrt=[w], batch=["Y"],
                   reduce=None)

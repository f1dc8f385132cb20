"""Embeddings: rows picked by an integer input, E[idx] (sd.take, np.take), their adjoint a
scatter-add of rows; checked against NumPy forward passes and central differences."""
import numpy as np
import pytest

import symdiff as sd
from differences import central

RNG = np.random.default_rng(21)
E0, W0 = RNG.normal(size=(10, 4)), RNG.normal(size=(4, 3))
IDX = np.array([[1, 7, 1], [3, 3, 9], [0, 7, 2], [9, 1, 1], [4, 4, 4]])  # repeats included


def _loss(E, W):  # an independent NumPy forward pass
    return np.sum(np.tanh(E[IDX]) ** 2) + np.sum(E[IDX].sum(axis=1) @ W)


@pytest.fixture(scope="module")
def model():
    """An embedding of (T, B) token ids: used in a fused loop and by a matrix product."""
    E = sd.tensor("E", (10, 4)); W = sd.tensor("W", (4, 3))
    idx = sd.tensor("idx", ("T", "B"), dtype=int)
    return sd.compile(sd.sum(sd.tanh(E[idx]) ** 2) + sd.sum(sd.sum(E[idx], axis=1) @ W),
                      wrt=[E, W], tier="kernel")


def test_rows_by_index_match_numpy_and_central_differences(model):
    value, grads = model.value_and_grad(E=E0, W=W0, idx=IDX)
    assert np.isclose(value, _loss(E0, W0), rtol=1e-12)
    assert np.allclose(grads["E"], central(lambda E: _loss(E, W0), E0), rtol=1e-6, atol=1e-8)
    assert np.allclose(grads["W"], central(lambda W: _loss(E0, W), W0), rtol=1e-6, atol=1e-8)
    unused = np.setdiff1d(np.arange(10), IDX)
    assert np.all(grads["E"][unused] == 0.0)  # rows never picked get no adjoint


def test_rows_are_read_in_place_and_the_adjoint_adds_rows_back(model):
    source = model.kernel_source
    assert "E[idx[i, j], k]" in source
    assert "out[flat[entry], m] += rows[entry, m]" in source


def test_indices_out_of_range_are_refused_before_any_kernel_reads_them(model):
    for bad in (IDX + 1, IDX - 1):  # 10 and -1
        with pytest.raises(sd.DomainError, match=r"idx holds the label (10|-1), outside \[0, 10\)"):
            model.value_and_grad(E=E0, W=W0, idx=bad)


def test_take_along_another_axis_and_np_take_forward_mode_and_hvp():
    A = sd.tensor("A", (3, 6)); j = sd.tensor("j", (4,), dtype=int)
    picked = np.take(sd.exp(A), j, axis=1)  # (3, 4): columns j of exp(A)
    f = sd.compile(sd.sum(picked * picked[:, ::-1]), wrt=[A], tier="kernel")
    a, cols = RNG.normal(size=(3, 6)), np.array([5, 0, 5, 2])

    def loss(a):
        p = np.exp(a)[:, cols]
        return np.sum(p * p[:, ::-1])
    value, grads = f.value_and_grad(A=a, j=cols)
    assert np.isclose(value, loss(a), rtol=1e-12)
    assert np.allclose(grads["A"], central(loss, a), rtol=1e-6, atol=1e-8)
    v = RNG.normal(size=(3, 6))
    _, derivative = f.jvp({"A": v}, A=a, j=cols)
    assert np.isclose(derivative, np.sum(central(loss, a) * v), rtol=1e-6)
    h = 1e-5
    expected = (f.grad(A=a + h * v, j=cols)["A"] - f.grad(A=a - h * v, j=cols)["A"]) / (2 * h)
    assert np.allclose(f.hvp({"A": v}, A=a, j=cols)["A"], expected, rtol=1e-5, atol=1e-6)


def test_indices_must_be_an_integer_input():
    E = sd.tensor("E", (10, 4)); x = sd.tensor("x", (3,))
    with pytest.raises(sd.ArgumentError, match="integer input"):
        sd.take(E, x)
    with pytest.raises(sd.ArgumentError, match="flattened"):
        np.take(E, sd.tensor("i", (2,), dtype=int))


def test_per_example_gradients_of_an_embedding():
    """Each example's ids pick its rows: its gradient of E is its rows' adjoints added at its
    ids (a repeated id twice), every other row 0."""
    E = sd.tensor("E", (6, 2)); w = sd.tensor("w", (2,))
    ids = sd.tensor("ids", ("n", 3), dtype=int)
    f = sd.compile(sd.sum(sd.tanh(sd.sum(E[ids] * w, axis=2)), axis=1), wrt=[E, w],
                   batch=["ids"], reduce=None, tier="kernel")
    e0, w0 = RNG.normal(size=(6, 2)), RNG.normal(size=2)
    rows = np.array([[0, 5, 0], [2, 3, 4], [1, 1, 1], [5, 4, 2]])
    grads = f.grad(E=e0, w=w0, ids=rows)
    assert grads["E"].shape == (4, 6, 2) and grads["w"].shape == (4, 2)
    for i in range(4):
        def loss(E, w):
            return np.sum(np.tanh(np.sum(E[rows[i]] * w, axis=1)))
        assert np.allclose(grads["E"][i], central(lambda E: loss(E, w0), e0), rtol=1e-6,
                           atol=1e-8)
        assert np.allclose(grads["w"][i], central(lambda w: loss(e0, w), w0), rtol=1e-6,
                           atol=1e-8)

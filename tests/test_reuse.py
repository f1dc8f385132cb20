"""A loop writes its results into an array of the kernel's own that it reads for the last time
(codegen/emit.py's `donor`): fewer new arrays, the same numbers. Each model's values are
checked against a NumPy forward pass (its gradients against central differences of it), and
its source shows which arrays were reused. The models that must not reuse an array each break
one of the rules: read again after the store, read at other entries, read by a later
statement, read as a transposed view."""
import re

import numpy as np
import pytest

import symdiff as sd
from conftest import mlp_arguments
from differences import central

REUSE = re.compile(r"(\w+) = (\w+)  # reuses \2's array")
RNG = np.random.default_rng(83)


def reused(f, kind: str) -> list[tuple[str, str]]:
    """(result, the array it was written into) for each reuse in the kind's kernel."""
    return REUSE.findall(f.source_of(kind))


def mlp_loss(a):
    X, y = a["X"], a["y"]
    logits = np.maximum(X @ a["W1"] + a["b1"], 0) @ a["W2"] + a["b2"]
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return np.mean(log_z - logits[np.arange(len(y)), y])


def test_an_mlp_keeps_the_arrays_a_hand_written_kernel_keeps(mlp):
    """The hidden layer's (n, 5) arrays: two products, each written over by the loop after
    it (the ReLU over X @ W1, its adjoint over the adjoint's product), none new. The logits'
    (n, 3): the product, then the exponentials, which the adjoint reads last (an earlier
    stage of its loop over rows) and writes over: one new array."""
    pairs = reused(mlp, "grad")
    assert any(r.startswith("relu") and d.startswith("matmul") for r, d in pairs), pairs
    assert any(r.startswith("dadd") and d.startswith("drelu") for r, d in pairs), pairs
    assert any(r.startswith("dadd") and d.startswith("exp") for r, d in pairs), pairs
    source = mlp.source_of("grad")
    assert source.count("np.empty((n, 5)") == 0 and source.count("np.empty((n, 3)") == 1
    arguments = mlp_arguments(9, seed=4)
    value, grads = mlp.value_and_grad(**arguments)
    assert value == pytest.approx(mlp_loss(arguments), rel=1e-13)
    for w in mlp.wrt:
        expected = central(lambda v: mlp_loss({**arguments, w: v}), arguments[w])
        np.testing.assert_allclose(grads[w], expected, rtol=1e-6, atol=1e-8)


def _layers():
    X, V = sd.tensor("X", ("n", 4)), sd.tensor("V", (4, 3))
    W = sd.tensor("W", (4, 4))
    return X, V, W


def _numbers(n=6):
    return dict(X=RNG.normal(size=(n, 4)), V=RNG.normal(size=(4, 3)),
                W=RNG.normal(size=(4, 4)) * 0.5)


def test_a_loop_writes_over_an_earlier_loops_array_it_reads_last():
    """tanh(X) is stored (a product reads it); the loop after the product reads it entry by
    entry for the last time and writes its own result there."""
    X, V, W = _layers()
    a = sd.tanh(X)
    b = a * sd.sum(a @ W, axis=1, keepdims=True)
    f = sd.compile(sd.sum(b @ V), wrt=[])  # no gradient: its kernel is the value's
    pairs = reused(f, "value")
    assert any(r.startswith("mul") and d.startswith("tanh") for r, d in pairs), pairs
    v = _numbers()
    a_ = np.tanh(v["X"])
    assert f(**v) == pytest.approx(np.sum(a_ * (a_ @ v["W"]).sum(1, keepdims=True) @ v["V"]),
                                   rel=1e-12)


def _not_reused(case):
    """(compiled model, inputs, NumPy value) for a model in which the product h = X @ W
    must keep its array."""
    X, V, W = _layers()
    h = X @ W
    a = sd.tanh(h)  # stored: a product reads it
    v = _numbers()
    h_ = v["X"] @ v["W"]
    a_ = np.tanh(h_)
    models = {
        # h read again in the same loop after a is stored
        "read after the store": (sd.sum(a @ V) + sd.sum(a * h),
                                 np.sum(a_ @ v["V"]) + np.sum(a_ * h_)),
        # h read in the same loop at other entries (its columns reversed) before b is stored
        "read at other entries": (sd.sum(sd.tanh(h + h[:, ::-1]) @ V),
                                  np.sum(np.tanh(h_ + h_[:, ::-1]) @ v["V"])),
        # h read by a later loop (which reads a product of a)
        "read later": (sd.sum(h * (a @ W)), np.sum(h_ * (a_ @ v["W"]))),
        # h read later as a transposed view (hᵀ @ a)
        "read as a view": (sd.sum(a @ V) + sd.sum(h.T @ a), np.sum(a_ @ v["V"])
                           + np.sum(h_.T @ a_)),
    }
    model, expected = models[case]
    return sd.compile(model, wrt=[]), v, expected  # no gradient: its kernel is the value's


@pytest.mark.parametrize("case", ["read after the store", "read at other entries",
                                  "read later", "read as a view"])
def test_an_array_read_again_keeps_its_own(case):
    f, v, expected = _not_reused(case)
    assert not any(d.startswith("matmul") for _, d in reused(f, "value")), f.source_of("value")
    assert f(**{name: v[name] for name in f.inputs}) == pytest.approx(expected, rel=1e-12)

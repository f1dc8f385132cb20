"""logreg: 1000 SGD steps of L2-regularised logistic regression, the per-call-overhead regime.

    loss(w, b) = mean(BCE(X w + b, t)) + λ/2 ‖w‖²,   w ← w - η ∂loss/∂w,   b ← b - η ∂loss/∂b

on scikit-learn's breast-cancer data (569 × 30, standardized), minibatches of 64 drawn by
shuffling each epoch. The batches are gathered once, before timing, in each system's own array
type; one measurement is a whole run of 1000 steps from the same start, reported per step. Each
step is one call from Python: value and gradients, then the update. symdiff runs two ways:
`sgd_step`, one kernel call that updates w and b in place, and `value_and_grad` followed by the
update in NumPy.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

import symdiff as sd

from .check import assert_same
from .env import import_jax, import_torch, threads
from .timing import compare, table

STEPS, BATCH, FEATURES = 1000, 64, 30
LR, LAM = 0.1, 1e-3


def make_batches(seed: int = 0):
    """(X batches (steps, 64, 30), label batches (steps, 64), initial w)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
    X, t = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(seed)
    per_epoch = len(X) // BATCH
    epochs = -(-STEPS // per_epoch)
    order = np.concatenate([rng.permutation(len(X))[:per_epoch * BATCH] for _ in range(epochs)])
    index = order[:STEPS * BATCH].reshape(STEPS, BATCH)
    return X[index], t[index].astype(np.float64), rng.normal(0.0, 0.01, FEATURES)


def symdiff_model():
    X, t = sd.tensor("X", ("n", FEATURES)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (FEATURES,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + LAM * 0.5 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b], wait=True)


@njit(error_model="numpy", cache=True)
def hand_value_and_grad(X, t, w, b, gw):
    """The loss; its gradient by w goes into gw, the one by b is returned."""
    n, m = X.shape
    loss = gb = 0.0
    gw[:] = 0.0
    for i in range(n):
        z = b
        for j in range(m):
            z += X[i, j] * w[j]
        e = math.exp(-abs(z))  # one exp serves softplus and sigmoid
        loss += max(z, 0.0) + math.log1p(e) - t[i] * z
        d = ((1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)) - t[i]) / n
        gb += d
        for j in range(m):
            gw[j] += d * X[i, j]
    penalty = 0.0
    for j in range(m):
        penalty += w[j] * w[j]
        gw[j] += LAM * w[j]
    return loss / n + 0.5 * LAM * penalty, gb


@njit(error_model="numpy", cache=True)
def hand_step(X, t, w, b, gw):
    """One SGD step: w is updated in place; returns (loss, new b)."""
    loss, gb = hand_value_and_grad(X, t, w, b, gw)
    for j in range(w.shape[0]):
        w[j] -= LR * gw[j]
    return loss, b - LR * gb


def trainers(Xs, ts, w0) -> dict:
    """{name: (value_and_grad(X, t, w, b), train() -> final (w, b))} per system."""
    jax, torch = import_jax(), import_torch()
    model = symdiff_model()

    def sd_train():
        w, b = w0.copy(), np.zeros(())  # sgd_step updates them in place
        for X, t in zip(Xs, ts):
            model.sgd_step(LR, X=X, t=t, w=w, b=b)
        return w, float(b)

    def sd_train_numpy():
        w, b = w0.copy(), 0.0
        for X, t in zip(Xs, ts):
            _, g = model.value_and_grad(X=X, t=t, w=w, b=b)
            w -= LR * g["w"]
            b -= LR * g["b"]
        return w, b

    def hand_vg(X, t, w, b):
        gw = np.empty_like(w)
        value, gb = hand_value_and_grad(X, t, w, b, gw)
        return value, gw, gb

    def hand_train():
        w, b, gw = w0.copy(), 0.0, np.empty_like(w0)
        for X, t in zip(Xs, ts):
            _, b = hand_step(X, t, w, b, gw)
        return w, b

    value_and_grad = lambda X, t, w, b: model.value_and_grad(X=X, t=t, w=w, b=b)  # noqa: E731
    return {"symdiff": (value_and_grad, sd_train),
            "symdiff, update in NumPy": (value_and_grad, sd_train_numpy),
            "hand-written Numba": (hand_vg, hand_train),
            "JAX": _jax(jax, Xs, ts, w0),
            "PyTorch eager": _torch(torch, Xs, ts, w0)}


def _jax(jax, Xs, ts, w0):
    jnp = jax.numpy

    def loss(w, b, X, t):
        z = X @ w + b
        return jnp.mean(jax.nn.softplus(z) - t * z) + LAM * 0.5 * jnp.sum(w * w)

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    @jax.jit
    def step(w, b, X, t):
        value, (gw, gb) = value_and_grad(w, b, X, t)
        return value, w - LR * gw, b - LR * gb

    batches = [(jnp.asarray(X), jnp.asarray(t)) for X, t in zip(Xs, ts)]

    def train():
        w, b = jnp.asarray(w0), jnp.asarray(0.0)
        for X, t in batches:
            _, w, b = step(w, b, X, t)
        return jax.block_until_ready((w, b))

    return lambda X, t, w, b: value_and_grad(w, b, X, t), train


def _torch(torch, Xs, ts, w0):
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def loss_and_backward(X, t, w, b):
        loss = bce(X @ w + b, t) + LAM * 0.5 * (w * w).sum()
        loss.backward()
        return loss

    def value_and_grad(X, t, w, b):
        w = torch.tensor(w, requires_grad=True)
        b = torch.tensor(float(b), dtype=torch.float64, requires_grad=True)
        loss = loss_and_backward(torch.from_numpy(X), torch.from_numpy(t), w, b)
        return loss, w.grad, b.grad

    batches = list(zip(torch.from_numpy(Xs), torch.from_numpy(ts)))

    def train():
        w = torch.tensor(w0, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        for X, t in batches:
            w.grad = b.grad = None
            loss_and_backward(X, t, w, b)
            with torch.no_grad():
                w -= LR * w.grad
                b -= LR * b.grad
        return w, b

    return value_and_grad, train


def run(quick: bool = False) -> str:
    Xs, ts, w0 = make_batches()
    systems = trainers(Xs, ts, w0)
    reference_step = systems["symdiff"][0](Xs[0], ts[0], w0, 0.0)
    reference_run = systems["symdiff"][1]()
    for name, (value_and_grad, train) in systems.items():
        assert_same(name, value_and_grad(Xs[0], ts[0], w0, 0.0), reference_step)
        assert_same(name, train(), reference_run, what=f"(w, b) after {STEPS} steps")
    times = compare({name: train for name, (_, train) in systems.items()},
                    rounds=5 if quick else 15, budget=0.0)
    return (f"## logreg: {STEPS} SGD steps (batch {BATCH}, value, gradients and update), "
            f"{threads()} thread(s)\n\n" + table(times, per=STEPS, label="time per step"))

"""neuron: the lectures' sigmoid neuron, binary cross-entropy averaged over n samples.

    z = w0*x0 + w1*x1 + w2,   loss = mean(-y log σ(z) - (1 - y) log(1 - σ(z)))
                                   = mean(softplus(z) - y z)

Value and gradient with respect to (w0, w1, w2), at n = 10^3 and n = 10^6, at the lectures'
weights (2, -3, -3). Every system computes the stable form softplus(z) - y z.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

import symdiff as sd

from .env import import_jax, import_torch, threads
from .timing import checked_times, table

Z = "(w0*x0 + w1*x1 + w2)"
FORMULA = f"softplus({Z}) - y*{Z}"
W = (2.0, -3.0, -3.0)
SIZES = (10**3, 10**6)
NCHUNKS = 16
PARALLEL_FROM = 20_000  # samples; below this the hand-written kernel runs serially


def symdiff_model(**options):
    return sd.compile(FORMULA, wrt=["w0", "w1", "w2"], batch=["x0", "x1", "y"], reduce="mean",
                      **{"wait": True, **options})


def make_data(n: int, seed: int = 0) -> dict:
    """Two standard normal features and labels drawn from the lectures' neuron."""
    rng = np.random.default_rng(seed)
    x0, x1 = rng.standard_normal((2, n))
    p = 1.0 / (1.0 + np.exp(-(W[0] * x0 + W[1] * x1 + W[2])))
    return {"x0": x0, "x1": x1, "y": (rng.random(n) < p).astype(np.float64)}


@njit(error_model="numpy", cache=True)
def _sums(w0, w1, w2, x0, x1, y, lo, hi):
    """Sums over samples lo..hi of the loss and its three partial derivatives."""
    loss = g0 = g1 = g2 = 0.0
    for i in range(lo, hi):
        z = w0 * x0[i] + w1 * x1[i] + w2
        e = math.exp(-abs(z))  # one exp serves softplus and sigmoid
        loss += max(z, 0.0) + math.log1p(e) - y[i] * z
        p = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
        d = p - y[i]
        g0 += d * x0[i]
        g1 += d * x1[i]
        g2 += d
    return loss, g0, g1, g2


@njit(error_model="numpy", cache=True)
def neuron_serial(w0, w1, w2, x0, x1, y):
    n = x0.shape[0]
    loss, g0, g1, g2 = _sums(w0, w1, w2, x0, x1, y, 0, n)
    return loss / n, (g0 / n, g1 / n, g2 / n)


@njit(error_model="numpy", parallel=True, cache=True)
def neuron_parallel(w0, w1, w2, x0, x1, y):
    n = x0.shape[0]
    partial = np.empty((NCHUNKS, 4))  # one row per chunk: no shared accumulator
    for c in prange(NCHUNKS):
        partial[c] = _sums(w0, w1, w2, x0, x1, y, c * n // NCHUNKS, (c + 1) * n // NCHUNKS)
    s = partial.sum(axis=0) / n
    return s[0], (s[1], s[2], s[3])


def _symdiff(data):
    model, (w0, w1, w2) = symdiff_model(), W
    return lambda: model.value_and_grad(w0=w0, w1=w1, w2=w2, **data)


def _hand(data):
    parallel = threads() > 1 and data["x0"].size >= PARALLEL_FROM
    kernel = neuron_parallel if parallel else neuron_serial
    return lambda: kernel(*W, data["x0"], data["x1"], data["y"])


def _jax(data):
    jax = import_jax()
    jnp = jax.numpy

    def loss(w, x0, x1, y):
        z = w[0] * x0 + w[1] * x1 + w[2]
        return jnp.mean(jax.nn.softplus(z) - y * z)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    w, x0, x1, y = (jnp.asarray(a) for a in (W, data["x0"], data["x1"], data["y"]))
    return lambda: jax.block_until_ready(value_and_grad(w, x0, x1, y))


def _numpy(data):
    """The forward and backward pass in NumPy's whole-array operations (the stable form)."""
    x0, x1, y = data["x0"], data["x1"], data["y"]

    def value_and_grad():
        z = W[0] * x0 + W[1] * x1 + W[2]
        e = np.exp(-np.abs(z))
        loss = np.mean(np.maximum(z, 0.0) + np.log1p(e) - y * z)
        d = (np.where(z >= 0.0, 1.0, e) / (1.0 + e) - y) / len(y)
        return loss, (d @ x0, d @ x1, d.sum())
    return value_and_grad


def _jax_sigmoid(data):
    """JAX's loss as often written: the log of the sigmoid and of one minus it (XLA's fastest
    here; it loses digits where |z| is large, not at these weights)."""
    jax = import_jax()
    jnp = jax.numpy

    def loss(w, x0, x1, y):
        p = jax.nn.sigmoid(w[0] * x0 + w[1] * x1 + w[2])
        return jnp.mean(-y * jnp.log(p) - (1 - y) * jnp.log(1 - p))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    w, x0, x1, y = (jnp.asarray(a) for a in (W, data["x0"], data["x1"], data["y"]))
    return lambda: jax.block_until_ready(value_and_grad(w, x0, x1, y))


def _torch(data):
    torch = import_torch()
    w = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    x0, x1, y = (torch.from_numpy(data[k]) for k in ("x0", "x1", "y"))

    def value_and_grad():
        w.grad = None
        z = w[0] * x0 + w[1] * x1 + w[2]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        loss.backward()
        return loss.detach(), w.grad
    return value_and_grad


SYSTEMS = {"symdiff": _symdiff, "hand-written Numba": _hand, "NumPy": _numpy, "JAX": _jax,
           "JAX, log of sigmoid": _jax_sigmoid, "PyTorch": _torch}
"""name -> (data -> callable of no arguments returning (value, gradients))"""


def run(quick: bool = False) -> str:
    sections = ["## neuron: value and gradient of the BCE loss of one sigmoid neuron"]
    for n in SIZES:
        data = make_data(n)
        calls = {name: make(data) for name, make in SYSTEMS.items()}
        times = checked_times(calls, quick, budget=0.05)
        sections.append(f"n = {n:,} samples, {threads()} thread(s)\n\n"
                        + table(times))
    return "\n\n".join(sections)

"""attention: one self-attention layer over a batch of sequences, its value and gradients.

    Q, K, V = X Wq, X Wk, X Wv,   out = softmax(Q Kᵀ / √d) V,   loss = mean over the batch of
    sum(out²)

with X of shape (16, 64, 32) (batch, length, width) and the gradients by Wq, Wk, Wv.
"""
from __future__ import annotations

import math

import numpy as np

import symdiff as sd

from .env import import_jax, import_torch, threads
from .timing import checked_times, table

BATCH, LENGTH, WIDTH = 16, 64, 32


def make_data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = {k: rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)
               for k in ("Wq", "Wk", "Wv")}
    return {"X": rng.standard_normal((BATCH, LENGTH, WIDTH)), **weights}


def symdiff_model():
    X = sd.tensor("X", ("n", LENGTH, WIDTH))
    Wq, Wk, Wv = (sd.tensor(k, (WIDTH, WIDTH)) for k in ("Wq", "Wk", "Wv"))
    scores = (X @ Wq) @ sd.transpose(X @ Wk, (0, 2, 1)) / math.sqrt(WIDTH)
    out = sd.softmax(scores, axis=-1) @ (X @ Wv)
    return sd.compile(sd.mean(sd.sum(out ** 2, axis=(1, 2))), wrt=[Wq, Wk, Wv], wait=True)


def _symdiff(data):
    model = symdiff_model()
    return lambda: model.value_and_grad(**data)


def _jax(data):
    jax = import_jax()
    jnp = jax.numpy

    def loss(weights, X):
        Wq, Wk, Wv = weights
        scores = (X @ Wq) @ jnp.swapaxes(X @ Wk, 1, 2) / math.sqrt(WIDTH)
        out = jax.nn.softmax(scores, axis=-1) @ (X @ Wv)
        return jnp.mean(jnp.sum(out ** 2, axis=(1, 2)))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    weights = tuple(jnp.asarray(data[k]) for k in ("Wq", "Wk", "Wv"))
    X = jnp.asarray(data["X"])
    return lambda: jax.block_until_ready(value_and_grad(weights, X))


def _torch(data):
    torch = import_torch()
    weights = [torch.tensor(data[k], requires_grad=True) for k in ("Wq", "Wk", "Wv")]
    X = torch.from_numpy(data["X"])

    def value_and_grad():
        for w in weights:
            w.grad = None
        Wq, Wk, Wv = weights
        scores = (X @ Wq) @ (X @ Wk).transpose(1, 2) / math.sqrt(WIDTH)
        out = torch.softmax(scores, dim=-1) @ (X @ Wv)
        loss = (out ** 2).sum(dim=(1, 2)).mean()
        loss.backward()
        return loss.detach(), [w.grad for w in weights]
    return value_and_grad


SYSTEMS = {"symdiff": _symdiff, "JAX": _jax, "PyTorch": _torch}


def run(quick: bool = False) -> str:
    data = make_data()
    calls = {name: make(data) for name, make in SYSTEMS.items()}
    times = checked_times(calls, quick, budget=0.15)
    return (f"## attention: one self-attention layer, value and gradients\n\n"
            f"batch {BATCH}, length {LENGTH}, width {WIDTH}, {threads()} thread(s)\n\n"
            + table(times))

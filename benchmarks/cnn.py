"""cnn: one SGD step of a small convolutional network on scikit-learn's digits, batch 128.

    8x8 image -> conv 3x3, 8 channels, padding 1 -> ReLU -> 2x2 max pooling -> dense 128 -> 10
    -> softmax cross-entropy

A step is the value, the gradients of the four parameters and the SGD update, cycling through
one shuffled epoch of batches; before timing, every system's value and gradients at the start,
and its parameters after one epoch, must equal symdiff's.
"""
from __future__ import annotations

import numpy as np

import symdiff as sd

from .env import import_jax, import_torch, threads
from .mlp import jax_trainer
from .mlp_small import make_batches, time_steps
from .timing import table

LR, CHANNELS = 0.1, 8
ORDER = ("K", "c", "W", "b")


def init_params(rng) -> dict:
    return {"K": rng.standard_normal((CHANNELS, 1, 3, 3)) / 3.0, "c": np.zeros(CHANNELS),
            "W": rng.standard_normal((CHANNELS * 16, 10)) / np.sqrt(CHANNELS * 16),
            "b": np.zeros(10)}


def symdiff_model():
    X, y = sd.tensor("X", ("n", 64)), sd.tensor("y", ("n",), dtype=int)
    K, c = sd.tensor("K", (CHANNELS, 1, 3, 3)), sd.tensor("c", (CHANNELS,))
    W, b = sd.tensor("W", (CHANNELS * 16, 10)), sd.tensor("b", (10,))
    h = sd.conv2d(sd.reshape(X, ("n", 1, 8, 8)), K, padding=1) + c[:, None, None]
    h = sd.max_pool2d(sd.relu(h), 2)  # (n, 8, 4, 4)
    logits = sd.reshape(h, ("n", CHANNELS * 16)) @ W + b
    return sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[K, c, W, b], wait=True)


def _symdiff(params0, batches):
    model = symdiff_model()
    params = {k: v.copy() for k, v in params0.items()}

    def value_and_grad(k):
        X, y = batches[k]
        value, grads = model.value_and_grad(X=X, y=y, **params)
        return value, [grads[name] for name in ORDER]

    def step(k):
        X, y = batches[k]
        return model.sgd_step(LR, X=X, y=y, **params)
    return value_and_grad, step, lambda: [params[name] for name in ORDER]


def _jax(params0, batches):
    jax = import_jax()
    jnp = jax.numpy

    def loss(params, X, y):
        images = X.reshape(-1, 1, 8, 8)
        h = jax.lax.conv_general_dilated(images, params["K"], (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + params["c"][:, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        logits = h.reshape(X.shape[0], -1) @ params["W"] + params["b"]
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    return jax_trainer(jax, loss, params0, batches, ORDER, LR)


def _torch(params0, batches):
    torch = import_torch()
    F = torch.nn.functional
    params = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
    data = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in batches]

    def value_and_grad(k):
        X, y = data[k]
        for p in params.values():
            p.grad = None
        h = F.conv2d(X.reshape(-1, 1, 8, 8), params["K"], params["c"], padding=1)
        h = F.max_pool2d(torch.relu(h), 2)
        loss = F.cross_entropy(h.reshape(X.shape[0], -1) @ params["W"] + params["b"], y)
        loss.backward()
        return loss.detach(), [params[name].grad for name in ORDER]

    def step(k):
        value, grads = value_and_grad(k)
        with torch.no_grad():
            for name, g in zip(ORDER, grads):
                params[name] -= LR * g
        return value
    return value_and_grad, step, lambda: [params[name] for name in ORDER]


SYSTEMS = {"symdiff": _symdiff, "JAX": _jax, "PyTorch": _torch}


def run(quick: bool = False) -> str:
    batches = make_batches()
    params0 = init_params(np.random.default_rng(1))
    systems = {name: make(params0, batches) for name, make in SYSTEMS.items()}
    times = time_steps(systems, len(batches), quick)
    return (f"## cnn: one SGD step of a small CNN (conv 3x3, {CHANNELS} channels, ReLU, 2x2 max "
            f"pooling, dense, softmax cross-entropy), digits, batch 128, {threads()} thread(s)"
            f"\n\n" + table(times, label="time per step"))

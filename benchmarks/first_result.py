"""One process, one first result: time it from outside, e.g. `/usr/bin/time -v`.

    python -m benchmarks.first_result WORKLOAD SYSTEM

WORKLOAD is `mlp-small` (64-128-10 MLP, batch 128) or `logistic` (the neuron's logistic loss
formula, 3 parameters, batch 1000); SYSTEM is `symdiff`, `symdiff-later` (wait=False: the
first result from NumPy while the kernel compiles in the background) or `jax`. Each process
imports only what its system needs, builds the model and computes its first value and
gradients; caches are wherever SYMDIFF_CACHE_DIR, NUMBA_CACHE_DIR and (for JAX)
JAX_COMPILATION_CACHE_DIR point. `symdiff-step`, `symdiff-step-later` (wait=False) and
`jax-step` take a first training step instead: symdiff's `sgd_step(0.1, ...)`, which updates
the parameters in place, and a jitted JAX function returning the loss and the parameters after
one step of gradient descent.
"""
from __future__ import annotations

import sys

import numpy as np


def data(workload: str):
    rng = np.random.default_rng(0)
    if workload == "logistic":  # the weights as 0-d arrays: a step updates them in place
        x0, x1 = rng.standard_normal((2, 1000))
        return {"w0": np.array(2.0), "w1": np.array(-3.0), "w2": np.array(-3.0), "x0": x0, "x1": x1,
                "y": (rng.random(1000) < 0.5).astype(float)}
    params = {"W1": rng.normal(0, 0.18, (64, 128)), "b1": np.zeros(128),
              "W2": rng.normal(0, 0.13, (128, 10)), "b2": np.zeros(10)}
    return {"X": rng.random((128, 64)), "y": rng.integers(0, 10, 128), **params}


def symdiff_first(workload: str, wait: bool, arguments: dict, step: bool = False):
    import symdiff as sd
    if workload == "logistic":
        z = "(w0*x0 + w1*x1 + w2)"
        f = sd.compile(f"softplus({z}) - y*{z}", wrt=["w0", "w1", "w2"],
                       batch=["x0", "x1", "y"], wait=wait)
    else:
        X, y = sd.tensor("X", ("n", 64)), sd.tensor("y", ("n",), dtype=int)
        W1, b1 = sd.tensor("W1", (64, 128)), sd.tensor("b1", (128,))
        W2, b2 = sd.tensor("W2", (128, 10)), sd.tensor("b2", (10,))
        logits = sd.relu(X @ W1 + b1) @ W2 + b2
        f = sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[W1, b1, W2, b2],
                       wait=wait)
    return f.sgd_step(0.1, **arguments) if step else f.value_and_grad(**arguments)


def jax_first(workload: str, arguments: dict, step: bool = False):
    import jax
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    if workload == "logistic":
        def loss(w0, w1, w2, x0, x1, y):
            z = w0 * x0 + w1 * x1 + w2
            return jnp.mean(jax.nn.softplus(z) - y * z)
        argnums = (0, 1, 2)
    else:
        def loss(W1, b1, W2, b2, X, y):
            logits = jax.nn.relu(X @ W1 + b1) @ W2 + b2
            log_p = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))
        argnums = (0, 1, 2, 3)
    names = loss.__code__.co_varnames[:loss.__code__.co_argcount]
    vg = jax.value_and_grad(loss, argnums=argnums)

    def sgd(*args):  # the loss, and the parameters after one step
        value, grads = vg(*args)
        return value, [args[k] - 0.1 * g for k, g in zip(argnums, grads)]
    first = jax.jit(sgd if step else vg)
    return jax.block_until_ready(first(*(arguments[n] for n in names)))


if __name__ == "__main__":
    workload, system = sys.argv[1:3]
    arguments = data(workload)
    if system in ("jax", "jax-step"):
        jax_first(workload, arguments, step=system == "jax-step")
    else:
        symdiff_first(workload, not system.endswith("-later"), arguments,
                      step=system.startswith("symdiff-step"))

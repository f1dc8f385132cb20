"""The ReLU MLPs of mlp-small and mlp-large, in each system, behind one interface.

    h_0 = X,  h_l = relu(h_{l-1} W_l + b_l),  logits = h_{L-1} W_L + b_L,
    loss = mean softmax cross-entropy(logits, y)

`make_systems` gives, for each system, closures over its own copy of the parameters and its own
copy of the batches, in its native arrays: `value_and_grad(k)` on batch k, `step(k)` (value,
gradients and an SGD update in place), and `params()` as NumPy arrays. The hand-written
reference is the NumPy forward and backward pass of the lectures' closing exercise.
"""
from __future__ import annotations

import numpy as np

import symdiff as sd

from .env import import_jax, import_torch

LR = 0.1


def names(sizes) -> list[str]:
    """Parameter names in gradient order: W1, b1, W2, b2, ..."""
    return [f"{p}{l}" for l in range(1, len(sizes)) for p in "Wb"]


def init_params(sizes, rng) -> dict:
    """He-initialised weights, zero biases."""
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), 1):
        params[f"W{l}"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))
        params[f"b{l}"] = np.zeros(fan_out)
    return params


def flops(sizes, n: int) -> int:
    """2·m·n·k per matmul: forward X W, backward h^T δ, and δ W^T for all but the first layer."""
    forward = sum(2 * n * a * b for a, b in zip(sizes, sizes[1:]))
    return 2 * forward + (forward - 2 * n * sizes[0] * sizes[1])


def symdiff_model(sizes, **options):
    h = sd.tensor("X", ("n", sizes[0]))
    y = sd.tensor("y", ("n",), dtype=int)
    params = []
    for l, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), 1):
        W, b = sd.tensor(f"W{l}", (fan_in, fan_out)), sd.tensor(f"b{l}", (fan_out,))
        params += [W, b]
        h = h @ W + b
        if l < len(sizes) - 1:
            h = sd.relu(h)
    return sd.compile(sd.mean(sd.softmax_cross_entropy(h, y)), wrt=params,
                      **{"wait": True, **options})


def numpy_value_and_grad(params: dict, X, y):
    """The hand-written forward and backward pass: (loss, {name: gradient})."""
    layers = len(params) // 2
    hs = [X]
    for l in range(1, layers):
        hs.append(np.maximum(hs[-1] @ params[f"W{l}"] + params[f"b{l}"], 0.0))
    z = hs[-1] @ params[f"W{layers}"] + params[f"b{layers}"]
    z -= z.max(axis=1, keepdims=True)  # log-softmax, stably
    e = np.exp(z)
    s = e.sum(axis=1)
    rows = np.arange(len(y))
    loss = np.mean(np.log(s) - z[rows, y])
    delta = e / s[:, None]  # ∂loss/∂logits = (softmax - onehot(y)) / n
    delta[rows, y] -= 1.0
    delta /= len(y)
    grads = {}
    for l in range(layers, 0, -1):
        grads[f"W{l}"] = hs[l - 1].T @ delta
        grads[f"b{l}"] = delta.sum(axis=0)
        if l > 1:
            delta = (delta @ params[f"W{l}"].T) * (hs[l - 1] > 0.0)
    return loss, {name: grads[name] for name in params}


def make_systems(sizes, params0: dict, batches: list) -> dict:
    """{name: (value_and_grad(k), step(k), params())}; batches is a list of (X, y) in NumPy."""
    return {name: make(sizes, params0, batches) for name, make in SYSTEMS.items()}


def _sgd_in_place(params: dict, grads: dict) -> None:
    for name, value in params.items():
        value -= LR * grads[name]


def _trainer(value_and_grad_of, params0, batches):
    """(value_and_grad(k), step(k), params()) for a system given as f(params, X, y)."""
    params = {k: v.copy() for k, v in params0.items()}

    def value_and_grad(k):
        return value_and_grad_of(params, *batches[k])

    def step(k):
        value, grads = value_and_grad(k)
        _sgd_in_place(params, grads)
        return value

    return value_and_grad, step, lambda: list(params.values())


def _symdiff(sizes, params0, batches):
    model = symdiff_model(sizes)
    return _trainer(lambda params, X, y: model.value_and_grad(X=X, y=y, **params), params0,
                    batches)


def _numpy(sizes, params0, batches):
    return _trainer(numpy_value_and_grad, params0, batches)


def _jax(sizes, params0, batches):
    jax = import_jax()
    jnp, order = jax.numpy, names(sizes)

    def loss(params, X, y):
        h = X
        for l in range(1, len(sizes)):
            h = h @ params[f"W{l}"] + params[f"b{l}"]
            if l < len(sizes) - 1:
                h = jax.nn.relu(h)
        log_p = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    return jax_trainer(jax, loss, params0, batches, order)


def jax_trainer(jax, loss, params0: dict, batches: list, order, lr: float = LR):
    """(value_and_grad(k), step(k), params()) for a JAX loss(params, X, y): its jitted value
    and gradients, and a jitted SGD step returning new parameters."""
    jnp = jax.numpy
    vg = jax.jit(jax.value_and_grad(loss))

    @jax.jit
    def sgd(params, X, y):
        value, grads = vg(params, X, y)
        return value, jax.tree.map(lambda p, g: p - lr * g, params, grads)

    data = [(jnp.asarray(X), jnp.asarray(y)) for X, y in batches]
    state = {"params": {k: jnp.asarray(v) for k, v in params0.items()}}

    def value_and_grad(k):
        value, grads = jax.block_until_ready(vg(state["params"], *data[k]))
        return value, [grads[name] for name in order]

    def step(k):
        value, state["params"] = jax.block_until_ready(sgd(state["params"], *data[k]))
        return value

    return value_and_grad, step, lambda: [state["params"][name] for name in order]


def _torch(sizes, params0, batches):
    torch = import_torch()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
    data = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in batches]

    def value_and_grad(k):
        X, y = data[k]
        for p in params.values():
            p.grad = None
        h = X
        for l in range(1, len(sizes)):
            h = h @ params[f"W{l}"] + params[f"b{l}"]
            if l < len(sizes) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        loss.backward()
        return loss.detach(), [p.grad for p in params.values()]

    def step(k):
        value, grads = value_and_grad(k)
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                p -= LR * g
        return value

    return value_and_grad, step, lambda: list(params.values())


SYSTEMS = {"symdiff": _symdiff, "hand-written NumPy": _numpy, "JAX": _jax, "PyTorch": _torch}

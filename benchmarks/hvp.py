"""hvp: a Hessian-vector product's cost against the gradient's (target: at most 4x).

symdiff's HVP kernel (forward mode applied to the gradient Program) beside its own gradient
kernel on the same inputs, for the mlp-small network (batch 128) and the neuron (n = 10^4),
with JAX's jvp-of-grad and its gradient beside them. Before timing, symdiff's H v must match
central differences of its gradient along v, and JAX's H v.
"""
from __future__ import annotations

import numpy as np

from . import mlp, neuron
from .check import assert_same
from .env import import_jax
from .timing import compare, ratios, table

MLP_SIZES, MLP_BATCH, NEURON_N = (64, 128, 10), 128, 10**4


def _difference_check(step, arguments, v, products, h=1e-6) -> None:
    plus = step.grad(**{**arguments, **{w: arguments[w] + h * v[w] for w in v}})
    minus = step.grad(**{**arguments, **{w: arguments[w] - h * v[w] for w in v}})
    numeric = {w: (plus[w] - minus[w]) / (2 * h) for w in v}
    assert_same("symdiff H v", products, numeric, "H v against differences of the gradient",
                rtol=1e-5)


def _mlp_case():
    rng = np.random.default_rng(0)
    params = mlp.init_params(MLP_SIZES, rng)
    data = {"X": rng.random((MLP_BATCH, MLP_SIZES[0])),
            "y": rng.integers(0, MLP_SIZES[-1], MLP_BATCH)}
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    step = mlp.symdiff_model(MLP_SIZES)

    def jax_functions():
        jax = import_jax()
        jnp = jax.numpy

        def loss(p, X, y):
            h = jax.nn.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], axis=1))
        return loss, (jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    return "mlp-small", step, {**params, **data}, v, jax_functions


def _neuron_case():
    rng = np.random.default_rng(1)
    data = neuron.make_data(NEURON_N)
    w = dict(zip(("w0", "w1", "w2"), neuron.W))
    v = {k: rng.standard_normal() for k in w}
    step = neuron.symdiff_model()

    def jax_functions():
        jax = import_jax()
        jnp = jax.numpy

        def loss(p, x0, x1, y):
            z = p["w0"] * x0 + p["w1"] * x1 + p["w2"]
            return jnp.mean(jax.nn.softplus(z) - y * z)
        return loss, tuple(jnp.asarray(data[k]) for k in ("x0", "x1", "y"))
    return f"neuron, n = {NEURON_N}", step, {**w, **data}, v, jax_functions


def _systems(step, arguments, v, jax_functions):
    products = step.hvp(v, **arguments)
    _difference_check(step, arguments, v, products)
    systems = {"symdiff": lambda: step.value_and_grad(**arguments),
               "symdiff H v": lambda: step.hvp(v, **arguments)}
    jax = import_jax()
    loss, data = jax_functions()
    params = {k: jax.numpy.asarray(arguments[k]) for k in v}
    tangent = {k: jax.numpy.asarray(x) for k, x in v.items()}
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    hvp = jax.jit(lambda p, t, *d: jax.jvp(lambda q: jax.grad(loss)(q, *d), (p,), (t,))[1])
    jax_products = hvp(params, tangent, *data)
    assert_same("JAX H v", [jax_products[k] for k in products], products, "H v")
    systems["JAX gradient"] = lambda: jax.block_until_ready(value_and_grad(params, *data))
    systems["JAX H v"] = lambda: jax.block_until_ready(hvp(params, tangent, *data))
    return systems


def run(quick: bool = False) -> str:
    sections = []
    for label, step, arguments, v, jax_functions in (_mlp_case(), _neuron_case()):
        systems = _systems(step, arguments, v, jax_functions)
        times = compare(systems, rounds=5 if quick else 15, budget=0.05)
        own = ratios(times, "symdiff H v")
        jax_own = [h / g for h, g in zip(times["JAX H v"], times["JAX gradient"])]
        extra = {"H v ÷ own gradient (median)": {
            "symdiff H v": f"{np.median(own):.2f}", "JAX H v": f"{np.median(jax_own):.2f}"}}
        sections.append(f"### hvp: {label}\n\n" + table(times, extra=extra))
    return "\n\n".join(sections)

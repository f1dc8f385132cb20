"""The README's edge table, measured: what symdiff, JAX and PyTorch give at kinks, ties, zero
bases, in branches not taken and for non-finite constants. `python -m benchmarks edges`.

Each case is one function written three times, as each system's users write it; a system that
raises shows the exception's type. Nothing is timed.
"""
from __future__ import annotations

import math

import numpy as np

import symdiff as sd

# (case, symdiff formula, its inputs, the same function for JAX and PyTorch, given `m`: the
# system's functions by the names below, as its users call them)
CASES = [
    ("relu'(0)", "relu(x)", {"x": 0.0}, lambda m, x: m.relu(x)),
    ("abs'(0)", "abs(x)", {"x": 0.0}, lambda m, x: m.abs(x)),
    ("max(x, y) at x = y", "max(x, y)", {"x": 1.0, "y": 1.0}, lambda m, x, y: m.maximum(x, y)),
    ("max(x, y, z), three-way tie", "max(x, y, z)", {"x": 1.0, "y": 1.0, "z": 1.0},
     lambda m, x, y, z: m.maximum(m.maximum(x, y), z)),
    ("where(x > 0, x, 0) at x = 0", "where(x > 0, x, 0)", {"x": 0.0},
     lambda m, x: m.where(x > 0, x, 0.0)),
    ("sqrt(relu(x)) at x = -1 (0·inf not taken)", "sqrt(relu(x))", {"x": -1.0},
     lambda m, x: m.sqrt(m.relu(x))),
    ("sqrt(where(x > 0, x, 0)) at x = -1", "sqrt(where(x > 0, x, 0))", {"x": -1.0},
     lambda m, x: m.sqrt(m.where(x > 0, x, 0.0))),
    ("where(x > 0, sqrt(x), 0) at x = -1 (NaN not taken)", "where(x > 0, sqrt(x), 0)",
     {"x": -1.0}, lambda m, x: m.where(x > 0, m.sqrt(x), 0.0)),
    ("x**y at (0, 2.5)", "x**y", {"x": 0.0, "y": 2.5}, lambda m, x, y: x ** y),
    ("x**y at (0, 0)", "x**y", {"x": 0.0, "y": 0.0}, lambda m, x, y: x ** y),
    ("0**x at x = 2", "0**x", {"x": 2.0}, lambda m, x: (0 * x) ** x),
    ("x/0 at x = 1", "x/0", {"x": 1.0}, lambda m, x: x / 0.0),
    ("x/x at x = 0 (0/0)", "x/x", {"x": 0.0}, lambda m, x: x / x),
    ("x + exp(1000)", "x + exp(1000)", {"x": 1.0}, lambda m, x: x + math.inf),
    ("sin(x - x)", "sin(x - x)", {"x": 1.0}, lambda m, x: m.sin(x - x)),
    ("constant model 3.5", "3.5 + 0*x", {"x": 1.0}, lambda m, x: 3.5 + 0 * x),
]


def _format(value, grads) -> str:
    def number(v):
        v = float(v)
        return "nan" if math.isnan(v) else f"{v:g}"
    return f"{number(value)}; " + ", ".join(number(g) for g in grads)


def symdiff_result(formula, inputs) -> str:
    f = sd.compile(formula, wrt=list(inputs))
    value, grads = f.value_and_grad(**inputs)
    return _format(value, grads.values())


class _Functions:
    def __init__(self, **functions):
        self.__dict__.update(functions)


def jax_result(fn, inputs) -> str:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    args = [jnp.float64(v) for v in inputs.values()]
    m = _Functions(relu=jax.nn.relu, abs=jnp.abs, maximum=jnp.maximum, sqrt=jnp.sqrt,
                   where=jnp.where, sin=jnp.sin)

    def f(*a):
        return fn(m, *a)
    value, grads = jax.value_and_grad(f, argnums=tuple(range(len(args))))(*args)
    return _format(value, grads)


def torch_result(fn, inputs) -> str:
    import torch
    args = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in inputs.values()]
    m = _Functions(relu=torch.relu, abs=torch.abs, maximum=torch.maximum, sqrt=torch.sqrt,
                   where=torch.where, sin=torch.sin)
    value = fn(m, *args)
    grads = torch.autograd.grad(value, args, allow_unused=True)
    return _format(value.detach(), [0.0 if g is None else g for g in grads])


def _attempt(fn, *args) -> str:
    try:
        return fn(*args)
    except Exception as e:  # a system that refuses the case: say how
        return f"{type(e).__name__}"


def run(quick: bool = False) -> str:
    with np.errstate(all="ignore"):
        rows = ["| case | symdiff | JAX | PyTorch |", "|---|---|---|---|"]
        for case, formula, inputs, fn in CASES:
            rows.append(f"| {case} | {_attempt(symdiff_result, formula, inputs)} | "
                        f"{_attempt(jax_result, fn, inputs)} | "
                        f"{_attempt(torch_result, fn, inputs)} |")
    return "Value; gradients by each input in order.\n\n" + "\n".join(rows)

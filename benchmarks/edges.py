"""The edge table of docs/semantics.md, measured: what symdiff, JAX and PyTorch give at kinks,
ties, zero bases, in branches not taken and for non-finite constants. `python -m benchmarks edges`.

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
    ("sign'(0)", "sign(x)", {"x": 0.0}, lambda m, x: m.sign(x)),
    ("hardtanh'(1)", "hardtanh(x)", {"x": 1.0}, lambda m, x: m.hardtanh(x)),
    ("relu6'(6)", "relu6(x)", {"x": 6.0}, lambda m, x: m.relu6(x)),
    ("leaky_relu'(0)", "leaky_relu(x)", {"x": 0.0}, lambda m, x: m.leaky_relu(x)),
    ("selu'(0)", "selu(x)", {"x": 0.0}, lambda m, x: m.selu(x)),
    ("hypot at (0, 0)", "hypot(x, y)", {"x": 0.0, "y": 0.0}, lambda m, x, y: m.hypot(x, y)),
    ("hypot at (1e200, 1e200)", "hypot(x, y)", {"x": 1e200, "y": 1e200},
     lambda m, x, y: m.hypot(x, y)),
    ("logaddexp at (inf, inf)", "logaddexp(x, y)", {"x": math.inf, "y": math.inf},
     lambda m, x, y: m.logaddexp(x, y)),
    ("gelu(-30), exact form", "gelu(x)", {"x": -30.0}, lambda m, x: m.gelu(x)),
    ("clip(x, lo, hi) at x = lo", "clip(x, lo, hi)", {"x": 0.0, "lo": 0.0, "hi": 1.0},
     lambda m, x, lo, hi: m.clip(x, lo, hi)),
    ("clip(x, lo, hi) at x = hi", "clip(x, lo, hi)", {"x": 1.0, "lo": 0.0, "hi": 1.0},
     lambda m, x, lo, hi: m.clip(x, lo, hi)),
    ("mod(x, y) at x = 2y", "mod(x, y)", {"x": 4.0, "y": 2.0}, lambda m, x, y: m.mod(x, y)),
    ("mod(x, y) at (-1, 3)", "mod(x, y)", {"x": -1.0, "y": 3.0}, lambda m, x, y: m.mod(x, y)),
    ("fmod(x, y) at (-1, 3)", "fmod(x, y)", {"x": -1.0, "y": 3.0},
     lambda m, x, y: m.fmod(x, y)),
    ("round(2.5)", "round(x)", {"x": 2.5}, lambda m, x: m.round(x)),
    ("sinc'(0)", "sinc(x)", {"x": 0.0}, lambda m, x: m.sinc(x)),
    ("xlogy(x, y) at (0, 0)", "xlogy(x, y)", {"x": 0.0, "y": 0.0},
     lambda m, x, y: m.xlogy(x, y)),
    ("log_ndtr(-30)", "log_ndtr(x)", {"x": -30.0}, lambda m, x: m.log_ndtr(x)),
    ("log_ndtr(-100)", "log_ndtr(x)", {"x": -100.0}, lambda m, x: m.log_ndtr(x)),
]


def _format(value, grads) -> str:
    def number(v):
        v = float(v)
        return "nan" if math.isnan(v) else f"{v:g}"
    return f"{number(value)}; " + ", ".join(number(g) for g in grads)


def symdiff_result(formula, inputs) -> str:
    f = sd.compile(formula, wrt=list(inputs), wait=True)
    value, grads = f.value_and_grad(**inputs)
    return _format(value, grads.values())


class _Functions:
    def __init__(self, **functions):
        self.__dict__.update(functions)


def jax_result(fn, inputs) -> str:
    import jax
    import jax.numpy as jnp
    import jax.scipy.special  # noqa: F401  (xlogy, log_ndtr)
    jax.config.update("jax_enable_x64", True)
    args = [jnp.float64(v) for v in inputs.values()]
    m = _Functions(relu=jax.nn.relu, abs=jnp.abs, maximum=jnp.maximum, sqrt=jnp.sqrt,
                   where=jnp.where, sin=jnp.sin, sign=jnp.sign, hardtanh=jax.nn.hard_tanh,
                   relu6=jax.nn.relu6, leaky_relu=jax.nn.leaky_relu, selu=jax.nn.selu,
                   hypot=jnp.hypot, logaddexp=jnp.logaddexp,
                   gelu=lambda x: jax.nn.gelu(x, approximate=False), clip=jnp.clip,
                   mod=jnp.remainder, fmod=jnp.fmod, round=jnp.round, sinc=jnp.sinc,
                   xlogy=jax.scipy.special.xlogy, log_ndtr=jax.scipy.special.log_ndtr)

    def f(*a):
        return fn(m, *a)
    value, grads = jax.value_and_grad(f, argnums=tuple(range(len(args))))(*args)
    return _format(value, grads)


def torch_result(fn, inputs) -> str:
    import torch
    args = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in inputs.values()]
    F = torch.nn.functional
    m = _Functions(relu=torch.relu, abs=torch.abs, maximum=torch.maximum, sqrt=torch.sqrt,
                   where=torch.where, sin=torch.sin, sign=torch.sign, hardtanh=F.hardtanh,
                   relu6=F.relu6, leaky_relu=F.leaky_relu, selu=F.selu, hypot=torch.hypot,
                   logaddexp=torch.logaddexp, gelu=F.gelu, clip=torch.clamp,
                   mod=torch.remainder, fmod=torch.fmod, round=torch.round, sinc=torch.sinc,
                   xlogy=torch.xlogy, log_ndtr=torch.special.log_ndtr)
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

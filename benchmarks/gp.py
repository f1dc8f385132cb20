"""gp: a Gaussian process's negative log marginal likelihood and its gradient.

    K = sf² exp(-D / (2 ls²)) + sn² I,   nll = ½ yᵀ K⁻¹ y + ½ log det K + n/2 log 2π

over its three hyperparameters (log ls, log sf, log sn), at n = 500 points in 2-D (D their
squared distances, computed once: the data of a hyperparameter fit). Every system factorizes
K once by Cholesky; the hand-written one takes the gradient from the textbook formula
½ tr((ααᵀ - K⁻¹) ∂K/∂θ), α = K⁻¹ y, with SciPy's cho_factor and cho_solve.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular

import symdiff as sd

from .env import import_jax, threads
from .timing import checked_times, table

N = 500
THETA = (0.0, 0.3, -1.0)  # log ls, log sf, log sn
LOG_2PI = float(np.log(2 * np.pi))


def make_data(n: int = N, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 2))
    y = np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.1 * rng.standard_normal(n)
    return {"D": ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), "y": y}


def symdiff_model(n: int = N):
    D, y = sd.tensor("D", (n, n)), sd.tensor("y", (n,))
    log_ls, log_sf, log_sn = sd.scalar("log_ls"), sd.scalar("log_sf"), sd.scalar("log_sn")
    K = sd.exp(2 * log_sf - 0.5 * D / sd.exp(2 * log_ls)) + sd.exp(2 * log_sn) * sd.eye(n)
    L = sd.cholesky(K)
    alpha = sd.solve_triangular(L, y)
    nll = 0.5 * sd.sum(alpha ** 2) + sd.sum(sd.log(sd.diagonal(L))) + 0.5 * n * LOG_2PI
    return sd.compile(nll, wrt=[log_ls, log_sf, log_sn], wait=True)


def _symdiff(data):
    model = symdiff_model(data["y"].size)
    theta = dict(zip(("log_ls", "log_sf", "log_sn"), THETA))
    return lambda: model.value_and_grad(**data, **theta)


def _hand(data):
    D, y = data["D"], data["y"]
    n = y.size

    def value_and_grad():
        log_ls, log_sf, log_sn = THETA
        E = np.exp(2 * log_sf - 0.5 * D / np.exp(2 * log_ls))
        K = E + np.exp(2 * log_sn) * np.eye(n)
        factor = cho_factor(K, lower=True)
        alpha = cho_solve(factor, y)
        half = solve_triangular(factor[0], y, lower=True)
        value = 0.5 * half @ half + np.log(np.diag(factor[0])).sum() + 0.5 * n * LOG_2PI
        W = np.outer(alpha, alpha) - cho_solve(factor, np.eye(n))  # ∂nll/∂K = -W/2
        grads = (-0.5 * np.sum(W * E * D / np.exp(2 * log_ls)),  # ∂K/∂log ls = E D / ls²
                 -0.5 * np.sum(W * 2 * E),                         # ∂K/∂log sf = 2E
                 -0.5 * np.trace(W) * 2 * np.exp(2 * log_sn))      # ∂K/∂log sn = 2 sn² I
        return value, grads
    return value_and_grad


def _jax(data):
    jax = import_jax()
    jnp = jax.numpy
    n = data["y"].size

    def nll(theta, D, y):
        log_ls, log_sf, log_sn = theta
        K = jnp.exp(2 * log_sf - 0.5 * D / jnp.exp(2 * log_ls)) + jnp.exp(2 * log_sn) * jnp.eye(n)
        L = jnp.linalg.cholesky(K)
        alpha = jax.scipy.linalg.solve_triangular(L, y, lower=True)
        return 0.5 * alpha @ alpha + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * n * LOG_2PI

    value_and_grad = jax.jit(jax.value_and_grad(nll))
    theta, D, y = jnp.asarray(THETA), jnp.asarray(data["D"]), jnp.asarray(data["y"])
    return lambda: jax.block_until_ready(value_and_grad(theta, D, y))


SYSTEMS = {"symdiff": _symdiff, "NumPy/SciPy by hand": _hand, "JAX": _jax}


def run(quick: bool = False) -> str:
    data = make_data()
    calls = {name: make(data) for name, make in SYSTEMS.items()}
    times = checked_times(calls, quick, budget=0.3)
    return (f"## gp: a Gaussian process's negative log marginal likelihood and its gradient\n\n"
            f"n = {N} points in 2-D, 3 hyperparameters, {threads()} thread(s)\n\n"
            + table(times))

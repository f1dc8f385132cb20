"""swell: per-sample gradients of a deep nested formula, the expression-swell stress test.

    y_0 = x_0,   y_{k+1} = sin(y_k)·x_{k+1} + cos(y_k·x_{k+1})   for k < K

over n = 10^4 samples, each x_k an array of n values drawn from U(-1, 1). Every system returns
the value Σ_i y_K(i) and its gradient with respect to every x_k, an (n,)-array per k: since the
samples do not interact, that gradient holds each sample's own dy_K/dx_k. In symdiff the x_k
are (n,)-tensor inputs, the model is sd.sum(y_K), and wrt is every x_k.

Preparation is everything from the model's definition to the first result, measured once per
K in this process: symdiff's trace, differentiation, code generation, Numba compile (into a
fresh kernel cache) and first call; SymPy's expression build, diff of each x_k, lambdify with
cse=True and first call (stopped after a timeout); JAX's trace, XLA compile and first call;
PyTorch's (eager) first call. The hand-written kernel serves every K: its preparation is its
first call at that K, which for the first K includes its one Numba compile.
"""
from __future__ import annotations

import math
import signal
import time

import numpy as np
from numba import njit, prange

import symdiff as sd

from .check import assert_same
from .env import import_jax, import_torch, threads
from .timing import compare, format_time, table

N = 10_000
DEPTHS, QUICK_DEPTHS = (10, 50, 100, 200), (10, 50)
SYMPY_TIMEOUT, QUICK_SYMPY_TIMEOUT = 120, 30  # seconds
NCHUNKS = 16


def swell(xs):
    """y_K from the inputs x_0..x_K; works on symdiff Tensors, JAX and PyTorch arrays."""
    sin, cos = _functions(xs[0])
    y = xs[0]
    for x in xs[1:]:
        y = sin(y) * x + cos(y * x)
    return y


def _functions(x):
    if isinstance(x, sd.Tensor):
        return sd.sin, sd.cos
    module = type(x).__module__
    if module.startswith("torch"):
        import torch
        return torch.sin, torch.cos
    if module.startswith("jax"):
        import jax.numpy as jnp
        return jnp.sin, jnp.cos
    import sympy
    return sympy.sin, sympy.cos


@njit(parallel=True, error_model="numpy", cache=True)
def swell_kernel(x):
    """(Σ_i y_K(i), dy_K/dx shaped like x) for x of shape (K+1, n).

    One sample at a time: the forward pass stores the local derivatives of each level,
    ∂y_k/∂x_k in grad[k] and ∂y_k/∂y_{k-1} in a, and the backward pass multiplies them out.
    Chunks of samples run in parallel, each summing its own part of the value.
    """
    m, n = x.shape
    grad = np.empty_like(x)
    totals = np.zeros(NCHUNKS)
    for c in prange(NCHUNKS):
        a = np.empty(m)
        total = 0.0
        for i in range(c * n // NCHUNKS, (c + 1) * n // NCHUNKS):
            y = x[0, i]
            for k in range(1, m):
                u = y * x[k, i]
                s, su = math.sin(y), math.sin(u)
                grad[k, i] = s - su * y
                a[k] = (math.cos(y) - su) * x[k, i]
                y = s * x[k, i] + math.cos(u)
            total += y
            dy = 1.0  # dy_K/dy_k, from k = K down
            for k in range(m - 1, 0, -1):
                grad[k, i] *= dy
                dy *= a[k]
            grad[0, i] = dy
        totals[c] = total
    return totals.sum(), grad


def prepare(X: np.ndarray, sympy_timeout: float | None) -> dict:
    """{name: (preparation seconds, call)} at K = len(X) - 1; SymPy is (None, None) when it
    was stopped after `sympy_timeout` seconds, and left out when that is None."""
    jax, torch = import_jax(), import_torch()
    systems = {"symdiff": _timed(lambda: _symdiff(X)),
               "hand-written Numba": _timed(lambda: (lambda: swell_kernel(X))),
               "JAX": _timed(lambda: _jax(jax, X))}
    if sympy_timeout:
        try:
            systems["SymPy"] = _timed(lambda: _sympy(X), timeout=sympy_timeout)
        except TimeoutError:
            systems["SymPy"] = (None, None)
    systems["PyTorch"] = _timed(lambda: _torch(torch, X))
    return systems


def _timed(make, timeout: float | None = None):
    """(seconds to build the call and get its first result, call)."""
    if timeout:
        def stop(signum, frame):
            raise TimeoutError
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        start = time.perf_counter()
        call = make()
        call()
        return time.perf_counter() - start, call
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _symdiff(X):
    xs = [sd.tensor(f"x{k}", ("n",)) for k in range(len(X))]
    model = sd.compile(sd.sum(swell(xs)), wrt=xs, wait=True)
    arguments = {f"x{k}": row for k, row in enumerate(X)}
    call = lambda: model.value_and_grad(**arguments)
    call.model = model
    return call


def _jax(jax, X):
    x = jax.numpy.asarray(X)
    f = jax.jit(jax.value_and_grad(lambda x: swell(list(x)).sum()))
    return lambda: jax.block_until_ready(f(x))


def _sympy(X):
    import sympy
    sympy.core.cache.clear_cache()  # no head start from the previous K's subexpressions
    xs = sympy.symbols(f"x0:{len(X)}")
    y = swell(list(xs))
    f = sympy.lambdify(xs, [y, *(sympy.diff(y, x) for x in xs)], modules="numpy", cse=True)

    def call():
        y, *grads = f(*X)
        return y.sum(), grads
    return call


def _torch(torch, X):
    x = torch.from_numpy(X).requires_grad_()

    def call():
        x.grad = None
        total = swell(list(x)).sum()
        total.backward()
        return total.detach(), x.grad
    return call


def run(quick: bool = False) -> str:
    sections = [f"## swell: gradient of a depth-K nested formula wrt all x, n = {N:,}, "
                f"{threads()} thread(s)"]
    sympy_stopped, tape_seen = None, False
    for K in QUICK_DEPTHS if quick else DEPTHS:
        X = np.random.default_rng(K).uniform(-1.0, 1.0, (K + 1, N))
        timeout = QUICK_SYMPY_TIMEOUT if quick else SYMPY_TIMEOUT
        systems = prepare(X, None if sympy_stopped else timeout)
        calls = {name: call for name, (_, call) in systems.items() if call is not None}
        reference = calls["symdiff"]()
        for name, call in calls.items():
            assert_same(name, call(), reference, rtol=1e-6)
        times = compare(calls, rounds=3 if quick else 10, budget=0.05 if quick else 0.1)
        preparation = {name: format_time(seconds) for name, (seconds, call) in systems.items()
                       if call is not None}
        model = calls["symdiff"].model
        notes = [_symdiff_note(model)]
        if model.tier == "tape" and not tape_seen:
            tape_seen = True
            notes.append("This first tape's first call includes compiling the interpreter, "
                         "once per machine (Numba caches it for every later model).")
        if "SymPy" not in calls:
            sympy_stopped = sympy_stopped or K
            notes.append(f"SymPy: stopped after {timeout} s at K = {sympy_stopped}"
                         + (", so not tried" if sympy_stopped < K else "") + ".")
        sections.append(f"K = {K}\n\n" + table(times, label="call time",
                                               extra={"preparation": preparation})
                        + "\n\n" + " ".join(notes))
    return "\n\n".join(sections)


def _symdiff_note(model) -> str:
    stages = ", ".join(f"{stage} {format_time(s)}" for stage, s in model.timings.items())
    if model.tier == "tape":
        tape = model._kernel("grad").tape
        size = f"tape tier, {len(model.program.stmts)} statements as {len(tape.code)} instructions"
    else:
        size = f"kernel tier, {len(model.source.splitlines())} lines of kernel source"
    return f"symdiff preparation: {stages}; {size}."

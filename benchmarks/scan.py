"""scan: loops that stay loops, `sd.scan` against the unrolled model and the hand-written loop.

Three tables:

- **Preparation of swell** (y_0 = x_0, y_{k+1} = sin(y_k)·x_{k+1} + cos(y_k·x_{k+1}), n = 100
  samples) at K = 10, 200 and 2,000: symdiff with `sd.scan` (one loop; x_0 and the (K, n)
  rest are inputs, K a named dimension) on the kernel tier and on the tape tier (`tier=`; a
  tier that refuses the model is left out, with its reason), symdiff unrolled (swell.py's
  model, one input per level, `tier="auto"`, at K = 10 and 200) and CasADi (an SX graph of
  one sample's recurrence, a `casadi.Function` of y_K and its gradient, mapped over the
  samples) when it is installed. Preparation is from the model's definition to its first
  value and gradient; the notes give a second call's time, the part of it that is the run
  itself, which grows with K whatever the preparation. Each measurement is a new process
  (`python -m benchmarks.scan SYSTEM K`) on a symdiff kernel cache of its own, so that every
  symdiff model is compiled, not loaded; before the timed model the process prepares the same
  system's model with sin and cos swapped (same K, untimed), so that what is timed is the
  model's own work, not Numba's start-up in a new process nor what is compiled once per
  machine (the tape interpreter's serial and parallel runs, kept in the run's Numba cache).
- **Call time of swell** at K = 100, n = 10^4 (swell.py's size): the scan model on each tier,
  swell.py's hand-written Numba recurrence `swell_kernel`, the unrolled model and CasADi's
  mapped Function; ratios to the hand-written kernel. Results are checked first (rtol 1e-6,
  as in swell.py).
- **A vanilla RNN**, h_{t+1} = tanh(x_t W + h_t U + b) over length 100, batch 64, width 32,
  h_0 = 0, loss = the mean of h_t² over every step, example and unit: value and gradients by
  W, U and b. symdiff's `sd.scan` against JAX's `jax.lax.scan` under
  `jax.jit(jax.value_and_grad(...))` and a PyTorch (eager) loop.

    python -m benchmarks scan [--threads 1|2] [--quick]
    python -m benchmarks.scan SYSTEM K     # one child: JSON on its last line
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import symdiff as sd

from .check import assert_same
from .env import import_jax, import_torch, threads
from .swell import swell_kernel
from .timing import checked_times, compare, format_time, markdown, table

PREPARE_N, CALL_N, CALL_K = 100, 10_000, 100
SCAN_TIERS = {"symdiff, sd.scan, kernel tier": "kernel", "symdiff, sd.scan, tape tier": "tape"}
PREPARE_K = {**{system: (10, 200, 2000) for system in SCAN_TIERS},
             "symdiff, unrolled": (10, 200), "CasADi": (10, 200, 2000)}
LENGTH, BATCH, WIDTH = 100, 64, 32
ROOT = Path(__file__).resolve().parent.parent


def unrolled(xs, sin, cos):
    """y_K from the levels x_0..x_K, as one expression per level."""
    y = xs[0]
    for x in xs[1:]:
        y = sin(y) * x + cos(y * x)
    return y


def scan_model(tier: str, sin=sd.sin, cos=sd.cos):
    """sum(y_K) as one sd.scan over the levels x_1..x_K, K a named dimension."""
    x0, xs = sd.tensor("x0", ("n",)), sd.tensor("xs", ("K", "n"))
    y, _ = sd.scan(lambda y, x: (sin(y) * x + cos(y * x), None), x0, xs)
    return sd.compile(sd.sum(y), wrt=[x0, xs], tier=tier, wait=True)


def unrolled_model(K: int, sin=sd.sin, cos=sd.cos):
    xs = [sd.tensor(f"x{k}", ("n",)) for k in range(K + 1)]
    return sd.compile(sd.sum(unrolled(xs, sin, cos)), wrt=xs, wait=True)


def casadi_function(K: int, n: int, swap: bool = False):
    """(Σ y_K, gradient (K+1, n)) of the levels (K+1, n): one sample's SX graph, mapped."""
    import casadi as ca
    sin, cos = (ca.cos, ca.sin) if swap else (ca.sin, ca.cos)
    x = ca.SX.sym("x", K + 1)
    y = unrolled([x[k] for k in range(K + 1)], sin, cos)
    sample = ca.Function("swell", [x], [y, ca.gradient(y, x)])
    mapped = sample.map(n)

    def call(X):
        y, grad = mapped(X)
        return float(np.asarray(y).sum()), np.asarray(grad)
    return call


def levels(K: int, n: int) -> np.ndarray:
    return np.random.default_rng(K).uniform(-1.0, 1.0, (K + 1, n))


def prepare(system: str, K: int, n: int, swap: bool = False):
    """A callable of no arguments giving (value, gradient) of swell at depth K."""
    X = levels(K, n)
    sin, cos = (sd.cos, sd.sin) if swap else (sd.sin, sd.cos)
    if system in SCAN_TIERS:
        model = scan_model(SCAN_TIERS[system], sin, cos)
        call = lambda: model.value_and_grad(x0=X[0], xs=X[1:])
    elif system == "symdiff, unrolled":
        model = unrolled_model(K, sin, cos)
        arguments = {f"x{k}": row for k, row in enumerate(X)}
        call = lambda: model.value_and_grad(**arguments)
    else:
        function, model = casadi_function(K, n, swap), None
        call = lambda: function(X)
    call.model = model
    return call


def child(system: str, K: int) -> dict:
    """Prepare the swapped model (untimed), then time this one to its first result;
    {"refused": why} when the system's tier cannot run the model."""
    try:
        prepare(system, K, PREPARE_N, swap=True)()
    except sd.ArgumentError as e:  # tier="tape" on a model it does not run
        return {"refused": str(e)}
    start = time.perf_counter()
    call = prepare(system, K, PREPARE_N)
    call()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    call()
    again = time.perf_counter() - start
    model = call.model
    return {"first": seconds, "again": again, "tier": model.tier if model else "",
            "stages": dict(model.timings) if model else {},
            "lines": len(model.source.splitlines()) if model and model.tier == "kernel" else 0,
            "statements": len(model.program.stmts) if model else 0}


def _spawn(system: str, K: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="symdiff-scan-") as cache:
        env = {**os.environ, "SYMDIFF_CACHE_DIR": cache}  # Numba's cache: the run's, shared
        out = subprocess.run([sys.executable, "-m", "benchmarks.scan", system, str(K)],
                             cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{system} at K = {K} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_casadi() -> bool:
    try:
        import casadi  # noqa: F401
    except ImportError:
        return False
    return True


def preparation_table(quick: bool) -> str:
    systems = {s: ks for s, ks in PREPARE_K.items() if s != "CasADi" or _has_casadi()}
    runs = {(s, K): [] for s, ks in systems.items() for K in ks}
    refused, notes = {}, []
    for _ in range(1 if quick else 3):
        for system, K in runs:
            if system not in refused:
                result = _spawn(system, K)
                if "refused" in result:
                    refused[system] = result["refused"]
                else:
                    runs[system, K].append(result)
    for system, why in refused.items():
        systems.pop(system)
        notes.append(f"{system}: refused ({why}).")
    depths = sorted({K for ks in systems.values() for K in ks})
    body = []
    for system, ks in systems.items():
        cells = []
        for K in depths:
            if K not in ks:
                cells.append("—")
                continue
            seconds = [r["first"] for r in runs[system, K]]
            cells.append(format_time(statistics.median(seconds)) + (
                f" ({format_time(min(seconds))}–{format_time(max(seconds))})"
                if len(seconds) > 1 else ""))
        body.append([system, *cells])
        mine = {K: rs for (s, K), rs in runs.items() if s == system}
        again = ", ".join(f"{format_time(statistics.median(r['again'] for r in rs))} at K = {K}"
                          for K, rs in mine.items())
        notes.append(f"{system}: a second call takes {again}"
                     + ("; " + _sizes(mine) if system.startswith("symdiff") else "") + ".")
    if "CasADi" not in systems:
        notes.append("CasADi is not installed (`pip install casadi`): not measured.")
    header = ["system", *(f"K = {K:,}" for K in depths)]
    return (f"### swell: preparation (definition to first value and gradient), n = {PREPARE_N}, "
            f"{threads()} thread(s)\n\nMedian (range) over {1 if quick else 3} new processes "
            f"each, a fresh symdiff kernel cache each.\n\n" + markdown(header, body) + "\n\n"
            + " ".join(notes))


def _sizes(runs: dict) -> str:
    """The tier and size of a symdiff model at each K, once if the same at every K."""
    sizes = {K: f"{r['tier']} tier, {r['statements']} statements"
             + (f", {r['lines']} lines of kernel source" if r["lines"] else "")
             for K, (r, *_) in runs.items()}
    if len(set(sizes.values())) == 1:
        return f"{next(iter(sizes.values()))} at every K"
    return ", ".join(f"{size} at K = {K}" for K, size in sizes.items())


def call_table(quick: bool) -> str:
    X = levels(CALL_K, CALL_N)
    calls, notes = {}, []
    for system, tier in SCAN_TIERS.items():
        try:
            model = scan_model(tier)
        except sd.ArgumentError as e:  # tier="tape" on a model it does not run
            notes.append(f"{system}: refused ({e}).")
            continue
        calls[system] = lambda model=model: model.value_and_grad(x0=X[0], xs=X[1:])
    calls["hand-written Numba"] = lambda: swell_kernel(X)
    unrolled_ = unrolled_model(CALL_K)
    arguments = {f"x{k}": row for k, row in enumerate(X)}
    calls["symdiff, unrolled"] = lambda: unrolled_.value_and_grad(**arguments)
    notes.append(f"The unrolled model runs on the {unrolled_.tier} tier.")
    if _has_casadi():
        function = casadi_function(CALL_K, CALL_N)
        calls["CasADi"] = lambda: function(X)
    reference = calls["hand-written Numba"]()
    for name, call in calls.items():
        assert_same(name, call(), reference, rtol=1e-6)
    times = compare(calls, rounds=5 if quick else 15, budget=0.1 if quick else 0.3)
    return (f"### swell: call time at K = {CALL_K}, n = {CALL_N:,}, {threads()} thread(s)\n\n"
            + table(times, label="call time", baseline="hand-written Numba")
            + "\n\n" + " ".join(notes))


def rnn_data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"xs": rng.standard_normal((LENGTH, BATCH, WIDTH)), "h0": np.zeros((BATCH, WIDTH)),
            "W": rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH),
            "U": rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH),
            "b": 0.1 * rng.standard_normal(WIDTH)}


def rnn_model():
    xs, h0 = sd.tensor("xs", (LENGTH, "n", WIDTH)), sd.tensor("h0", ("n", WIDTH))
    W, U, b = sd.tensor("W", (WIDTH, WIDTH)), sd.tensor("U", (WIDTH, WIDTH)), \
        sd.tensor("b", (WIDTH,))

    def step(h, x):
        h = sd.tanh(x @ W + h @ U + b)
        return h, h
    _, hs = sd.scan(step, h0, xs)
    return sd.compile(sd.mean(hs ** 2), wrt=[W, U, b], wait=True)


def _rnn_symdiff(data):
    model = rnn_model()
    return lambda: model.value_and_grad(**data)


def _rnn_jax(data):
    jax = import_jax()
    jnp = jax.numpy

    def loss(weights, xs, h0):
        W, U, b = weights

        def step(h, x):
            h = jnp.tanh(x @ W + h @ U + b)
            return h, h
        _, hs = jax.lax.scan(step, h0, xs)
        return jnp.mean(hs ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    weights = tuple(jnp.asarray(data[k]) for k in ("W", "U", "b"))
    xs, h0 = jnp.asarray(data["xs"]), jnp.asarray(data["h0"])
    return lambda: jax.block_until_ready(value_and_grad(weights, xs, h0))


def _rnn_torch(data):
    torch = import_torch()
    weights = [torch.tensor(data[k], requires_grad=True) for k in ("W", "U", "b")]
    xs, h0 = torch.from_numpy(data["xs"]), torch.from_numpy(data["h0"])

    def value_and_grad():
        for w in weights:
            w.grad = None
        W, U, b = weights
        h, squares = h0, 0.0
        for x in xs:
            h = torch.tanh(x @ W + h @ U + b)
            squares = squares + (h ** 2).sum()
        loss = squares / xs.numel()
        loss.backward()
        return loss.detach(), [w.grad for w in weights]
    return value_and_grad


def rnn_table(quick: bool) -> str:
    data = rnn_data()
    systems = {"symdiff": _rnn_symdiff, "JAX": _rnn_jax, "PyTorch": _rnn_torch}
    times = checked_times({name: make(data) for name, make in systems.items()}, quick,
                          budget=0.15)
    return (f"### RNN: value and gradients by W, U, b, length {LENGTH}, batch {BATCH}, width "
            f"{WIDTH}, {threads()} thread(s)\n\n" + table(times))


def run(quick: bool = False) -> str:
    return "\n\n".join([f"## scan: sd.scan against unrolled and hand-written loops, "
                        f"{threads()} thread(s)", preparation_table(quick), call_table(quick),
                        rnn_table(quick)])


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))

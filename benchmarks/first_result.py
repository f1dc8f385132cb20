"""One process, one first result, timed from the process's start.

    python -m benchmarks.first_result WORKLOAD SYSTEM
    python -m benchmarks.first_result WORKLOAD SYSTEM SYSTEM... [--runs 5] [--warm]

With one SYSTEM, a process builds the model, computes its first result and prints to stderr
the seconds from the process's start (the kernel's clock, /proc) to that result. A symdiff
process then also finishes the kernel it compiles in the background before it exits, so its
whole wall time is no measure of the first result. With several SYSTEMs it runs them in turn,
--runs rounds, each process on empty caches (or, with --warm, on caches a first process of
the same system filled), and prints their medians and the ratios to the first SYSTEM's, round
by round.

WORKLOAD is `mlp-small` (64-128-10 MLP, batch 128), `mlp-small-32` (the same in float32, JAX's
default) or `logistic` (the neuron's logistic loss formula, 3 parameters, batch 1000); SYSTEM is `symdiff` (the default, wait="auto": the first
result from the kernel's module run by CPython while Numba compiles it), `symdiff-wait`
(wait=True: the kernel first), `symdiff-later` (wait=False: the first result from NumPy) or
`jax`. Each process imports only what its system needs, builds the model and computes its
first value and gradients; caches are wherever SYMDIFF_CACHE_DIR, NUMBA_CACHE_DIR and (for
JAX) JAX_COMPILATION_CACHE_DIR point. `symdiff-step`, `symdiff-step-wait`,
`symdiff-step-later` and `jax-step` take a first training step instead: symdiff's
`sgd_step(0.1, ...)`, which updates the parameters in place, and a jitted JAX function
returning the loss and the parameters after one step of gradient descent.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np


def data(workload: str):
    rng = np.random.default_rng(0)
    if workload == "logistic":  # the weights as 0-d arrays: a step updates them in place
        x0, x1 = rng.standard_normal((2, 1000))
        return {"w0": np.array(2.0), "w1": np.array(-3.0), "w2": np.array(-3.0), "x0": x0, "x1": x1,
                "y": (rng.random(1000) < 0.5).astype(float)}
    params = {"W1": rng.normal(0, 0.18, (64, 128)), "b1": np.zeros(128),
              "W2": rng.normal(0, 0.13, (128, 10)), "b2": np.zeros(10)}
    dtype = np.float32 if workload.endswith("-32") else np.float64
    return {"X": rng.random((128, 64)).astype(dtype), "y": rng.integers(0, 10, 128),
            **{k: v.astype(dtype) for k, v in params.items()}}


def symdiff_first(workload: str, wait, arguments: dict, step: bool = False):
    import symdiff as sd
    if workload == "logistic":
        z = "(w0*x0 + w1*x1 + w2)"
        f = sd.compile(f"softplus({z}) - y*{z}", wrt=["w0", "w1", "w2"],
                       batch=["x0", "x1", "y"], wait=wait)
    else:
        dtype = "float32" if workload.endswith("-32") else "float64"
        X, y = sd.tensor("X", ("n", 64), dtype), sd.tensor("y", ("n",), dtype=int)
        W1, b1 = sd.tensor("W1", (64, 128), dtype), sd.tensor("b1", (128,), dtype)
        W2, b2 = sd.tensor("W2", (128, 10), dtype), sd.tensor("b2", (10,), dtype)
        logits = sd.relu(X @ W1 + b1) @ W2 + b2
        f = sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[W1, b1, W2, b2],
                       wait=wait)
    return f.sgd_step(0.1, **arguments) if step else f.value_and_grad(**arguments)


def jax_first(workload: str, arguments: dict, step: bool = False):
    import jax
    jax.config.update("jax_enable_x64", not workload.endswith("-32"))
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


def since_start() -> float:
    """Seconds since this process started (Linux: its start time in clock ticks since boot)."""
    with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        return float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")


def first_result(workload: str, system: str, warm: bool) -> float:
    """A new process's seconds to its first result, on empty caches (filled first if warm)."""
    with tempfile.TemporaryDirectory() as caches:
        env = {**os.environ, **{name: os.path.join(caches, name) for name in (
            "SYMDIFF_CACHE_DIR", "NUMBA_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR")}}
        command = [sys.executable, "-m", "benchmarks.first_result", workload, system]
        for _ in range(1 + warm):
            run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return float(run.stderr.split("first result after ")[1].split()[0])


def compare(workload: str, systems: list[str], runs: int, warm: bool) -> None:
    times = {system: [] for system in systems}
    for _ in range(runs):
        for system in systems:
            times[system].append(first_result(workload, system, warm))
    print(f"{workload}, {'warm' if warm else 'empty'} caches, medians of {runs}:")
    for system in systems:
        ratios = [t / b for t, b in zip(times[system], times[systems[0]])]
        print(f"  {system:20s} {statistics.median(times[system]):6.2f} s  "
              f"({min(times[system]):.2f}-{max(times[system]):.2f});  "
              f"÷ {systems[0]} {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    options = [a for a in sys.argv[1:] if a.startswith("--")]
    workload, *systems = [a for a in sys.argv[1:] if not a.startswith("--") and not
                          (sys.argv.index(a) > 0 and sys.argv[sys.argv.index(a) - 1] == "--runs")]
    if len(systems) > 1:
        runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in options else 5
        compare(workload, systems, runs, "--warm" in options)
        sys.exit()
    (system,) = systems
    arguments = data(workload)
    if system in ("jax", "jax-step"):
        jax_first(workload, arguments, step=system == "jax-step")
    else:
        wait = {"-wait": True, "-later": False}.get(system[system.rfind("-"):], "auto")
        symdiff_first(workload, wait, arguments, step=system.startswith("symdiff-step"))
    print(f"first result after {since_start():.3f} s", file=sys.stderr)

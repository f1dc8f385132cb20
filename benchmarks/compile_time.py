"""compile: time to the first result in a new process, with cold and with warm caches.

For `neuron` (n = 10^3) and `mlp-small` (batch 128) each system runs in a child process twice
("symdiff, wait=False": its first result comes from NumPy while the kernel compiles on a
background thread, which the process does not wait for when it exits):
cold, with empty caches (symdiff's kernel cache, Numba's cache and JAX's persistent
compilation cache all in a fresh temporary directory), then warm, a second process on the
caches the first one left. symdiff's MLP also runs as a new model on a machine that has run
another: a child builds a 64-100-10 MLP in a fresh cache (untimed), then the timed child the
64-128-10 one (what it reuses: the parts compiled once per machine, such as the np.dot
wrapper). A child reports the seconds its imports took and the seconds from
the model's definition to its first value and gradients; the parent adds the wall time of the
whole process. Every child imports NumPy, Numba and symdiff (the workload modules do), so wall
times include those imports whatever the system. Medians over rounds; each round runs every
case once, in turn.

    python -m benchmarks.compile_time WORKLOAD SYSTEM CACHE_DIR   # one child
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .timing import format_time, markdown

LATER = "symdiff, wait=False"  # first results from NumPy while the kernel compiles
CASES = {"neuron": ("symdiff", LATER, "hand-written Numba", "JAX"),
         "mlp-small": ("symdiff", LATER, "hand-written NumPy", "JAX")}
ROOT = Path(__file__).resolve().parent.parent
OTHER, OTHER_SIZES = "another MLP", (64, 100, 10)  # what a "new model" child's machine ran before


def child(workload: str, system: str, cache: str) -> dict:
    """Import, then build and call the model once; {'import': s, 'first': s}."""
    os.environ["SYMDIFF_CACHE_DIR"] = os.path.join(cache, "symdiff")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")  # read when Numba loads
    start = time.perf_counter()
    import numba  # noqa: F401  (symdiff loads it on first compile; count it as an import)
    import numpy as np
    if system == "JAX":
        from .env import import_jax
        jax = import_jax()
        jax.config.update("jax_compilation_cache_dir", os.path.join(cache, "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if workload == "neuron":
        from . import neuron
        data = neuron.make_data(1000)
        w = dict(zip(("w0", "w1", "w2"), neuron.W))
        first = (lambda: neuron.symdiff_model(wait=False).value_and_grad(**w, **data)) \
            if system == LATER else (lambda: neuron.SYSTEMS[system](data)())
    else:
        from . import mlp, mlp_small
        sizes = OTHER_SIZES if workload == OTHER else mlp_small.SIZES
        rng = np.random.default_rng(0)  # random digits-shaped data: no scikit-learn import
        X, y = rng.random((mlp_small.BATCH, 64)), rng.integers(0, 10, mlp_small.BATCH)
        params = mlp.init_params(sizes, rng)
        first = (lambda: mlp.symdiff_model(sizes, wait=False).value_and_grad(
            X=X, y=y, **params)) if system == LATER else \
            (lambda: mlp.SYSTEMS[system](sizes, params, [(X, y)])[0](0))
    imported = time.perf_counter()
    first()
    return {"import": imported - start, "first": time.perf_counter() - imported}


def _spawn(workload: str, system: str, cache: str) -> dict:
    # Python writes bytecode caches on a user's machine; a PYTHONDONTWRITEBYTECODE inherited
    # from the shell would recompile every module symdiff imports at its first compile
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks.compile_time", workload, system,
                          cache], cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{workload} / {system} child failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall}


def run(quick: bool = False) -> str:
    from .env import threads
    new = ("mlp-small", "symdiff", "new model")
    keys = [(w, s, c) for w, systems in CASES.items() for s in systems for c in ("cold", "warm")]
    keys.insert(keys.index(new[:2] + ("cold",)) + 1, new)
    results = {key: [] for key in keys}
    for _ in range(1 if quick else 3):
        for workload, systems in CASES.items():
            for system in systems:
                with tempfile.TemporaryDirectory(prefix="symdiff-bench-") as cache:
                    for state in ("cold", "warm"):
                        results[workload, system, state].append(_spawn(workload, system, cache))
        with tempfile.TemporaryDirectory(prefix="symdiff-bench-") as cache:
            _spawn(OTHER, "symdiff", cache)
            results[new].append(_spawn("mlp-small", "symdiff", cache))
    body = []
    for (workload, system, state), runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        body.append([workload, system, state, format_time(median["first"]),
                     format_time(median["import"]), format_time(median["wall"])])
    header = ["workload", "system", "caches", "first result (after imports)", "imports",
              "process wall time"]
    return (f"## compile: time to the first value and gradients in a new process, "
            f"{threads()} thread(s)\n\n" + markdown(header, body))


if __name__ == "__main__":
    print(json.dumps(child(*sys.argv[1:4])))

"""threads: one thread against two, in the environment a user gets by default.

Each configuration runs in a new process, because Numba and OpenBLAS read their thread counts
when they load: "2 threads (default)" sets no thread variable (Numba's 2 threads, SciPy's
OpenBLAS with its own 2), "1 thread" sets NUMBA_NUM_THREADS=1 and "OPENBLAS_NUM_THREADS=1" only
that. The children inherit no thread variable and no CPU pin from this process, so the
workload runs the same under `--threads 1` and `--threads 2`. The workloads: `value_and_grad`
of a 30-32-10 ReLU MLP (softmax cross-entropy; its products call BLAS) and of the sigmoid
neuron (no BLAS call). A child times each size once the first call is done and the kernel's
threaded copy and the blocks' drivers (codegen/driver.py) are in place: first the mean time per
call over a second of calls, in which the kernel's choice between its threaded copy and itself
tries each a few times (codegen/kernel.py's `Choice`), then the median of measurements after
that (a training loop's steady calls). It
reports both, and a hash of the result's bits, which must not depend on Numba's thread count
(OpenBLAS's thread count does change them: a threaded OpenBLAS splits the long sum of
`X.T @ d`). Configurations run in turn, round after round, each round starting with the next,
so that load from other processes and slow spells of the machine fall on all alike; the
table gives the median over rounds.

    python -m benchmarks threads [--quick]                  # every configuration, in children
    python -m benchmarks.threads WORKLOAD ROUNDS SIZES...   # one child: JSON on its last line
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .env import THREAD_VARIABLES
from .timing import format_time, markdown, measure

CONFIGS = {"2 threads (default)": {}, "1 thread": {"NUMBA_NUM_THREADS": "1"},
           "2 threads, OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"}}
SIZES = {"MLP 30-32-10": (5_000, 50_000, 500_000), "neuron": (1_000, 100_000, 1_000_000)}
QUICK_SIZES = {"MLP 30-32-10": (5_000, 50_000), "neuron": (100_000, 1_000_000)}
ROOT = Path(__file__).resolve().parent.parent
BUDGET = 0.02  # seconds per measurement
FIRST = 1.0  # seconds of calls timed as a whole before the measurements


def model_and_data(workload: str, n: int):
    """(compiled model, arguments) for `workload` over n rows."""
    import numpy as np
    if workload == "neuron":
        from . import neuron
        return neuron.symdiff_model(), {**dict(zip(("w0", "w1", "w2"), neuron.W)),
                                        **neuron.make_data(n)}
    import symdiff as sd
    X, y = sd.tensor("X", ("n", 30)), sd.tensor("y", ("n",), dtype=int)
    W1, b1 = sd.tensor("W1", (30, 32)), sd.tensor("b1", (32,))
    W2, b2 = sd.tensor("W2", (32, 10)), sd.tensor("b2", (10,))
    f = sd.compile(sd.mean(sd.softmax_cross_entropy(sd.relu(X @ W1 + b1) @ W2 + b2, y)),
                   wrt=[W1, b1, W2, b2], wait=True)
    rng = np.random.default_rng(0)
    return f, {"X": rng.standard_normal((n, 30)), "y": rng.integers(0, 10, n),
               "W1": rng.normal(0, 0.2, (30, 32)), "b1": np.zeros(32),
               "W2": rng.normal(0, 0.2, (32, 10)), "b2": np.zeros(10)}


def child(workload: str, sizes: list[int], rounds: int) -> dict:
    """{size: {"first": s, "median": s, "bits": hash}} for `workload`'s value_and_grad in this
    process: the mean per call over the first second, the median of measurements after it."""
    import numpy as np
    results = {}
    for n in sizes:
        f, arguments = model_and_data(workload, n)
        call = lambda: f.value_and_grad(**arguments)  # noqa: E731
        value, grads = call()
        threaded = getattr(f._grad, "_threads_done", None)  # the copy compiling, if it is
        if getattr(f._grad, "_threads_started", False):
            threaded.wait()
        drivers = getattr(f.__dict__.get("_blocks"), "wait_drivers", None)  # blocks' drivers
        if drivers:
            drivers()
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < FIRST:
            calls += 1
            call()
        first = (time.perf_counter() - start) / calls
        number = max(1, round(BUDGET / min(measure(call) for _ in range(3))))
        times = [measure(call, number) for _ in range(rounds)]
        bits = hashlib.sha256(np.float64(value).tobytes() + b"".join(
            np.ascontiguousarray(g, dtype=np.float64).tobytes() for g in grads.values()))
        results[n] = {"first": first, "median": statistics.median(times),
                      "bits": bits.hexdigest()[:12]}
    return results


def _spawn(workload: str, sizes, config: dict, rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in THREAD_VARIABLES and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(config)
    command = [sys.executable, "-m", "benchmarks.threads", workload, str(rounds),
               *map(str, sizes)]
    unpinned = (lambda: os.sched_setaffinity(0, range(os.cpu_count()))) \
        if hasattr(os, "sched_setaffinity") else None  # a --threads 1 parent pins itself
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                         preexec_fn=unpinned)
    if out.returncode:
        raise RuntimeError(f"{workload} {config} child failed:\n{out.stderr[-3000:]}")
    return {int(n): r for n, r in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def run(quick: bool = False) -> str:
    sizes = QUICK_SIZES if quick else SIZES
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="symdiff-bench-") as cache:
        os.environ.setdefault("SYMDIFF_CACHE_DIR", os.path.join(cache, "symdiff"))
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(cache, "numba"))
        for workload in sizes:  # fill the caches: no child times a compile
            _spawn(workload, sizes[workload], CONFIGS["2 threads (default)"], 1)
        found = {(w, c): [] for w in sizes for c in CONFIGS}
        names = list(CONFIGS)
        for r in range(rounds):  # each round starts with another configuration
            for workload in sizes:
                for name in names[r % len(names):] + names[:r % len(names)]:
                    found[workload, name].append(
                        _spawn(workload, sizes[workload], CONFIGS[name], 7))
    header = ["workload", "rows", *CONFIGS, "1 thread ÷ 2 threads (default)",
              "the same, first second", "same bits at 1 and 2 threads"]
    body = []
    for workload, ns in sizes.items():
        for n in ns:
            medians, firsts = ({c: statistics.median(r[n][key] for r in found[workload, c])
                                for c in CONFIGS} for key in ("median", "first"))
            bits = {r[n]["bits"] for c in list(CONFIGS)[:2] for r in found[workload, c]}
            ratio = lambda times: times["1 thread"] / times["2 threads (default)"]  # noqa: E731
            body.append([workload, f"{n:,}", *(format_time(medians[c]) for c in CONFIGS),
                         f"{ratio(medians):.2f}", f"{ratio(firsts):.2f}",
                         "yes" if len(bits) == 1 else f"no: {len(bits)} different"])
    return (f"## threads: value_and_grad at 1 and 2 threads, each configuration in a new "
            f"process (median over {rounds} processes, each the median of 7 measurements "
            f"after a second of calls; \"first second\": the mean per call over that second)"
            f"\n\n" + markdown(header, body))


if __name__ == "__main__":
    workload, rounds, *sizes = sys.argv[1:]
    print(json.dumps(child(workload, [int(n) for n in sizes], int(rounds))))

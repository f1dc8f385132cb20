"""mlp-large: value and gradients of a 784-256-256-10 ReLU MLP, batch 256, random data.

Beside the times: the GFLOP/s each system achieves (2·m·n·k per matmul, forward and backward;
elementwise work not counted), NumPy's own GFLOP/s on a 1024³ matrix product, and the nominal
float64 FMA peak of the threads in use: two 256-bit FMA units per core (AVX2 machines since
Haswell and Zen 2: 16 flops per cycle) at the clock /proc/cpuinfo reports. A virtual machine
reports its base clock, so with turbo the real peak is higher: NumPy's GEMM may pass 100 %.
"""
from __future__ import annotations

import statistics

import numpy as np

from . import mlp
from .check import assert_same
from .env import threads
from .timing import compare, measure, table

SIZES, BATCH = (784, 256, 256, 10), 256
FLOPS_PER_CYCLE = 16  # float64, 2 FMA units × 4 lanes × 2 flops


def clock_hz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except OSError:
        return None
    return max(mhz) * 1e6 if mhz else None


def numpy_gemm_flops(size: int = 1024, repeats: int = 7) -> float:
    """Median flop/s of NumPy's size³ float64 matrix product."""
    a, b = np.random.default_rng(0).standard_normal((2, size, size))
    a @ b
    return 2 * size**3 / statistics.median(measure(lambda: a @ b) for _ in range(repeats))


def run(quick: bool = False) -> str:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, SIZES[0]))
    y = rng.integers(0, SIZES[-1], BATCH)
    systems = mlp.make_systems(SIZES, mlp.init_params(SIZES, rng), [(X, y)])
    reference = systems["symdiff"][0](0)
    for name, (value_and_grad, _, _) in systems.items():
        assert_same(name, value_and_grad(0), reference)
    times = compare({name: (lambda f=vg: f(0)) for name, (vg, _, _) in systems.items()},
                    rounds=5 if quick else 15, budget=0.05 if quick else 0.1)
    work = mlp.flops(SIZES, BATCH)
    rate = {name: f"{work / statistics.median(t) / 1e9:.1f}" for name, t in times.items()}
    gemm, clock = numpy_gemm_flops(), clock_hz()
    peak = clock * FLOPS_PER_CYCLE * threads() if clock else None
    achieved = work / statistics.median(times["symdiff"])
    notes = [f"{work / 1e9:.3f} GFLOP per call (matmuls only). NumPy 1024³ float64 GEMM: "
             f"{gemm / 1e9:.1f} GFLOP/s; symdiff reaches {achieved / gemm:.0%} of it."]
    if peak:
        notes.append(f"Nominal float64 FMA peak of {threads()} thread(s) at "
                     f"{clock / 1e9:.2f} GHz: {peak / 1e9:.1f} GFLOP/s; symdiff reaches "
                     f"{achieved / peak:.0%} of it, NumPy's GEMM {gemm / peak:.0%}.")
    return (f"## mlp-large: value and gradients of a 784-256-256-10 ReLU MLP, batch {BATCH}, "
            f"{threads()} thread(s)\n\n" + table(times, extra={"GFLOP/s": rate})
            + "\n\n" + " ".join(notes))

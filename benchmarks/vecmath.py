"""codegen/vecmath.py: its error against mpmath on many samples, and its speed in the loops
symdiff generates, against the C library's calls and NumPy, in one process.

    python -m benchmarks.vecmath [--samples N] [--n ROWS] [--models]

Loops timed at n rows (10^6 by default), float64, one thread:
- softplus(z) = max(z, 0) + log1p(exp(-|z|)) written into an array;
- the neuron's value and gradient sums as symdiff's fused loop computes them (each row's
  softplus and sigmoid, then four running sums), with vecmath and with libm;
- the same with the transcendental stage split off in blocks of 512 rows (into a stack buffer,
  LLVM vectorises it), the sums still taken row by row in order: the fused loop's bits;
- NumPy's softplus and neuron (np.logaddexp, np.exp).
With --models, also symdiff's own kernels for the neuron (n = 10^6), mlp-small's value and
gradients and a tanh layer, each compiled twice in this process, with vecmath and with libm
(codegen.printer's SYMDIFF_LIBM switch, flipped between the compiles), timed in alternation.
Each loop's LLVM IR is searched for vector types (`<4 x double>`, `<8 x double>`) and its
machine code for ymm/zmm registers. The instruction set is the host CPU's: Numba compiles for
the CPU it runs on (NUMBA_CPU_NAME and NUMBA_CPU_FEATURES override it).
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np
from numba import njit

from symdiff.codegen import vecmath as vm

from .timing import compare, format_time, markdown

BLOCK = 512
JIT = dict(error_model="numpy")


@njit(**JIT)
def softplus_vecmath(z, out):
    for i in range(z.shape[0]):
        out[i] = max(z[i], 0.0) + vm.log1p(vm.exp(-abs(z[i])))


@njit(**JIT)
def softplus_libm(z, out):
    for i in range(z.shape[0]):
        out[i] = max(z[i], 0.0) + math.log1p(math.exp(-abs(z[i])))


def softplus_numpy(z, out):
    np.logaddexp(0.0, z, out=out)


# The neuron's loop as symdiff generates it: z, softplus(z) - y z, and the sigmoid's adjoint.
@njit(**JIT)
def neuron_vecmath(w0, w1, w2, x0, x1, y):
    s = g0 = g1 = g2 = 0.0
    for i in range(x0.shape[0]):
        z = w0 * x0[i] + w1 * x1[i] + w2
        e = vm.exp(-abs(z))
        s += max(z, 0.0) + vm.log1p(e) - y[i] * z
        d = (1.0 if z >= 0.0 else e) / (1.0 + e) - y[i]
        g0 += d * x0[i]
        g1 += d * x1[i]
        g2 += d
    return s, g0, g1, g2


@njit(**JIT)
def neuron_libm(w0, w1, w2, x0, x1, y):
    s = g0 = g1 = g2 = 0.0
    for i in range(x0.shape[0]):
        z = w0 * x0[i] + w1 * x1[i] + w2
        e = math.exp(-abs(z))
        s += max(z, 0.0) + math.log1p(e) - y[i] * z
        d = (1.0 if z >= 0.0 else e) / (1.0 + e) - y[i]
        g0 += d * x0[i]
        g1 += d * x1[i]
        g2 += d
    return s, g0, g1, g2


@njit(**JIT)
def neuron_blocked(w0, w1, w2, x0, x1, y):
    """neuron_vecmath's sums, the transcendental stage per block of rows into buffers."""
    s = g0 = g1 = g2 = 0.0
    n = x0.shape[0]
    zs, es, ls = np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)
    for lo in range(0, n, BLOCK):
        m = min(BLOCK, n - lo)
        for j in range(m):  # vectorised: no sum here
            z = w0 * x0[lo + j] + w1 * x1[lo + j] + w2
            e = vm.exp(-abs(z))
            zs[j], es[j], ls[j] = z, e, vm.log1p(e)
        for j in range(m):  # in order, as the fused loop adds
            z, e, i = zs[j], es[j], lo + j
            s += max(z, 0.0) + ls[j] - y[i] * z
            d = (1.0 if z >= 0.0 else e) / (1.0 + e) - y[i]
            g0 += d * x0[i]
            g1 += d * x1[i]
            g2 += d
    return s, g0, g1, g2


def neuron_numpy(w0, w1, w2, x0, x1, y):
    z = w0 * x0 + w1 * x1 + w2
    d = 1.0 / (1.0 + np.exp(-z)) - y
    return np.sum(np.logaddexp(0.0, z) - y * z), d @ x0, d @ x1, np.sum(d)


def vector_report(dispatcher) -> str:
    """The vector types in a compiled loop's LLVM IR and its ymm/zmm register count."""
    signature = dispatcher.signatures[0]
    ir, asm = dispatcher.inspect_llvm(signature), dispatcher.inspect_asm(signature)
    widths = sorted({int(w) for w in re.findall(r"<(\d+) x double>", ir)})
    types = ", ".join(f"<{w} x double>" for w in widths) or "none (scalar)"
    return f"{types}; ymm {len(re.findall('ymm', asm))}, zmm {len(re.findall('zmm', asm))}"


def accuracy(samples: int) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_vecmath import FUNCTIONS, as_numba_vectorised, sample, ulps
    rows = []
    for name in FUNCTIONS:
        x = sample(name, samples, np.random.default_rng(2026))
        errors = ulps(name, x, as_numba_vectorised(name)(x))
        worst = int(np.argmax(errors))
        with np.errstate(all="ignore"):
            libm = ulps(name, x, FUNCTIONS[name][1](x)).max()
        rows.append([name, f"{len(x):,}", f"{errors.max():.3f} at {x[worst]!r}",
                     f"{np.mean(errors > 0.5):.2%}", f"{libm:.3f}"])
    return markdown(["function", "samples", "max ulp (vecmath)", "share > 0.5 ulp",
                     "max ulp (NumPy, same samples)"], rows)


def speed(n: int) -> str:
    rng = np.random.default_rng(0)
    x0, x1 = rng.standard_normal((2, n))
    y = (rng.random(n) < 0.5).astype(np.float64)
    z, out = 3.0 * rng.standard_normal(n), np.empty(n)
    w = (2.0, -3.0, -3.0)
    reference = neuron_vecmath(*w, x0, x1, y)
    assert neuron_blocked(*w, x0, x1, y) == reference  # same bits: same sums, same order
    np.testing.assert_allclose(neuron_libm(*w, x0, x1, y), reference, rtol=1e-12)
    softplus_vecmath(z, out)
    softplus_libm(z, np.empty(n))
    systems = {"softplus, vecmath": lambda: softplus_vecmath(z, out),
               "softplus, libm": lambda: softplus_libm(z, out),
               "softplus, NumPy": lambda: softplus_numpy(z, out),
               "neuron fused, vecmath": lambda: neuron_vecmath(*w, x0, x1, y),
               "neuron fused, libm": lambda: neuron_libm(*w, x0, x1, y),
               "neuron blocked, vecmath": lambda: neuron_blocked(*w, x0, x1, y),
               "neuron, NumPy": lambda: neuron_numpy(*w, x0, x1, y)}
    times = compare(systems, rounds=21, budget=0.05)
    numba_loops = {"softplus, vecmath": softplus_vecmath, "softplus, libm": softplus_libm,
                   "neuron fused, vecmath": neuron_vecmath, "neuron fused, libm": neuron_libm,
                   "neuron blocked, vecmath": neuron_blocked}
    base = {"softplus": "softplus, NumPy", "neuron": "neuron, NumPy"}
    rows = []
    for name, values in times.items():
        against = base[name.split(",")[0].split(" ")[0]]
        ratio = statistics.median(t / b for t, b in zip(values, times[against]))
        loop = numba_loops.get(name)
        rows.append([name, format_time(statistics.median(values)), f"{ratio:.2f}",
                     vector_report(loop) if loop else "NumPy"])
    return markdown(["loop", f"median over 21 rounds, n = {n:,}", "× NumPy (median)",
                     "vector code"], rows)


def models() -> str:
    import symdiff as sd
    from symdiff.codegen import printer

    from . import mlp, neuron
    from .mlp_small import SIZES, make_batches

    def both(make):
        built = {}
        for libm in (False, True):
            printer.LIBM = libm
            built["libm" if libm else "vecmath"] = make()
        printer.LIBM = False
        return built

    def tanh_layer():
        X, W, b = sd.tensor("X", ("n", 8)), sd.tensor("W", (8, 16)), sd.tensor("b", (16,))
        h = sd.tanh(X @ W + b)
        return sd.compile(sd.mean(sd.sum(h * h, axis=1)), wrt=["W", "b"], wait=True)

    rng = np.random.default_rng(0)
    X, y = make_batches()[0]
    cases = {"neuron, n = 10^6": (neuron.symdiff_model, dict(
                 w0=2.0, w1=-3.0, w2=-3.0, **neuron.make_data(10**6))),
             "mlp-small value and gradients": (lambda: mlp.symdiff_model(SIZES), dict(
                 X=X, y=y, **mlp.init_params(SIZES, np.random.default_rng(1)))),
             "tanh layer, 10^5 x 8 -> 16": (tanh_layer, dict(
                 X=rng.standard_normal((10**5, 8)), W=0.3 * rng.standard_normal((8, 16)),
                 b=np.zeros(16)))}
    rows = []
    for name, (make, arguments) in cases.items():
        calls = {k: (lambda m=m: m.value_and_grad(**arguments)) for k, m in both(make).items()}
        times = compare(calls, rounds=15, budget=0.1)
        ratio = [v / b for v, b in zip(times["vecmath"], times["libm"])]
        rows.append([name, format_time(statistics.median(times["vecmath"])),
                     format_time(statistics.median(times["libm"])),
                     f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})"])
    return markdown(["symdiff kernel", "vecmath", "libm", "vecmath ÷ libm (range)"], rows)


def machine() -> str:
    from numba.core import config
    import llvmlite.binding as llvm
    flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl")
            if f in flags]
    return (f"CPU: {llvm.get_host_cpu_name()} (Numba's target: "
            f"{config.CPU_NAME or 'host'}), SIMD flags: {' '.join(simd)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vecmath")
    parser.add_argument("--samples", type=int, default=200_000, help="per function")
    parser.add_argument("--n", type=int, default=10**6, help="rows in the timed loops")
    parser.add_argument("--models", action="store_true", help="symdiff's kernels both ways")
    args = parser.parse_args(argv)
    print(machine(), "\n", sep="")
    print(speed(args.n), "\n", flush=True)
    if args.models:
        print(models(), "\n", flush=True)
    if args.samples:
        print(accuracy(args.samples))


if __name__ == "__main__":
    main()

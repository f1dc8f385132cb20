"""One process, one first Hessian of a deep map: time it from outside, e.g. `/usr/bin/time -v`.

    python -m benchmarks.deep_hessian STEPS SYSTEM

The model iterates y = cos(y)*w + x STEPS times from y = x (a formula of STEPS lines) and the
process prints its 2x2 Hessian by (w, x) at (0.7, 0.3). SYSTEM is `kernel` or `tape` (symdiff's
tier argument; on "kernel" a Hessian-vector-product Program too large for a compile of seconds
runs on the tape, and the process says which tier ran it) or `jax` (jax.hessian under jit, the
map as a Python loop). Caches are wherever SYMDIFF_CACHE_DIR, NUMBA_CACHE_DIR and
JAX_COMPILATION_CACHE_DIR point: fresh ones time a cold first result.
"""
from __future__ import annotations

import sys

W, X = 0.7, 0.3


def symdiff_hessian(steps: int, tier: str):
    import symdiff as sd
    lines = ["y0 = x"] + [f"y{k + 1} = cos(y{k})*w + x" for k in range(steps)] + [f"y{steps}"]
    f = sd.compile("\n".join(lines), wrt=["w", "x"], tier=tier, wait=True)
    return f.hessian(w=W, x=X), getattr(f, "tiers", f.tier)  # (older versions: tier only)


def jax_hessian(steps: int):
    import jax
    jax.config.update("jax_enable_x64", True)

    def model(p):
        y = p[1]
        for _ in range(steps):
            y = jax.numpy.cos(y) * p[0] + p[1]
        return y
    return jax.jit(jax.hessian(model))(jax.numpy.array([W, X])), "jit"


def main(argv) -> None:
    steps, system = int(argv[0]), argv[1]
    hessian, tiers = jax_hessian(steps) if system == "jax" else symdiff_hessian(steps, system)
    print(f"{steps} steps, {system} ({tiers}):\n{hessian}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Thread counts, the optional systems (JAX, PyTorch) and a description of the machine.

`set_threads` must run before NumPy, Numba, JAX or PyTorch is imported: each reads its thread
count once, when it loads. So one process runs at one thread count. At one thread the process
is also pinned to one CPU: the variables alone leave XLA's CPU runtime free to run independent
operations on the other core (without the pin its matmuls ran at 1.2x the speed of
one-thread NumPy GEMM).
"""
from __future__ import annotations

import os
import subprocess
from importlib import metadata

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "sympy", "jax", "jaxlib", "optax", "torch",
            "scikit-learn")


def set_threads(threads: int) -> None:
    """Fix every library's thread count through the variables each reads at import."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    os.environ["JAX_PLATFORMS"] = "cpu"
    if threads == 1:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def threads() -> int:
    return int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))


def import_jax():
    """jax, in float64."""
    try:
        import jax
    except ImportError:
        raise SystemExit('the benchmarks need JAX: pip install -e ".[bench]"') from None
    jax.config.update("jax_enable_x64", True)
    return jax


def import_torch():
    """torch, on `threads()` threads."""
    try:
        import torch
    except ImportError:
        raise SystemExit('the benchmarks need PyTorch: pip install -e ".[bench]"') from None
    torch.set_num_threads(threads())
    return torch


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def revision() -> str:
    """The symdiff commit measured, marked when the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__)).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/symdiff",
                    ":/codegen")  # (":/": from the repository's top, not this folder)
    except OSError:
        return "unknown revision"
    return f"symdiff {commit or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def describe() -> str:
    """One Markdown line: CPU, cores, thread count, revision, Python and package versions."""
    import platform
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    pinned = " (pinned to one CPU)" if len(_cpus()) == 1 < (os.cpu_count() or 1) else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores, **{threads()} thread(s)**{pinned}; "
            f"{revision()}; "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def _cpus() -> set:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()

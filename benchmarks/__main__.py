"""python -m benchmarks WORKLOAD [--threads 1|2] [--quick]: run workloads, print Markdown.

Libraries read their thread counts when they load, so one process runs at one count. Without
--threads this process runs itself once per count (1, then 2) and passes the output on. With
--threads it fixes the counts, points symdiff and Numba at fresh caches (every timing of a
first call is a real compile), and runs the workloads in turn.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .env import describe, set_threads

WORKLOADS = {"neuron": "neuron", "logreg": "logreg", "mlp-small": "mlp_small",
             "mlp-large": "mlp_large", "swell": "swell", "compile": "compile_time", "hvp": "hvp",
             "edges": "edges", "dask": "cluster", "scalars": "scalars", "optim": "optim",
             "gp": "gp", "attention": "attention", "cnn": "cnn", "threads": "threads",
             "scan": "scan", "blocks": "blocks"}
SELF_THREADED = {"threads"}  # run their configurations in children of their own: once
ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=[*WORKLOADS, "all"])
    parser.add_argument("--threads", type=int, choices=(1, 2),
                        help="run at this thread count (default: 1, then 2, each in a child)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    args = parser.parse_args(argv)
    if args.threads is None:
        for threads in (2,) if args.workload in SELF_THREADED else (1, 2):
            command = [sys.executable, "-m", "benchmarks", args.workload, "--threads",
                       str(threads)] + ["--quick"] * args.quick
            subprocess.run(command, cwd=ROOT, check=True)
        return
    set_threads(args.threads)
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    with tempfile.TemporaryDirectory(prefix="symdiff-bench-") as cache:
        os.environ["SYMDIFF_CACHE_DIR"] = os.path.join(cache, "symdiff")
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")
        print(f"Machine: {describe()}{' (--quick)' * args.quick}\n", flush=True)
        for name in names:
            module = importlib.import_module(f"benchmarks.{WORKLOADS[name]}")
            print(module.run(quick=args.quick), "\n", flush=True)


if __name__ == "__main__":
    main()

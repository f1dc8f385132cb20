"""Full-batch logistic regression over a dataset bigger than a Dask worker's memory.

The data are generated chunk by chunk into .npy files on disk (one file per chunk) and read
back lazily, memory-mapped, as Dask arrays: no process ever holds the whole dataset. A
LocalCluster of two single-threaded worker processes, each with a memory limit below the data's
size, computes the loss and its exact gradient over every row at each step: each chunk's
partial sums through symdiff's compiled kernel on a worker, added in a fixed order, so the
numbers do not depend on which worker did what. SciPy's L-BFGS-B drives the fit over one flat
parameter vector (w and b), printing the loss and gradient norm at each iteration.

    python examples/dask_logistic_regression.py
"""
import sys
import tempfile
import time

import numpy as np

import symdiff as sd

try:
    import dask.array as da
    from distributed import Client, LocalCluster
    from scipy.optimize import minimize
except ImportError:
    sys.exit('This example needs Dask: pip install -e ".[dask]"')


def compile_loss(features, lam):
    """mean binary cross-entropy of X w + b against t, plus lam/2 |w|^2."""
    X, t = sd.tensor("X", ("n", features)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (features,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + lam / 2 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b])


def write_data(directory, n, features, rows, seed):
    """Features and 0/1 labels of a noisy linear model, written chunk by chunk by the
    workers to .npy files; returns them read back lazily (memory-mapped)."""
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((n, features), chunks=(rows, features))
    truth = np.linspace(-1.0, 1.0, features)
    t = (X @ truth + rng.logistic(size=n, chunks=rows) > 0).astype(float)
    da.to_npy_stack(f"{directory}/X", X)
    da.to_npy_stack(f"{directory}/t", t)
    # copy-on-write maps: writable arrays, which kernels take as they are (read-only ones
    # would be copied first), while the files stay as written
    return (da.from_npy_stack(f"{directory}/X", mmap_mode="c"),
            da.from_npy_stack(f"{directory}/t", mmap_mode="c"))


def fit(loss, X, t, lam, tol, verbose):
    """L-BFGS-B over x = (w, b): each evaluation is one pass over every chunk."""
    features = X.shape[1]
    history, last = [], {}

    def value_and_gradient(x):
        value, grads = loss.value_and_grad(X=X, t=t, w=x[:features], b=x[features])
        last["gradient"] = np.append(grads["w"], grads["b"])
        return value, last["gradient"]

    def report(intermediate_result):
        history.append(intermediate_result.fun)
        if verbose:
            print(f"iteration {len(history):3d}  loss {intermediate_result.fun:.12f}  "
                  f"|gradient| {np.linalg.norm(last['gradient']):.2e}  "
                  f"{time.perf_counter() - started:6.1f} s", flush=True)

    started = time.perf_counter()
    result = minimize(value_and_gradient, np.zeros(features + 1), jac=True, method="L-BFGS-B",
                      callback=report, options=dict(gtol=tol, ftol=0.0, maxiter=200))
    return result, history


def main(n=3_000_000, features=30, rows=250_000, lam=1e-4, memory_limit="512MiB", tol=1e-7,
         seed=0, verbose=True):
    """Write the data, start the cluster, fit; return (scipy result, loss per iteration)."""
    loss = compile_loss(features, lam)
    with tempfile.TemporaryDirectory(prefix="symdiff-dask-") as directory, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         memory_limit=memory_limit, dashboard_address=":0") as cluster, \
            Client(cluster):
        X, t = write_data(directory, n, features, rows, seed)
        if verbose:
            print(f"{n:,} rows x {features} features: {X.nbytes / 2**20:,.0f} MiB on disk in "
                  f"{X.numblocks[0]} chunks of {rows:,} rows; 2 workers of {memory_limit} each")
        result, history = fit(loss, X, t, lam, tol, verbose)
    if verbose:
        print(f"{result.message} after {result.nit} iterations: loss {result.fun:.12f}")
    return result, history


if __name__ == "__main__":
    main()

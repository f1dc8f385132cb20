"""dask: full-batch value and gradients on a LocalCluster, against one process and dask-ml.

Three parts, on n = 10⁷ rows of 30 standard-normal features (10⁶ with --quick):
1. Throughput of one full-batch value and gradient of logistic regression (d = 30, L2) and of
   a 30-32-10 ReLU MLP (softmax cross-entropy): a LocalCluster of 2 single-threaded worker
   processes, a cluster of 1, and the single-process kernel on 2 threads over NumPy arrays.
   The data are generated on each cluster and kept in its workers' memory (`persist`), in 10
   chunks (10⁶ rows each at n = 10⁷); the NumPy copy is the same numbers.
2. Per-chunk overhead: the 2-worker call over 10⁶ rows cut into chunks of 5,000 to 500,000
   rows, persisted; the slope of time against the number of chunks is the cost of one chunk
   (its kernel call and partials, inside its worker's task) beyond its rows' work.
3. Against dask-ml's LogisticRegression(solver="lbfgs") on the 2-worker cluster and data: its
   fit's time, then symdiff's full-batch L-BFGS-B (SciPy, from zero) until it reaches the loss
   of dask-ml's answer, both losses measured by the same function (mean log-loss +
   λ/2 |w|², λ = 1/(C n), intercept not penalised).
Runs at 2 threads only (the workers are single-threaded processes either way).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time

import numpy as np

import symdiff as sd

from .check import assert_same
from .env import THREAD_VARIABLES, threads
from .timing import format_time, markdown, measure, table

FEATURES, HIDDEN, CLASSES, CHUNKS, C = 30, 32, 10, 10, 1.0


@contextlib.contextmanager
def single_threaded_children():
    """Worker processes started inside read 1 from every thread variable. They inherit this
    process's (2 at --threads 2), which would give each worker's BLAS and Numba both cores;
    Dask sets them to 1 only where they are unset, and a Nanny's `env` comes after NumPy has
    loaded in the worker."""
    saved = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    os.environ.update({variable: "1" for variable in THREAD_VARIABLES})
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def models(n: int) -> dict:
    """{name: compiled model, its labels' name and dtype}, losses as the module says."""
    X = sd.tensor("X", ("n", FEATURES))
    t, y = sd.tensor("t", ("n",)), sd.tensor("y", ("n",), dtype=int)
    w, b = sd.tensor("w", (FEATURES,)), sd.scalar("b")
    lam = 1.0 / (C * n)
    logreg = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + lam / 2 * sd.sum(w * w)
    W1, b1 = sd.tensor("W1", (FEATURES, HIDDEN)), sd.tensor("b1", (HIDDEN,))
    W2, b2 = sd.tensor("W2", (HIDDEN, CLASSES)), sd.tensor("b2", (CLASSES,))
    mlp = sd.mean(sd.softmax_cross_entropy(sd.relu(X @ W1 + b1) @ W2 + b2, y))
    return {"logistic regression (d = 30)": sd.compile(logreg, wrt=[w, b], wait=True),
            f"MLP {FEATURES}-{HIDDEN}-{CLASSES}": sd.compile(mlp, wrt=[W1, b1, W2, b2], wait=True)}


def parameters(name: str, rng) -> dict:
    if name.startswith("logistic"):
        return {"w": rng.normal(0, 0.1, FEATURES), "b": 0.1}
    return {"W1": rng.normal(0, 0.2, (FEATURES, HIDDEN)), "b1": np.zeros(HIDDEN),
            "W2": rng.normal(0, 0.2, (HIDDEN, CLASSES)), "b2": np.zeros(CLASSES)}


def make_data(client, n: int, rows: int):
    """X, 0/1 labels t and class labels y, generated and persisted on `client`'s workers."""
    import dask.array as da
    rng = da.random.default_rng(0)
    X = rng.standard_normal((n, FEATURES), chunks=(rows, FEATURES))
    z = X @ np.linspace(-1.0, 1.0, FEATURES)
    t = (z + rng.logistic(size=n, chunks=rows) > 0).astype(float)
    y = da.clip(da.floor(z + 5.0), 0, CLASSES - 1).astype(np.int64)
    return client.persist([X, t, y])


def gathered(client, array) -> np.ndarray:
    """A persisted Dask array as one NumPy array, its chunks gathered here in order. Not
    `client.compute(array)`: that concatenates the chunks on one worker, which then holds a
    copy of every chunk, and Dask sends every later task to it (it places a task where it
    can start soonest, counting the time to fetch its inputs): measured, the 2-worker
    gradient then ran on one worker."""
    futures = {future.key: future for future in client.futures_of(array)}
    return np.concatenate(client.gather([futures[d.key] for d in array.to_delayed().ravel()]))


def throughput(clusters: dict, local: dict, n: int, rounds: int) -> str:
    """Part 1: a table per model, symdiff on 2 workers as the baseline."""
    parts = []
    for name, model in models(n).items():
        params = parameters(name, np.random.default_rng(1))
        labels = "t" if name.startswith("logistic") else "y"
        systems = {"symdiff, 1 process, 2 threads":
                   lambda: model.value_and_grad(X=local["X"], **{labels: local[labels]},
                                                **params)}
        for title, (client, data) in clusters.items():
            systems[title] = (lambda c=client, d=data: _on(c, lambda: model.value_and_grad(
                X=d["X"], **{labels: d[labels]}, **params)))
        reference = systems["symdiff, 1 process, 2 threads"]()
        for system, call in systems.items():  # also the warm-up: kernels load on the workers
            assert_same(system, call(), reference, rtol=1e-12)
        times = _rounds(systems, rounds)
        rate = {s: f"{n / statistics.median(t) / 1e6:.1f}" for s, t in times.items()}
        parts.append(f"### {name}, n = {n:,}\n\n"
                     + table(times, extra={"M rows/s": rate}, baseline="2 workers"))
    return "\n\n".join(parts)


def _rounds(systems: dict, rounds: int) -> dict[str, list[float]]:
    """{name: [seconds of one call per round]}, the order rotated from round to round (a call
    here takes seconds: one per round, none to calibrate a repeat count)."""
    names, times = list(systems), {name: [] for name in systems}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(measure(systems[name]))
    return times


def _on(client, call):
    """call() with `client` as Dask's current scheduler (several clusters are open)."""
    with client.as_current():
        return call()


def overhead(client, rounds: int) -> str:
    """Part 2: time of one 2-worker call against the number of chunks, at 10⁶ rows."""
    import dask.array as da
    n = 1_000_000
    model = next(iter(models(n).values()))
    params = parameters("logistic", np.random.default_rng(1))
    rows, body = [], []
    for size in (500_000, 100_000, 25_000, 5_000):
        rng = da.random.default_rng(2)  # made on the workers: writable, never copied
        Xd, td = client.persist([rng.standard_normal((n, FEATURES), chunks=(size, FEATURES)),
                                 (rng.random(n, chunks=size) < 0.5).astype(float)])
        call = lambda: _on(client, lambda: model.value_and_grad(X=Xd, t=td, **params))
        call()
        seconds = statistics.median(measure(call) for _ in range(rounds))
        rows.append((n // size, seconds))
        body.append([f"{size:,}", n // size, format_time(seconds),
                     f"{n / seconds / 1e6:.1f}"])
    slope = np.polyfit([k for k, _ in rows], [s for _, s in rows], 1)[0]
    return (markdown(["rows per chunk", "chunks", "time per call", "M rows/s"], body)
            + f"\n\nPer-chunk overhead (least-squares slope of time against chunks): "
              f"{format_time(slope)} per chunk.")


def against_dask_ml(client, data: dict, n: int) -> str:
    """Part 3: dask-ml's lbfgs fit, then symdiff's L-BFGS-B to the loss dask-ml reached."""
    from scipy.optimize import minimize
    try:
        from dask_ml.linear_model import LogisticRegression
    except ImportError as e:
        return f"dask-ml is not installed ({e}): pip install -e \".[bench]\""
    model = next(iter(models(n).values()))
    X, t = data["X"], data["t"]

    def loss(w, b):
        return _on(client, lambda: model.value_and_grad(X=X, t=t, w=w, b=b))

    start = time.perf_counter()
    with client.as_current():
        fitted = LogisticRegression(solver="lbfgs", C=C).fit(X, t)
    ml_time = time.perf_counter() - start
    target = loss(np.asarray(fitted.coef_).ravel(), float(np.ravel(fitted.intercept_)[0]))[0]
    reached, calls = [], []

    def value_and_gradient(x):
        value, grads = loss(x[:FEATURES], x[FEATURES])
        calls.append(value)
        if value <= target and not reached:
            reached.append(time.perf_counter() - start)
        return value, np.append(grads["w"], grads["b"])

    start = time.perf_counter()
    result = minimize(value_and_gradient, np.zeros(FEATURES + 1), jac=True, method="L-BFGS-B",
                      options=dict(gtol=1e-10, ftol=0.0, maxiter=500))
    sd_time = reached[0] if reached else float("nan")
    body = [["dask-ml LogisticRegression(solver=\"lbfgs\")", format_time(ml_time),
             f"{target:.12f}", "", ""],
            ["symdiff + SciPy L-BFGS-B", format_time(sd_time), f"{result.fun:.12f}",
             f"{len(calls)} ({calls.index(next(v for v in calls if v <= target)) + 1} to reach "
             f"dask-ml's loss)" if reached else f"{len(calls)} (never reached it)",
             f"{ml_time / sd_time:.1f}×" if reached else ""]]
    return markdown(["system", "time to dask-ml's loss", "final loss", "loss evaluations",
                     "speed-up"], body)


def _threads() -> tuple:
    """(Numba's threads, the BLAS's threads) in this process."""
    import numba
    from threadpoolctl import threadpool_info
    blas = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    return numba.get_num_threads(), blas


def run(quick: bool = False) -> str:
    if threads() != 2:
        return "## dask: measured at 2 threads only (run with --threads 2)"
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit('the dask workload needs Dask: pip install -e ".[bench]"') from None
    n, rounds = (1_000_000, 3) if quick else (10_000_000, 9)
    clusters, opened = {}, []
    for workers in (2, 1):
        with single_threaded_children():  # while the workers start and read them
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", memory_limit=None)
            client = Client(cluster, set_as_default=False)
            client.wait_for_workers(workers)
            threads_seen = set(client.run(_threads).values())
        if threads_seen != {(1, 1)}:
            raise RuntimeError(f"workers are not single-threaded: (Numba, BLAS) {threads_seen}")
        opened += [client, cluster]
        X, t, y = make_data(client, n, n // CHUNKS)
        clusters[f"{workers} worker{'s' * (workers > 1)}"] = (client, {"X": X, "t": t, "y": y})
    client2, data2 = clusters["2 workers"]
    local = {k: np.require(gathered(client2, data2[k]), requirements=["C", "W"])  # as a NumPy
             for k in "Xty"}                                                  # user has them
    try:
        sections = [f"## dask: full-batch value and gradients on a LocalCluster, "
                    f"{CHUNKS} chunks of {n // CHUNKS:,} rows (medians of {rounds} rounds)",
                    throughput(clusters, local, n, rounds),
                    "### Per-chunk overhead (2 workers, logistic regression, 10⁶ rows)",
                    overhead(client2, rounds),
                    f"### Time to the same loss as dask-ml (2 workers, n = {n:,})",
                    against_dask_ml(client2, data2, n)]
    finally:
        for thing in opened:
            thing.close()
    return "\n\n".join(sections)

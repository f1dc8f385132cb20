"""optim: training steps with optimizers, private clipping and SciPy, side by side.

1. Adam on `logreg` (batch 64, 1000 steps per measurement) and on `mlp-small` (batch 128, one
   step, cycling through an epoch): symdiff's `f.step(sd.optim.Adam(lr), ...)`, one kernel
   call per step; a hand-written fused Numba Adam step; a jitted JAX step with optax.adam;
   PyTorch eager with torch.optim.Adam. Before timing, every system's parameters after its
   steps must equal symdiff's (rtol 1e-7).
2. DP-SGD on mlp-small: the per-example clipped step (C = 1, noise multiplier 1.1) against the
   plain SGD step: time, and the peak memory of 20 steps above the process's resident memory
   before them (VmHWM, reset through /proc/self/clear_refs; Linux), with tracemalloc's peak of
   the Python-side allocations beside it. One (128, 64, 128) float64 array is 8 MiB.
   glibc's mmap threshold is fixed at 64 KiB for this, so that freed arrays leave RSS; a
   control row allocates one (n, 64, 128) array per plain step, to show the measure sees it.
3. SciPy: L-BFGS-B on logreg, full batch (569 samples): the iterates with symdiff's objective
   against a NumPy objective's, and the cost of one `objective.fun(x)` call against the bare
   `value_and_grad` call it wraps (the overhead is their difference).
"""
from __future__ import annotations

import ctypes
import itertools
import statistics
import tracemalloc

import numpy as np

import symdiff as sd

from . import logreg, mlp, mlp_small, optim_hand
from .check import assert_same
from .env import import_jax, import_torch, threads
from .timing import compare, format_time, ratios, table

LR = 1e-3


def _optax():
    import_jax()
    try:
        import optax
    except ImportError:
        raise SystemExit('the optim workload needs optax: pip install -e ".[bench]"') from None
    return optax


def logreg_systems(Xs, ts, w0) -> dict:
    """{name: train() -> final (w, b)}, each run of len(Xs) Adam steps from w0, b = 0."""
    jax, torch, optax = import_jax(), import_torch(), _optax()
    model = logreg.symdiff_model()

    def sd_train():
        w, b, opt = w0.copy(), np.zeros(()), sd.optim.Adam(LR)
        for X, t in zip(Xs, ts):
            model.step(opt, X=X, t=t, w=w, b=b)
        return w, float(b)

    def hand_train():
        w, b, gw = w0.copy(), np.zeros(1), np.empty_like(w0)
        g, m, v = np.empty(len(w0) + 1), np.zeros(len(w0) + 1), np.zeros(len(w0) + 1)
        for k, (X, t) in enumerate(zip(Xs, ts), 1):
            optim_hand.logreg_adam_step(X, t, w, b, gw, g, m, v, LR, k)
        return w, float(b[0])

    jnp = jax.numpy
    adam = optax.adam(LR)

    def loss(params, X, t):
        z = X @ params[0] + params[1]
        return jnp.mean(jax.nn.softplus(z) - t * z) + logreg.LAM * 0.5 * jnp.sum(params[0] ** 2)

    @jax.jit
    def jax_step(params, state, X, t):
        value, grads = jax.value_and_grad(loss)(params, X, t)
        updates, state = adam.update(grads, state)
        return value, optax.apply_updates(params, updates), state

    batches = [(jnp.asarray(X), jnp.asarray(t)) for X, t in zip(Xs, ts)]

    def jax_train():
        params = (jnp.asarray(w0), jnp.asarray(0.0))
        state = adam.init(params)
        for X, t in batches:
            _, params, state = jax_step(params, state, X, t)
        return jax.block_until_ready(params)

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch_batches = list(zip(torch.from_numpy(Xs), torch.from_numpy(ts)))

    def torch_train():
        w = torch.tensor(w0, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=LR)
        for X, t in torch_batches:
            opt.zero_grad()
            (bce(X @ w + b, t) + logreg.LAM * 0.5 * (w * w).sum()).backward()
            opt.step()
        return w, b

    return {"symdiff": sd_train, "hand-written Numba": hand_train, "JAX + optax": jax_train,
            "PyTorch eager": torch_train}


def mlp_systems(params0: dict, batches: list) -> dict:
    """{name: (step(k) on batch k, params() in NumPy)}, each on its own copy."""
    jax, torch, optax = import_jax(), import_torch(), _optax()
    model = mlp.symdiff_model(mlp_small.SIZES)
    names = mlp.names(mlp_small.SIZES)

    def copies():
        return {k: v.copy() for k, v in params0.items()}

    ours, opt = copies(), sd.optim.Adam(LR)
    hand, hand_state, count = copies(), [np.zeros_like(params0[k]) for k in names
                                         for _ in "mv"], itertools.count(1)

    def hand_step(k):
        X, y = batches[k]
        return optim_hand.mlp_adam_step(X, y, hand["W1"], hand["b1"], hand["W2"], hand["b2"],
                                        *hand_state, LR, next(count))

    jnp, adam = jax.numpy, optax.adam(LR)

    def loss(p, X, y):
        z = jax.nn.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

    @jax.jit
    def jax_step(p, state, X, y):
        value, grads = jax.value_and_grad(loss)(p, X, y)
        updates, state = adam.update(grads, state)
        return value, optax.apply_updates(p, updates), state

    data = [(jnp.asarray(X), jnp.asarray(y)) for X, y in batches]
    jstate = {"p": {k: jnp.asarray(v) for k, v in params0.items()}}
    jstate["opt"] = adam.init(jstate["p"])

    def jax_one(k):
        value, jstate["p"], jstate["opt"] = jax.block_until_ready(
            jax_step(jstate["p"], jstate["opt"], *data[k]))
        return value

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
    topt = torch.optim.Adam(list(tp.values()), lr=LR)
    tdata = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in batches]

    def torch_one(k):
        X, y = tdata[k]
        topt.zero_grad()
        z = torch.relu(X @ tp["W1"] + tp["b1"]) @ tp["W2"] + tp["b2"]
        loss = torch.nn.functional.cross_entropy(z, y)
        loss.backward()
        topt.step()
        return loss

    return {"symdiff": (lambda k: model.step(opt, X=batches[k][0], y=batches[k][1], **ours),
                        lambda: [ours[k] for k in names]),
            "hand-written Numba": (hand_step, lambda: [hand[k] for k in names]),
            "JAX + optax": (jax_one, lambda: [jstate["p"][k] for k in names]),
            "PyTorch eager": (torch_one, lambda: [tp[k] for k in names])}


def _cycling(step, n):
    batch = itertools.cycle(range(n))
    return lambda: step(next(batch))


def adam_tables(quick: bool) -> str:
    Xs, ts, w0 = logreg.make_batches()
    systems = logreg_systems(Xs, ts, w0)
    reference = systems["symdiff"]()
    for name, train in systems.items():
        assert_same(name, train(), reference, what=f"(w, b) after {len(Xs)} Adam steps")
    times = compare(systems, rounds=5 if quick else 15, budget=0.0)
    text = (f"## optim: Adam on logreg, {len(Xs)} steps (batch {logreg.BATCH}), "
            f"{threads()} thread(s)\n\n" + table(times, per=len(Xs), label="time per step"))
    batches = mlp_small.make_batches()
    params0 = mlp.init_params(mlp_small.SIZES, np.random.default_rng(1))
    systems = mlp_systems(params0, batches)
    for name, (step, _) in systems.items():
        for k in range(len(batches)):
            step(k)
    reference = systems["symdiff"][1]()
    for name, (_, params) in systems.items():
        assert_same(name, params(), reference, what=f"the parameters after {len(batches)} "
                                                    f"Adam steps")
    times = compare({name: _cycling(step, len(batches)) for name, (step, _) in systems.items()},
                    rounds=5 if quick else 15, budget=0.02 if quick else 0.05)
    return text + (f"\n\n## optim: Adam on mlp-small, one step (batch {mlp_small.BATCH}), "
                   f"{threads()} thread(s)\n\n" + table(times, label="time per step"))


def _peak_rss_growth(step, steps: int = 20) -> tuple[int, int]:
    """(peak resident bytes above the start over `steps` calls, tracemalloc's peak bytes).

    glibc raises its mmap threshold after a large block is freed and then keeps such blocks
    resident for reuse, so a peak would hide in memory already resident; a fixed threshold
    (M_MMAP_THRESHOLD, 64 KiB) maps every block from 64 KiB up afresh and unmaps it when freed.
    tracemalloc sees only Python's and NumPy's allocations, not the kernel's (Numba's own)."""
    ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # -3: M_MMAP_THRESHOLD

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise OSError(f"no {field} in /proc/self/status")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    start = status("VmRSS:")
    tracemalloc.start()
    for _ in range(steps):
        step()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return status("VmHWM:") - start, traced


def private_table(quick: bool) -> str:
    batches = mlp_small.make_batches()
    params0 = mlp.init_params(mlp_small.SIZES, np.random.default_rng(1))
    model = mlp.symdiff_model(mlp_small.SIZES)
    plain_params = {k: v.copy() for k, v in params0.items()}
    private_params = {k: v.copy() for k, v in params0.items()}
    plain = sd.optim.SGD(0.1)
    private = sd.optim.SGD(0.1, per_example_clip=1.0, noise_multiplier=1.1,
                           rng=np.random.default_rng(0))
    control_params = {k: v.copy() for k, v in params0.items()}

    def control(k):  # the plain step, plus one array of the per-example weight gradients' size
        np.ones((len(batches[k][1]),) + params0["W1"].shape)
        return model.step(plain, X=batches[k][0], y=batches[k][1], **control_params)

    systems = {"symdiff": _cycling(lambda k: model.step(plain, X=batches[k][0],
                                                        y=batches[k][1], **plain_params),
                                   len(batches)),
               "control: plain step + one (n, 64, 128) array": _cycling(control, len(batches)),
               "symdiff DP-SGD": _cycling(lambda k: model.step(private, X=batches[k][0],
                                                               y=batches[k][1],
                                                               **private_params),
                                          len(batches))}
    for step in systems.values():
        step()
    memory = {name: _peak_rss_growth(step) for name, step in systems.items()}
    times = compare(systems, rounds=5 if quick else 15, budget=0.02 if quick else 0.05)
    mib = 2.0 ** 20
    extra = {"peak RSS growth, 20 steps": {n: f"{m[0] / mib:.2f} MiB" for n, m in memory.items()},
             "tracemalloc peak": {n: f"{m[1] / mib:.3f} MiB" for n, m in memory.items()}}
    return (f"## optim: DP-SGD step (per-example clipping, noise) against the plain SGD step, "
            f"mlp-small (batch {mlp_small.BATCH}), {threads()} thread(s)\n\n"
            + table(times, label="time per step", extra=extra)
            + f"\n\nOne ({mlp_small.BATCH}, 64, 128) float64 array: "
              f"{mlp_small.BATCH * 64 * 128 * 8 / mib:.0f} MiB.")


def scipy_table(quick: bool) -> str:
    import scipy.optimize
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
    X, t = load_breast_cancer(return_X_y=True)
    X, t = StandardScaler().fit_transform(X), t.astype(float)
    model = logreg.symdiff_model()
    objective = sd.scipy_objective(model, X=X, t=t)
    A, lam = np.hstack([X, np.ones((len(X), 1))]), np.r_[np.full(X.shape[1], logreg.LAM), 0]

    def numpy_fun(x):
        z = A @ x
        return (np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * np.sum(lam * x * x),
                A.T @ (1 / (1 + np.exp(-z)) - t) / len(t) + lam * x)

    paths = []
    for fun in (objective.fun, numpy_fun):
        seen = [np.zeros(31)]
        scipy.optimize.minimize(fun, seen[0], jac=True, method="L-BFGS-B",
                                callback=lambda xk, *_: seen.append(np.copy(xk)))
        paths.append(np.array(seen))
    assert paths[0].shape == paths[1].shape, "the two runs took different numbers of steps"
    gap = float(np.max(np.abs(paths[0] - paths[1])))
    assert gap <= 1e-10, f"iterates differ by {gap}"
    x = paths[0][-1]
    w, b = x[:-1].copy(), float(x[-1])
    systems = {"symdiff": lambda: model.value_and_grad(X=X, t=t, w=w, b=b),
               "objective.fun(x)": lambda: objective.fun(x)}
    times = compare(systems, rounds=5 if quick else 15, budget=0.02 if quick else 0.05)
    overhead = [o - s for o, s in zip(times["objective.fun(x)"], times["symdiff"])]
    return (f"## optim: SciPy L-BFGS-B on logreg, full batch ({len(X)} samples), "
            f"{threads()} thread(s)\n\n"
            f"{len(paths[0]) - 1} iterations; largest difference between the iterates with "
            f"symdiff's objective and with a NumPy objective: {gap:.1e}.\n\n"
            + table(times, label="time per call")
            + f"\n\nOverhead of `objective.fun` over the bare call: median "
              f"{format_time(statistics.median(overhead))} (range "
              f"{format_time(min(overhead))} to {format_time(max(overhead))}; "
              f"ratio {statistics.median(ratios(times, 'objective.fun(x)')):.2f}).")


def run(quick: bool = False) -> str:
    return "\n\n".join([adam_tables(quick), private_table(quick), scipy_table(quick)])



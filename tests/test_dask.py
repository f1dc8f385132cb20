"""Dask arrays as batch inputs: on the threaded scheduler and on a real two-process cluster."""
import os
import signal
import sys
import threading
import time

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster, futures_of, get_task_stream, wait

import symdiff as sd
from symdiff.codegen import chunked as chunked_module
from conftest import LOGISTIC, mlp_arguments
from test_pickling import same_bits

D, LAM = 4, 1e-3


@pytest.fixture(scope="module")
def logreg():
    X, t = sd.tensor("X", ("n", D)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + LAM / 2 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n = 3000
    X = rng.normal(size=(n, D))
    t = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=n) > 0).astype(float)
    return dict(X=X, t=t, w=rng.normal(size=D) * 0.3, b=0.2)


def chunked(arguments, rows=500, names=("X", "t", "y")):
    return {k: da.from_array(v, chunks=(rows,) + np.shape(v)[1:]) if k in names else v
            for k, v in arguments.items()}


def numpy_logreg(X, t, w, b):
    """The loss and its gradient written out by hand: an oracle independent of symdiff."""
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    loss = np.mean(np.logaddexp(0.0, z) - t * z) + LAM / 2 * w @ w
    return loss, {"w": X.T @ (p - t) / len(t) + LAM * w, "b": np.mean(p - t)}


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def reference(logreg, data):
    """The result on the threaded scheduler, to compare every other way of running with."""
    with dask.config.set(scheduler="threads"):
        return logreg.value_and_grad(**chunked(data))


def test_threaded_scheduler_agrees_with_the_local_kernel_and_the_hand_gradient(
        logreg, data, reference):
    value, grads = reference
    local_value, local_grads = logreg.value_and_grad(**data)
    assert isinstance(value, float) and isinstance(grads["b"], float)
    assert value == pytest.approx(local_value, rel=1e-12, abs=0)
    for w in ("w", "b"):
        np.testing.assert_allclose(grads[w], local_grads[w], rtol=1e-12, atol=0)
    hand_value, hand_grads = numpy_logreg(**data)
    assert value == pytest.approx(hand_value, rel=1e-12)
    for w in ("w", "b"):
        np.testing.assert_allclose(grads[w], hand_grads[w], rtol=1e-10)
    with dask.config.set(scheduler="threads"):
        assert logreg(**chunked(data)) == value
        assert same_bits(logreg.grad(**chunked(data)), grads)


def test_bits_depend_on_the_chunking_alone(logreg, data, reference):
    for scheduler, workers in [("sync", 1), ("threads", 2), ("threads", 4)]:
        with dask.config.set(scheduler=scheduler, num_workers=workers):
            assert same_bits(logreg.value_and_grad(**chunked(data)), reference)
    mixed = {**chunked(data), "t": da.from_array(data["t"], chunks=700)}  # rechunked like X
    with dask.config.set(scheduler="threads"):
        assert same_bits(logreg.value_and_grad(**mixed), reference)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 1,024 rows for models compiled from here on: (n,) float64 intermediates of
    8 KiB (chunks of 3,000 rows then run as blocks 0:1024, 1024:2048, 2048:3000)."""
    from symdiff.codegen import blocks as module
    monkeypatch.setattr(module, "BLOCK_BYTES", 8 * 1024)
    return module


def test_chunks_longer_than_a_block_run_in_blocks_and_agree(small_blocks, data, monkeypatch):
    X, t = sd.tensor("X", ("n", D)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + LAM / 2 * sd.sum(w * w)
    blocked = sd.compile(loss, wrt=[w, b])
    hand_value, hand_grads = numpy_logreg(**data)
    for rows in (len(data["X"]), 1500):
        with dask.config.set(scheduler="sync"):
            value, grads = blocked.value_and_grad(**chunked(data, rows=rows))
        assert small_blocks.plan(blocked).rows == 1024
        with dask.config.set(scheduler="threads", num_workers=4):
            assert same_bits(blocked.value_and_grad(**chunked(data, rows=rows)), (value, grads))
        small_blocks.plan(blocked).wait_drivers()  # then each chunk in one driver call
        with monkeypatch.context() as patch, \
                dask.config.set(scheduler="threads", num_workers=4):
            patch.setattr(chunked_module, "run", None)  # a block from Python would raise
            assert same_bits(blocked.value_and_grad(**chunked(data, rows=rows)), (value, grads))
        assert value == pytest.approx(hand_value, rel=1e-12)
        for w in ("w", "b"):
            np.testing.assert_allclose(grads[w], hand_grads[w], rtol=1e-10)


def test_a_block_keeps_every_intermediate_under_the_bound(mlp):
    from symdiff.codegen.blocks import BLOCK_BYTES, block_rows, plan
    split = plan(mlp).split
    rows = block_rows(split.grad)
    widths = [np.prod(s.node.shape[1:]) * 8 for s in split.grad.stmts
              if s.node.shape and s.node.shape[0] == "n"]
    assert max(widths) > 8 and rows * max(widths) <= BLOCK_BYTES < 2 * rows * max(widths)


def test_mlp_over_chunks_agrees_with_the_local_kernel(mlp):
    arguments = mlp_arguments(1000, seed=5)
    with dask.config.set(scheduler="threads"):
        value, grads = mlp.value_and_grad(**chunked(arguments, rows=300))
    local_value, local_grads = mlp.value_and_grad(**arguments)
    assert value == pytest.approx(local_value, rel=1e-12, abs=0)
    for w in grads:
        np.testing.assert_allclose(grads[w], local_grads[w], rtol=1e-12, atol=1e-15)


def test_per_example_values_and_gradients_are_dask_arrays(logistic_data):
    f = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], reduce=None)
    lazy = chunked(logistic_data, rows=10, names=("x0", "x1", "y"))
    with dask.config.set(scheduler="threads"):
        values, grads = f.value_and_grad(**lazy)
        assert isinstance(values, da.Array) and values.chunks == ((10, 10, 10, 7),)
        local_values, local_grads = f.value_and_grad(**logistic_data)
        assert same_bits(values.compute(), local_values)
        assert same_bits({w: g.compute() for w, g in grads.items()}, local_grads)
        assert same_bits(f(**lazy).compute(), f(**logistic_data))


def test_errors_name_what_is_wrong(logreg, data):
    lazy = chunked(data)
    with pytest.raises(sd.ArgumentError, match="w is a Dask array"):
        logreg.value_and_grad(**{**lazy, "w": da.from_array(data["w"])})
    with pytest.raises(sd.ArgumentError, match="different lengths"):
        logreg.value_and_grad(**{**lazy, "t": lazy["t"][:-1]})
    with pytest.raises(sd.ArgumentError, match="missing argument b"):
        logreg.value_and_grad(**{k: v for k, v in lazy.items() if k != "b"})
    with pytest.raises(sd.ArgumentError, match="X is a Dask array"):
        logreg.jvp({"w": np.ones(D)}, **lazy)
    x, c = sd.tensor("x", ("n",)), sd.scalar("c")
    centred = sd.compile(sd.mean((c * x - sd.mean(c * x)) ** 2), wrt=[c])
    with pytest.raises(sd.DifferentiationError, match="batch size 'n' inside a sample"):
        centred.value_and_grad(x=da.ones(10, chunks=5), c=1.0)


def test_a_nan_in_a_chunk_names_the_chunk_as_a_local_call_would(data):
    f = sd.compile("log(1 + exp(-y*(w0*x0 + w1*x1 + b)))", wrt=["w0", "w1", "b"],
                   batch=["x0", "x1", "y"], check_finite=True)
    arguments = dict(x0=data["X"][:, 0].copy(), x1=data["X"][:, 1], y=2 * data["t"] - 1,
                     w0=0.1, w1=0.2, b=0.0)
    arguments["x0"][1234] = np.nan
    with pytest.raises(sd.NonFiniteError) as local:
        f.value_and_grad(**arguments)
    with dask.config.set(scheduler="threads"), pytest.raises(sd.NonFiniteError) as lazy:
        f.value_and_grad(**chunked(arguments, names=("x0", "x1", "y")))
    assert str(lazy.value).startswith(str(local.value).split(" (check_finite")[0])
    assert "chunk 2, rows 1000:1500" in str(lazy.value)


def test_a_nan_in_a_block_names_the_block(small_blocks, data):
    f = sd.compile("log(1 + exp(-y*(w*x + b)))", wrt=["w", "b"], batch=["x", "y"],
                   check_finite=True)
    x = data["X"][:, 0].copy()
    arguments = dict(x=x, y=2 * data["t"] - 1, w=0.1, b=0.0)
    with dask.config.set(scheduler="threads"):
        f.value_and_grad(**chunked(arguments, rows=3000, names=("x", "y")))
    # a chunk in one driver call: its sum is non-finite, and its blocks then run from
    # Python, one by one, to find the one that is
    small_blocks.plan(f).wait_drivers()
    assert small_blocks.plan(f).drivers[small_blocks.plan(f).kernels[True]]
    x[1234] = np.nan
    lazy = chunked(arguments, rows=3000, names=("x", "y"))
    with dask.config.set(scheduler="threads"), pytest.raises(sd.NonFiniteError) as block:
        f.value_and_grad(**lazy)
    assert "[in chunk 0, rows 1024:2048]" in str(block.value)


def _drivers_ready() -> int:
    """On a worker: wait for the blocks' drivers its models compile; how many are ready."""
    from symdiff.codegen import pickling
    plans = [model._blocks for model in pickling._rebuilt.values()
             if hasattr(model.__dict__.get("_blocks"), "wait_drivers")]
    for plan in plans:
        plan.wait_drivers()
    return sum(driver is not None for plan in plans for driver in plan.drivers.values())


def test_a_cluster_of_processes_gives_the_same_bits(client, logreg, data, reference):
    with get_task_stream(client) as tasks:  # the active Client runs them: no code change
        assert same_bits(logreg.value_and_grad(**chunked(data)), reference)
        assert logreg(**chunked(data)) == reference[0]
    ran = [t for t in tasks.data if str(t["key"]).startswith("_partial")]
    assert len(ran) == 2 * 6 and {t["worker"] for t in ran} <= set(client.run(os.getpid))
    assert all(client.run(_drivers_ready).values())  # then each chunk in one driver call
    assert same_bits(logreg.value_and_grad(**chunked(data)), reference)
    assert logreg(**chunked(data)) == reference[0]


def persisted(client, arguments, rows=500, names=("X", "t", "y")):
    """`chunked(arguments)`, its Dask arrays computed and kept on the workers."""
    lazy = chunked(arguments, rows, names)
    keys = [k for k in lazy if k in names]
    return {**lazy, **dict(zip(keys, client.persist([lazy[k] for k in keys])))}


def test_persisted_chunks_run_as_a_task_per_worker_with_the_same_bits(client, logreg, data,
                                                                      reference):
    kept = persisted(client, data)
    wait([kept["X"], kept["t"]])
    holders = {w for ws in client.who_has(futures_of(kept["X"])).values() for w in ws}
    with get_task_stream(client) as tasks:
        assert same_bits(logreg.value_and_grad(**kept), reference)
        assert logreg(**kept) == reference[0]
    ran = [t for t in tasks.data if str(t["key"]).startswith("_partial")]
    # per call, a worker's task over the chunks it holds whole, and one over those whose t
    # it fetches: at most 2 per worker, where a task per chunk made 6
    assert {str(t["key"]).split("-")[0] for t in ran} == {"_partials"}
    assert 2 * len(holders) <= len(ran) <= 2 * 2 * len(holders)
    assert {t["worker"] for t in ran} == holders  # each where its chunks are


def _fails_in_block_1(block, block_info=None):
    if block_info[0]["chunk-location"][0] == 1:
        raise ZeroDivisionError("block 1 cannot be read")
    return block


def test_a_persisted_chunk_that_failed_raises_its_own_error(client, logreg, data):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # it runs on the workers
    lazy = chunked(data)
    X, t = client.persist([lazy["X"].map_blocks(_fails_in_block_1, dtype=float), lazy["t"]])
    wait([X, t])
    with pytest.raises(ZeroDivisionError, match="block 1 cannot be read"):
        logreg.value_and_grad(**{**data, "X": X, "t": t})


def test_a_bad_label_fails_its_chunk_as_a_local_call_and_the_cluster_goes_on(client, mlp):
    arguments = mlp_arguments(900, seed=2)
    arguments["y"][650] = 3  # classes are 0, 1, 2
    with pytest.raises(sd.DomainError, match=r"y holds the label 3, outside \[0, 3\)"):
        mlp.value_and_grad(**arguments)
    with pytest.raises(sd.DomainError, match=r"label 3, outside \[0, 3\) \[in chunk 2, rows "
                                             r"600:900\]"):
        mlp.value_and_grad(**chunked(arguments, rows=300))
    with pytest.raises(sd.DomainError, match=r"label 3, outside \[0, 3\) \[in chunk 2, rows "
                                             r"600:900\]"):
        mlp.value_and_grad(**persisted(client, arguments, rows=300))
    arguments["y"][650] = 2
    value, _ = mlp.value_and_grad(**chunked(arguments, rows=300))
    assert value == pytest.approx(mlp.value_and_grad(**arguments)[0], rel=1e-12)


def _slow(block):
    time.sleep(0.15)
    return block


def _kernels_from_cache():
    from symdiff.codegen import pickling
    return [model._blocks.kernels[True].from_cache for model in pickling._rebuilt.values()
            if model.__dict__.get("_blocks") and True in model._blocks.kernels]


def test_a_worker_killed_mid_gradient_changes_no_bit(client, logreg, data, reference):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # _slow runs on the workers
    lazy = chunked(data)
    lazy["X"] = lazy["X"].map_blocks(_slow, dtype=float)
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=logreg.value_and_grad(**lazy)))
    worker.start()
    while not any(client.processing().values()):
        time.sleep(0.01)
    time.sleep(0.2)
    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    worker.join(timeout=120)
    assert same_bits(result["out"], reference)
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed one
    assert same_bits(logreg.value_and_grad(**lazy), reference)
    # the new worker loads from the cache; the survivor compiled its own if the cache was empty
    loaded = client.run(_kernels_from_cache)
    restarted = [loaded[address] for address in loaded if address not in pids]
    assert len(loaded) == 2 and len(restarted) == 1 and restarted[0] and all(restarted[0])


def _slow_chunks(seconds: float):
    """On a worker: each chunk's partials take `seconds` longer from now on (0: as before)."""
    from symdiff.codegen import chunked as module
    original = module.__dict__.setdefault("_unslowed", module._partial)
    module._partial = original if not seconds else \
        (lambda *arguments: time.sleep(seconds) or original(*arguments))


def test_a_worker_killed_amid_persisted_chunks_changes_no_bit(client, logreg, data, reference):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # _slow_chunks runs there
    client.wait_for_workers(2, timeout=120)
    kept = persisted(client, data)
    wait([kept["X"], kept["t"]])
    client.run(_slow_chunks, 0.15)
    try:
        result = {}
        caller = threading.Thread(
            target=lambda: result.update(out=logreg.value_and_grad(**kept)))
        caller.start()
        while not any(client.processing().values()):
            time.sleep(0.01)
        time.sleep(0.2)
        pids = client.run(os.getpid)
        assert caller.is_alive()  # 6 chunks of 0.15 s on 2 workers: 0.45 s at least
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # with its tasks and chunks
        caller.join(timeout=120)
        assert same_bits(result["out"], reference)  # the lost chunks made again, elsewhere
    finally:
        client.run(_slow_chunks, 0)
    client.wait_for_workers(2, timeout=120)

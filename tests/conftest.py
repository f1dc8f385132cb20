"""Compiled models shared across tests: every Numba compile costs about a second."""
import gc
import os
import threading

import numba
import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen import kernel as kernel_module

LOGISTIC = "log(1 + exp(-y*(w0*x0 + w1*x1 + b)))"


@pytest.fixture(scope="session")
def product():
    return sd.compile("(x + y) * z", wrt=["x", "y", "z"])


@pytest.fixture(scope="session")
def neuron():
    return sd.compile("1/(1+exp(-(w0*x0+w1*x1+w2)))", wrt=["w0", "w1", "w2", "x0", "x1"])


@pytest.fixture(scope="session", params=["mean", "sum", None])
def logistic(request):
    """(reduce, the logistic loss compiled with that reduce)."""
    return request.param, sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"],
                                     reduce=request.param)


@pytest.fixture(scope="session")
def logistic_data():
    rng = np.random.default_rng(7)
    n = 37
    return dict(w0=0.4, w1=-0.7, b=0.1, x0=rng.normal(size=n), x1=rng.normal(size=n),
                y=rng.choice([-1.0, 1.0], n))


@pytest.fixture(scope="session")
def mlp():
    return mlp_model()


def mlp_model(**options):
    """A small 2-layer ReLU MLP with softmax cross-entropy over a symbolic batch, compiled
    with `options` (one kernel module, whatever the options)."""
    X = sd.tensor("X", ("n", 6)); y = sd.tensor("y", ("n",), dtype=int)
    W1 = sd.tensor("W1", (6, 5)); b1 = sd.tensor("b1", (5,))
    W2 = sd.tensor("W2", (5, 3)); b2 = sd.tensor("b2", (3,))
    logits = sd.relu(X @ W1 + b1) @ W2 + b2
    return sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[W1, b1, W2, b2],
                      **options)


def mlp_arguments(n, seed=0):
    rng = np.random.default_rng(seed)
    return dict(X=rng.normal(size=(n, 6)), y=rng.integers(0, 3, n),
                W1=rng.normal(size=(6, 5)) * 0.5, b1=rng.normal(size=5) * 0.1,
                W2=rng.normal(size=(5, 3)) * 0.5, b2=rng.normal(size=3) * 0.1)


def at_one_and_two_threads(call):
    """(call() on 1 Numba thread, call() on 2, where Numba has 2)."""
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = call()
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        return one, call()
    finally:
        numba.set_num_threads(threads)


@pytest.fixture
def held(monkeypatch):
    """An event that lets the background load of kernels proceed when set (and is set when
    the test ends, so no load waits on it after)."""
    release = threading.Event()
    load = kernel_module.load_module

    def held_load(source):
        assert release.wait(600)
        return load(source)

    monkeypatch.setattr(kernel_module, "load_module", held_load)
    yield release
    release.set()


@pytest.fixture(autouse=True)
def one_numba_thread_per_worker(request):
    """pytest-xdist runs one test process per core, so there each test runs Numba on one
    thread: a large batch runs its 16 chunks in turn (the same bits as on threads), and no
    test compiles a threaded copy it does not ask for. Tests marked `threads` keep Numba's
    threads; at_one_and_two_threads sets them itself."""
    if "PYTEST_XDIST_WORKER" not in os.environ or request.node.get_closest_marker("threads"):
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def pytest_unconfigure(config):
    """A pytest-xdist worker freezes what the session leaves (gc.freeze) before exiting: the
    main process waits for its workers to exit, and pytest's cleanup then runs five full
    garbage collections, and the interpreter more at exit, each walking the million objects
    that hundreds of compiles leave (10 s in all on a cold run). Each test's own unraisable
    exceptions are still reported where they happen."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        gc.freeze()

"""A call in chunks runs on the kernel's threaded copy or on the kernel itself: the same bits
either way, at any thread count, and a choice between them by measured time (codegen/kernel.py's
`Choice`). Speed itself is measured in benchmarks/threads.py, never here."""
import os
import subprocess
import sys
import types

import numba
import numpy as np
import pytest

import symdiff as sd
from conftest import LOGISTIC, mlp_arguments, mlp_model
from symdiff.codegen import kernel as kernel_module
from symdiff.codegen.kernel import Choice

TWO = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread")
pytestmark = pytest.mark.threads  # these tests are about the threaded path


class Clock:
    """A clock that moves only when a fake way runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def choice_of(seconds: dict, log: list):
    """A Choice between fake ways named "serial" and "threads", whose calls take
    `seconds[name]` per row of their first argument, and log their names."""
    clock = Clock()

    def way(name):
        def run(rows):
            log.append(name)
            clock.now += seconds[name] * rows
            return name
        return run
    return Choice(way("serial"), way("threads"), rows=lambda args: args[0], clock=clock)


MS = 2.0**-10  # about a millisecond, in binary: the fake clock adds up exactly


def test_each_way_twice_then_the_faster_with_ever_rarer_tries_of_the_other():
    log = []
    choice = choice_of({"serial": 2 * MS, "threads": MS}, log)
    for _ in range(12_000):
        choice(1)
    assert log[:4] == ["serial", "threads", "serial", "threads"]  # each way twice
    tries = [k for k, name in enumerate(log) if name == "serial"]
    # a way's first runs may be slow: its third and fourth tries come 0.05 s after the one
    # before (52 calls of threads, 1 ms each); then after each lost try the interval doubles,
    # from 0.4 s to 2 s: 410, 820, 1639, 2048 calls
    assert list(np.diff(tries)) == [2, 53, 53, 411, 821, 1640, 2049, 2049, 2049, 2049]
    assert choice.sizes[1].in_use == 1  # threads


def test_tries_of_the_slower_way_stay_a_fiftieth_of_the_time_however_rare_the_calls():
    log = []
    choice = choice_of({"serial": 2 * MS, "threads": MS}, log)
    for _ in range(1000):
        choice(1)
        choice.clock.now += 1.0  # a second of other work between calls
    tries = [k for k, name in enumerate(log) if name == "serial"]
    # after its first four runs (the third and fourth 0.05 s after the one before: here the
    # next calls), the kernel (2 ms) is tried once threads have run 50 times as long: 100
    # calls of 1 ms
    assert list(np.diff(tries)[:3]) == [2, 1, 1] and set(np.diff(tries)[3:]) == {101}


def test_threads_slow_in_their_first_two_calls_only_are_taken_within_a_tenth_of_a_second():
    """A threaded copy's first calls can be slow (another pool's threads still spinning):
    measured 5-8 ms, then 0.6 ms. Judged by them alone the kernel was kept for seconds."""
    seconds = {"serial": 1.2 * MS, "threads": 8 * MS}
    log = []
    choice = choice_of(seconds, log)
    while log.count("threads") < 2:
        choice(1)
    seconds["threads"] = 0.6 * MS  # the transient is over
    start = choice.clock.now
    while choice.sizes[1].in_use != 1:
        choice(1)
    assert choice.clock.now - start < 0.1


def test_the_other_way_is_tried_once_the_way_in_use_is_typically_slower_than_it():
    seconds = {"serial": 2 * MS, "threads": MS}
    log = []
    choice = choice_of(seconds, log)
    for _ in range(10):
        choice(1)
    seconds["threads"] = 8 * MS  # the cores are busy elsewhere: threads wait for each other
    for _ in range(250):
        choice(1)
    # the median of the last 5 calls on threads passes the kernel's 2 ms at the third slow
    # call; the kernel is tried and kept
    assert log[10:15] == ["threads", "threads", "threads", "serial", "serial"]
    assert choice.sizes[1].in_use == 0
    # threads are tried again once the kernel has run 50 times their 8 ms (0.39 s, 200
    # calls), and lose
    assert [k for k, name in enumerate(log) if name == "threads"][-2:] == [12, 214]


def test_each_power_of_two_of_rows_chooses_for_itself_by_time_per_row():
    log = []
    choice = choice_of({"serial": 2e-6, "threads": 1e-6}, log)
    choice(1024)
    choice(2047)  # the same size class: threads tried, faster per row
    choice(2048)  # a new class starts again with the kernel
    assert log == ["serial", "threads", "serial"]
    assert sorted(choice.sizes) == [11, 12] and choice.sizes[11].in_use == 1


@TWO
def test_the_threaded_copy_and_the_kernel_give_the_same_bits_as_value_and_grad():
    f = mlp_model(parallel=True, wait=True)  # the threaded copy, though the products call BLAS
    arguments = mlp_arguments(5000, seed=3)  # 16 chunks
    value, grads = f.value_and_grad(**arguments)
    kernel = f._grad
    assert kernel._threads_done.wait(600) and kernel._threaded() is kernel._threads
    args = [arguments[name] for name in kernel.inputs] + [16]
    serial, threaded = kernel._choice.ways
    for way in (serial, threaded, kernel._choice):
        other_value, other = way(*args)
        assert other_value == value
        assert all(np.array_equal(g, grads[w]) for g, w in zip(other, f.wrt))


@TWO
@pytest.mark.parametrize("blas_threads", [1, 2])
def test_a_kernel_that_calls_a_threaded_blas_runs_its_chunks_in_turn(monkeypatch, blas_threads):
    """Numba's idle threads would spin on the cores BLAS's threads need: such a kernel never
    compiles its threaded copy unless asked (parallel=True). With BLAS on one thread, the
    measured choice decides as for any other kernel."""
    monkeypatch.setattr(kernel_module, "blas_threads", lambda: blas_threads)
    f = mlp_model(wait=True)
    kernel = f._grad
    arguments = mlp_arguments(kernel.chunk_rows, seed=5)  # the smallest batch in chunks
    assert kernel._calls_blas and not kernel._threads_started
    value, grads = f.value_and_grad(**arguments)
    if blas_threads > 1:
        assert kernel._threaded() is kernel._module.kernel and not kernel._threads_started
    else:
        assert kernel._threads_done.wait(600) and kernel._threaded() is kernel._choice
    again, other = f.value_and_grad(**arguments)
    assert again == value and all(np.array_equal(other[w], grads[w]) for w in f.wrt)


def test_a_kernel_knows_whether_it_calls_blas(mlp, neuron):
    assert mlp._grad._calls_blas and not neuron._grad._calls_blas
    named = sd.compile("1/(1+exp(-(w0*x0+w1*x1+w2)))", wrt=["w0", "w1", "w2", "x0", "x1"],
                       name="score_dot(v)")  # a title is not a call (it was taken for one)
    assert not named._grad._calls_blas


def test_blas_threads_without_threadpoolctl_are_what_openblas_reads(monkeypatch):
    from symdiff.codegen.runtime import blas_threads
    cpus = len(os.sched_getaffinity(0))  # OpenBLAS takes at most one thread per CPU
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # its import fails
    for variable in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    assert blas_threads.__wrapped__() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "1000")
    assert blas_threads.__wrapped__() == cpus
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1,2")  # a list: its first number, and first
    assert blas_threads.__wrapped__() == 1  # OpenBLAS's own variable
    # threadpoolctl without a BLAS it knows: what OpenBLAS reads, not one thread
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.setitem(sys.modules, "threadpoolctl", types.SimpleNamespace(
        threadpool_info=lambda: [{"user_api": "openmp", "num_threads": 1}]))
    assert blas_threads.__wrapped__() == cpus


@TWO
def test_parallel_true_keeps_to_threads_and_one_numba_thread_to_the_kernel(logistic_data):
    f = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], parallel=True,
                   wait=True)
    rng = np.random.default_rng(2)
    n = f._grad.chunk_rows  # the smallest batch in chunks
    f.value_and_grad(**{**logistic_data, "x0": rng.normal(size=n), "x1": rng.normal(size=n),
                        "y": rng.choice([-1.0, 1.0], n)})
    kernel = f._grad
    assert kernel._threads_done.wait(600)
    assert kernel._threaded() is kernel._threads and kernel._choice is not None
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert kernel._threaded() is kernel._module.kernel
    finally:
        numba.set_num_threads(threads)


SCRIPT = """
import hashlib, numpy as np, symdiff as sd
f = sd.compile("softplus(w0*x0 + w1*x1 + w2) - y*(w0*x0 + w1*x1 + w2)",
               wrt=["w0", "w1", "w2"], batch=["x0", "x1", "y"], reduce="mean")
rng = np.random.default_rng(0)
data = dict(w0=2.0, w1=-3.0, w2=-3.0, x0=rng.normal(size=100_000), x1=rng.normal(size=100_000),
            y=(rng.random(100_000) < 0.3).astype(float))
f.value_and_grad(**data)
if f._grad._threads_started:
    f._grad._threads_done.wait(600)
bits = {hashlib.sha256(np.array([v, *g.values()]).tobytes()).hexdigest()
        for v, g in (f.value_and_grad(**data) for _ in range(4))}  # both ways run
print(len(bits), bits.pop())
"""


@TWO
def test_a_new_process_gives_the_same_bits_on_one_thread_and_on_two():
    outputs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        outputs.append(subprocess.run([sys.executable, "-c", SCRIPT], env=env, text=True,
                                      capture_output=True, check=True).stdout.split())
    assert outputs[0][0] == outputs[1][0] == "1" and outputs[0][1] == outputs[1][1]

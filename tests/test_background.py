"""wait=False: first results from NumPy while the kernel compiles on a background thread.

The kernel's arrival is held back by a gate on its module load, so what runs when is decided
by the test, not by timing. The NumPy results are checked against an independent oracle
(central differences of a hand-written NumPy forward pass), and against the kernel's.
"""
import threading

import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen import kernel as kernel_module
from conftest import mlp_arguments, mlp_model


def forward(X, y, W1, b1, W2, b2):
    """The MLP's mean softmax cross-entropy, written out in NumPy."""
    z = np.maximum(X @ W1 + b1, 0.0) @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])


def central_differences(arguments, name, h=1e-6):
    grad = np.zeros_like(arguments[name])
    for index in np.ndindex(grad.shape):
        moved = [arguments[name].copy() for _ in range(2)]
        moved[0][index] += h
        moved[1][index] -= h
        grad[index] = (forward(**{**arguments, name: moved[0]})
                       - forward(**{**arguments, name: moved[1]})) / (2 * h)
    return grad


def test_numpy_answers_first_then_the_kernel(held):
    f = mlp_model(wait=False)
    arguments = mlp_arguments(7, seed=3)
    value, grads = f.value_and_grad(**arguments)
    assert f.tier == "numpy" and f.from_cache is None and "kernel ready" not in f.timings
    assert value == pytest.approx(forward(**arguments), rel=1e-12)
    for name in f.wrt:
        np.testing.assert_allclose(grads[name], central_differences(arguments, name),
                                   rtol=1e-6, atol=1e-8, err_msg=name)
    params = {k: arguments[k].copy() for k in f.wrt}
    f.sgd_step(0.5, **{**arguments, **params})  # before the kernel: NumPy, then the update
    for name in f.wrt:
        np.testing.assert_allclose(params[name], arguments[name] - 0.5 * grads[name],
                                   rtol=1e-13, atol=1e-15, err_msg=name)
    held.set()
    assert f.wait() is f and f.tier == "kernel"
    assert 0 < f.timings["compile"] <= f.timings["kernel ready"]
    kernel_value, kernel_grads = f.value_and_grad(**arguments)
    assert kernel_value == pytest.approx(value, rel=1e-13)
    for name in f.wrt:
        np.testing.assert_allclose(kernel_grads[name], grads[name], rtol=1e-12, atol=1e-15)


def test_the_numpy_path_refuses_bad_arguments_as_the_kernel_does(held):
    f = mlp_model(wait=False)
    arguments = mlp_arguments(4, seed=4)
    with pytest.raises(sd.ShapeError, match="y has n = 3 on axis 0, but X has n = 4"):
        f.value_and_grad(**{**arguments, "y": arguments["y"][:3]})
    with pytest.raises(sd.DomainError, match="label 7"):
        f.value_and_grad(**{**arguments, "y": np.array([0, 1, 7, 0])})
    with pytest.raises(sd.ArgumentError, match="missing argument W2"):
        f.value_and_grad(**{k: v for k, v in arguments.items() if k != "W2"})
    held.set()
    f.wait()


def test_a_failed_background_compile_is_raised_not_hidden(monkeypatch):
    def broken(source):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(kernel_module, "load_module", broken)
    f = sd.compile("w*x + b", wrt=["w", "b"], batch=["x"], wait=False)
    with pytest.raises(RuntimeError, match="no compiler today"):
        f.wait()
    with pytest.raises(RuntimeError, match="no compiler today"):
        f.value_and_grad(w=1.0, b=0.0, x=np.ones(3))


def test_float32_results_keep_their_type_on_the_numpy_path(held):
    f = sd.compile("softplus(w*x + b)", wrt=["w", "b"], batch=["x"], dtype="float32",
                   wait=False)
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    value, grads = f.value_and_grad(w=np.float32(0.5), b=np.float32(-0.25), x=x)
    assert f.tier == "numpy" and type(value) is np.float32 and type(grads["w"]) is np.float32
    z = 0.5 * x.astype(float) - 0.25
    assert value == pytest.approx(np.mean(np.logaddexp(0.0, z)), rel=1e-6)
    assert grads["w"] == pytest.approx(np.mean(x / (1 + np.exp(-z))), rel=1e-5)
    held.set()
    f.wait()
    assert f.value_and_grad(w=np.float32(0.5), b=np.float32(-0.25), x=x)[0] == \
        pytest.approx(value, rel=1e-6)


def test_numba_error_messages_leave_the_process_streams_alone(monkeypatch):
    """Numba marked up each error message it formats (type inference formats many) inside
    colorama's init() and deinit(), which swap sys.stdout and sys.stderr for the whole
    process: from a background compile, that undid the main thread's redirection of stdout
    meanwhile (a docs block's prints vanished). Once symdiff compiles, neither is called."""
    from numba.core import errors
    from symdiff.codegen.build import compiling
    with compiling():
        pass
    calls = []
    for name in ("init", "reinit", "deinit"):
        monkeypatch.setattr(errors, name, lambda *a, name=name, **k: calls.append(name),
                            raising=False)
    assert errors.termcolor().errmsg("No implementation") == "No implementation"
    assert calls == []


def test_a_private_step_before_the_kernel_arrives_clips_and_adds_the_noise(monkeypatch):
    """Regression: with wait=False, a private step taken while the gradient kernel compiled
    went the NumPy way, which neither clipped the examples' gradients nor drew the noise (C
    = 1e-3 moved the parameters by 49). It runs its own kernel, which does both."""
    release = threading.Event()
    background = kernel_module.Kernel._load_in_background

    def held(self):
        assert release.wait(600)
        background(self)

    monkeypatch.setattr(kernel_module.Kernel, "_load_in_background", held)
    f = mlp_model(wait=False)
    arguments = mlp_arguments(7, seed=3)
    try:
        p = {**arguments, **{w: arguments[w].copy() for w in f.wrt}}
        f.step(sd.optim.SGD(1.0, per_example_clip=1e-3), **p)
        moved = np.sqrt(sum(np.sum((p[w] - arguments[w]) ** 2) for w in f.wrt))
        assert 0.0 < moved <= 1e-3 * (1 + 1e-12)  # a mean of gradients each of norm <= C
        rng = np.random.default_rng(0)
        drawn = rng.bit_generator.state
        f.step(sd.optim.SGD(1.0, per_example_clip=1e-3, noise_multiplier=1.0, rng=rng), **p)
        assert rng.bit_generator.state != drawn and f.tier == "numpy"  # it did not wait
    finally:
        release.set()


def test_a_kernel_that_loads_at_its_first_call_loads_once_for_two_threads(monkeypatch):
    """A private step's one-call kernel loads at its first call (a step in blocks never
    makes one). A second caller during that load now waits for it; it used to load beside
    it, and could find the module in place before the call was (a RecursionError)."""
    import time
    f = mlp_model()
    kernel = f._kernel("dp")
    assert kernel._module is None and kernel.tier == "kernel"
    entered, release, loads = threading.Event(), threading.Event(), []
    load = kernel_module.load_module

    def held_load(source):
        loads.append(source)
        entered.set()
        assert release.wait(600)
        return load(source)

    monkeypatch.setattr(kernel_module, "load_module", held_load)
    arguments = {**mlp_arguments(7, seed=5), kernel.inputs[-1]: 1.0}  # C = 1
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.update({k: kernel(dict(arguments))}))
               for k in range(2)]
    threads[0].start()
    assert entered.wait(600)
    threads[1].start()
    time.sleep(0.2)  # the second call meanwhile reaches the load
    release.set()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and kernel._module is not None
    for a, b in zip([results[0][0], *results[0][1]], [results[1][0], *results[1][1]]):
        np.testing.assert_array_equal(a, b)



def test_a_kernel_load_imports_numba_through_the_one_lock(monkeypatch):
    """Regression: a model's background load and a second model's load on the main thread
    imported Numba at once, and the second's kernel module failed with "cannot import name
    'Array' from 'numba.types'": in 3 of 12 new processes on empty caches that compiled a
    model, then another with wait=True (5 of 20 with a hvp in blocks instead; 0 of 36 with
    the lock). A load now imports Numba holding build's lock, so while another thread holds
    it, the load waits."""
    from symdiff.codegen import build
    build._plain_numba_errors.cache_clear()  # as in a new process: the import not yet done
    with build._NUMBA_IMPORT:
        f = sd.compile("w*x + cos(b*x)", wrt=["w", "b"], batch=["x"], wait=False,
                       tier="kernel")
        threading.Event().wait(0.5)
        assert f._grad._module is None  # waiting for the lock
    f.wait()
    assert f._grad._module is not None
    assert f(w=1.0, b=0.0, x=[2.0]) == 3.0

"""wait="auto": a kernel's module run by CPython while Numba compiles it (codegen/uncompiled.py).

What is checked is bits: the CPython run must give exactly what the compiled kernel gives, on
random models (Hypothesis) and on the pieces it rebinds (BLAS calls, integer powers,
np.maximum, vecmath), special values included. The derivatives themselves are the kernel's,
checked against independent oracles elsewhere (test_differential.py).
"""
import threading

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import symdiff as sd
from symdiff.codegen import kernel as kernel_module, uncompiled
from symdiff.codegen.build import load_module
from symdiff.codegen.runtime import RUNTIME_SOURCE
from conftest import mlp_arguments, mlp_model
from formula_grammar import formulas, points
from formula_oracle import FormulaOracle
from tensor_oracle import tensor_case
from test_differential import runs

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 1e-310, -1e-310, 1e300, -1e300, 710.0, -746.0,
           np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308]


def same_bits(a, b) -> bool:
    """Equal bit for bit, NaN for NaN (a NaN's sign and payload are the hardware's choice,
    and LLVM may swap the operands of an addition)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nan = np.isnan(a)
    return a.shape == b.shape and np.array_equal(nan, np.isnan(b)) and \
        np.array_equal(a[~nan].view(np.uint64), b[~nan].view(np.uint64))


def kernel_and_cpython(f, arguments: dict, chunks: int):
    """(the kernel's (value, outputs), the CPython run's, or None if it did not run)."""
    kernel = f._grad
    converted, _ = kernel._converted(arguments)
    args = [converted[name] for name in kernel.inputs]
    python = uncompiled.load(kernel.source, kernel.dtype)
    return kernel._module.kernel(*args, chunks), python and python.run(args, chunks)


def assert_same(kernel_result, python_result, what):
    value, rest = kernel_result
    assert same_bits(python_result[0], value), (what, python_result[0], value)
    assert len(rest) == len(python_result[1])
    for k, (a, b) in enumerate(zip(python_result[1], rest)):
        assert same_bits(a, b), (what, k, a, b)


@runs(5)
@given(case=tensor_case(per_example=False, dtype="float64"), chunks=st.sampled_from([1, 3, 16]))
def test_cpython_gives_the_kernels_bits_on_random_tensor_models(case, chunks):
    tensors, arrays, wrt = case.inputs()
    f = sd.compile(case.model(sd, tensors), wrt=[tensors[w] for w in wrt], wait=True)
    arguments = {k: arrays[k] for k in f.inputs}
    kernel, python = kernel_and_cpython(f, arguments, chunks)
    assert python is not None, f"{case}: not run by CPython"  # these use only what it has
    assert_same(kernel, python, case)


@runs(12)
@given(text=formulas(max_depth=6), data=st.data(), chunks=st.sampled_from([1, 16]))
def test_cpython_gives_the_kernels_bits_on_random_formulas(text, data, chunks):
    """Formulas over a batch, at points with special values: where CPython runs them (no
    function outside what it rebinds, no float error CPython raises) the bits agree."""
    names = sorted(FormulaOracle(text).names)
    assume(names)
    batch = [n for n in names if data.draw(st.booleans())] or names[:1]
    f = sd.compile(text, wrt=names, batch=batch, tier="kernel", wait=True)
    arguments = data.draw(points(names))
    rows = data.draw(st.integers(1, 20))
    for name in batch:
        arguments[name] = np.array(data.draw(st.lists(
            st.sampled_from(SPECIAL) | st.floats(-3, 3), min_size=rows, max_size=rows)))
    kernel, python = kernel_and_cpython(f, arguments, chunks)
    if python is not None:
        assert_same(kernel, python, text)


def test_most_lecture_models_run_under_cpython():
    """The MLP with softmax cross-entropy, logistic regression, a tanh layer with a squared
    error: each one's module loads for CPython (none reads what CPython computes
    otherwise), with its per-row statement count."""
    X, y = sd.tensor("X", ("n", 4)), sd.tensor("y", ("n",))
    W, b = sd.tensor("W", (4, 3)), sd.tensor("b", (3,))
    v = sd.tensor("v", (3,))
    models = [mlp_model(), sd.compile("softplus(w0*x0 + w1*x1 + w2) - y*(w0*x0 + w1*x1 + w2)",
                                      wrt=["w0", "w1", "w2"], batch=["x0", "x1", "y"]),
              sd.compile(sd.mean((sd.tanh(X @ W + b) @ v - y) ** 2), wrt=[W, b, v])]
    for f in models:
        python = uncompiled.load(f._grad.source, "float64")
        assert python is not None and python.steps[("n",)] > 0, f.source


def test_a_model_whose_rows_interact_gets_an_estimate_and_runs():
    # STEPS counted per batch dimension, and a space over (n, n) (a Gram matrix) gave no
    # estimate at all: such a model's calls always waited for its kernel
    X, W = sd.tensor("X", ("n", 3)), sd.tensor("W", (3, 2))
    H = X @ W
    f = sd.compile(sd.mean(sd.exp(0.1 * (H @ H.T))), wrt=[W], wait=True)
    python = uncompiled.load(f._grad.source, "float64")
    assert python is not None and python.steps[("n", "n")] > 0
    arguments = {"X": np.random.default_rng(4).normal(size=(9, 3)), "W": np.ones((3, 2))}
    kernel, ours = kernel_and_cpython(f, arguments, 1)
    assert_same(kernel, ours, "gram")


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")  # (strided)
def test_the_blas_calls_are_numbas():
    """`_dot` against Numba's np.dot (the runtime module's), every layout and the sizes where
    Numba takes another BLAS function (a size 1: dot or gemv) or none (a size 0)."""
    numba_dot = load_module(RUNTIME_SOURCE)[0]._dot
    rng = np.random.default_rng(0)
    for m, k, n in [(7, 5, 3), (1, 5, 3), (7, 5, 1), (1, 5, 1), (7, 1, 3), (7, 0, 3), (33, 17, 9)]:
        for left_f in (False, True):
            for right_f in (False, True):
                a = rng.normal(size=(k, m)).T if left_f else rng.normal(size=(m, k))
                b = rng.normal(size=(n, k)).T if right_f else rng.normal(size=(k, n))
                assert same_bits(uncompiled._dot(a, b), numba_dot(a, b)), (m, k, n)
                assert same_bits(uncompiled._dot(a[0], b), numba_dot(a[0], b)), (m, k, n)
                assert same_bits(uncompiled._dot(a, b[:, 0]), numba_dot(a, b[:, 0])), (m, k, n)
        vector = rng.normal(size=k)
        assert same_bits(uncompiled._dot(vector, vector), numba_dot(vector, vector))
    strided = rng.normal(size=(6, 8))[:, ::2]  # neither layout: Numba copies it first
    assert same_bits(uncompiled._dot(strided, strided.T), numba_dot(strided, strided.T))


def test_integer_powers_and_maximum_are_numbas():
    from numba import njit

    @njit(error_model="numpy")
    def numba_ops(x, y):
        return (x ** 2, x ** 3, x ** 5, x ** 7, x ** 12, x ** 0, np.maximum(x, y),
                np.minimum(x, y))

    values = np.array(SPECIAL + list(np.random.default_rng(1).normal(size=40) * 10))
    with np.errstate(all="ignore"):
        for x in values:
            for y in values[::3]:
                ours = [uncompiled._powi(x, k) for k in (2, 3, 5, 7, 12, 0)] + \
                    [uncompiled._maximum(x, y), uncompiled._minimum(x, y)]
                assert all(same_bits(a, b) for a, b in zip(ours, numba_ops(x, y))), (x, y)


def test_vecmath_under_cpython_is_vecmath():
    from symdiff.codegen import vecmath
    twin = uncompiled._names()["_vm"]
    rng = np.random.default_rng(2)
    values = np.concatenate([SPECIAL, rng.normal(size=200) * 30, rng.uniform(-1.5, 1.5, 200),
                             10.0 ** rng.uniform(-320, 308, 100)])
    with np.errstate(all="ignore"):
        for name in ("exp", "log", "log1p", "expm1", "tanh"):
            compiled = getattr(vecmath, name)
            for x in np.concatenate([values, -values]):
                assert same_bits(getattr(twin, name)(x), compiled(x)), (name, x)


def test_auto_answers_with_the_kernels_bits_before_the_kernel(held):
    f = mlp_model(wait="auto")
    arguments = mlp_arguments(9, seed=5)
    value, grads = f.value_and_grad(**arguments)
    assert f.tier == "python" and "kernel ready" not in f.timings
    assert f(**arguments) == value
    params = {k: arguments[k].copy() for k in f.wrt}
    f.sgd_step(0.5, **{**arguments, **params})  # before the kernel: CPython, then the update
    held.set()
    f.wait()
    assert f.tier == "kernel"
    kernel_value, kernel_grads = f.value_and_grad(**arguments)
    assert same_bits(kernel_value, value)
    assert all(same_bits(kernel_grads[k], grads[k]) for k in f.wrt)
    stepped = {k: arguments[k].copy() for k in f.wrt}
    f.sgd_step(0.5, **{**arguments, **stepped})
    assert all(same_bits(stepped[k], params[k]) for k in f.wrt)


def test_auto_waits_for_the_kernel_where_cpython_would_be_slow(held):
    f = mlp_model(wait="auto")
    arguments = mlp_arguments(40_000, seed=6)  # ~1.4 s under CPython: over MAX_SECONDS,
    assert not f._blocked(arguments)  # and one call of the kernel, not a call in blocks
    done = threading.Event()
    thread = threading.Thread(target=lambda: (f.value_and_grad(**arguments), done.set()))
    thread.start()
    assert not done.wait(0.5) and f.tier == "python"
    held.set()
    thread.join(60)
    assert done.is_set() and f.tier == "kernel"


def test_auto_refuses_bad_arguments_before_the_kernel(held):
    f = mlp_model(wait="auto")
    arguments = mlp_arguments(4, seed=4)
    with pytest.raises(sd.DomainError, match="label 7"):
        f.value_and_grad(**{**arguments, "y": np.array([0, 1, 7, 0])})
    with pytest.raises(sd.ArgumentError, match="missing argument W2"):
        f.value_and_grad(**{k: v for k, v in arguments.items() if k != "W2"})


def test_a_child_forked_while_a_kernel_compiles_gets_the_kernel(monkeypatch):
    """A forked child has none of its parent's threads: a kernel whose load was under way
    would never arrive there (its calls would wait forever). A fork waits for the loads."""
    import multiprocessing
    import time
    load = kernel_module.load_module
    monkeypatch.setattr(kernel_module, "load_module",
                        lambda source: (time.sleep(1.0), load(source))[1])
    f = mlp_model()
    assert f.tier == "python"  # its load under way, for a second at least
    arguments = mlp_arguments(40_000, seed=7)  # too slow for CPython: waits for the kernel
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(f.value_and_grad(**arguments)[0]))
    child.start()
    try:
        assert queue.get(timeout=60) == f.value_and_grad(**arguments)[0]
    finally:
        child.join(10)
        child.kill()


def test_a_module_that_reads_a_name_cpython_does_not_bind_is_not_loaded():
    # a module calling a name not bound here (then hypot, erf, exp2, sign, cbrt) loaded, then
    # failed at every call with an AttributeError before it waited for the kernel (found by a
    # random campaign); np.spacing stands for a name no kernel reads today
    f = sd.compile("w*cbrt(x)", wrt=["w"], batch=["x"], wait=True)
    source = f._grad.source
    assert uncompiled.load(source, "float64") is not None
    assert uncompiled.load(source.replace("np.cbrt(", "np.spacing("), "float64") is None


def test_sign_cbrt_and_the_long_functions_helpers_run_with_the_kernels_bits():
    # these models waited for their kernels: np.sign and np.cbrt were not bound, and erfinv's
    # and digamma's definitions live in helper modules of their own
    f = sd.compile("w*sign(x) + cbrt(w*x) + erfinv(tanh(w*x)) + digamma(exp(w*x))",
                   wrt=["w"], batch=["x"], wait=True)
    assert "_record_erfinv" in f._grad.source and "_record_digamma" in f._grad.source
    x = np.concatenate([[0.0, -0.0, 1e-310, -1e-310, 5e-324, 8.0, -8.0, 0.3],
                        np.random.default_rng(5).normal(size=40) * 2])
    for w in (0.7, -1.3):
        kernel, python = kernel_and_cpython(f, {"w": w, "x": x}, 1)
        assert python is not None
        assert_same(kernel, python, w)


def test_the_c_library_functions_bound_by_ctypes_are_numbas():
    from numba import njit
    import math

    @njit(error_model="numpy")
    def numba_ops(x, y):
        return (math.hypot(x, y), math.erf(x), math.erfc(x), math.lgamma(x), np.exp2(x),
                np.sign(x), np.cbrt(x))

    names = uncompiled._names()
    ours = [names["math"].erf, names["math"].erfc, names["math"].lgamma, names["np"].exp2,
            names["np"].sign, names["np"].cbrt]
    values = np.array(SPECIAL + [-np.nan, -0.0] + list(
        np.random.default_rng(3).normal(size=60) * 20))
    for x in values:
        for y in values[::5]:
            got = [names["math"].hypot(x, y)] + [f(x) for f in ours]
            assert all(same_bits(a, b) for a, b in zip(got, numba_ops(x, y))), (x, y)

"""wait="auto": a kernel's module run by CPython while Numba compiles it (codegen/uncompiled.py).

What is checked is bits: the CPython run must give exactly what the compiled kernel gives, on
random models (Hypothesis) and on the pieces it rebinds (BLAS calls, integer powers,
np.maximum, vecmath), special values included. The derivatives themselves are the kernel's,
checked against independent oracles elsewhere (test_differential.py).
"""
import ast
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
        assert same_bits(a, b) and np.result_type(a) == np.result_type(b), (what, k, a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@runs(5)
@given(data=st.data(), chunks=st.sampled_from([1, 3, 16]))
def test_cpython_gives_the_kernels_bits_on_random_tensor_models(dtype, data, chunks):
    case = data.draw(tensor_case(per_example=False, dtype=dtype))
    tensors, arrays, wrt = case.inputs()
    f = sd.compile(case.model(sd, tensors), wrt=[tensors[w] for w in wrt], wait=True)
    arguments = {k: arrays[k] for k in f.inputs}
    kernel, python = kernel_and_cpython(f, arguments, chunks)
    assert python is not None, f"{case}: not run by CPython"  # these use only what it has
    assert_same(kernel, python, case)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@runs(12)
@given(text=formulas(max_depth=6), data=st.data(), chunks=st.sampled_from([1, 16]))
def test_cpython_gives_the_kernels_bits_on_random_formulas(dtype, text, data, chunks):
    """Formulas over a batch, at points with special values: where CPython runs them (no
    float error CPython raises) the bits agree."""
    names = sorted(FormulaOracle(text).names)
    assume(names)
    batch = [n for n in names if data.draw(st.booleans())] or names[:1]
    f = sd.compile(text, wrt=names, batch=batch, tier="kernel", wait=True, dtype=dtype)
    arguments = {k: dtype(v) for k, v in data.draw(points(names)).items()}
    rows = data.draw(st.integers(1, 20))
    for name in batch:
        with np.errstate(over="ignore"):  # 1e300 and the like in float32: inf
            arguments[name] = np.array(data.draw(st.lists(
                st.sampled_from(SPECIAL) | st.floats(-3, 3), min_size=rows, max_size=rows)),
                dtype)
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
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_blas_calls_are_numbas(dtype):
    """`_dot` against Numba's np.dot (the runtime module's), every layout and the sizes where
    Numba takes another BLAS function (a size 1: dot or gemv) or none (a size 0)."""
    numba_dot = load_module(RUNTIME_SOURCE)[0]._dot
    rng = np.random.default_rng(0)

    def same(a, b):  # (Numba returns a float32 scalar as a float)
        ours, numbas = uncompiled._dot(a, b), numba_dot(a, b)
        return same_bits(ours, numbas) and (np.ndim(ours) == 0 or ours.dtype == numbas.dtype)

    def normal(*shape):
        return rng.normal(size=shape).astype(dtype)
    for m, k, n in [(7, 5, 3), (1, 5, 3), (7, 5, 1), (1, 5, 1), (7, 1, 3), (7, 0, 3), (33, 17, 9)]:
        for left_f in (False, True):
            for right_f in (False, True):
                a = normal(k, m).T if left_f else normal(m, k)
                b = normal(n, k).T if right_f else normal(k, n)
                assert same(a, b) and same(a[0], b) and same(a, b[:, 0]), (m, k, n)
        assert same(normal(k), normal(k))
    strided = normal(6, 8)[:, ::2]  # neither layout: Numba copies it first
    assert same(strided, strided.T)


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


def mlp32(**options):
    """mlp_model's MLP in float32."""
    X, y = sd.tensor("X", ("n", 6), dtype="float32"), sd.tensor("y", ("n",), dtype=int)
    W1, b1 = sd.tensor("W1", (6, 5), dtype="float32"), sd.tensor("b1", (5,), dtype="float32")
    W2, b2 = sd.tensor("W2", (5, 3), dtype="float32"), sd.tensor("b2", (3,), dtype="float32")
    logits = sd.relu(X @ W1 + b1) @ W2 + b2
    return sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[W1, b1, W2, b2],
                      **options)


@pytest.mark.parametrize("single", [False, True])
def test_auto_answers_with_the_kernels_bits_before_the_kernel(held, single):
    f = (mlp32 if single else mlp_model)(wait="auto")
    arguments = mlp_arguments(9, seed=5)
    if single:
        arguments = {k: v.astype(np.float32) if v.dtype == np.float64 else v
                     for k, v in arguments.items()}
    value, grads = f.value_and_grad(**arguments)
    assert f.tier == "python" and "kernel ready" not in f.timings
    assert type(value) is (np.float32 if single else float)
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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_steps_before_the_kernel_have_the_compiled_steps_bits(held, dtype):
    # before the kernel, a float32 model's update ran in float64 (the compiled step's is in
    # float32), and a clipped step's norm was NumPy's dot (the compiled one sums in order):
    # the parameters differed in their last bits (found by a random campaign)
    X, W = sd.tensor("X", ("n", 20), dtype=dtype), sd.tensor("W", (20, 30), dtype=dtype)
    b = sd.tensor("b", (), dtype=dtype)
    f = sd.compile(sd.mean(sd.erfc(X @ W + b)), wrt=[b, W], wait="auto")
    rng = np.random.default_rng(27)  # (a norm whose last bit NumPy's dot got otherwise)
    data = rng.normal(size=(30, 20)).astype(dtype)
    start = {"W": (1e-5 * rng.normal(size=(20, 30))).astype(dtype),  # small: an update's
             "b": np.array(0.3, dtype)}  # last bits show in the parameters
    optimizers = [lambda: sd.optim.SGD(0.013), lambda: sd.optim.SGD(0.013, clip_norm=0.05),
                  lambda: sd.optim.Adam(0.013), lambda: sd.optim.Adam(0.013, clip_norm=0.05)]

    def three_steps(make):
        params, opt = {k: v.copy() for k, v in start.items()}, make()
        for _ in range(3):
            f.step(opt, X=data, **params)
        return params
    before = [three_steps(make) for make in optimizers]
    assert f.tier == "python"
    held.set()
    f.wait()
    for make, params in zip(optimizers, before):
        after = three_steps(make)
        assert all(same_bits(params[k], after[k]) for k in start), make()


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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sign_cbrt_and_the_long_functions_helpers_run_with_the_kernels_bits(dtype):
    # these models waited for their kernels: np.sign and np.cbrt were not bound, and erfinv's
    # and digamma's definitions live in helper modules of their own; in float32, erfinv's
    # helper returned a float64 (its bare math.inf), so the kernel squared it in float64
    f = sd.compile("w*sign(x) + cbrt(w*x) + erfinv(tanh(w*x)) + digamma(exp(w*x))",
                   wrt=["w"], batch=["x"], wait=True, dtype=dtype)
    assert "_record_erfinv" in f._grad.source and "_record_digamma" in f._grad.source
    x = np.concatenate([[0.0, -0.0, 1e-310, -1e-310, 5e-324, 8.0, -8.0, 0.3],
                        np.random.default_rng(5).normal(size=40) * 2]).astype(dtype)
    for w in (0.7, -1.3, -0.54776424):
        kernel, python = kernel_and_cpython(f, {"w": dtype(w), "x": x}, 1)
        assert python is not None
        assert_same(kernel, python, w)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_powers_of_constants_are_llvms(dtype):
    # LLVM rewrites pow(x, 2.0) as x*x, pow(x, -1.0) as 1/x, pow(x, 0.5) as a guarded sqrt
    # and pow(2**n, x) as exp2(n*x); the C library's pow gave other bits (8**z: 1,312 of
    # 3,000 gradients; found by a random campaign)
    f = sd.compile("w*abs(z)**0.5 + abs(z)**1.5 + 2**z + 8**z + 0.5**z + 10**z + z**2.0 "
                   "+ w*z**-1.0", wrt=["w", "z"], batch=["z"], wait=True, dtype=dtype)
    z = np.concatenate([[0.0, -0.0, np.inf, -np.inf, 1e-300, 700.0],
                        np.random.default_rng(11).normal(size=200) * 3])
    with np.errstate(over="ignore"):
        z = z.astype(dtype)
    kernel, python = kernel_and_cpython(f, {"w": dtype(0.7), "z": z}, 1)
    assert python is not None
    assert_same(kernel, python, dtype)


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


def test_a_column_maximum_in_chunks_runs_with_the_kernels_bits():
    # the chunks' partial maxima are arrays, which np.maximum bound for numbers refused: such
    # calls waited for the kernel (found by a random campaign)
    X, W = sd.tensor("X", ("n", 4)), sd.tensor("W", (4, 3))
    f = sd.compile(sd.sum(sd.max(X @ W, axis=0)) - sd.sum(sd.min(X @ W, axis=0)), wrt=[W],
                   wait=True)
    rng = np.random.default_rng(10)
    arguments = dict(X=rng.normal(size=(40, 4)), W=rng.normal(size=(4, 3)))
    arguments["X"][5, 1] = np.nan
    for chunks in (1, 3, 16):
        kernel, python = kernel_and_cpython(f, arguments, chunks)
        assert python is not None
        assert_same(kernel, python, chunks)
        arguments["X"][5, 1] = 0.5


def test_lapack_calls_run_with_the_kernels_bits():
    # a model calling LAPACK (a Gaussian process's likelihood) waited for its kernel
    n = 6
    X, y = sd.tensor("X", (n, 2)), sd.tensor("y", (n,))
    log_ls, log_sn = sd.scalar("log_ls"), sd.scalar("log_sn")
    d2 = sd.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)
    K = sd.exp(-0.5 * d2 / sd.exp(2 * log_ls)) + sd.exp(2 * log_sn) * sd.eye(n)
    L = sd.cholesky(K)
    sign, logdet = sd.slogdet(K)
    loss = (sd.sum(sd.solve_triangular(L, y) ** 2) + logdet + sd.sum(sd.solve(K, y) * y)
            + sd.sum(sd.solve_triangular(L, y, transpose=True)))
    f = sd.compile(loss, wrt=[log_ls, log_sn], tier="kernel", wait=True)
    rng = np.random.default_rng(8)
    for sn in (-1.0, 0.5):
        arguments = dict(X=rng.normal(size=(n, 2)), y=rng.normal(size=n), log_ls=0.1, log_sn=sn)
        kernel, python = kernel_and_cpython(f, arguments, 1)
        assert python is not None
        assert_same(kernel, python, sn)


def test_a_module_whose_parts_cannot_load_is_not_loaded(monkeypatch):
    # SciPy's LAPACK module or a C library function missing: no error, the kernel answers
    def missing():
        raise OSError("no such library")
    monkeypatch.setattr(uncompiled, "_lapack", missing)
    A, b = sd.tensor("A", (3, 3)), sd.tensor("b", (3,))
    f = sd.compile(sd.sum(sd.solve(A, b)), wrt=[b], wait=True)
    assert uncompiled.load(f._grad.source, "float64") is None


def test_a_float32_models_functions_are_numbas():
    """A float32 model's functions by their operands' precision: the C library's float forms
    (sinf) on float32 operands, its double forms on a float64, as Numba types them; and the
    literals: a float64 (a Python float would take a float32 operand's type in NumPy 2)."""
    from numba import njit
    import math

    @njit(error_model="numpy")
    def numba_ops(x, y):
        return (np.sin(x), np.cos(x), np.tan(x), np.arcsin(x), np.arccos(x), np.arctan(x),
                np.sinh(x), np.cosh(x), np.arcsinh(x), np.arccosh(x), np.arctanh(x),
                np.exp2(x), np.log2(x), np.log10(x), np.sqrt(x), np.cbrt(x), np.sign(x),
                math.erf(x), math.erfc(x), math.lgamma(x), np.arctan2(x, y), np.hypot(x, y),
                np.fmod(x, y), x ** y, x * 0.1, np.float64(x) * y)

    numbers = uncompiled._Numbers()
    numbers.visit(ast.parse("total = 0.1 + np.float32(-0.1)"))
    point_one, minus_point_one = numbers.bound.values()
    assert type(point_one) is np.float64 and minus_point_one == np.float32(-0.1)
    names = uncompiled._names(True)
    np32, math32 = names["np"], names["math"]
    unary = [np32.sin, np32.cos, np32.tan, np32.arcsin, np32.arccos, np32.arctan, np32.sinh,
             np32.cosh, np32.arcsinh, np32.arccosh, np32.arctanh, np32.exp2, np32.log2,
             np32.log10, np32.sqrt, np32.cbrt, np32.sign, math32.erf, math32.erfc,
             math32.lgamma]
    binary = [np32.arctan2, np32.hypot, np32.fmod, names["_pow"]]
    with np.errstate(over="ignore"):  # 1e300 and the like: inf
        values = np.array(SPECIAL + [-np.nan, -0.0, 1e-45, 3e38] + list(
            np.random.default_rng(6).normal(size=40) * 20), np.float32)
    with np.errstate(all="ignore"):
        for x in values:
            for y in values[::4]:
                got = [f(x) for f in unary] + [f(x, y) for f in binary] + [
                    x * point_one, np.float64(x) * y]
                assert all(same_bits(a, b) for a, b in zip(got, numba_ops(x, y))), (x, y)

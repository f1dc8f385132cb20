"""Non-finite values, domain edges, conventions at kinks, threads, processes and the cache."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen import build, runtime


@pytest.fixture(scope="module", params=["kernel", "tape"])
def edges(request):
    return sd.compile("log(x) + 1/y + exp(z) + sqrt(w)", wrt=["x", "y", "z", "w"],
                      tier=request.param)


@pytest.mark.parametrize("point", [
    dict(x=0.0, y=1.0, z=0.0, w=1.0),       # log 0 = -inf, d = inf
    dict(x=-1.0, y=1.0, z=0.0, w=1.0),      # log of a negative: nan
    dict(x=1.0, y=0.0, z=0.0, w=1.0),       # division by zero: inf, d = -inf
    dict(x=1.0, y=1.0, z=1000.0, w=1.0),    # exp overflow: inf
    dict(x=1.0, y=1.0, z=0.0, w=0.0),       # sqrt 0 = 0, d = inf
    dict(x=np.nan, y=1.0, z=0.0, w=1.0),    # NaN in, NaN out
    dict(x=np.inf, y=np.inf, z=-np.inf, w=np.inf),
])
def test_domain_edges_behave_like_numpy(edges, point):
    value, grads = edges.value_and_grad(**point)
    with np.errstate(all="ignore"):
        x, y, z, w = (np.float64(point[k]) for k in "xyzw")
        expected = np.log(x) + 1 / y + np.exp(z) + np.sqrt(w)
        expected_grads = {"x": 1 / x, "y": -1 / y**2, "z": np.exp(z), "w": 0.5 / np.sqrt(w)}
    np.testing.assert_equal(value, expected)
    for k in grads:
        np.testing.assert_equal(grads[k], expected_grads[k], err_msg=k)


def test_check_finite_names_the_first_non_finite_output():
    f = sd.compile("log(x) * w", wrt=["w"], batch=["x"], reduce=None, check_finite=True)
    assert np.all(np.isfinite(f(w=2.0, x=np.array([1.0, 2.0]))))
    with pytest.raises(sd.NonFiniteError, match=r"value is -inf at index \(1,\)"):
        f(w=2.0, x=np.array([1.0, 0.0, -1.0]))
    g = sd.compile("exp(w * x)", wrt=["w"], check_finite=True)
    with pytest.raises(sd.NonFiniteError, match="value is inf"):
        g.value_and_grad(w=1000.0, x=1.0)
    with pytest.raises(FloatingPointError):  # NonFiniteError refines the builtin
        g.value_and_grad(w=1.0, x=np.inf)


def test_kinks_follow_pytorch_and_jax():
    f = sd.compile("relu(a) + abs(b) + max(c, d)", wrt=["a", "b", "c", "d"])
    assert f.grad(a=0.0, b=0.0, c=1.0, d=1.0) == {"a": 0.0, "b": 0.0, "c": 0.5, "d": 0.5}
    x = sd.tensor("x", (4,))
    g = sd.compile(sd.max(x), wrt=[x])
    np.testing.assert_array_equal(g.grad(x=np.array([1.0, 3.0, 3.0, 2.0]))["x"],
                                  [0.0, 0.5, 0.5, 0.0])


def test_stable_forms_are_finite_wherever_the_math_is():
    z = sd.tensor("z", ("n", 3))
    f = sd.compile(sd.sum(sd.logsumexp(z, axis=1)) + sd.sum(sd.softplus(z)), wrt=[z])
    big = np.array([[1000.0, -1000.0, 0.0], [-1e308, -1e308, -1e308], [1e308, 1e308, 1e308]])
    value, grads = f.value_and_grad(z=big[:1])
    assert value == pytest.approx(1000.0 + np.log1p(2 * np.exp(-1000.0)) + 1000.0 + np.log(2.0))
    assert np.all(np.isfinite(grads["z"]))
    value, grads = f.value_and_grad(z=big[1:2])  # equal, hugely negative logits
    assert value == pytest.approx(-1e308 + np.log(3.0), rel=1e-12)
    np.testing.assert_allclose(grads["z"], [[1 / 3, 1 / 3, 1 / 3]])


def test_two_threads_share_one_kernel(logistic, logistic_data):
    _, loss = logistic
    rng = np.random.default_rng(0)
    batches = [{**logistic_data, "x0": rng.normal(size=37), "w0": rng.normal()}
               for _ in range(40)]
    serial = [loss.value_and_grad(**b) for b in batches]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda b: loss.value_and_grad(**b), batches))
    for (v1, g1), (v2, g2) in zip(serial, threaded):
        np.testing.assert_array_equal(v1, v2)
        for k in g1:
            np.testing.assert_array_equal(g1[k], g2[k])


COMPILE_AND_PRINT = """
import symdiff as sd
f = sd.compile("sin(a*x) * exp(-b*x) + a*b", wrt=["a", "b"], batch=["x"])
import numpy as np
value, grads = f.value_and_grad(a=1.5, b=0.25, x=np.linspace(0, 3, 11))
print(repr(value), repr(grads["a"]), repr(grads["b"]))
"""


def test_two_processes_compile_the_same_model_into_one_cache(tmp_path):
    env = {**os.environ, build.ENV_VAR: str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", COMPILE_AND_PRINT], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0] and outputs[0][0].strip()
    modules = {path.name for path in (tmp_path / "cache").glob("k_*.py")}
    shared = f"k_{build.source_key(runtime.RUNTIME_SOURCE)}.py"  # np.dot, which this model
    assert shared not in modules and len(modules) == 2  # never calls: the model's kernel and
    # its steps' entry (the optimizers' update loops and a rule's step come with a first step)
    assert (tmp_path / "cache").stat().st_mode & 0o077 == 0
    report = COMPILE_AND_PRINT + "print(f.wait().from_cache, sorted(f.timings))\n"
    third = subprocess.run([sys.executable, "-c", report], env=env, text=True,
                           capture_output=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines()[-1] == \
        "True ['compile', 'differentiate', 'emit', 'front end', 'kernel ready']"


def test_the_cache_reads_and_writes_utf8_whatever_the_locale(tmp_path, monkeypatch):
    """Regression: LLVM switches the whole process's locale to "C" for moments while Numba
    compiles (llvmlite's printing of a module, 14 million of 28 million reads of the encoding
    from another thread saw ASCII), and symdiff compiles on background threads. The cache
    wrote and read module text in the locale's encoding: a module with non-ASCII text failed
    to write under "C", and a CI run's page read failed the same way. Written and read here
    under "C", as a compile on another thread could make it."""
    import locale
    monkeypatch.setenv(build.ENV_VAR, str(tmp_path))
    source = '"""a generated module for σ — θ"""\nVALUE = "σ"\n'
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        assert locale.getpreferredencoding(False) != "UTF-8"  # as LLVM leaves it, for moments
        module, reused = build.load_module(source)
        assert not reused and module.VALUE == "σ"
        del sys.modules[module.__name__]
        assert build.load_module(source)[1]  # read back, valid: reused as is
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_a_corrupt_cache_entry_is_rebuilt_never_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv(build.ENV_VAR, str(tmp_path))
    source = '"""a generated module"""\nVALUE = 42\n'
    path = tmp_path / f"k_{build.source_key(source)}.py"
    path.write_text(source[:10], encoding="utf-8")  # a truncated write
    module, reused = build.load_module(source)
    assert not reused and module.VALUE == 42 and path.read_text(encoding="utf-8") == source
    del sys.modules[module.__name__]
    assert build.load_module(source)[1]  # now valid: reused as is


def test_a_cache_others_can_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv(build.ENV_VAR, str(shared))
    with pytest.raises(PermissionError, match="can be written by others"):
        build.cache_dir()


# ---------------------------------------------------------------- float32

LOGISTIC_L2 = "log(1 + exp(-y*(w0*x0 + w1*x1 + b))) + 0.5*w0**2"


def float32_variables(kernel):
    """{variable: Numba type} of every compiled function of a kernel's module."""
    module = kernel._module
    types = {}
    for name, fn in vars(module).items():
        if name.startswith(("kernel", "_loop")) and hasattr(fn, "overloads"):
            for result in fn.overloads.values():
                types.update({k: str(t) for k, t in result.type_annotation.typemap.items()})
    return types


def test_float32_models_compute_in_float32_and_agree_with_float64(tmp_path, monkeypatch):
    monkeypatch.setenv(build.ENV_VAR, str(tmp_path))  # compile afresh: Numba keeps the types
    kwargs = dict(wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"])
    single, double = sd.compile(LOGISTIC_L2, dtype="float32", **kwargs), sd.compile(LOGISTIC_L2,
                                                                                      **kwargs)
    rng = np.random.default_rng(4)
    data = dict(w0=0.3, w1=-0.2, b=0.1, x0=rng.normal(size=500), x1=rng.normal(size=500),
                y=np.sign(rng.normal(size=500)))
    value, grads = single.value_and_grad(**data)
    reference, reference_grads = double.value_and_grad(**data)
    assert isinstance(value, np.float32) and all(isinstance(g, np.float32) for g in grads.values())
    assert value == pytest.approx(reference, rel=1e-6)
    assert grads == pytest.approx(reference_grads, rel=1e-5)
    single.wait()  # (the first call may have run the kernel's module under CPython)
    types = float32_variables(single._kernel("grad"))
    statements = {s.name for s in single.program.stmts if s.node.op == "elementwise"}
    promoted = {k: t for k, t in types.items() if k.split(".")[0] in statements and t != "float32"}
    assert not promoted  # no constant or temporary silently became float64
    parts = {t for k, t in types.items() if k.startswith("part_")}
    assert parts == {"array(float64, 2d, C)"}  # batch sums accumulate in float64


def test_float32_mlp_matches_float64_within_float32_tolerance(mlp):
    from conftest import mlp_arguments
    X = sd.tensor("X", ("n", 6), dtype="float32"); y = sd.tensor("y", ("n",), dtype=int)
    W1 = sd.tensor("W1", (6, 5), "float32"); b1 = sd.tensor("b1", (5,), "float32")
    W2 = sd.tensor("W2", (5, 3), "float32"); b2 = sd.tensor("b2", (3,), "float32")
    loss = sd.mean(sd.softmax_cross_entropy(sd.relu(X @ W1 + b1) @ W2 + b2, y))
    single = sd.compile(loss, wrt=[W1, b1, W2, b2])
    a = mlp_arguments(64)
    value, grads = single.value_and_grad(**a)
    reference, reference_grads = mlp.value_and_grad(**a)
    assert value.dtype == np.float32 and value == pytest.approx(reference, rel=1e-6)
    for k in grads:
        assert grads[k].dtype == np.float32
        np.testing.assert_allclose(grads[k], reference_grads[k], rtol=2e-4, atol=1e-6)


def test_mixed_float_widths_are_refused_as_a_dtype_error():
    # was a ShapeError: a float32/float64 mix is a type error, as NumPy and JAX users expect
    x = sd.tensor("x", (3,), "float32"); w = sd.tensor("w", (3,))
    with pytest.raises(sd.DtypeError, match=r"mix float32 \(x\) and float64") as caught:
        sd.compile(sd.sum(x * w), wrt=[w])
    assert isinstance(caught.value, TypeError) and not isinstance(caught.value, ValueError)


def test_check_finite_also_checks_sgd_step():
    f = sd.compile("log(x) * w", wrt=["w"], batch=["x"], check_finite=True)
    w = np.array(1.0)
    assert f.sgd_step(0.1, w=w, x=np.array([1.0, np.e])) == pytest.approx(0.5)
    with pytest.raises(sd.NonFiniteError, match="value is -inf"):
        f.sgd_step(0.1, w=w, x=np.array([0.0, 1.0]))
    assert w == pytest.approx(0.95)  # raised before the update: nothing changed


@pytest.mark.parametrize("call", ["__call__", "grad", "value_and_grad"])
def test_inputs_by_position_are_refused_with_the_keyword_call(product, call):
    # NumPy and JAX habits: f(1.0, 2.0) met Python's "takes 1 positional argument"; inputs are
    # named (f.inputs' order need not be the formula's), so the error shows the keyword call
    with pytest.raises(sd.ArgumentError, match=r"by name, not by position \(3 given\): "
                                               r".*\(x=\.\.\., y=\.\.\., z=\.\.\.\)"):
        getattr(product, call)(-2.0, 5.0, -4.0)

"""The tape tier: scalar-per-sample Programs run on the interpreter compiled once, with no
compile per model. Checked against the NumPy interpreter, finite differences and values worked
by hand; the kernel tier's own tests run on the tape too where they are parametrized by tier."""
import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen import interpreter
from symdiff.codegen.compiled import TAPE_MIN_STATEMENTS
from conftest import at_one_and_two_threads, mlp_arguments
from symdiff.errors import ArgumentError, ShapeError
from symdiff.numpy_eval import run

# every instruction but the unary functions (test_compiled's every-function model has those)
CONSTRUCTS = ("where(x > y, x**3, y**-2) + where(x >= y, 1, 0)*x + where(x < y, 2.5, 3)*y"
              " + where(x <= y, x, -y)"
              " + x**y + x**1.5 + y**0.5 + 1/x + 2 - y + (x + 3)*c + 2.5*x/y - c"
              " + relu(x - y)*abs(y - c) + max(x, y, c) + min(x, c) + atan2(x, y)*3.25"
              " + sin(c*x)*cos(c*x) + softplus(c - x)*sigmoid(x + c)")


def construct_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0.2, 2.0, n), rng.uniform(0.2, 2.0, n)
    y[:8] = x[:8]  # ties: where(x == y, ...) is taken, relu and max sit on their kinks
    return dict(x=x, y=y, c=0.7)


@pytest.fixture(scope="module", params=["mean", None])
def constructs(request):
    """(reduce, model): a mean loss by x, y and c, or per-example values and gradients by c."""
    wrt = ["x", "y", "c"] if request.param else ["c"]
    return request.param, sd.compile(CONSTRUCTS, wrt=wrt, batch=["x", "y"],
                                     reduce=request.param, tier="tape")


@pytest.fixture(scope="module")
def mean_constructs():
    return sd.compile(CONSTRUCTS, wrt=["x", "y", "c"], batch=["x", "y"], tier="tape")


def test_every_construct_matches_the_numpy_interpreter(constructs):
    reduce, f = constructs
    assert f.tier == "tape" and "precompiled interpreter" in f.source
    data = construct_data()
    value, grads = f.value_and_grad(**data)
    reference = run(f.program, data)
    np.testing.assert_allclose(value, reference["value"], rtol=1e-13)
    for name in f.wrt:
        np.testing.assert_allclose(grads[name], reference[f"d{name}"], rtol=1e-12, atol=1e-14,
                                   err_msg=name)
    np.testing.assert_allclose(f(**data), value, rtol=1e-15)


def test_gradients_of_every_construct_match_finite_differences(constructs):
    _, f = constructs
    data = construct_data(seed=1)
    data["y"] = data["y"] + 0.01  # off the ties: differences straddle no kink
    assert sd.check_grad(f, **data) < 1e-6


def test_hvp_on_the_tape_matches_differences_of_the_gradient(mean_constructs):
    f = mean_constructs
    data = construct_data(seed=2)
    data["y"] = data["y"] + 0.01
    h = 1e-6
    plus = f.grad(**{**data, "c": data["c"] + h})
    minus = f.grad(**{**data, "c": data["c"] - h})
    hv = f.hvp({"c": 1.0}, **data)
    assert f._kernel("hvp").tier == "tape"
    for name in f.wrt:
        numeric = (plus[name] - minus[name]) / (2 * h)
        np.testing.assert_allclose(hv[name], numeric, rtol=1e-5, atol=1e-7, err_msg=name)


def test_the_tests_reach_every_instruction(mean_constructs):
    from test_compiled import BINARY, UNARY
    terms = [f"{u}(x)" for u in UNARY] + [f"{b}(x, x + 1)" for b in BINARY]
    functions = sd.compile(" + ".join(terms), wrt=["x"], batch=["x"], tier="tape")
    x, y = sd.tensor("x", ("n",)), sd.tensor("y", ("n",))
    alone = sd.compile(sd.sum(sd.where(x == y, x * y, y) + sd.sin(x * y) + sd.cos(x + y)),
                       wrt=[x, y], tier="tape")  # == and sin, cos apart come from Tensors
    data = construct_data()
    xs, ys = data["x"], data["y"]
    value, grads = alone.value_and_grad(x=xs, y=ys)
    ties = xs == ys
    assert value == pytest.approx(np.sum(np.where(ties, xs * ys, ys) + np.sin(xs * ys)
                                         + np.cos(xs + ys)), rel=1e-13)
    np.testing.assert_allclose(grads["x"], np.where(ties, ys, 0) + ys * np.cos(xs * ys)
                               - np.sin(xs + ys), rtol=1e-12)
    from test_scan import _per_sample
    y0, xs, zs = (sd.tensor(k, s) for k, s in (("y0", ("n",)), ("xs", ("K", "n")),
                                               ("zs", ("K", "n"))))
    loops = sd.compile(sd.sum(_per_sample(y0, xs, zs, sd.sin, sd.cos, sd.scan)),
                       wrt=[y0, xs, zs], tier="tape")  # loop rows: swell-like recurrences
    used = set()
    for compiled in (mean_constructs, functions, alone, loops):
        for kind in ("grad", "value", "hvp"):
            tape = compiled._kernel(kind).tape
            used.update(interpreter.OPCODES[op] for op in tape.code[:, 0])
            used.update(interpreter.OPCODES[op] for op in tape.epilogue[:, 0])
    assert used == set(interpreter.OPCODES)


def test_the_lecture_neuron_on_the_tape():
    f = sd.compile("1/(1+exp(-(w0*x0+w1*x1+w2)))", wrt=["w0", "w1", "w2", "x0", "x1"],
                   tier="tape")
    value, grads = f.value_and_grad(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0)
    assert value == pytest.approx(0.7310585786300049, rel=1e-15)
    expected = dict(w0=-0.1966119332, w1=-0.3932238665, w2=0.1966119332, x0=0.3932238665,
                    x1=-0.5898357997)
    assert grads == pytest.approx(expected, abs=1e-10)


def deep(xs):
    y = xs[0]
    for x in xs[1:]:
        y = sd.sin(y) * x + sd.cos(y * x)
    return y


def deep_reference(X):
    """y_K and dy_K/dx_k per sample, by forward values and a backward product by hand."""
    y = X[0].copy()
    local_y, local_x = [], []
    for x in X[1:]:
        local_y.append(np.cos(y) * x - np.sin(y * x) * x)
        local_x.append(np.sin(y) - np.sin(y * x) * y)
        y = np.sin(y) * x + np.cos(y * x)
    grads, dy = [None] * len(X), np.ones_like(y)
    for k in range(len(X) - 1, 0, -1):
        grads[k] = dy * local_x[k - 1]
        dy = dy * local_y[k - 1]
    grads[0] = dy
    return y, grads


@pytest.fixture(scope="module")
def deep_model():
    K = 60
    xs = [sd.tensor(f"x{k}", ("n",)) for k in range(K + 1)]
    return K, sd.compile(sd.sum(deep(xs)), wrt=xs)


def test_auto_takes_the_tape_for_a_deep_formula_and_is_exact(deep_model):
    K, f = deep_model
    assert f.tier == "tape" and len(f.program.stmts) >= TAPE_MIN_STATEMENTS
    assert "compile" not in f.timings and "tape" in f.timings  # nothing compiled for it
    X = np.random.default_rng(5).uniform(-1, 1, (K + 1, 1000))
    value, grads = f.value_and_grad(**{f"x{k}": X[k] for k in range(K + 1)})
    y, expected = deep_reference(X)
    assert value == pytest.approx(y.sum(), rel=1e-12)
    for k in range(K + 1):
        np.testing.assert_allclose(grads[f"x{k}"], expected[k], rtol=1e-9, atol=1e-12)


@pytest.mark.campaign  # the kernel tier's same check runs by default: test_threads.py
def test_the_tape_gives_the_same_bits_at_one_and_two_threads(deep_model):
    K, f = deep_model
    X = np.random.default_rng(6).uniform(-1, 1, (K + 1, 30_000))
    arguments = {f"x{k}": X[k] for k in range(K + 1)}
    one, two = at_one_and_two_threads(lambda: f.value_and_grad(**arguments))
    assert one[0] == two[0]
    for k in range(K + 1):
        np.testing.assert_array_equal(one[1][f"x{k}"], two[1][f"x{k}"])
    small = f.value_and_grad(**{k: v[:100] for k, v in arguments.items()})  # one group
    assert small[0] == pytest.approx(deep_reference(X[:, :100])[0].sum(), rel=1e-12)


def test_bad_arguments_get_the_same_clear_errors(deep_model):
    K, f = deep_model
    good = {f"x{k}": np.zeros(5) for k in range(K + 1)}
    with pytest.raises(ArgumentError, match="missing argument x3"):
        f.grad(**{k: v for k, v in good.items() if k != "x3"})
    with pytest.raises(ArgumentError, match="unknown argument z"):
        f.grad(**good, z=1.0)
    with pytest.raises(ShapeError, match="x2 has n = 4 on axis 0, but x0 has n = 5"):
        f.grad(**{**good, "x2": np.zeros(4)})
    with pytest.raises(ShapeError, match="x1 must have shape"):
        f.grad(**{**good, "x1": np.zeros((5, 2))})
    lists = f.value_and_grad(**{k: list(v + 0.5) for k, v in good.items()})
    arrays = f.value_and_grad(**{k: v + 0.5 for k, v in good.items()})
    assert lists[0] == arrays[0]


def test_models_the_tape_cannot_run_fall_back_or_say_why(mlp):
    assert mlp.wait().tier == "kernel"
    X, y = sd.tensor("X", ("n", 6)), sd.tensor("y", ("n",), dtype=int)
    W = sd.tensor("W", (6, 3))
    with pytest.raises(ArgumentError, match="tier='tape' cannot run this model"):
        sd.compile(sd.mean(sd.softmax_cross_entropy(X @ W, y)), wrt=[W], tier="tape")
    x = sd.tensor("x", ("n",))
    centred = sd.sum((x - sd.mean(x)) ** 2)
    with pytest.raises(ArgumentError, match="depends on a batch sum"):
        sd.compile(centred, wrt=[x], tier="tape")
    with pytest.raises(ArgumentError, match="float32"):
        sd.compile("x * w", wrt=["w"], batch=["x"], dtype="float32", tier="tape")
    with pytest.raises(ArgumentError, match="tier must be one of"):
        sd.compile("x * w", wrt=["w"], tier="gpu")
    arguments = mlp_arguments(4)
    assert np.isfinite(mlp(**arguments))


def test_kernel_and_tape_agree_on_per_example_gradients():
    formula = "log(1 + exp(-y*(w0*x0 + w1*x1 + b)))"
    data = dict(w0=0.4, w1=-0.7, b=0.1, x0=np.linspace(-2, 2, 9), x1=np.linspace(1, -1, 9),
                y=np.array([1.0, -1.0] * 4 + [1.0]))
    tape = sd.compile(formula, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], reduce=None,
                      tier="tape")
    values, grads = tape.value_and_grad(**data)
    margin = data["y"] * (0.4 * data["x0"] - 0.7 * data["x1"] + 0.1)
    np.testing.assert_allclose(values, np.logaddexp(0, -margin), rtol=1e-14)
    slope = -data["y"] / (1 + np.exp(margin))  # d loss / d (w.x + b), per example
    for name, feature in (("w0", data["x0"]), ("w1", data["x1"]), ("b", 1.0)):
        np.testing.assert_allclose(grads[name], slope * feature, rtol=1e-12, err_msg=name)


def test_sgd_step_on_the_tape_updates_in_place(mean_constructs):
    f = mean_constructs
    data = construct_data(seed=3)
    value, grads = f.value_and_grad(**data)
    params = {"x": data["x"].copy(), "y": data["y"].copy(), "c": np.array(data["c"])}
    assert f.sgd_step(0.01, **params) == value
    for name in f.wrt:
        np.testing.assert_allclose(params[name], data[name] - 0.01 * grads[name], rtol=1e-15,
                                   err_msg=name)
    with pytest.raises(ArgumentError, match="updates c in place"):
        f.sgd_step(0.01, **{**params, "c": 0.7})


def test_an_input_may_share_the_batch_dimension_s_name():
    f = sd.compile("n * x", wrt=["n"], batch=["x"], tier="tape")  # the mean divides by len(x)
    value, grads = f.value_and_grad(n=3.0, x=np.array([1.0, 2.0, 4.0, 5.0]))
    assert value == pytest.approx(9.0) and grads["n"] == pytest.approx(3.0)


def test_importing_the_tier_machinery_builds_no_composite_definition():
    """Which records get an instruction of the interpreter is read without building any
    composite record's definition: erfinv's alone took 0.14 s of every process that loaded
    a kernel, tape or not. In a new process, so no earlier test has built them."""
    import subprocess
    import sys
    script = ("import symdiff.codegen.compiled\n"
              "from symdiff.functions import FUNCTIONS\n"
              "print([name for name, r in FUNCTIONS.items()\n"
              "       if r.composite and not callable(r.lazy_definition)])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"

"""`sd.compile` end to end: front ends, known values, batches, check_grad and errors."""

import numpy as np
import pytest
import sympy as sp
from scipy import special

import symdiff as sd
from symdiff.functions import BUILTINS, FUNCTIONS
from campaign import CAMPAIGN, slice_of
from conftest import LOGISTIC, mlp_arguments
from symdiff.errors import ArgumentError, DomainError, ShapeError

NEURON = dict(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0)
NEURON_GRAD = dict(w0=-0.1966119332, w1=-0.3932238665, w2=0.1966119332, x0=0.3932238665,
                   x1=-0.5898357997)


def test_lecture_product(product):
    assert product(x=-2.0, y=5.0, z=-4.0) == -12.0
    value, grads = product.value_and_grad(x=-2.0, y=5.0, z=-4.0)
    assert value == -12.0 and grads == {"x": -4.0, "y": -4.0, "z": 3.0}
    assert isinstance(value, float) and all(isinstance(g, float) for g in grads.values())
    assert product.grad(x=-2.0, y=5.0, z=-4.0) == grads
    assert product.wrt == ("x", "y", "z") and set(product.inputs) == {"x", "y", "z"}


def test_sigmoid_neuron_and_its_adjoint_reads_like_the_lecture(neuron):
    value, grads = neuron.value_and_grad(**NEURON)
    assert value == pytest.approx(0.7310585786, abs=1e-10)
    assert grads == pytest.approx(NEURON_GRAD, abs=1e-10)
    program = str(neuron.program)
    assert "sigmoid5 = sigmoid(add4)" in program  # f = 1/(1+exp(-dot)), recognised
    assert "dadd4 = sigmoid5*(1 - sigmoid5)" in program  # ddot = (1 - f) * f, from stored f
    assert "dw0 = x0*dadd4" in program and "dx0 = w0*dadd4" in program


@pytest.mark.parametrize("front_end", ["sympy", "function"])
def test_sympy_and_function_front_ends_agree_with_formulas(front_end):
    if front_end == "sympy":
        x1, x2 = sp.symbols("x1 x2")
        model = sp.log(x1) + x1 * x2 - sp.sin(x2)
        f = sd.compile(model, wrt=[x1, x2])
    else:
        def model(x1, x2):
            return sd.log(x1) + x1 * x2 - sd.sin(x2)
        f = sd.compile(model, wrt=["x1", "x2"])
    value, grads = f.value_and_grad(x1=2.0, x2=5.0)
    assert value == pytest.approx(11.6520714552, abs=1e-10)
    assert grads == pytest.approx({"x1": 5.5, "x2": 1.7163378145}, abs=1e-10)


def test_fan_out_and_logistic_loss_formulas():
    f = sd.compile("x1*x2 + sin(x2)", wrt=["x1", "x2"])
    assert f.grad(x1=2.0, x2=5.0) == pytest.approx({"x1": 5.0, "x2": 2.2836621855}, abs=1e-10)
    g = sd.compile("-y*log(1/(1 + exp(-W*X)))", wrt=["W"])
    value, grads = g.value_and_grad(X=3.0, y=1.0, W=3.0)
    assert value == pytest.approx(1.234021897e-4, rel=1e-9)
    assert grads["W"] == pytest.approx(-3.701837280e-4, rel=1e-9)
    assert g.value_and_grad(X=3.0, y=1.0, W=-300.0) == (900.0, {"W": -3.0})  # no overflow


def numpy_logistic(a):
    margin = -a["y"] * (a["w0"] * a["x0"] + a["w1"] * a["x1"] + a["b"])
    loss = np.logaddexp(0.0, margin)
    slope = -a["y"] / (1 + np.exp(-margin))
    return loss, {"w0": slope * a["x0"], "w1": slope * a["x1"], "b": slope}


REDUCE = {"mean": np.mean, "sum": np.sum, None: lambda x: x}


def test_batch_reductions_match_a_numpy_loop(logistic, logistic_data):
    reduce, loss = logistic
    value, grads = loss.value_and_grad(**logistic_data)
    per_sample, per_grads = numpy_logistic(logistic_data)
    np.testing.assert_allclose(value, REDUCE[reduce](per_sample), rtol=1e-13)
    for k in ("w0", "w1", "b"):
        np.testing.assert_allclose(grads[k], REDUCE[reduce](per_grads[k]), rtol=1e-12,
                                   atol=1e-15)
    np.testing.assert_allclose(loss(**logistic_data), value, rtol=1e-15)
    assert sd.check_grad(loss, **logistic_data) < 1e-7


def test_one_kernel_serves_every_batch_size(logistic, logistic_data):
    reduce, loss = logistic
    for n in (1, 2, 17, 1000):
        data = {k: (v[:n] if np.ndim(v) else v) for k, v in logistic_data.items()}
        if n > len(logistic_data["y"]):
            data = {k: (np.resize(v, n) if np.ndim(v) else v) for k, v in logistic_data.items()}
        value, grads = loss.value_and_grad(**data)
        per_sample, per_grads = numpy_logistic(data)
        np.testing.assert_allclose(value, REDUCE[reduce](per_sample), rtol=1e-12)
        np.testing.assert_allclose(grads["w0"], REDUCE[reduce](per_grads["w0"]), rtol=1e-11)


def test_stable_forms_keep_the_logistic_loss_finite(logistic):
    reduce, loss = logistic
    data = dict(w0=1.0, w1=0.0, b=0.0, x0=np.array([1000.0, -1000.0]), x1=np.zeros(2),
                y=np.array([1.0, 1.0]))
    value, grads = loss.value_and_grad(**data)
    per_sample = np.array([0.0, 1000.0])  # log(1 + e^-1000) ~ 0 and log(1 + e^1000) ~ 1000
    np.testing.assert_allclose(value, REDUCE[reduce](per_sample), rtol=1e-12)
    slope = np.array([0.0, -1.0])  # d/dw0 = -y x0 sigmoid(margin)
    np.testing.assert_allclose(grads["w0"], REDUCE[reduce](slope * data["x0"]), rtol=1e-12)


# every function record, differentiated at many points by a few per-sample models:
# d/dc f(u + c) at c = 0 is f'(u), compared with central differences of its NumPy evaluation
PUBLIC = {name: record for name, record in FUNCTIONS.items() if not record.internal}
NUMPY = {name: record.numpy for name, record in PUBLIC.items()}
DOMAIN = {name: record.domain for name, record in PUBLIC.items()}
BINARY = sorted(name for name, record in PUBLIC.items() if record.arity in (None, 2))
TERNARY = sorted(name for name, record in PUBLIC.items() if record.arity == 3)
UNARY = sorted(set(NUMPY) - set(BINARY) - set(TERNARY))


def _every_term():
    """(term, its parameters, its batch inputs) for each function record, numbered k within
    its arity as the test's data names them."""
    terms = [(f"{f}(u{k} + c{k})", [f"c{k}"], [f"u{k}"]) for k, f in enumerate(UNARY)]
    terms += [(f"{f}(p{k} + a{k}, q{k} + b{k})", [f"a{k}", f"b{k}"], [f"p{k}", f"q{k}"])
              for k, f in enumerate(BINARY)]
    terms += [(f"{f}(r{k} + e{k}, s{k} + g{k}, t{k} + h{k})", [f"{v}{k}" for v in "egh"],
               [f"{v}{k}" for v in "rst"]) for k, f in enumerate(TERNARY)]
    return terms


TERMS_PER_MODEL = 8
# a test per kernel, so both workers compile them at once (from 1 s to 10 s of CPU each, the
# one of digamma and erfinv the longest); the tape's models in one test
PARTS = {"kernel": -(-len(_every_term()) // TERMS_PER_MODEL), "tape": 1}


@pytest.fixture(scope="session", params=[(tier, part) for tier, parts in PARTS.items()
                                         for part in range(parts)], ids="{0[0]}-{0[1]}".format)
def every_function(request):
    """[(model, params, batch)]: every function record in per-sample models of 8 terms each
    (one kernel of them all compiled in 1.5 times their CPU time: Numba's compile time grows
    with the square of a kernel's length); this part's models: every PARTS[tier]-th of them."""
    tier, part = request.param
    terms, models = _every_term(), []
    starts = range(0, len(terms), TERMS_PER_MODEL)[part::PARTS[tier]]
    for start in starts:
        group = terms[start:start + TERMS_PER_MODEL]
        params = [p for _, names, _ in group for p in names]
        batch = [b for _, _, names in group for b in names]
        f = sd.compile(" + ".join(t for t, _, _ in group), wrt=params, batch=batch,
                       reduce=None, tier=tier)
        assert f.wait().tier == tier
        models.append((f, params, batch))
    return models


@CAMPAIGN  # each function's derivative: against mpmath in test_vocabulary's default run
def test_every_function_derivative_against_finite_differences(every_function):
    """This part's functions (the data for all, drawn alike in every part)."""
    assert set(UNARY + BINARY + TERNARY) == set(BUILTINS) - {"finite"}  # finite: our guards
    assert set(UNARY + BINARY + TERNARY) | {"where"} <= set(sd.parse.known_functions())
    rng = np.random.default_rng(3)
    n = 40
    data = {p: 0.0 for _, names, _ in _every_term() for p in names}
    for k, name in enumerate(UNARY):
        lo, hi = DOMAIN[name]
        u = rng.uniform(lo, hi, n)
        data[f"u{k}"] = np.where(np.abs(u) < 0.05, 0.5, u)  # away from the kinks of abs, relu
    for k, name in enumerate(BINARY):  # in the domain: xlogy's y > 0, mod's y away from 0
        lo, hi = max(DOMAIN[name][0], -2), min(DOMAIN[name][1], 2)
        data[f"p{k}"], data[f"q{k}"] = rng.uniform(lo, hi, n), rng.uniform(lo, hi, n)
    for k in range(len(TERNARY)):
        data[f"r{k}"], data[f"s{k}"], data[f"t{k}"] = (rng.uniform(-2, 2, n) for _ in "rst")
    grads = {}
    for f, names, batch in every_function:
        grads.update(f.grad(**{n: data[n] for n in names + batch}))
    h = 1e-6
    for k, name in enumerate(UNARY):
        if f"c{k}" not in grads:
            continue  # in another part
        u = data[f"u{k}"]
        numeric = (NUMPY[name](u + h) - NUMPY[name](u - h)) / (2 * h)
        np.testing.assert_allclose(grads[f"c{k}"], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    for k, name in enumerate(BINARY):
        if f"a{k}" not in grads:
            continue
        p, q = data[f"p{k}"], data[f"q{k}"]
        for wrt, dp, dq in ((f"a{k}", h, 0), (f"b{k}", 0, h)):
            numeric = (NUMPY[name](p + dp, q + dq) - NUMPY[name](p - dp, q - dq)) / (2 * h)
            np.testing.assert_allclose(grads[wrt], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    for k, name in enumerate(TERNARY):
        if f"e{k}" not in grads:
            continue
        point = [data[f"{v}{k}"] for v in "rst"]
        for j, wrt in enumerate(f"{v}{k}" for v in "egh"):
            up = [x + h * (i == j) for i, x in enumerate(point)]
            down = [x - h * (i == j) for i, x in enumerate(point)]
            numeric = (NUMPY[name](*up) - NUMPY[name](*down)) / (2 * h)
            np.testing.assert_allclose(grads[wrt], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
    for f, names, batch in every_function:
        assert sd.check_grad(f, **{n: data[n] for n in names + batch}) < 1e-6


def test_min_and_max_split_ties_evenly_like_jax():
    f = sd.compile("max(x, y) + 2*min(x, y)", wrt=["x", "y"])
    assert f.grad(x=1.0, y=1.0) == {"x": 1.5, "y": 1.5}
    assert f.grad(x=2.0, y=1.0) == {"x": 1.0, "y": 2.0}


@pytest.mark.parametrize("tier", slice_of(["kernel", "auto"], {"auto"}))
def test_depth_200_chain_compiles_runs_and_is_exact(tier):
    def chain(x, a):
        y = x
        for _ in range(200):
            y = sd.sin(y) * a + 0.1 * y
        return y
    f = sd.compile(chain, wrt=["x", "a"], tier=tier)
    assert len(f.program.stmts) > 1000 and \
        f.wait().tier == ("kernel" if tier == "kernel" else "tape")
    value, grads = f.value_and_grad(x=0.3, a=1.1)
    y, dy_dx, dy_da = 0.3, 1.0, 0.0  # forward-mode by hand, for an independent reference
    for _ in range(200):
        dy_dx, dy_da = (np.cos(y) * 1.1 + 0.1) * dy_dx, (np.cos(y) * 1.1 + 0.1) * dy_da + np.sin(y)
        y = np.sin(y) * 1.1 + 0.1 * y
    assert value == pytest.approx(y, rel=1e-12)
    assert grads["a"] == pytest.approx(dy_da, rel=1e-9)
    assert grads["x"] == pytest.approx(dy_dx, rel=1e-9, abs=1e-300)


def test_tensor_mlp_matches_the_lectures_backward_pass(mlp):
    for n in (1, 7, 128):
        a = mlp_arguments(n, seed=n)
        value, grads = mlp.value_and_grad(**a)
        z1 = a["X"] @ a["W1"] + a["b1"]
        h = np.maximum(z1, 0)
        z2 = h @ a["W2"] + a["b2"]
        p = np.exp(z2 - z2.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert value == pytest.approx(-np.mean(np.log(p[np.arange(n), a["y"]])), rel=1e-12)
        delta2 = (p - np.eye(3)[a["y"]]) / n  # softmax - one-hot
        delta1 = (delta2 @ a["W2"].T) * (z1 > 0)  # the ReLU mask
        expected = {"W2": h.T @ delta2, "b2": delta2.sum(0), "W1": a["X"].T @ delta1,
                    "b1": delta1.sum(0)}
        for k, ref in expected.items():
            np.testing.assert_allclose(grads[k], ref, rtol=1e-10, atol=1e-14, err_msg=k)
    assert sd.check_grad(mlp, **mlp_arguments(5)) < 1e-7


# ---------------------------------------------------------------- errors


def test_missing_and_unknown_arguments_are_named(product):
    with pytest.raises(sd.ArgumentError, match="missing argument z"):
        product(x=1.0, y=2.0)
    with pytest.raises(sd.ArgumentError, match="unknown argument w.*takes x, y, z"):
        product(x=1.0, y=2.0, z=3.0, w=4.0)


@pytest.mark.parametrize("bad", ["2.0", None, [1.0], True, 1 + 2j])
def test_non_numeric_scalars_are_refused(product, bad):
    with pytest.raises(sd.ArgumentError, match="x must be a real number"):
        product(x=bad, y=2.0, z=3.0)


def test_batch_arrays_of_different_lengths(logistic, logistic_data):
    _, loss = logistic
    with pytest.raises(sd.ShapeError, match=r"x1 has n = 3 on axis 0, but y has n = 37"):
        loss(**{**logistic_data, "x1": np.zeros(3)})
    with pytest.raises(sd.ShapeError, match="x0 must have shape"):
        loss(**{**logistic_data, "x0": np.zeros((37, 2))})
    with pytest.raises(sd.ArgumentError, match="y must hold real numbers"):
        loss(**{**logistic_data, "y": np.array(["a"] * 37)})
    with pytest.raises(sd.ShapeError, match="empty dimension n"):
        loss(**{k: (v[:0] if np.ndim(v) else v) for k, v in logistic_data.items()})


def test_wrt_must_occur_in_the_model():
    with pytest.raises(sd.DifferentiationError, match="wrt 'q' does not occur.*x, y"):
        sd.compile("x * y", wrt=["x", "q"])
    with pytest.raises(sd.ArgumentError, match="wrt="):
        sd.compile("x * y")
    with pytest.raises(sd.ArgumentError, match="batch input 'u' does not occur"):
        sd.compile("x * y", wrt=["x"], batch=["u"])


def test_formula_errors_surface_from_compile():
    with pytest.raises(sd.ParseError, match="unknown function 'sine'"):
        sd.compile("sine(x)", wrt=["x"])
    with pytest.raises(sd.ParseError, match="col"):
        sd.compile("x +* y", wrt=["x"])


def test_non_scalar_tensor_loss_is_refused():
    W = sd.tensor("W", (3,))
    with pytest.raises(sd.DifferentiationError, match=r"scalar, but it has shape \(3,\)"):
        sd.compile(W * 2.0, wrt=[W])


def test_labels_are_checked_before_any_kernel_runs(mlp):
    a = mlp_arguments(4)
    with pytest.raises(sd.DomainError, match=r"y holds the label 3, outside \[0, 3\)"):
        mlp(**{**a, "y": np.array([0, 1, 3, 2])})
    with pytest.raises(sd.DomainError, match="label -1"):
        mlp.value_and_grad(**{**a, "y": np.array([0, -1, 1, 2])})
    with pytest.raises(sd.ArgumentError, match="y must hold integer labels"):
        mlp(**{**a, "y": np.array([0.0, 1.0, 1.0, 2.0])})
    with pytest.raises(sd.ShapeError, match=r"W1 must have shape \(6, 5\).*\(5, 6\)"):
        mlp(**{**a, "W1": a["W1"].T})


# ---------------------------------------------------------------- per-example gradients


def test_per_example_gradients_of_an_mlp_match_one_example_at_a_time(mlp):
    X = sd.tensor("X", ("n", 6)); y = sd.tensor("y", ("n",), dtype=int)
    W1 = sd.tensor("W1", (6, 5)); b1 = sd.tensor("b1", (5,))
    W2 = sd.tensor("W2", (5, 3)); b2 = sd.tensor("b2", (3,))
    losses = sd.softmax_cross_entropy(sd.relu(X @ W1 + b1) @ W2 + b2, y)
    per_example = sd.compile(losses, wrt=[W1, b1, W2, b2], reduce=None)
    a = mlp_arguments(6)
    values, grads = per_example.value_and_grad(**a)
    assert values.shape == (6,) and grads["W1"].shape == (6, 6, 5) and grads["b2"].shape == (6, 3)
    for i in range(6):  # the mean over a batch of one is that example's loss
        one = {**a, "X": a["X"][i:i + 1], "y": a["y"][i:i + 1]}
        value, single = mlp.value_and_grad(**one)
        assert values[i] == pytest.approx(value, rel=1e-12)
        for k in single:
            np.testing.assert_allclose(grads[k][i], single[k], rtol=1e-10, atol=1e-14)
    mean_value, mean_grads = mlp.value_and_grad(**a)
    np.testing.assert_allclose(grads["W2"].mean(axis=0), mean_grads["W2"], rtol=1e-10)


def test_per_example_gradients_through_parameter_only_subexpressions():
    f = sd.compile("exp(a) * x + b**2 * x**2", wrt=["a", "b"], batch=["x"], reduce=None)
    x = np.array([0.5, -1.0, 2.0])
    values, grads = f.value_and_grad(a=0.3, b=-0.7, x=x)
    np.testing.assert_allclose(values, np.exp(0.3) * x + 0.49 * x**2, rtol=1e-14)
    np.testing.assert_allclose(grads["a"], np.exp(0.3) * x, rtol=1e-14)
    np.testing.assert_allclose(grads["b"], -1.4 * x**2, rtol=1e-14)


def test_per_example_gradients_refuse_parameters_mixed_before_the_batch():
    W = sd.tensor("W", (3, 3)); X = sd.tensor("X", ("n", 3))
    with pytest.raises(sd.DifferentiationError, match="per-example"):
        sd.compile(sd.sum(X @ (W @ W), axis=1), wrt=[W], reduce=None)


def test_traced_function_over_arrays_with_declared_shapes():
    def model(X, w, b, t):
        return sd.binary_cross_entropy_with_logits(X @ w + b, t)
    f = sd.compile(model, wrt=["w", "b"], shapes={"X": ("n", 3), "w": (3,), "t": ("n",)},
                   reduce="mean")
    rng = np.random.default_rng(2)
    a = dict(X=rng.normal(size=(8, 3)), w=rng.normal(size=3), b=0.2,
             t=rng.integers(0, 2, 8).astype(float))
    z = a["X"] @ a["w"] + a["b"]
    value, grads = f.value_and_grad(**a)
    assert value == pytest.approx(np.mean(np.logaddexp(0, z) - a["t"] * z), rel=1e-13)
    residual = 1 / (1 + np.exp(-z)) - a["t"]  # sigmoid(z) - t, the lectures' BCE gradient
    np.testing.assert_allclose(grads["w"], a["X"].T @ residual / 8, rtol=1e-12)
    assert grads["b"] == pytest.approx(residual.mean(), rel=1e-12)


def test_sigmoid_and_bce_from_logits_stay_finite_beyond_700():
    z, t = sd.tensor("z", ("n",)), sd.tensor("t", ("n",))
    f = sd.compile(sd.sum(sd.binary_cross_entropy_with_logits(z, t) + sd.sigmoid(z)), wrt=[z])
    logits = np.array([-800.0, -710.0, 0.0, 710.0, 800.0])
    targets = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    value, grads = f.value_and_grad(z=logits, t=targets)
    s = special.expit(logits)
    expected = np.logaddexp(0, logits) - targets * logits + s
    assert np.isfinite(value) and value == pytest.approx(expected.sum(), rel=1e-14)
    np.testing.assert_allclose(grads["z"], s - targets + s * (1 - s), rtol=1e-14, atol=1e-300)


def test_shape_mismatch_names_both_shapes():
    X = sd.tensor("X", ("n", 64)); W = sd.tensor("W", (32, 10))
    with pytest.raises(sd.ShapeError, match=r"\(n, 64\) and \(32, 10\)"):
        X @ W
    with pytest.raises(sd.ShapeError, match=r"\(n, 10\) and \(3,\)"):
        sd.tensor("h", ("n", 10)) + sd.tensor("c", (3,))
    with pytest.raises(sd.ShapeError, match=r"X @ W.*col 1"):
        sd.compile("X @ W", wrt=["W"], shapes={"X": ("n", 4), "W": (5, 2)})


def test_user_names_may_be_the_generated_code_s_favourite_names():
    f = sd.compile("c*x + n*i - lo*hi + chunks", wrt=["c", "n", "i"], batch=["x", "hi"])
    x, hi = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.25, 2.0])
    value, grads = f.value_and_grad(c=2.0, n=5.0, i=-1.0, lo=4.0, chunks=0.5, x=x, hi=hi)
    assert value == pytest.approx(np.mean(2 * x - 5 - 4 * hi + 0.5), rel=1e-14)
    assert grads == pytest.approx({"c": 2.0, "n": -1.0, "i": 5.0}, rel=1e-14)
    with pytest.raises(sd.ArgumentError, match="'np' is reserved"):
        sd.compile("np * 2", wrt=["np"])


def test_scalars_may_come_as_numpy_scalars_ints_or_0d_arrays(product):
    for x, y, z in [(-2.0, 5.0, -4.0), (np.float64(-2), np.float32(5), np.array(-4.0)),
                    (-2, 5, -4)]:
        assert product.value_and_grad(x=x, y=y, z=z) == (-12.0, {"x": -4.0, "y": -4.0, "z": 3.0})


def test_sgd_step_moves_the_lecture_neuron_by_its_known_gradient():
    f = sd.compile("1/(1+exp(-(w0*x0+w1*x1+w2)))", wrt=["w0", "w1", "w2"])
    w = {name: np.array(value) for name, value in (("w0", 2.0), ("w1", -3.0), ("w2", -3.0))}
    loss = f.sgd_step(0.5, x0=-1.0, x1=-2.0, **w)
    assert loss == pytest.approx(0.7310585786300049, rel=1e-15)  # the value before the step
    known = {"w0": -0.1966119332, "w1": -0.3932238665, "w2": 0.1966119332}
    for name, start in (("w0", 2.0), ("w1", -3.0), ("w2", -3.0)):
        assert w[name].shape == () and w[name] == pytest.approx(start - 0.5 * known[name],
                                                                abs=1e-10)


def test_sgd_step_updates_every_parameter_array_in_place(mlp):
    arguments = mlp_arguments(9, seed=4)
    params = {k: arguments[k].copy() for k in mlp.wrt}
    value, grads = mlp.value_and_grad(**arguments)
    loss = mlp.sgd_step(0.25, **{**arguments, **params})
    assert loss == value
    for name in mlp.wrt:
        np.testing.assert_allclose(params[name], arguments[name] - 0.25 * grads[name],
                                   rtol=1e-15, atol=1e-16, err_msg=name)


def test_sgd_step_refuses_what_it_cannot_update_and_changes_nothing(mlp):
    arguments = mlp_arguments(6, seed=5)
    params = {k: arguments[k].copy() for k in mlp.wrt}
    before = {k: v.copy() for k, v in params.items()}
    frozen = params["W1"].copy()
    frozen.flags.writeable = False
    for _ in range(2):  # the first valid step below installs the generated sgd_step
        with pytest.raises(ArgumentError, match="updates W1 in place: .*not a read-only array"):
            mlp.sgd_step(0.1, **{**arguments, **params, "W1": frozen})
        with pytest.raises(ArgumentError, match="updates b2 in place.*not a list"):
            mlp.sgd_step(0.1, **{**arguments, **params, "b2": list(params["b2"])})
        with pytest.raises(ShapeError, match="y has n = 6 on axis 0, but X has n = 5"):
            mlp.sgd_step(0.1, **{**arguments, **params, "X": arguments["X"][:5]})
        with pytest.raises(DomainError, match="label 3"):
            mlp.sgd_step(0.1, **{**arguments, **params, "y": np.array([0, 1, 3, 0, 1, 2])})
        with pytest.raises(ArgumentError, match="learning rate lr must be a real number"):
            mlp.sgd_step(None, **{**arguments, **params})
        for bad in (-0.1, float("nan"), np.float64(-1.0)):
            with pytest.raises(ArgumentError, match="learning rate lr must lie in"):
                mlp.sgd_step(bad, **{**arguments, **params})
        with pytest.raises(ArgumentError, match="unknown argument"):
            mlp.sgd_step(0.1, **{**arguments, **params, "W3": params["W1"]})
        for name in mlp.wrt:
            np.testing.assert_array_equal(params[name], before[name], err_msg=name)
        copies = {k: v.copy() for k, v in params.items()}
        mlp.sgd_step(np.float64(0.0), **{**arguments, **copies})  # a rate of another class
        for name in mlp.wrt:
            np.testing.assert_array_equal(copies[name], before[name], err_msg=name)
    logistic = sd.compile("log(1 + exp(-y*w*x))", wrt=["w"], batch=["x", "y"], reduce=None)
    with pytest.raises(ArgumentError, match="step needs a scalar loss"):
        logistic.sgd_step(0.1, w=np.array(0.5), x=np.ones(3), y=np.ones(3))


def test_the_fast_path_converts_or_refuses_what_its_signature_does_not_match(logistic_data):
    loss = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], wait=True)
    data = dict(logistic_data)
    gate = loss._kernel("grad")._module.kernel  # compiled for one signature, closed to others
    assert len(gate.signatures) == 1
    x0 = data["x0"]
    readonly = x0.copy()
    readonly.flags.writeable = False
    strided = np.repeat(x0, 2)[::2]
    as_given = [({"x0": readonly}, {}), ({"x0": strided}, {}), ({"x0": list(x0)}, {}),
                ({"x0": x0.astype(np.float32)}, {"x0": x0.astype(np.float32).astype(float)}),
                ({"w0": 1}, {"w0": 1.0}), ({"y": data["y"].astype(int)}, {})]
    for odd, same in as_given:
        value, grads = loss.value_and_grad(**{**data, **odd})
        expected = loss.value_and_grad(**{**data, **(same or {k: np.asarray(v, dtype=float)
                                                               for k, v in odd.items()})})
        assert value == expected[0] and grads == expected[1], odd
    with pytest.raises(ShapeError, match="x0 has n = 5"):
        loss.value_and_grad(**{**data, "x0": x0[:5]})
    with pytest.raises(ArgumentError, match="w0 must be a real number, not bool"):
        loss.value_and_grad(**{**data, "w0": True})
    with pytest.raises(ArgumentError, match="x0 must hold real numbers"):
        loss.value_and_grad(**{**data, "x0": np.array(["a"] * len(x0))})
    assert len(gate.signatures) == 1  # nothing compiled for the odd arguments


def test_after_the_first_step_sgd_step_still_refuses_clearly(mlp):
    arguments = mlp_arguments(6, seed=6)
    params = {k: arguments[k].copy() for k in mlp.wrt}
    mlp.sgd_step(0.1, **{**arguments, **params})
    mlp.sgd_step(0.1, **{**arguments, **params})  # the fast path from here on
    before = {k: v.copy() for k, v in params.items()}
    frozen = params["b1"].copy()
    frozen.flags.writeable = False
    with pytest.raises(ArgumentError, match="updates b1 in place: .*not a read-only array"):
        mlp.sgd_step(0.1, **{**arguments, **params, "b1": frozen})
    with pytest.raises(ShapeError, match="W2 must have shape"):
        mlp.sgd_step(0.1, **{**arguments, **params, "W2": params["W2"].T.copy()})
    for name in mlp.wrt:
        np.testing.assert_array_equal(params[name], before[name], err_msg=name)


def test_sgd_step_names_a_missing_or_unknown_argument(mlp):
    arguments = mlp_arguments(4, seed=7)
    params = {k: arguments[k].copy() for k in mlp.wrt}
    for _ in range(2):  # before and after the fast path is installed
        with pytest.raises(sd.ArgumentError, match=r"missing argument X \(takes W1, W2, X,"):
            mlp.sgd_step(0.1, **{k: v for k, v in {**arguments, **params}.items() if k != "X"})
        with pytest.raises(sd.ArgumentError, match=r"unknown argument Z; tensor model takes"):
            mlp.sgd_step(0.1, Z=1.0, **{**arguments, **params})
        mlp.sgd_step(0.1, **{**arguments, **params})

"""Forward mode and second order: tangent rules of every op, JVPs, Hessian-vector products,
Hessians and Jacobians against closed forms and finite differences of the compiled gradient."""
import numpy as np
import pytest

import symdiff as sd
from conftest import mlp_arguments
from symdiff import tensors as T
from symdiff.autodiff import schedule
from symdiff.forward import jvp
from symdiff.numpy_eval import run
from test_autodiff import CASES, build_case


@pytest.mark.parametrize("name, fn, inputs", CASES, ids=[c[0] for c in CASES])
def test_tangent_matches_central_differences(name, fn, inputs):
    rng, tensors, out, values, extra = build_case(name, fn, inputs, n=4)
    directions = {t: T.tensor(f"{k}_dot", t.shape) for k, t in tensors.items()}
    program = schedule([("value", out.node), ("jvp", jvp(out, directions).node)])
    v = {f"{k}_dot": rng.normal(size=np.shape(x)) for k, x in values.items()}
    result = run(program, {**values, **v, **extra})
    h = 1e-6

    def value_at(step):
        moved = {k: x + step * v[f"{k}_dot"] for k, x in values.items()}
        return run(program, {**moved, **v, **extra})["value"]

    numeric = (value_at(h) - value_at(-h)) / (2 * h)
    np.testing.assert_allclose(result["jvp"], numeric, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def issue_example():
    return sd.compile("x**2*y + sin(x*y)", wrt=["x", "y"])


def test_jvp_is_the_directional_derivative(issue_example):
    value, derivative = issue_example.jvp(x=1.0, y=2.0, tangents={"x": 1.0, "y": 0.0})
    assert value == pytest.approx(2 + np.sin(2), rel=1e-14)
    assert derivative == pytest.approx(2 * 1 * 2 + 2 * np.cos(2), rel=1e-14)
    _, along_y = issue_example.jvp(x=1.0, y=2.0, tangents={"y": 1.0})
    assert along_y == pytest.approx(issue_example.grad(x=1.0, y=2.0)["y"], rel=1e-14)
    jvp_source = issue_example.source_of("jvp")
    assert "def kernel(x, y, x_dot, y_dot, chunks)" in jvp_source
    assert issue_example.source_of("grad") == issue_example.source


def test_hessian_closed_form_and_symmetry(issue_example):
    x, y = 1.0, 2.0
    H = sd.hessian(issue_example)(x=x, y=y)
    cross = 2 * x + np.cos(x * y) - x * y * np.sin(x * y)
    expected = [[2 * y - y * y * np.sin(x * y), cross], [cross, -x * x * np.sin(x * y)]]
    np.testing.assert_allclose(H, expected, rtol=1e-13)
    assert H[0, 1] == H[1, 0]


def test_quadratic_hessian_is_its_matrix():
    A = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, -1.0], [0.5, -1.0, 4.0]])
    x = sd.tensor("x", (3,)); M = sd.tensor("M", (3, 3)); b = sd.tensor("b", (3,))
    f = sd.compile(0.5 * (x @ (M @ x)) + b @ x, wrt=[x])
    H = f.hessian(x=np.array([0.3, -1.0, 2.0]), M=A, b=np.ones(3))
    np.testing.assert_allclose(H, A, rtol=1e-14)


def test_rosenbrock():
    f = sd.compile("(1 - x)**2 + 100*(y - x**2)**2", wrt=["x", "y"])
    x, y = -1.2, 1.0
    H = f.hessian(x=x, y=y)
    np.testing.assert_allclose(H, [[2 - 400 * (y - 3 * x * x), -400 * x], [-400 * x, 200]],
                               rtol=1e-13)
    assert f.grad(x=1.0, y=1.0) == {"x": 0.0, "y": 0.0}
    np.testing.assert_allclose(f.hessian(x=1.0, y=1.0), [[802, -400], [-400, 200]])


def test_hvp_of_a_tensor_model_matches_differences_of_its_gradient(mlp):
    a = mlp_arguments(7)
    rng = np.random.default_rng(5)
    v = {w: rng.normal(size=np.shape(a[w])) for w in mlp.wrt}
    products = sd.hvp(mlp)(v=v, **a)
    h = 1e-6
    plus = mlp.grad(**{**a, **{w: a[w] + h * v[w] for w in mlp.wrt}})
    minus = mlp.grad(**{**a, **{w: a[w] - h * v[w] for w in mlp.wrt}})
    for w in mlp.wrt:
        np.testing.assert_allclose(products[w], (plus[w] - minus[w]) / (2 * h), rtol=1e-5,
                                   atol=1e-7, err_msg=w)


def test_jacobian_by_rows_and_by_columns():
    W = sd.tensor("W", (3, 2)); x = sd.tensor("x", (2,))
    wide = sd.jacobian(sd.tanh(W @ x), wrt=[W, x])  # 3 outputs, 8 parameters: rows
    A = sd.tensor("A", (2, 5)); z = sd.tensor("z", (2,))
    tall = sd.jacobian(sd.tanh(A.T @ z), wrt=[z])  # 5 outputs, 2 parameters: columns
    rng = np.random.default_rng(0)
    Wv, xv, Av, zv = (rng.normal(size=s) for s in [(3, 2), (2,), (2, 5), (2,)])

    def numeric(f, p):
        h = 1e-6
        return np.array([(f(p + h * e) - f(p - h * e)) / (2 * h) for e in np.eye(len(p))]).T

    p = np.concatenate([Wv.ravel(), xv])
    expected = numeric(lambda q: np.tanh(q[:6].reshape(3, 2) @ q[6:]), p)
    np.testing.assert_allclose(wide(W=Wv, x=xv), expected, rtol=1e-7, atol=1e-9)
    expected = numeric(lambda q: np.tanh(Av.T @ q), zv)
    np.testing.assert_allclose(tall(A=Av, z=zv), expected, rtol=1e-7, atol=1e-9)


def test_hvp_of_batch_losses_and_none_for_per_example_models(logistic, logistic_data):
    reduce, loss = logistic
    if reduce is None:
        with pytest.raises(sd.ArgumentError, match="hvp is not available"):
            loss.hvp({}, **logistic_data)
        # regression: with a tangent, it said "tangents for w0, which are not in wrt (w0,...)"
        with pytest.raises(sd.ArgumentError, match="jvp is not available .* per example"):
            loss.jvp({"w0": 1.0}, **logistic_data)
        return
    v = {"w0": 1.0, "w1": -0.5, "b": 0.25}
    products = loss.hvp(v, **logistic_data)
    h = 1e-6
    plus = loss.grad(**{**logistic_data, **{w: logistic_data[w] + h * v[w] for w in v}})
    minus = loss.grad(**{**logistic_data, **{w: logistic_data[w] - h * v[w] for w in v}})
    for w in v:
        assert products[w] == pytest.approx((plus[w] - minus[w]) / (2 * h), rel=1e-6)


def test_a_tangent_without_its_parameter_is_a_missing_argument():
    """Regression: hvp({"w": ...}) without w raised a bare KeyError 'w' (the zero tangent
    made for a parameter without one was made for every parameter)."""
    X, w = sd.tensor("X", ("n", 2)), sd.tensor("w", (2,))
    f = sd.compile(sd.mean(sd.softplus(X @ w)), wrt=[w])
    for call in (f.hvp, f.jvp):
        with pytest.raises(sd.ArgumentError, match="missing argument w"):
            call({"w": np.ones(2)}, X=np.ones((10, 2)))

"""The SciPy bridge: the same iterates as an objective written in NumPy, shapes restored."""
import numpy as np
import pytest
import scipy.optimize

import symdiff as sd

LAM = 1e-2


@pytest.fixture(scope="module")
def logreg():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
    X, t = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xs, ts = sd.tensor("X", ("n", X.shape[1])), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (X.shape[1],)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(Xs @ w + b, ts)) + \
        LAM * 0.5 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b]), X, t.astype(float)


def numpy_parts(X, t):
    """The same loss, gradient, Hessian-vector product and Hessian, written in NumPy over
    x = (w, b)."""
    A = np.hstack([X, np.ones((len(X), 1))])
    reg = np.r_[np.full(X.shape[1], LAM), 0.0]

    def fun(x):
        z = A @ x
        loss = np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * np.sum(reg * x * x)
        return loss, A.T @ (1 / (1 + np.exp(-z)) - t) / len(t) + reg * x

    def weights(x):
        p = 1 / (1 + np.exp(-(A @ x)))
        return p * (1 - p) / len(t)

    def hessp(x, v):
        return A.T @ (weights(x) * (A @ v)) + reg * v

    def hess(x):
        return A.T @ (weights(x)[:, None] * A) + np.diag(reg)
    return fun, hessp, hess


def iterates(method, fun, x0, **options):
    seen = [x0.copy()]
    result = scipy.optimize.minimize(fun, x0, jac=True, method=method,
                                     callback=lambda xk, *_: seen.append(np.copy(xk)),
                                     **options)
    return result, np.array(seen)


@pytest.mark.parametrize("method", ["L-BFGS-B", "Newton-CG"])
def test_minimize_takes_the_same_iterates_as_with_a_numpy_objective(logreg, method):
    f, X, t = logreg
    objective = sd.scipy_objective(f, X=X, t=t)
    fun, hessp, _ = numpy_parts(X, t)
    x0 = objective.flatten(w=np.zeros(X.shape[1]), b=0.0)
    extra = ({"hessp": objective.hessp}, {"hessp": hessp}) if method == "Newton-CG" else ({}, {})
    ours, path = iterates(method, objective.fun, x0, **extra[0])
    theirs, reference = iterates(method, fun, x0, **extra[1])
    assert ours.success and len(path) == len(reference) > 5
    np.testing.assert_allclose(path, reference, rtol=0, atol=1e-10)
    params = objective.unflatten(ours.x)
    assert params["w"].shape == (X.shape[1],) and isinstance(params["b"], float)
    accuracy = np.mean(((X @ params["w"] + params["b"]) > 0) == t)
    assert accuracy > 0.97


def test_hessp_and_hess_agree_with_the_closed_forms(logreg):
    f, X, t = logreg
    objective = sd.scipy_objective(f, X=X[:50], t=t[:50])
    _, hessp, hess = numpy_parts(X[:50], t[:50])
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=31) * 0.1, rng.normal(size=31)
    np.testing.assert_allclose(objective.hessp(x, v), hessp(x, v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(objective.hess(x), hess(x), rtol=1e-12, atol=1e-14)


def test_flatten_and_unflatten_restore_names_and_shapes(logreg):
    f, X, t = logreg
    objective = sd.scipy_objective(f, X=X, t=t)
    w = np.arange(30.0).reshape(30)
    x = objective.flatten({"w": w}, b=-2.0)
    assert x.shape == (31,) and x[-1] == -2.0
    back = objective.unflatten(x)
    np.testing.assert_array_equal(back["w"], w)
    assert back["b"] == -2.0
    with pytest.raises(sd.ArgumentError, match="missing: b"):
        objective.flatten(w=w)
    with pytest.raises(sd.ShapeError, match=r"w must have shape \(30,\)"):
        objective.flatten(w=w[:5], b=0.0)
    with pytest.raises(sd.ShapeError, match=r"vector must have shape \(31,\)"):
        objective.fun(x[:5])
    with pytest.raises(sd.ArgumentError, match="w is optimised"):
        sd.scipy_objective(f, X=X, t=t, w=w)


def test_least_squares_with_the_compiled_jacobian_fits_the_formula():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 300)
    y = 2.0 * np.sin(1.5 * x) + 0.5 + rng.normal(0, 0.1, 300)
    J = sd.jacobian("a*sin(b*x) + c - y", wrt=["a", "b", "c"], batch=["x", "y"])
    residuals = sd.scipy_residuals(J, x=x, y=y)

    def fun(p):
        return p[0] * np.sin(p[1] * x) + p[2] - y

    def jac(p):
        return np.stack([np.sin(p[1] * x), p[0] * x * np.cos(p[1] * x), np.ones_like(x)], 1)

    start = residuals.flatten(a=1.0, b=1.2, c=0.0)
    ours = scipy.optimize.least_squares(residuals.fun, start, jac=residuals.jac)
    theirs = scipy.optimize.least_squares(fun, start, jac=jac)
    assert ours.nfev == theirs.nfev and ours.njev == theirs.njev
    np.testing.assert_allclose(ours.x, theirs.x, rtol=0, atol=1e-10)
    fitted = residuals.unflatten(ours.x)
    assert fitted == pytest.approx({"a": 2.0, "b": 1.5, "c": 0.5}, abs=0.05)

"""Linear algebra: the Cholesky factor and triangular solves (LAPACK and BLAS in the kernel),
checked against NumPy/SciPy forward passes and central differences: a Gaussian process's
negative log marginal likelihood, each op's adjoint on its own, forward mode and
Hessian-vector products, and the errors of matrices no factorization takes."""
import numpy as np
import pytest
from scipy.linalg import solve_triangular

import symdiff as sd
from differences import central

RNG = np.random.default_rng(41)
N = 6
POINTS = RNG.normal(size=(N, 2))
TARGETS = np.sin(POINTS[:, 0]) + 0.1 * RNG.normal(size=N)
HYPER = np.array([0.1, 0.2, -1.0])  # log length scale, log signal sd, log noise sd


def _nll(p):
    """NumPy: the GP's negative log marginal likelihood at hyperparameters p."""
    log_ls, log_sf, log_sn = p
    d2 = ((POINTS[:, None] - POINTS[None]) ** 2).sum(-1)
    K = np.exp(2 * log_sf - 0.5 * d2 / np.exp(2 * log_ls)) + np.exp(2 * log_sn) * np.eye(N)
    L = np.linalg.cholesky(K)
    alpha = solve_triangular(L, TARGETS, lower=True)
    return 0.5 * alpha @ alpha + np.log(np.diag(L)).sum() + 0.5 * N * np.log(2 * np.pi)


@pytest.fixture(scope="module")
def gp():
    X, y = sd.tensor("X", (N, 2)), sd.tensor("y", (N,))
    log_ls, log_sf, log_sn = sd.scalar("log_ls"), sd.scalar("log_sf"), sd.scalar("log_sn")
    d2 = sd.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)
    K = sd.exp(2 * log_sf - 0.5 * d2 / sd.exp(2 * log_ls)) + sd.exp(2 * log_sn) * sd.eye(N)
    L = sd.cholesky(K)
    alpha = sd.solve_triangular(L, y)
    nll = 0.5 * sd.sum(alpha ** 2) + sd.sum(sd.log(sd.diagonal(L))) + 0.5 * N * np.log(2 * np.pi)
    return sd.compile(nll, wrt=[log_ls, log_sf, log_sn], tier="kernel")


def _hyper(p):
    return dict(X=POINTS, y=TARGETS, log_ls=p[0], log_sf=p[1], log_sn=p[2])


def test_gp_likelihood_value_and_gradient(gp):
    value, grads = gp.value_and_grad(**_hyper(HYPER))
    assert np.isclose(value, _nll(HYPER), rtol=1e-12)
    got = np.array([grads[k] for k in ("log_ls", "log_sf", "log_sn")])
    assert np.allclose(got, central(_nll, HYPER), rtol=1e-6, atol=1e-8)


@pytest.mark.campaign
def test_gp_likelihood_forward_mode_and_hessian_vector_products(gp):
    v = np.array([0.3, -0.2, 0.5])
    names = ("log_ls", "log_sf", "log_sn")
    _, derivative = gp.jvp(dict(zip(names, v)), **_hyper(HYPER))
    assert np.isclose(derivative, central(_nll, HYPER) @ v, rtol=1e-6)

    def grad(p):
        g = gp.grad(**_hyper(p))
        return np.array([g[k] for k in names])
    h = 1e-5
    expected = (grad(HYPER + h * v) - grad(HYPER - h * v)) / (2 * h)
    product = gp.hvp(dict(zip(names, v)), **_hyper(HYPER))
    assert np.allclose([product[k] for k in names], expected, rtol=1e-5, atol=1e-7)


def test_each_op_alone_against_central_differences():
    """The Cholesky factor of any square matrix (of its symmetric part, as JAX) and the four
    triangular solves, with both operands differentiated."""
    A, W = sd.tensor("A", (4, 4)), sd.tensor("W", (4, 4))
    T, b, B = sd.tensor("T", (4, 4)), sd.tensor("b", (4,)), sd.tensor("B", (4, 2))
    solves = [sd.solve_triangular(T, b), sd.solve_triangular(T, B, lower=False),
              sd.solve_triangular(T, b, transpose=True),
              sd.solve_triangular(T, B, lower=False, transpose=True)]
    loss = sd.sum(sd.cholesky(A) * W) + sum(sd.sum(sd.sin(s)) for s in solves)
    f = sd.compile(loss, wrt=[A, T, b, B], tier="kernel")
    root = RNG.normal(size=(4, 4))
    data = dict(A=root @ root.T + 4 * np.eye(4), W=RNG.normal(size=(4, 4)),
                T=RNG.normal(size=(4, 4)) + 4 * np.eye(4), b=RNG.normal(size=4),
                B=RNG.normal(size=(4, 2)))

    def reference(A, T, b, B):
        value = np.sum(np.linalg.cholesky((A + A.T) / 2) * data["W"])
        for lower, trans, rhs in ((True, 0, b), (False, 0, B), (True, 1, b), (False, 1, B)):
            value += np.sum(np.sin(solve_triangular(T, rhs, lower=lower, trans=trans)))
        return value
    value, grads = f.value_and_grad(**data)
    args = {k: data[k] for k in ("A", "T", "b", "B")}
    assert np.isclose(value, reference(**args), rtol=1e-12)
    for name in args:
        expected = central(lambda v: reference(**{**args, name: v}), args[name])
        assert np.allclose(grads[name], expected, rtol=1e-6, atol=1e-7), name
    assert np.allclose(grads["A"], grads["A"].T)  # symmetric, as JAX's


def test_matrices_no_factorization_takes_raise_a_clear_error(gp):
    with pytest.raises(sd.LinAlgError, match=r"chol\w* = cholesky\(\w+\): the matrix is not "
                                             r"positive definite"):
        gp.value_and_grad(**_hyper(np.array([10.0, 0.2, -50.0])))  # K = sf² 11ᵀ: rank one
    T, b = sd.tensor("T", (3, 3)), sd.tensor("b", (3,))
    f = sd.compile(sd.sum(sd.solve_triangular(T, b)), wrt=[b], tier="kernel")
    singular = np.tril(np.ones((3, 3)))
    singular[1, 1] = 0.0
    with pytest.raises(sd.LinAlgError, match="a zero on the diagonal"):
        f(T=singular, b=np.ones(3))
    with pytest.raises(sd.ShapeError, match="square matrix"):
        sd.cholesky(sd.tensor("R", (3, 4)))
    with pytest.raises(sd.ShapeError, match="does not fit"):
        sd.solve_triangular(T, sd.tensor("c", (4,)))
    with pytest.raises(sd.DtypeError, match="float64"):
        sd.cholesky(sd.tensor("S", (3, 3), dtype="float32"))
    with pytest.raises(sd.ArgumentError, match="tape"):
        sd.compile(sd.sum(sd.solve_triangular(T, b)), wrt=[b], tier="tape")


def test_solve_slogdet_det_inv_and_trace_against_central_differences():
    A, b = sd.tensor("A", (3, 3)), sd.tensor("b", (3,))
    sign, logabsdet = np.linalg.slogdet(A)  # through NumPy's functions on Tensors
    loss = (sd.sum(sd.sin(np.linalg.solve(A, b))) + sign * logabsdet + np.linalg.det(A)
            + np.trace(np.linalg.inv(A)) + sd.sum(np.diag(b) @ np.diag(A)))
    f = sd.compile(loss, wrt=[A, b], tier="kernel")
    a0 = RNG.normal(size=(3, 3)) + 2 * np.eye(3)
    a0[0, 0] = -a0[0, 0]  # a sign to keep right
    b0 = RNG.normal(size=3)

    def reference(A, b):
        s, l = np.linalg.slogdet(A)
        return (np.sum(np.sin(np.linalg.solve(A, b))) + s * l + np.linalg.det(A)
                + np.trace(np.linalg.inv(A)) + np.sum(np.diag(b) @ np.diag(A)))
    kept = a0.copy()
    value, grads = f.value_and_grad(A=a0, b=b0)
    assert np.array_equal(a0, kept)  # LAPACK overwrites its copies, never the caller's A
    assert np.isclose(value, reference(a0, b0), rtol=1e-12)
    assert np.allclose(grads["A"], central(lambda v: reference(v, b0), a0), rtol=1e-6, atol=1e-7)
    assert np.allclose(grads["b"], central(lambda v: reference(a0, v), b0), rtol=1e-6, atol=1e-7)
    v = RNG.normal(size=(3, 3))
    _, derivative = f.jvp({"A": v}, A=a0, b=b0)
    assert np.isclose(derivative, np.sum(central(lambda w: reference(w, b0), a0) * v), rtol=1e-6)
    singular = np.ones((3, 3))
    with pytest.raises(sd.LinAlgError, match=r"solve\w* = solve\(\w+, \w+\): the matrix is "
                                             r"singular"):
        f.value_and_grad(A=singular, b=b0)


def test_slogdet_of_a_singular_matrix_is_numpys():
    """(0, -inf), as np.linalg.slogdet, and det 0: a singular matrix is no error for the
    values; their gradients need a⁻¹ and raise LinAlgError (measured, JAX's: NaN for
    log|det|, and det's adjugate, 0 here)."""
    A = sd.tensor("A", (3, 3))
    sign, logabsdet = sd.slogdet(A)
    f = sd.compile(sign * 0.0 + sd.det(A), wrt=[A], tier="kernel")
    assert np.linalg.slogdet(np.ones((3, 3))) == (0.0, -np.inf)
    assert f(A=np.ones((3, 3))) == 0.0
    g = sd.compile(logabsdet, wrt=[A], tier="kernel")
    assert g(A=np.ones((3, 3))) == -np.inf
    with pytest.raises(sd.LinAlgError, match="singular"):
        f.value_and_grad(A=np.ones((3, 3)))

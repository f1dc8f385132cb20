"""The reductions sd.min, sd.prod, sd.var, sd.std, sd.norm and sd.cumsum: values against NumPy,
gradients, jvp and hvp against central differences of an independent NumPy forward pass, at
ordinary points and at each one's edges (ties, zeros, a constant row, 1e200, the zero vector),
on the kernel tier, float32 and per-example gradients. Compiled models are shared through a
module-level cache and kept small: each is one Numba compile.
"""
from functools import lru_cache

import numpy as np
import pytest

import symdiff as sd
from campaign import slice_of
from differences import central

ROWS, COLS = 3, 4

# name -> (sd reduction of x over axis 1, the same in NumPy); the loss is sum(w*r + r**2)
REDUCTIONS = {
    "min": (lambda x: sd.min(x, axis=1), lambda x: np.min(x, axis=1)),
    "prod": (lambda x: sd.prod(x, axis=1), lambda x: np.prod(x, axis=1)),
    "var": (lambda x: sd.var(x, axis=1), lambda x: np.var(x, axis=1)),
    "std": (lambda x: sd.std(x, axis=1, ddof=1), lambda x: np.std(x, axis=1, ddof=1)),
    "norm": (lambda x: sd.norm(x, axis=1), lambda x: np.sqrt(np.sum(x * x, axis=1))),
    "cumsum": (lambda x: sd.sum(sd.cumsum(x, axis=1) ** 3, axis=1),
               lambda x: np.sum(np.cumsum(x, axis=1) ** 3, axis=1)),
}
WEIGHTS = np.array([0.7, -1.3, 0.4])
ORDINARY = np.array([[1.5, -0.7, 2.0, 0.8], [0.3, 1.1, -2.4, 0.9], [-1.2, 0.6, 1.7, -0.4]])


@lru_cache(maxsize=None)
def model(name: str):
    x = sd.tensor("x", (ROWS, COLS))
    w = sd.tensor("w", (ROWS,))
    r = REDUCTIONS[name][0](x)
    return sd.compile(sd.sum(w * r + r ** 2), wrt=[x], tier="kernel")


def loss(name, x):
    r = REDUCTIONS[name][1](x)
    return float(np.sum(WEIGHTS * r + r ** 2))


def fd_jvp(f, x, v, h=1e-6):
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


def fd_hvp(f, x, v, h=1e-4):
    return (central(f, x + h * v, h) - central(f, x - h * v, h)) / (2 * h)


def check_all_orders(name, x, v, rtol=1e-6, atol=1e-7):
    """Value, gradient, jvp and hvp of `name`'s model at x (along v) against NumPy."""
    f = model(name)
    oracle = lambda z: loss(name, z)  # noqa: E731
    value, grads = f.value_and_grad(x=x, w=WEIGHTS)
    np.testing.assert_allclose(value, oracle(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grads["x"], central(oracle, x), rtol=rtol, atol=atol)
    jv = f.jvp({"x": v}, x=x, w=WEIGHTS)[1]
    np.testing.assert_allclose(jv, fd_jvp(oracle, x, v), rtol=rtol, atol=atol)
    hv = sd.hvp(f)({"x": v}, x=x, w=WEIGHTS)["x"]
    np.testing.assert_allclose(hv, fd_hvp(oracle, x, v), rtol=1e-5, atol=1e-5)
    return grads["x"], jv, hv


DIRECTION = np.array([[0.3, -1.0, 0.5, 0.2], [-0.4, 0.8, 0.1, -0.6], [0.9, 0.2, -0.3, 0.7]])


# by default the reductions whose models other tests here compile anyway
@pytest.mark.parametrize("name", slice_of(sorted(REDUCTIONS), {"min", "std", "norm"}))
def test_value_gradient_jvp_hvp_at_ordinary_points(name):
    check_all_orders(name, ORDINARY, DIRECTION)


# ---------------------------------------------------------------- the edges


def test_min_splits_ties_evenly():
    x = np.array([[1.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.9], [2.0, -1.0, 4.0, -1.0]])
    value, grads = model("min").value_and_grad(x=x, w=WEIGHTS)
    r = np.min(x, axis=1)
    assert value == pytest.approx(float(np.sum(WEIGHTS * r + r ** 2)), rel=1e-15)
    slope = WEIGHTS + 2 * r  # d loss / d r, shared between the tied entries
    want = np.array([[1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0, 1 / 2, 0, 1 / 2]])
    np.testing.assert_allclose(grads["x"], want * slope[:, None], rtol=1e-15)
    jv = model("min").jvp({"x": DIRECTION}, x=x, w=WEIGHTS)[1]  # the tied tangents averaged
    assert jv == pytest.approx(float(np.sum(slope * np.sum(want * DIRECTION, axis=1))))


def test_prod_with_one_two_and_three_zeros_in_every_order():
    x = np.array([[1.5, 0.0, 2.0, 0.8], [0.0, 0.5, 0.0, 2.0], [0.0, 0.0, 3.0, 0.0]])
    grad, jv, hv = check_all_orders("prod", x, DIRECTION)
    slope = WEIGHTS  # the products are all 0, so d loss / d r = w
    others = np.array([[0.0, 1.5 * 2.0 * 0.8, 0.0, 0.0], [0.0] * 4, [0.0] * 4])
    np.testing.assert_allclose(grad, slope[:, None] * others, atol=1e-15)
    assert np.isfinite(hv).all()


def test_std_of_a_constant_row_is_zero_in_every_order():
    x = np.array([[1.5, -0.7, 2.0, 0.8], [2.0, 2.0, 2.0, 2.0], [0.5, 0.5, 0.5, 0.5]])
    f = model("std")
    value, grads = f.value_and_grad(x=x, w=WEIGHTS)
    assert value == pytest.approx(loss("std", x), rel=1e-14)
    assert (grads["x"][1:] == 0).all()
    np.testing.assert_allclose(grads["x"][0], central(lambda z: loss("std", z), x)[0],
                               rtol=1e-6)
    v = DIRECTION.copy()
    v[0] = 0.0
    assert f.jvp({"x": v}, x=x, w=WEIGHTS)[1] == 0.0
    hv = sd.hvp(f)({"x": DIRECTION}, x=x, w=WEIGHTS)["x"]
    assert (hv[1:] == 0).all() and np.isfinite(hv).all()


def test_var_of_a_constant_row_has_gradient_zero():
    x = np.array([[2.0, 2.0, 2.0, 2.0], [0.3, 1.1, -2.4, 0.9], [0.0, 0.0, 0.0, 0.0]])
    check_all_orders("var", x, DIRECTION)


def test_norm_at_1e200_is_finite_and_right():
    x = ORDINARY * 1e200
    scaled = ORDINARY / np.abs(ORDINARY).max(axis=1, keepdims=True)
    exact = np.abs(ORDINARY).max(axis=1) * 1e200 * np.sqrt(np.sum(scaled ** 2, axis=1))
    f = norm_of_rows()
    values, grads = f.value_and_grad(x=x)
    np.testing.assert_allclose(values, exact, rtol=1e-15)
    np.testing.assert_allclose(grads["x"], x / exact[:, None], rtol=1e-15)
    assert np.isfinite(grads["x"]).all()


@lru_cache(maxsize=None)
def norm_of_rows():
    """Per-example norms (reduce=None): a gradient row per example."""
    x = sd.tensor("x", ("n", COLS))
    return sd.compile(sd.norm(x, axis=1), wrt=[x], reduce=None, tier="kernel")


def test_norm_at_the_zero_vector_is_zero_in_every_order():
    x = ORDINARY.copy()
    x[1] = 0.0
    f = model("norm")
    value, grads = f.value_and_grad(x=x, w=WEIGHTS)
    assert value == pytest.approx(loss("norm", x), rel=1e-14)
    assert (grads["x"][1] == 0).all()
    np.testing.assert_allclose(grads["x"][[0, 2]],
                               central(lambda z: loss("norm", z), x)[[0, 2]], rtol=1e-6)
    v = np.zeros_like(x)
    v[1] = DIRECTION[1]
    assert f.jvp({"x": v}, x=x, w=WEIGHTS)[1] == 0.0
    hv = sd.hvp(f)({"x": DIRECTION}, x=x, w=WEIGHTS)["x"]
    assert (hv[1] == 0).all()
    v[1], v[[0, 2]] = 0.0, DIRECTION[[0, 2]]
    np.testing.assert_allclose(hv[[0, 2]], fd_hvp(lambda z: loss("norm", z), x, v)[[0, 2]],
                               rtol=1e-5, atol=1e-5)


def test_norm_of_infinity_is_infinity_and_of_nan_nan():
    values = norm_of_rows()(x=np.array([[np.inf, 1.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0],
                                        [np.nan, 0.0, 0.0, 0.0], [1e-200, 0.0, 0.0, 1e-200]]))
    assert values[0] == np.inf and values[1] == 5.0 and np.isnan(values[2])
    assert values[3] == pytest.approx(np.sqrt(2) * 1e-200, rel=1e-15)  # no underflow either


# ---------------------------------------------------------------- axes, keepdims, ddof


def weighted_sum(build, numpy, shape):
    """The model sum(build(x) * u) for a fixed u: values and gradients against NumPy."""
    x = sd.tensor("x", (ROWS, COLS))
    out = build(x)
    u = sd.tensor("u", out.shape)
    f = sd.compile(sd.sum(out * u), wrt=[x], tier="kernel")
    weights = np.linspace(-1.0, 1.5, int(np.prod(out.shape))).reshape(out.shape)
    assert out.shape == shape == numpy(ORDINARY).shape
    value, grads = f.value_and_grad(x=ORDINARY, u=weights)
    oracle = lambda z: float(np.sum(numpy(z) * weights))  # noqa: E731
    assert value == pytest.approx(oracle(ORDINARY), rel=1e-14)
    np.testing.assert_allclose(grads["x"], central(oracle, ORDINARY), rtol=1e-6, atol=1e-8)


def test_axis_0_keepdims_and_ddof_as_numpy():
    weighted_sum(lambda x: sd.concatenate([
        sd.min(x, axis=0, keepdims=True), sd.prod(x, axis=0, keepdims=True),
        sd.var(x, axis=0, ddof=1, keepdims=True), sd.std(x, axis=0, keepdims=True),
        sd.norm(x, axis=0, keepdims=True), sd.cumsum(x, axis=0)], axis=0),
        lambda x: np.concatenate([
            np.min(x, axis=0, keepdims=True), np.prod(x, axis=0, keepdims=True),
            np.var(x, axis=0, ddof=1, keepdims=True), np.std(x, axis=0, keepdims=True),
            np.linalg.norm(x, axis=0, keepdims=True), np.cumsum(x, axis=0)]), (8, COLS))


def test_whole_array_reductions_as_numpy():
    weighted_sum(lambda x: sd.stack([sd.min(x), sd.prod(x), sd.var(x), sd.std(x, ddof=2),
                                     sd.norm(x), sd.std(x, axis=(0, 1))]),
                 lambda x: np.stack([np.min(x), np.prod(x), np.var(x), np.std(x, ddof=2),
                                     np.linalg.norm(x), np.std(x, axis=(0, 1))]), (6,))


# ---------------------------------------------------------------- paths


@lru_cache(maxsize=None)
def per_example(dtype="float64"):
    """Every reduction along the features of one example, summed: one loss per example."""
    X = sd.tensor("X", ("n", COLS), dtype=dtype)
    p = sd.tensor("p", (COLS,), dtype=dtype)
    z = X * p
    per_row = sd.min(z, axis=1) + sd.prod(z, axis=1) + sd.var(z, axis=1) + \
        sd.std(z, axis=1) + sd.norm(z, axis=1) + sd.sum(sd.cumsum(z, axis=1) ** 2, axis=1)
    return sd.compile(per_row, wrt=[p], reduce=None, tier="kernel")


def per_example_numpy(X, p):
    z = X * p
    return (np.min(z, axis=1) + np.prod(z, axis=1) + np.var(z, axis=1) + np.std(z, axis=1)
            + np.linalg.norm(z, axis=1) + np.sum(np.cumsum(z, axis=1) ** 2, axis=1))


P = np.array([0.9, -1.1, 0.7, 1.3])


def test_per_example_gradients():
    values, grads = per_example().value_and_grad(X=ORDINARY, p=P)
    np.testing.assert_allclose(values, per_example_numpy(ORDINARY, P), rtol=1e-13)
    for i in range(ROWS):
        want = central(lambda q: per_example_numpy(ORDINARY[i:i + 1], q)[0], P)
        np.testing.assert_allclose(grads["p"][i], want, rtol=1e-6, atol=1e-8)


def test_float32():
    X, p = ORDINARY.astype(np.float32), P.astype(np.float32)
    values, grads = per_example("float32").value_and_grad(X=X, p=p)
    assert values.dtype == grads["p"].dtype == np.float32
    np.testing.assert_allclose(values, per_example_numpy(ORDINARY, P), rtol=2e-5)
    want = per_example().grad(X=ORDINARY, p=P)["p"]
    np.testing.assert_allclose(grads["p"], want, rtol=1e-4, atol=1e-5)


def test_cumsum_along_the_example_axis_mixes_examples():
    X = sd.tensor("X", ("n", COLS))
    p = sd.tensor("p", (COLS,))
    with pytest.raises(sd.DifferentiationError, match="cumsum"):
        sd.compile(sd.sum(sd.cumsum(X * p, axis=0), axis=1), wrt=[p], reduce=None)
    total = sd.compile(sd.mean(sd.sum(sd.cumsum(X * p, axis=0), axis=1)), wrt=[p],
                       tier="kernel")
    g = total.grad(X=ORDINARY, p=P)["p"]  # the mean over the batch is fine
    want = central(lambda q: np.mean(np.sum(np.cumsum(ORDINARY * q, axis=0), axis=1)), P)
    np.testing.assert_allclose(g, want, rtol=1e-6)


@pytest.mark.parametrize("build", [lambda x: sd.min(x), lambda x: sd.prod(x),
                                   lambda x: sd.sum(sd.cumsum(x) ** 2), lambda x: sd.std(x)])
def test_the_tape_refuses_clearly(build):
    x = sd.tensor("x", ("n",))
    with pytest.raises(sd.ArgumentError, match="tape"):
        sd.compile(build(x), wrt=[x], tier="tape")


def test_cumsum_source_reads_as_a_loop_over_its_axis():
    x = sd.tensor("x", (ROWS, COLS))
    f = sd.compile(sd.sum(sd.cumsum(x, axis=1) ** 2), wrt=[x], tier="kernel")
    source = f.kernel_source  # forward: summed up the axis; adjoint: summed back down it
    assert f"    for m in range({ROWS}):\n        cumsum1[m, 0] = x[m, 0]\n" \
        f"        for step in range(1, {COLS}):\n" \
        "            cumsum1[m, step] = cumsum1[m, step - 1] + x[m, step]\n" in source
    assert "# from: cumsum1 = cumsum(x, axis=1)\n" \
        f"    dx = np.empty(({ROWS}, {COLS}), dtype=np.float64)\n    for m_2 in range({ROWS}):\n" \
        f"        dx[m_2, {COLS - 1}] = dcumsum1[m_2, {COLS - 1}]\n" \
        f"        for step_2 in range({COLS - 2}, -1, -1):\n" \
        "            dx[m_2, step_2] = dx[m_2, step_2 + 1] + dcumsum1[m_2, step_2]\n" in source
    cumsum = sd.cumsum(sd.tensor("v", (5,)))
    assert str(cumsum.shape) == "(5,)"
    with pytest.raises(sd.ShapeError, match="axis"):
        sd.cumsum(x)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_the_numpy_interpreter_runs_the_same_program(name):
    # the path first calls take while a kernel compiles: each op record's NumPy evaluation
    from symdiff.numpy_eval import run
    f = model(name)
    x = ORDINARY.copy()
    x[1, 1] = 0.0
    value, grads = f.value_and_grad(x=x, w=WEIGHTS)
    out = run(f.program, {"x": x, "w": WEIGHTS})
    assert out["value"] == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(out["dx"], grads["x"], rtol=1e-13, atol=1e-15)


def test_cumsum_of_a_broadcast_and_of_parameters_per_example():
    from symdiff.tensors import broadcast_to
    v = sd.tensor("v", (COLS,))
    f = sd.compile(sd.sum(sd.cumsum(broadcast_to(v, (ROWS, COLS)), axis=0) ** 2), wrt=[v],
                   tier="kernel")  # its operand is read in place by loops elsewhere
    value, grads = f.value_and_grad(v=P)
    assert value == pytest.approx(float(np.sum(np.cumsum(np.tile(P, (ROWS, 1)), 0) ** 2)))
    np.testing.assert_allclose(grads["v"], 2 * (1 + 4 + 9) * P, rtol=1e-15)
    X = sd.tensor("X", ("n", COLS))  # cumsum of a parameter, then per example: its lift rule
    g = sd.compile(sd.sum(X * sd.cumsum(v), axis=1) ** 2, wrt=[v], reduce=None, tier="kernel")
    values, grads = g.value_and_grad(X=ORDINARY, v=P)
    np.testing.assert_allclose(values, (ORDINARY @ np.cumsum(P)) ** 2, rtol=1e-14)
    for i in range(ROWS):
        want = central(lambda q: float((ORDINARY[i] @ np.cumsum(q)) ** 2), P)
        np.testing.assert_allclose(grads["v"][i], want, rtol=1e-6)


@pytest.mark.parametrize("parallel", [False, True])
def test_reductions_over_the_batch_in_chunks(parallel):
    # each chunk reduces into its own partial, combined in order by the record's accumulate
    x, a = sd.tensor("x", ("n",)), sd.scalar("a")
    z = x * a
    f = sd.compile(sd.prod(z) + sd.min(z) + sd.norm(z) + sd.std(z, ddof=1) + sd.var(z),
                   wrt=[a], parallel=parallel, tier="kernel")
    X = np.random.default_rng(0).uniform(0.999, 1.001, 20000)
    X[7] = 0.5
    A = 1.00001
    value, grads = f.value_and_grad(x=X, a=A)
    Z = X * A
    want = np.prod(Z) + np.min(Z) + np.linalg.norm(Z) + np.std(Z, ddof=1) + np.var(Z)
    assert value == pytest.approx(want, rel=1e-13)
    slope = len(X) * np.prod(Z) / A + X.min() + np.linalg.norm(X) + np.std(X, ddof=1) + \
        2 * A * np.var(X)  # d/da, worked out by hand
    assert grads["a"] == pytest.approx(slope, rel=1e-13)


def test_norm_jvp_and_hvp_at_1e200():
    x = sd.tensor("x", (ROWS, COLS))
    f = sd.compile(sd.sum(sd.norm(x, axis=1)), wrt=[x], tier="kernel")
    big = ORDINARY * 1e200
    lengths = np.abs(ORDINARY).max(axis=1) * 1e200 * np.sqrt(np.sum(
        (ORDINARY / np.abs(ORDINARY).max(axis=1, keepdims=True)) ** 2, axis=1))
    u = big / lengths[:, None]  # the unit rows; the Hessian of a row's norm is (I - u u^T)/|x|
    want = (DIRECTION - u * np.sum(u * DIRECTION, axis=1, keepdims=True)) / lengths[:, None]
    value, jv = f.jvp({"x": DIRECTION}, x=big)
    assert value == pytest.approx(float(np.sum(lengths)), rel=1e-15)
    assert jv == pytest.approx(float(np.sum(u * DIRECTION)), rel=1e-14)
    np.testing.assert_allclose(sd.hvp(f)({"x": DIRECTION}, x=big)["x"], want, rtol=1e-12)

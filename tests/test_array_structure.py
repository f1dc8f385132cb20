"""Array structure (symdiff/structure.py): flip, diff, triu, tril, tile, repeat, pad, outer, kron
and cumprod, through NumPy's own functions on Tensors. Values against NumPy; gradients against
central differences of NumPy's forward pass; cumprod's at zeros against its closed-form
gradient and Hessian, products written out without division."""
import re
import zlib

import numpy as np
import pytest

import symdiff as sd
from symdiff import structure as S
from symdiff.autodiff import differentiate
from symdiff.forward import jvp
from symdiff.numpy_eval import run
from symdiff.program import verify
from differences import central

RNG = np.random.default_rng(28)

# (the function, on a Tensor and on an array alike, and the input's shape): NumPy's spelling
CASES = {
    "flip": (lambda x: np.flip(x), (2, 3)),
    "flip axis": (lambda x: np.flip(x, axis=(0, 2)), (2, 3, 2)),
    "diff": (lambda x: np.diff(x), (2, 4)),
    "diff n=2 axis 0": (lambda x: np.diff(x, n=2, axis=0), (4, 3)),
    "tril": (lambda x: np.tril(x), (3, 3)),
    "tril k=-1 batched": (lambda x: np.tril(x, -1), (2, 3, 4)),
    "triu k=1 wide": (lambda x: np.triu(x, k=1), (3, 5)),
    "triu batched": (lambda x: np.triu(x), (2, 4, 3)),
    "tile": (lambda x: np.tile(x, 2), (2, 3)),
    "tile reps longer": (lambda x: np.tile(x, (2, 1, 3)), (2, 2)),
    "repeat flat": (lambda x: np.repeat(x, 2), (2, 3)),
    "repeat axis": (lambda x: np.repeat(x, 3, axis=1), (2, 2, 2)),
    "repeat per entry": (lambda x: np.repeat(x, [2, 0, 1], axis=-1), (2, 3)),
    "pad zeros": (lambda x: np.pad(x, ((1, 2), (0, 1))), (2, 3)),
    "pad one width": (lambda x: np.pad(x, 1), (2, 2)),
    "pad constant": (lambda x: np.pad(x, (2, 1), constant_values=1.5), (3, 2)),
    "pad edge": (lambda x: np.pad(x, ((2, 1), (0, 3)), mode="edge"), (2, 3)),
    "pad reflect": (lambda x: np.pad(x, (4, 3), mode="reflect"), (3,)),
    "pad symmetric": (lambda x: np.pad(x, ((1, 2), (3, 0)), mode="symmetric"), (2, 3)),
    "pad wrap": (lambda x: np.pad(x, ((0, 0), (2, 5)), mode="wrap"), (2, 3)),
    "outer": (lambda x: np.outer(x, np.arange(1.0, 4.0)), (2, 2)),
    "outer with itself": (lambda x: np.outer(x[0], x[1]), (2, 3)),
    "kron": (lambda x: np.kron(x, np.array([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])), (2, 2)),
    "kron of itself": (lambda x: np.kron(x, x[0]), (2, 3)),
    "cumprod flat": (lambda x: np.cumprod(x), (2, 3)),
    "cumprod axis": (lambda x: np.cumprod(x, axis=1), (2, 4, 2)),
}


def _program(build, shape):
    """The Program of sum(sin(build(x)) * C), C an input of the output's shape."""
    x = sd.tensor("x", shape)
    y = build(x)
    assert isinstance(y, sd.Tensor)
    program = differentiate(sd.sum(sd.sin(y) * sd.tensor("C", y.shape)), [x])
    verify(program)
    return program


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_gradients_match_numpy_in_the_program(case):
    build, shape = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # the same values in any order
    x = rng.normal(size=shape)
    if case.startswith("cumprod"):
        x.flat[[1, 4]] = 0.0  # two zeros: products past them vanish, their slopes do not
    C = rng.normal(size=np.shape(build(x)))
    got = run(_program(build, shape), {"x": x, "C": C})
    assert np.isclose(got["value"], np.sum(np.sin(build(x)) * C), rtol=1e-13)
    want = central(lambda v: np.sum(np.sin(build(v)) * C), x)
    np.testing.assert_allclose(got["dx"], want, rtol=1e-6, atol=1e-8)


def test_sd_names_are_numpys():
    for name in ("flip", "diff", "triu", "tril", "tile", "repeat", "pad", "outer", "kron",
                 "cumprod"):
        assert getattr(sd, name) is getattr(S, name), name
        assert name in sd.__all__


def test_cheap_forms_stay_index_maps_and_selects():
    x = sd.tensor("x", (3, 4))
    assert sd.flip(x, axis=0).node.op == "slice"
    assert sd.tril(x).node.op == "elementwise"  # a select over index ramps
    assert sd.pad(x, 1).node.op == "pad"
    assert sd.pad(x, 1, mode="edge").node.op == "gather"
    assert sd.tile(x, (1, 1)) is x and sd.repeat(x, 1, axis=0) is x
    assert sd.pad(x, 0) is x and sd.diff(x, n=0) is x


# ---------------------------------------------------------------- cumprod at zeros


SERIES_WEIGHTS = np.arange(1.0, 6.0)


def _product(x, k, skip=()):
    """x_0 x_1 ... x_k without the factors in `skip` (no division, so exact at zeros)."""
    return np.prod([x[j] for j in range(k + 1) if j not in skip])


def _closed_form(x):
    """The gradient and the Hessian of sum_k w_k sin(x_0 ... x_k), written out."""
    n = len(x)
    grad, hess = np.zeros(n), np.zeros((n, n))
    for k in range(n):
        p, w = _product(x, k), SERIES_WEIGHTS[k]
        for i in range(k + 1):
            grad[i] += w * np.cos(p) * _product(x, k, {i})
            for m in range(k + 1):
                hess[i, m] -= w * np.sin(p) * _product(x, k, {i}) * _product(x, k, {m})
                if m != i:
                    hess[i, m] += w * np.cos(p) * _product(x, k, {i, m})
    return grad, hess


ZEROS = {"none": [0.7, -1.3, 0.4, 2.0, -0.5], "one": [0.7, 0.0, 0.4, 2.0, -0.5],
         "two": [0.7, 0.0, 0.4, 0.0, -0.5], "first and last": [0.0, -1.3, 0.4, 2.0, 0.0],
         "adjacent": [0.7, 0.0, 0.0, 2.0, -0.5]}


@pytest.fixture(scope="module")
def cumprod_program():
    x, t = sd.tensor("x", (5,)), sd.tensor("t", (5,))
    loss = sd.sum(sd.sin(sd.cumprod(x)) * np.arange(1.0, 6.0))
    gradient = differentiate(loss, [x])
    derivative = differentiate(jvp(loss, {x: t}), [x])  # its gradient: H t
    return gradient, derivative


@pytest.mark.parametrize("zeros", sorted(ZEROS))
def test_cumprod_gradient_and_hessian_are_exact_at_zeros(cumprod_program, zeros):
    gradient, derivative = cumprod_program
    x, t = np.array(ZEROS[zeros]), np.random.default_rng(5).normal(size=5)
    exact_grad, exact_hess = _closed_form(x)
    got = run(gradient, {"x": x})["dx"]
    np.testing.assert_allclose(got, exact_grad, rtol=1e-13, atol=1e-15)
    want = central(lambda v: np.sum(np.sin(np.cumprod(v)) * SERIES_WEIGHTS), x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    hv = run(derivative, {"x": x, "t": t})
    assert np.isclose(hv["value"], got @ t, rtol=1e-12)
    np.testing.assert_allclose(hv["dx"], exact_hess @ t, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- the kernel tier


W0, B0 = RNG.normal(size=4), np.array([[1.0, -2.0], [0.5, 3.0]])
X0 = RNG.normal(size=(5, 4))
X0[1, 2] = X0[3, 0] = X0[3, 2] = 0.0  # zeros in cumprod's factors: one row has two
Z0 = RNG.normal(size=(5, 3, 3))
WEIGHTS = np.arange(1.0, 9.0) / 4


def _example_loss(x, z, w):
    """An independent NumPy forward pass: one example's loss."""
    h = np.tanh(x * w)
    terms = [np.flip(h) @ WEIGHTS[:4], np.sum(np.diff(h, n=2) ** 2),
             np.tile(h, 2) @ WEIGHTS, np.repeat(h, 2) @ WEIGHTS,
             np.pad(h, (1, 3), constant_values=0.5) @ WEIGHTS,
             np.pad(h, (2, 2), mode="reflect") @ WEIGHTS,
             np.sum(np.tril(z * w[0]) ** 2), np.sum(np.triu(z, 1) * w[1]),
             np.cumprod(h) @ WEIGHTS[:4], np.sum(np.cumprod(z, axis=0) * w[2])]
    return sum(terms)


@pytest.fixture(scope="module")
def per_example():
    """The loss above per example (reduce=None): every op here keeps examples apart."""
    X, Z = sd.tensor("X", ("n", 4)), sd.tensor("Z", ("n", 3, 3))
    w = sd.tensor("w", (4,))
    h = sd.tanh(X * w)
    pair = lambda y: sd.sum(y * WEIGHTS, axis=1)  # noqa: E731
    terms = [sd.sum(sd.flip(h, axis=1) * WEIGHTS[:4], axis=1),
             sd.sum(sd.diff(h, n=2) ** 2, axis=1), pair(sd.tile(h, (1, 2))),
             pair(sd.repeat(h, 2, axis=1)),
             pair(sd.pad(h, ((0, 0), (1, 3)), constant_values=0.5)),
             pair(np.pad(h, ((0, 0), (2, 2)), mode="reflect")),
             sd.sum(np.tril(Z * w[0]) ** 2, axis=(1, 2)),
             sd.sum(sd.triu(Z, 1) * w[1], axis=(1, 2)),
             sd.sum(np.cumprod(h, axis=1) * WEIGHTS[:4], axis=1),
             sd.sum(sd.cumprod(Z, axis=1) * w[2], axis=(1, 2))]
    return sd.compile(sum(terms), wrt=[w], batch=[X, Z], reduce=None, tier="kernel")


@pytest.mark.parametrize("model", ["per_example", "series"])
def test_products_and_recurrences_are_scalar_loops(model, request):
    """Entry by entry, a stage of the loop over rows where there is a batch: an array
    expression in the kernel would keep Numba from threading its prange loops."""
    source = request.getfixturevalue(model).kernel_source
    writes = [line.strip() for line in source.splitlines()
              if line.strip().startswith(("cumprod", "recur")) and "] " in line]
    assert {w[:5] for w in writes} == {"cumpr", "recur"}
    assert not [w for w in writes if ":" in w]


def test_a_cumprods_adjoint_is_a_reverse_recurrence():
    x = sd.tensor("x", (4,))
    program = sd.differentiate(sd.sum(sd.sin(sd.cumprod(x))), [x])
    assert "= recurrence(x, dcumprod1, axis=0, reverse=True)" in str(program)


def test_per_example_values_and_gradients_match_central_differences(per_example):
    values, grads = per_example.value_and_grad(X=X0, Z=Z0, w=W0)
    for i in range(len(X0)):
        assert np.isclose(values[i], _example_loss(X0[i], Z0[i], W0), rtol=1e-12)
        want = central(lambda w: _example_loss(X0[i], Z0[i], w), W0)
        np.testing.assert_allclose(grads["w"][i], want, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def series():
    """A product series, x as a matrix's column products, and outer and kron of parts of x
    (of parameters alone: not in the per-example model, as a broadcast of parameters alone
    has no per-example rule)."""
    x = sd.tensor("x", (6,))
    return sd.compile(sd.sum(sd.sin(sd.cumprod(x)) * np.arange(1.0, 7.0))
                      + sd.sum(sd.sin(np.kron(sd.reshape(x[:4], (2, 2)), B0)))
                      + sd.sum(sd.outer(x[:2], x[3:]) ** 2)
                      + sd.sum(sd.cumprod(sd.reshape(x, (2, 3)), axis=0) ** 2),
                      wrt=[x], tier="kernel")


def _series_loss(v):
    return (np.sum(np.sin(np.cumprod(v)) * np.arange(1.0, 7.0))
            + np.sum(np.sin(np.kron(v[:4].reshape(2, 2), B0)))
            + np.sum(np.outer(v[:2], v[3:]) ** 2)
            + np.sum(np.cumprod(v.reshape(2, 3), axis=0) ** 2))


def test_kernel_gradient_jvp_and_hvp_at_two_zeros(series):
    """Against central differences of NumPy's forward pass, first and mixed second."""
    x, t = np.array([0.9, 0.0, -1.2, 0.0, 0.5, 1.1]), np.random.default_rng(6).normal(size=6)
    value, grads = series.value_and_grad(x=x)
    assert np.isclose(value, _series_loss(x), rtol=1e-13)
    np.testing.assert_allclose(grads["x"], central(_series_loss, x), rtol=1e-7, atol=1e-8)
    _, derivative = series.jvp({"x": t}, x=x)
    assert np.isclose(derivative, grads["x"] @ t, rtol=1e-12)
    h = 1e-4
    want = [(_series_loss(x + h * t + h * e) - _series_loss(x - h * t + h * e)
             - _series_loss(x + h * t - h * e) + _series_loss(x - h * t - h * e)) / (4 * h * h)
            for e in np.eye(6)]
    np.testing.assert_allclose(series.hvp({"x": t}, x=x)["x"], want, rtol=1e-5, atol=1e-6)


def test_cumprod_source_is_a_loop_and_its_adjoint_never_divides(series):
    source = series.kernel_source
    kernel = source.split("def kernel(")[1]
    assert re.search(r"cumprod1\[(step\w*)\] = cumprod1\[\1 - 1\] \* x\[\1\]", kernel)
    assert "# from: cumprod1 = cumprod(x, axis=0)" in kernel
    # R_i = g_i + x_(i+1) R_(i+1), from the far end
    assert re.search(r"(recur\d+)\[(step\w*)\] = dcumprod1\[\2\] \+ x\[\2 \+ 1\] \* "
                     r"\1\[\2 \+ 1\]", kernel)
    # P_(i-1): cumprod1 rolled by one, 1 first (i_signed: the row as a signed integer)
    assert "else cumprod1[(i_signed + 5) % 6])" in source
    assert not [line for line in source.splitlines() if "/" in line and "cumprod1" in line]


@pytest.mark.parametrize("build", [lambda y: sd.flip(y), lambda y: sd.cumprod(y),
                                   lambda y: sd.pad(y, 1, mode="wrap")])
def test_the_tape_refuses_clearly(build):
    y = sd.tensor("y", (3,))
    with pytest.raises(sd.ArgumentError, match="tape"):
        sd.compile(sd.sum(sd.sin(build(y))), wrt=[y], tier="tape")


# ---------------------------------------------------------------- refusals


def test_structure_along_the_batch_axis_mixes_examples():
    Y, w = sd.tensor("Y", (4, 3)), sd.tensor("w", (3,))
    with pytest.raises(sd.DifferentiationError, match="examples interact"):
        sd.compile(sd.sum(sd.cumprod(Y * w, axis=0), axis=1), wrt=[w], batch=["Y"],
                   reduce=None)


def test_bad_arguments_are_refused_clearly():
    x, s = sd.tensor("x", (3, 4)), sd.tensor("s", ("n",))
    with pytest.raises(sd.ShapeError, match="axis 2 is out of range"):
        sd.flip(x, axis=2)
    with pytest.raises(sd.ShapeError, match="axis -3 is out of range"):
        np.diff(x, axis=-3)
    with pytest.raises(sd.ArgumentError, match="repeats must be an integer of at least 1"):
        sd.repeat(x, -1)
    with pytest.raises(sd.ArgumentError, match="one per entry of axis 1"):
        np.repeat(x, [1, 2], axis=1)
    with pytest.raises(sd.ArgumentError, match="reps must be an integer"):
        sd.tile(x, (2, 0))
    with pytest.raises(sd.ShapeError, match="pad_width must be"):
        sd.pad(x, ((1, 2), (3, 4), (5, 6)))
    with pytest.raises(sd.ShapeError, match="pad_width must be non-negative"):
        np.pad(x, -1)
    with pytest.raises(sd.ArgumentError, match="mode 'median' is not supported"):
        np.pad(x, 1, mode="median")
    with pytest.raises(sd.ArgumentError, match="constant_values"):
        sd.pad(x, 1, mode="edge", constant_values=2.0)
    with pytest.raises(sd.ShapeError, match="tril takes matrices"):
        sd.tril(sd.tensor("v", (3,)))
    with pytest.raises(sd.ArgumentError, match="k must be an integer"):
        sd.triu(x, 0.5)
    with pytest.raises(sd.ShapeError, match="order must be less than the size"):
        sd.diff(x, n=4)
    with pytest.raises(sd.ArgumentError, match="n must be an integer of at least 0"):
        sd.diff(x, n=-1)
    with pytest.raises(sd.ShapeError, match="size 'n': the size must be known"):
        sd.cumprod(s)
    with pytest.raises(sd.ShapeError, match="size 'n': the size must be known"):
        sd.flip(s)
    with pytest.raises(sd.ShapeError, match="pad along axis 0 of size 'n'"):
        sd.pad(s, 1)
    with pytest.raises(sd.ShapeError, match="kron makes one axis of axes of sizes 'n' and 2"):
        sd.kron(s, np.ones(2))
    with pytest.raises(sd.ShapeError, match="tile makes one axis of axes of sizes 2 and 'n'"):
        sd.tile(s, 2)
    with pytest.raises(sd.ArgumentError, match="np.diff on a Tensor"):
        np.diff(x, prepend=0.0)

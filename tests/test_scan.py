"""sd.scan: loops that stay loops, against NumPy loops and central differences of them."""
import pickle
import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.numpy_eval import run

from differences import central

K = 6
RNG = np.random.default_rng(29)


def _recurrences(x, z, y0, a, sin, cos, sqrt_steps):
    """The test model written once for symdiff Tensors and once for NumPy numbers: a swell
    recurrence with a tuple carry, a reverse scan over its ys, and Newton's square root as a
    loop of fixed length."""
    def step(carry, xz):
        y, acc = carry
        xk, zk = xz
        new = sin(y) * xk + cos(y * xk) + a * zk
        return (new, acc + new * new), new * zk

    def backwards(c, yk):
        return 0.5 * c + yk, c

    def newton(c, _):
        return 0.5 * (c + a / c), None
    if sqrt_steps is None:  # NumPy: the loops by hand
        y, acc, ys = y0, 0.0, []
        for xk, zk in zip(x, z):
            (y, acc), out = step((y, acc), (xk, zk))
            ys.append(out)
        c, rs = 0.0, [0.0] * len(ys)
        for k in reversed(range(len(ys))):
            c, rs[k] = backwards(c, ys[k])
        root = a
        for _ in range(5):
            root, _ = newton(root, None)
        return y + acc + sum(rs) + c + root
    (y, acc), ys = sd.scan(step, (y0, 0.0), (x, z))
    c, rs = sd.scan(backwards, 0.0, ys, reverse=True)
    root, nothing = sd.scan(newton, a, length=sqrt_steps)
    assert nothing is None
    return y + acc + sd.sum(rs) + c + root


@pytest.fixture(scope="module")
def model():
    x, z = sd.tensor("x", (K,)), sd.tensor("z", (K,))
    y0, a = sd.scalar("y0"), sd.scalar("a")
    loss = _recurrences(x, z, y0, a, sd.sin, sd.cos, 5)
    return sd.compile(loss, wrt=[x, z, y0, a])


def _assert_central(grads: dict, numpy_loss, p: dict, **tolerance):
    """Each gradient against central differences of the NumPy loss at the point p."""
    for name, grad in grads.items():
        def moved(v, name=name):
            return numpy_loss({**p, name: v})
        np.testing.assert_allclose(grad, central(moved, p[name]), err_msg=name, **tolerance)


def _point():
    return dict(x=RNG.uniform(0.5, 1.5, K), z=RNG.uniform(-1, 1, K), y0=0.3, a=2.0)


def _numpy_loss(p):
    return _recurrences(p["x"], p["z"], p["y0"], p["a"], np.sin, np.cos, None)


def test_value_and_gradient_against_a_numpy_loop(model):
    p = _point()
    value, grads = model.value_and_grad(**p)
    assert value == pytest.approx(_numpy_loss(p), rel=1e-13)
    _assert_central(grads, _numpy_loss, p, rtol=1e-7, atol=1e-8)


def test_the_numpy_interpreter_runs_the_same_loops(model):
    p = _point()
    value, grads = model.value_and_grad(**p)
    out = run(model.program, p)
    assert out["value"] == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(out["dx"], grads["x"], rtol=1e-13)


@pytest.mark.campaign  # a loop's second order in the default run: on the tape, below
def test_hessian_vector_products_through_the_loops(model):
    """Forward over reverse: tangents through the backward loop; the oracle is mixed second
    central differences of the NumPy loop."""
    p = _point()
    v = {k: RNG.uniform(-1, 1, np.shape(p[k])) for k in ("x", "z", "y0", "a")}
    hv = model.hvp(v=v, **p)
    h = 1e-4

    def along(s, t, name, i):
        q = {k: np.asarray(p[k], float) + s * h * v[k] for k in v}
        e = np.zeros(np.shape(p[name]))
        e[i] = t * h
        q[name] = q[name] + e
        return _numpy_loss(q)
    for name in v:
        expected = np.zeros(np.shape(p[name]))
        for i in np.ndindex(expected.shape):
            expected[i] = (along(1, 1, name, i) - along(-1, 1, name, i)
                           - along(1, -1, name, i) + along(-1, -1, name, i)) / (4 * h * h)
        np.testing.assert_allclose(hv[name], expected, rtol=1e-5, atol=1e-6)


def test_the_generated_code_has_one_loop_whatever_the_length(model):
    """The steps are functions called in one loop each; the program does not grow with K."""
    source = model.kernel_source
    assert source.count("# one step per entry") == 6  # 3 loops forward, 3 backward
    assert "def _step(" in source and "range(6 - 1, -1, -1)" in source
    assert "# from: scan" in source

    def statements(length):
        x = sd.tensor("x", (length,))
        y, _ = sd.scan(lambda c, xk: (sd.sin(c) * xk, None), sd.scalar("y0"), x)
        return len(sd.differentiate(y, [x]).stmts)
    assert statements(10) == statements(10_000)


@pytest.fixture(scope="module")
def rnn():
    """A vanilla RNN over a batch: the carry has a row per example; W, U, b are the loop's
    constants (read from outside the step)."""
    X, h0 = sd.tensor("X", (4, "n", 3)), sd.tensor("h0", ("n", 5))
    W, U, b = sd.tensor("W", (3, 5)), sd.tensor("U", (5, 5)), sd.tensor("b", (5,))

    def step(h, x):
        h = sd.tanh(x @ W + h @ U + b)
        return h, sd.sum(h * h, axis=1)
    last, ys = sd.scan(step, h0, X)
    return sd.compile(sd.mean(sd.sum(last, axis=1)) + sd.mean(ys), wrt=[W, U, b, h0])


def _rnn_numpy(p):
    h, ys = p["h0"], []
    for x in p["X"]:
        h = np.tanh(x @ p["W"] + h @ p["U"] + p["b"])
        ys.append((h * h).sum(axis=1))
    return h.sum(axis=1).mean() + np.mean(ys)


def test_a_batched_rnn_against_central_differences(rnn):
    p = dict(X=RNG.normal(size=(4, 7, 3)), h0=0.1 * RNG.normal(size=(7, 5)),
             W=0.5 * RNG.normal(size=(3, 5)), U=0.5 * RNG.normal(size=(5, 5)),
             b=0.1 * RNG.normal(size=5))
    value, grads = rnn.value_and_grad(**p)
    assert value == pytest.approx(_rnn_numpy(p), rel=1e-13)
    _assert_central(grads, _rnn_numpy, p, rtol=1e-6, atol=1e-9)


def test_per_example_gradients_through_a_loop_over_parameters():
    """Each example's gradient of its own loss: the backward loop keeps a row per example in
    its running sums of the constants' adjoints."""
    X, W, h0 = sd.tensor("X", (3, "n", 2)), sd.tensor("W", (2, 2)), sd.tensor("h0", ("n", 2))
    last, ys = sd.scan(lambda h, x: (sd.tanh(x @ W + h), sd.sum(h, axis=1)), h0, X)
    f = sd.compile(sd.sum(last, axis=1) + sd.sum(ys, axis=0), wrt=[W], reduce=None)
    p = dict(X=RNG.normal(size=(3, 4, 2)), W=RNG.normal(size=(2, 2)), h0=RNG.normal(size=(4, 2)))
    values, grads = f.value_and_grad(**p)

    def example(w, i):
        h, total = p["h0"][i], 0.0
        for x in p["X"][:, i]:
            total += h.sum()
            h = np.tanh(x @ w + h)
        return h.sum() + total
    np.testing.assert_allclose(values, [example(p["W"], i) for i in range(4)], rtol=1e-13)
    for i in range(4):
        np.testing.assert_allclose(grads["W"][i], central(lambda w: example(w, i), p["W"]),
                                   rtol=1e-7, atol=1e-9)
    shared, _ = sd.scan(lambda c, x: (c + sd.sum(x @ W), None), 0.0, X)  # mixes examples
    with pytest.raises(sd.DifferentiationError, match="per-example"):
        sd.compile(shared * sd.sum(h0, axis=1), wrt=[W], reduce=None)


def test_a_private_step_clips_each_examples_gradient_through_a_loop():
    X, W, h0 = sd.tensor("X", (3, "n", 2)), sd.tensor("W", (2, 2)), sd.tensor("h0", ("n", 2))
    y = sd.tensor("y", ("n",))
    last, _ = sd.scan(lambda h, x: (sd.tanh(x @ W + h), None), h0, X)
    f = sd.compile(sd.mean((sd.sum(last, axis=1) - y) ** 2), wrt=[W])
    p = dict(X=RNG.normal(size=(3, 4, 2)), W=RNG.normal(size=(2, 2)), h0=RNG.normal(size=(4, 2)),
             y=RNG.normal(size=4))
    start = p["W"].copy()

    def example(w, i):
        h = p["h0"][i]
        for x in p["X"][:, i]:
            h = np.tanh(x @ w + h)
        return (h.sum() - p["y"][i]) ** 2
    clipped = []
    for i in range(4):
        g = central(lambda w: example(w, i), start)
        clipped.append(g * min(1.0, 0.5 / np.linalg.norm(g)))
    f.step(sd.optim.SGD(0.1, per_example_clip=0.5, noise_multiplier=0.0), **p)
    np.testing.assert_allclose(p["W"], start - 0.1 * np.mean(clipped, axis=0), rtol=1e-8)


def test_a_step_that_changes_its_carry_is_refused_naming_it_and_both_shapes():
    x = sd.tensor("x", (4, 3))
    with pytest.raises(sd.ShapeError, match=r"carry h enters the step as \(3,\) float64 and "
                                            r"leaves it as \(\) float64"):
        sd.scan(lambda h, xk: (sd.sum(h * xk), None), sd.tensor("h0", (3,)), x)
    with pytest.raises(sd.ShapeError, match="must keep its structure"):
        sd.scan(lambda c, xk: ((c, c), None), sd.scalar("c0"), x)
    with pytest.raises(sd.ArgumentError, match=r"must return \(carry, y\)"):
        sd.scan(lambda c, xk: c, sd.scalar("c0"), x)


def test_xs_without_a_leading_axis_or_of_different_lengths_are_refused():
    step = lambda c, xk: (c, None)  # noqa: E731
    with pytest.raises(sd.ShapeError, match="xs s is a scalar"):
        sd.scan(step, 0.0, sd.scalar("s"))
    with pytest.raises(sd.ShapeError, match=r"leading axis: u \(3,\), v \(4,\)"):
        sd.scan(step, 0.0, (sd.tensor("u", (3,)), sd.tensor("v", (4,))))
    with pytest.raises(sd.ShapeError, match="pass xs or length="):
        sd.scan(step, 0.0)
    with pytest.raises(sd.ShapeError, match="length=5"):
        sd.scan(step, 0.0, sd.tensor("u", (3,)), length=5)


def test_the_tape_tier_names_what_it_does_not_run():
    x = sd.tensor("x", ("n",))
    y, _ = sd.scan(lambda c, _: (c * sd.sum(c), None), x, length=3)
    with pytest.raises(sd.ArgumentError, match=r"tier=.tape. cannot run this model: scan1 = "
                                               r"scan.*its step computes sum of shape \(\)"):
        sd.compile(sd.sum(y), wrt=[x], tier="tape")


def _per_sample(y0, xs, zs, sin, cos, scan):
    """Per-sample recurrences (the tape tier's kind): a tuple carry, and a reverse loop over
    the first loop's ys."""
    def step(carry, xz):
        y, s = carry
        x, z = xz
        new = sin(y) * x + cos(y * x) + z * s
        return (new, s + 0.5 * new), new * z
    (y, s), ys = scan(step, (y0, 0.1 * y0), (xs, zs))
    r, _ = scan(lambda c, yk: (0.5 * c + yk, None), y, ys, reverse=True)
    return y * s + r


def _numpy_scan(step, init, xs, reverse=False):
    carry, ys = init, [None] * len(xs[0])
    for t in (reversed(range(len(xs[0]))) if reverse else range(len(xs[0]))):
        carry, ys[t] = step(carry, tuple(x[t] for x in xs) if len(xs) > 1 else xs[0][t])
    return carry, ys


def _per_sample_numpy(p):
    def scan(step, init, xs, reverse=False):
        return _numpy_scan(step, init, xs if isinstance(xs, tuple) else (xs,), reverse)
    return np.sum(_per_sample(p["y0"], p["xs"], p["zs"], np.sin, np.cos, scan))


@pytest.fixture(scope="module")
def per_sample():
    y0, xs, zs = sd.tensor("y0", ("n",)), sd.tensor("xs", ("K", "n")), sd.tensor("zs", ("K", "n"))
    loss = sd.sum(_per_sample(y0, xs, zs, sd.sin, sd.cos, sd.scan))
    return loss, [y0, xs, zs]


def test_the_tape_runs_loops_of_per_sample_carries_for_any_length(per_sample):
    loss, wrt = per_sample
    f = sd.compile(loss, wrt=wrt)
    assert f.tier == "tape"  # a loop is taken by the tape where it can: no compile
    for length in (3, 5):
        p = dict(y0=RNG.uniform(-1, 1, 4), xs=RNG.uniform(0.5, 1.5, (length, 4)),
                 zs=RNG.uniform(-1, 1, (length, 4)))
        value, grads = f.value_and_grad(**p)
        assert value == pytest.approx(_per_sample_numpy(p), rel=1e-13)
        _assert_central(grads, _per_sample_numpy, p, rtol=1e-7, atol=1e-8)


def test_the_tape_and_the_kernel_give_a_loops_gradients_the_same_bits(per_sample):
    loss, wrt = per_sample
    p = dict(y0=RNG.uniform(-1, 1, 300), xs=RNG.uniform(0.5, 1.5, (4, 300)),
             zs=RNG.uniform(-1, 1, (4, 300)))  # more samples than a tape block
    tape = sd.compile(loss, wrt=wrt, tier="tape").value_and_grad(**p)
    kernel = sd.compile(loss, wrt=wrt, tier="kernel").value_and_grad(**p)
    assert tape[0] == pytest.approx(kernel[0], rel=1e-15)  # the batch sum: other blocks
    for name in ("y0", "xs", "zs"):  # per sample: the same operations in the same order
        np.testing.assert_array_equal(tape[1][name], kernel[1][name])


def test_hessian_vector_products_of_a_loop_on_the_tape(per_sample):
    loss, wrt = per_sample
    f = sd.compile(loss, wrt=wrt)
    p = dict(y0=RNG.uniform(-1, 1, 3), xs=RNG.uniform(0.5, 1.5, (4, 3)),
             zs=RNG.uniform(-1, 1, (4, 3)))
    v = {k: RNG.uniform(-1, 1, np.shape(p[k])) for k in p}
    hv = f.hvp(v=v, **p)
    assert f._kernels["hvp"].tier == "tape"
    h = 1e-4

    def along(s, t, name, i):  # the NumPy loop at p + s h v + t h e_i
        q = {k: p[k] + s * h * v[k] for k in v}
        q[name] = q[name] + t * h * (np.arange(q[name].size) == i).reshape(q[name].shape)
        return _per_sample_numpy(q)
    for name in v:
        expected = np.array([(along(1, 1, name, i) - along(-1, 1, name, i)
                              - along(1, -1, name, i) + along(-1, -1, name, i)) / (4 * h * h)
                             for i in range(p[name].size)]).reshape(p[name].shape)
        np.testing.assert_allclose(hv[name], expected, rtol=1e-5, atol=1e-6)


def test_a_float32_loop_pickles_and_keeps_its_dtype():
    x, h0 = sd.tensor("x", (5, "n"), dtype="float32"), sd.tensor("h0", ("n",), dtype="float32")
    a = sd.tensor("a", (), dtype="float32")
    last, ys = sd.scan(lambda h, xk: (sd.tanh(a * h + xk), 2 * h), h0, x)
    f = sd.compile(sd.sum(last) + sd.sum(ys), wrt=[a, h0])
    p = dict(x=RNG.normal(size=(5, 3)).astype(np.float32),
             h0=RNG.normal(size=3).astype(np.float32), a=np.float32(0.7))
    value, grads = f.value_and_grad(**p)

    def numpy_loss(a, h0):
        h, total = h0, 0.0
        for xk in p["x"].astype(float):
            total += np.sum(2 * h)
            h = np.tanh(a * h + xk)
        return np.sum(h) + total
    assert value.dtype == np.float32 and grads["h0"].dtype == np.float32
    assert value == pytest.approx(numpy_loss(0.7, p["h0"].astype(float)), rel=1e-5)
    np.testing.assert_allclose(grads["h0"], central(lambda h: numpy_loss(0.7, h),
                                                    p["h0"].astype(float)), rtol=1e-4)
    again = pickle.loads(pickle.dumps(f)).value_and_grad(**p)
    assert again[0] == value
    np.testing.assert_array_equal(again[1]["a"], grads["a"])


def test_a_loop_inside_a_loops_step():
    X, a = sd.tensor("X", (3, 4)), sd.scalar("a")

    def row_step(c, row):  # an inner loop over the row, from the outer carry
        inner, _ = sd.scan(lambda s, x: (sd.sin(s) + a * x, None), c, row)
        return inner, 2 * inner
    last, ys = sd.scan(row_step, a, X)
    f = sd.compile(last + sd.sum(ys), wrt=[X, a])

    def numpy_loss(X, a):
        c, total = a, 0.0
        for row in X:
            for x in row:
                c = np.sin(c) + a * x
            total += 2 * c
        return c + total
    p = dict(X=RNG.normal(size=(3, 4)), a=0.3)
    value, grads = f.value_and_grad(**p)
    assert value == pytest.approx(numpy_loss(**p), rel=1e-14)
    np.testing.assert_allclose(grads["X"], central(lambda X: numpy_loss(X, 0.3), p["X"]),
                               rtol=1e-7, atol=1e-9)
    assert grads["a"] == pytest.approx(central(lambda a: numpy_loss(p["X"], a), 0.3), rel=1e-7)


@pytest.mark.parametrize("tier", ["tape", "kernel"])
def test_a_loop_of_length_zero_returns_its_init(tier):
    x0, xs = sd.tensor("x0", ("n",)), sd.tensor("xs", (0, "n"))
    last, ys = sd.scan(lambda y, x: (sd.sin(y) * x, y), x0, xs)
    f = sd.compile(sd.sum(last), wrt=[x0, xs], tier=tier)
    value, grads = f.value_and_grad(x0=np.array([0.5, 1.0]), xs=np.zeros((0, 2)))
    assert value == 1.5 and ys.shape == (0, "n")
    np.testing.assert_array_equal(grads["x0"], [1.0, 1.0])
    assert grads["xs"].shape == (0, 2)


def test_the_backward_loop_makes_only_what_is_read():
    """xs that are data get no adjoint, and no loop keeps a result nobody reads."""
    x, w = sd.tensor("x", ("K",)), sd.scalar("w")
    last, _ = sd.scan(lambda c, xk: (sd.sin(c * w) + xk, None), 0.0, x)
    f = sd.compile(last, wrt=[w], tier="kernel")
    source = f.kernel_source
    backward = source[source.index("def _step_2("):source.index("def kernel(")]
    assert re.search(r"return \(\w+, \w+, \)", backward)  # the carry's adjoint and dw's sum
    assert source.count("= np.empty((K,)") == 2  # the forward loop's kept carry and c*w
    value, grads = f.value_and_grad(x=np.array([0.3, -0.2, 0.5]), w=1.5)

    def numpy_loss(w):
        c = 0.0
        for xk in (0.3, -0.2, 0.5):
            c = np.sin(c * w) + xk
        return c
    assert grads["w"] == pytest.approx(central(numpy_loss, 1.5), rel=1e-7)

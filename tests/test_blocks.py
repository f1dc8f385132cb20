"""Large batches in blocks of rows (codegen/blocks.py): the same answers as one kernel call
and as a hand-written gradient, the same bits at any thread count, the same errors."""
import threading

import dask
import dask.array as da
import numpy as np
import pytest

import symdiff as sd
from conftest import at_one_and_two_threads, mlp_arguments
from test_pickling import same_bits

N, D, LAM = 5000, 4, 1e-3  # 5,000 rows: blocks of 1,024 under the bounds set below


@pytest.fixture
def blocks(monkeypatch):
    """Blocks of 1,024 rows for float64 (n,) intermediates (8 KiB), and every call of 4,096
    rows or more in blocks (the defaults would need millions of rows)."""
    from symdiff.codegen import blocks as module
    monkeypatch.setattr(module, "BLOCK_BYTES", 8 * 1024)
    monkeypatch.setattr(module, "LARGE_BYTES", 8 * 4096)
    return module


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, D))
    t = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=N) > 0).astype(float)
    return dict(X=X, t=t, w=rng.normal(size=D) * 0.3, b=0.2)


def logreg():
    X, t = sd.tensor("X", ("n", D)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + LAM / 2 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b], check_finite=True)


def hand_logreg(X, t, w, b):
    """The loss and its gradient written out in NumPy: an oracle independent of symdiff."""
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    loss = np.mean(np.logaddexp(0.0, z) - t * z) + LAM / 2 * w @ w
    return loss, {"w": X.T @ (p - t) / len(t) + LAM * w, "b": np.mean(p - t)}


def test_a_large_batch_runs_in_blocks_and_agrees_with_the_hand_gradient(blocks, data):
    f = logreg()
    one, two = at_one_and_two_threads(lambda: f.value_and_grad(**data))
    assert blocks.plan(f).rows == 1024 and f._blocks.kernels  # it ran in blocks
    assert same_bits(one, two)
    value, grads = one
    hand_value, hand_grads = hand_logreg(**data)
    assert isinstance(value, float) and isinstance(grads["b"], float)
    assert value == pytest.approx(hand_value, rel=1e-12)
    for w in ("w", "b"):
        np.testing.assert_allclose(grads[w], hand_grads[w], rtol=1e-10)
    assert f(**data) == value and same_bits(f.grad(**data), grads)
    small = {**data, "X": data["X"][:4000], "t": data["t"][:4000]}  # under 4,096 rows
    assert f.value_and_grad(**small)[0] == pytest.approx(hand_logreg(**small)[0], rel=1e-12)


def test_inputs_read_twice_count_toward_blocks(monkeypatch, data):
    """Logistic regression allocates 8 bytes a row (X @ w, whose array the loop after it
    reuses) and reads X and t (40 bytes a row here) in two passes: at n = 5,000 those 240 KB
    pass STREAM_BYTES set to 224 KiB, far under LARGE_BYTES, and only that sends the call to
    blocks."""
    from symdiff.codegen import blocks as module
    monkeypatch.setattr(module, "BLOCK_BYTES", 8 * 1024)
    monkeypatch.setattr(module, "STREAM_BYTES", 224 * 1024)
    f = logreg()
    value, grads = f.value_and_grad(**data)
    assert f._grad.row_bytes == 8 and f.__dict__.get("_blocks").kernels
    hand_value, hand_grads = hand_logreg(**data)
    assert value == pytest.approx(hand_value, rel=1e-12)
    for w in ("w", "b"):
        np.testing.assert_allclose(grads[w], hand_grads[w], rtol=1e-10)
    monkeypatch.setattr(module, "STREAM_BYTES", 256 * 1024)  # over the 240 KB: one call
    g = logreg()
    assert g.value_and_grad(**data)[0] == pytest.approx(hand_value, rel=1e-12)
    assert "_blocks" not in g.__dict__ or not g._blocks.kernels


def test_chunks_of_2_to_the_k_blocks_give_a_local_call_s_bits(blocks, data):
    f = logreg()
    local = f.value_and_grad(**data)
    for rows in (2048, 4096):  # chunks of 2 and 4 blocks, the last one shorter
        lazy = {k: da.from_array(v, chunks=(rows,) + v.shape[1:]) if k in "Xt" else v
                for k, v in data.items()}
        with dask.config.set(scheduler="threads"):
            assert same_bits(f.value_and_grad(**lazy), local)


class Sum(str):
    """A sum written out: its additions' order is its text."""

    def __add__(self, other):
        return Sum(f"({self}+{other})")


def level_by_level(parts: list) -> tuple:
    """Pairwise in order, as its definition reads: add neighbours, carry a last odd one up."""
    while len(parts) > 1:
        pairs = [tuple(x + y for x, y in zip(a, b)) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + parts[len(pairs) * 2:]
    return parts[0]


def test_runs_of_blocks_added_up_on_their_own_threads_make_the_pairwise_sum():
    from symdiff.codegen.blocks import node, pairwise, tiles
    for count in range(1, 300):
        parts = [(Sum(k), Sum(-k)) for k in range(count)]
        expected = level_by_level(parts)
        assert pairwise(parts) == expected
        for threads in (2, 3, 5):
            known = {}
            for t in range(threads):  # as blocks._sums splits the blocks among threads
                first, end = count * t // threads, count * (t + 1) // threads
                own = {(k, k + 1): parts[k] for k in range(first, end)}
                known.update({(a, min(a + size, count)): node(count, own, a, size)
                              for a, size in tiles(first, end, count)})
            assert node(count, known) == expected, (count, threads)


@pytest.fixture
def mlp_planned_here(mlp):
    """The shared MLP, its blocks planned under this module's bounds and forgotten after."""
    mlp.__dict__.pop("_blocks", None)
    yield mlp
    mlp.__dict__.pop("_blocks", None)


def test_the_mlp_in_blocks_agrees_with_one_kernel_call(blocks, mlp_planned_here):
    mlp = mlp_planned_here
    arguments = mlp_arguments(N, seed=4)
    value, grads = mlp.value_and_grad(**arguments)
    assert mlp._blocks.rows == 128  # (n, 5) float64 intermediates: 40 bytes a row
    blocks.LARGE_BYTES = float("inf")
    whole_value, whole_grads = mlp.value_and_grad(**arguments)
    assert value == pytest.approx(whole_value, rel=1e-12)
    for w in grads:
        np.testing.assert_allclose(grads[w], whole_grads[w], rtol=1e-11, atol=1e-15)


def test_a_plain_step_over_a_batch_in_blocks_takes_value_and_grads_loss_and_gradients(
        blocks, data):
    """A step used to run the kernel over the whole batch whatever its size: other last bits
    than value_and_grad's, and a 30-32-10 MLP's step over 500,000 rows took 310 ms against
    value_and_grad's 103 ms in blocks."""
    f = logreg()
    value, grads = f.value_and_grad(**data)
    for step in (lambda p: f.step(sd.optim.SGD(0.1), **p), lambda p: f.sgd_step(0.1, **p)):
        p = {**data, "w": data["w"].copy(), "b": np.array(data["b"])}  # updated in place
        assert step(p) == value
        assert np.array_equal(p["w"], data["w"] - 0.1 * grads["w"])
        assert p["b"] == data["b"] - 0.1 * grads["b"]
    p = {**data, "w": data["w"].copy(), "b": np.array(data["b"])}
    assert f.step(sd.optim.SGD(0.1, clip_norm=1e-3), **p) == value  # clipped to norm 1e-3
    norm = np.sqrt(np.sum(grads["w"] ** 2) + grads["b"] ** 2)
    np.testing.assert_allclose(p["w"], data["w"] - 0.1 * grads["w"] * (1e-3 / norm),
                               rtol=1e-13)
    X = data["X"].copy()
    X[4500, 2] = np.nan
    p = {**data, "X": X, "w": data["w"].copy(), "b": np.array(data["b"])}
    with pytest.raises(sd.NonFiniteError, match="value is nan"):
        f.step(sd.optim.SGD(0.1), **p)
    assert np.array_equal(p["w"], data["w"]) and p["b"] == data["b"]  # nothing written


def test_jvp_over_a_batch_in_blocks_has_the_value_s_bits_and_the_hand_derivative(blocks, data):
    """jvp ran the kernel over the whole batch: its loss differed from f(...)'s in the last
    bits (by 1.3e-15 for a 30-32-10 MLP over 60,000 rows). The penalty's own term and the
    batch sum's both count."""
    f = logreg()
    rng = np.random.default_rng(11)
    tangents = {"w": rng.normal(size=D), "b": 0.7}
    value, derivative = f.jvp(tangents, **data)
    assert "jvp" in f._blocks.kernels and value == f(**data)
    _, hand = hand_logreg(**data)
    expected = hand["w"] @ tangents["w"] + hand["b"] * tangents["b"]
    assert derivative == pytest.approx(expected, rel=1e-11)
    blocks.LARGE_BYTES = float("inf")  # the one-call jvp: the same to rounding
    one_value, one_derivative = f.jvp(tangents, **data)
    assert one_value == pytest.approx(value, rel=1e-14)
    assert one_derivative == pytest.approx(derivative, rel=1e-13)


def test_hvp_and_the_hessian_over_a_batch_in_blocks_are_the_hand_hessians(blocks, data):
    """hvp (and so hessian) ran the kernel over the whole batch. In blocks: the blocks' sums
    of the gradient's derivative along v, and the epilogue's terms (the 1/n, the penalty's
    own Hessian) applied once."""
    f = logreg()
    X1 = np.column_stack([data["X"], np.ones(N)])  # the features and the intercept's 1
    z = data["X"] @ data["w"] + data["b"]
    p = 1.0 / (1.0 + np.exp(-z))
    hand = X1.T @ (X1 * (p * (1.0 - p))[:, None]) / N + np.diag([LAM] * D + [0.0])
    v = {"w": np.random.default_rng(12).normal(size=D), "b": -0.4}
    product = f.hvp(v, **data)
    assert "hvp" in f._blocks.kernels and isinstance(product["b"], float)
    expected = hand @ np.append(v["w"], v["b"])
    np.testing.assert_allclose(np.append(product["w"], product["b"]), expected, rtol=1e-12)
    np.testing.assert_allclose(f.hessian(**data), hand, rtol=1e-12, atol=1e-15)
    blocks.LARGE_BYTES = float("inf")  # the one-call hvp: the same to rounding
    one = f.hvp(v, **data)
    for w in ("w", "b"):
        np.testing.assert_allclose(one[w], product[w], rtol=1e-13)


def test_hvp_in_blocks_applies_a_nonlinear_epilogue_s_second_derivative(blocks, data):
    """L = log(S/n) + w.w: the epilogue's own curvature, dL/dS's derivative along
    Ṡ = (dS/dw) v, enters H v beside the blocks' sums."""
    X, w = sd.tensor("X", ("n", D)), sd.tensor("w", (D,))
    f = sd.compile(sd.log(sd.mean(sd.exp(X @ w))) + sd.sum(w * w), wrt=[w])
    e = np.exp(data["X"] @ data["w"])
    m, g = e.mean(), data["X"].T @ e / N  # the mean and its gradient
    hand = (data["X"].T @ (data["X"] * e[:, None]) / N) / m - np.outer(g, g) / m ** 2 \
        + 2.0 * np.eye(D)
    v = np.random.default_rng(13).normal(size=D)
    product = f.hvp({"w": v}, X=data["X"], w=data["w"])
    assert "hvp" in f._blocks.kernels
    np.testing.assert_allclose(product["w"], hand @ v, rtol=1e-11)


def test_hvp_in_blocks_leaves_out_an_infinite_slope_along_a_zero_direction(blocks, data):
    """Regression: a mean's dL/dS has the derivative 0, which multiplied the blocks' dS/db,
    infinite for sqrt(b) at b = 0: NaN by b, where the one-call product, which leaves out a
    direction's 0, gives 0."""
    X, x = sd.tensor("X", ("n", D)), sd.tensor("x", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")
    f = sd.compile(sd.mean(sd.tanh(X @ w) ** 2 + sd.sqrt(b) * x), wrt=[w, b])
    arguments = {"X": data["X"], "x": np.abs(data["t"]) + 1.0, "w": data["w"], "b": 0.0}
    v = {"w": np.array([1.0, 0.0, 0.0, 0.0]), "b": 0.0}
    product = f.hvp(v, **arguments)
    assert "hvp" in f._blocks.kernels and product["b"] == 0.0
    z = np.tanh(data["X"] @ data["w"])  # (tanh^2)'' = 2 (1 - t^2)(1 - 3 t^2), by hand
    curvature = 2.0 * (1.0 - z ** 2) * (1.0 - 3.0 * z ** 2)
    hand = data["X"].T @ (data["X"] * curvature[:, None]) / N
    np.testing.assert_allclose(product["w"], hand @ v["w"], rtol=1e-11)
    blocks.LARGE_BYTES = float("inf")
    np.testing.assert_allclose(product["w"], f.hvp(v, **arguments)["w"], rtol=1e-13)


def test_jvp_in_blocks_leaves_out_a_penalty_s_infinite_slope_along_a_zero_tangent(blocks,
                                                                                   data):
    """Regression: jvp in blocks added each parameter's own (penalty) slope times its
    tangent: sqrt(b)'s infinite slope at b = 0 times b's tangent 0 gave NaN, where the
    one-call jvp leaves out a tangent's 0."""
    X, w, b = sd.tensor("X", ("n", D)), sd.tensor("w", (D,)), sd.scalar("b")
    f = sd.compile(sd.mean(sd.tanh(X @ w) ** 2) + sd.sqrt(b), wrt=[w, b])
    arguments = {"X": data["X"], "w": data["w"], "b": 0.0}
    tangents = {"w": np.array([1.0, 0.0, 0.0, 0.0]), "b": 0.0}
    value, derivative = f.jvp(tangents, **arguments)
    assert "jvp" in f._blocks.kernels and np.isfinite(derivative)
    z = np.tanh(data["X"] @ data["w"])  # d/dw0 of mean(tanh(z)^2), by hand
    hand = np.mean(2.0 * z * (1.0 - z ** 2) * data["X"][:, 0])
    assert derivative == pytest.approx(hand, rel=1e-12)


def test_hvp_in_blocks_with_a_batch_input_named_like_its_own_s_dot(blocks, data):
    """Regression: the epilogue's input for S's derivative took the name S_dot, fresh against
    the epilogue's inputs alone, and a batch input of that name replaced it."""
    X, w, Z = sd.tensor("X", ("n", D)), sd.tensor("w", (D,)), sd.tensor("S_dot", ("n",))
    f = sd.compile(sd.log(sd.mean(sd.exp(X @ w) + Z ** 2)), wrt=[w])
    v = np.random.default_rng(14).normal(size=D)
    arguments = {"X": data["X"], "S_dot": data["t"], "w": data["w"]}
    product = f.hvp({"w": v}, **arguments)
    assert "hvp" in f._blocks.kernels
    e = np.exp(data["X"] @ data["w"])  # the log of a mean, by hand
    m, g = np.mean(e + data["t"] ** 2), data["X"].T @ e / N
    hand = (data["X"].T @ (data["X"] * e[:, None]) / N) / m - np.outer(g, g) / m ** 2
    np.testing.assert_allclose(product["w"], hand @ v, rtol=1e-11)


def test_a_call_in_blocks_does_not_wait_for_another_kernel_s_compile(blocks, data,
                                                                     monkeypatch):
    """Regression: a Plan built each kernel under one lock, so value_and_grad in blocks, its
    own kernel long built, waited for another thread's compile of the hvp kernel."""
    import threading
    f = logreg()
    expected = f.value_and_grad(**data)
    building, release = threading.Event(), threading.Event()
    make = blocks.make_kernel

    def held_make(*args, **options):
        building.set()
        assert release.wait(600)
        return make(*args, **options)

    monkeypatch.setattr(blocks, "make_kernel", held_make)
    v = {"w": np.ones(D), "b": 1.0}
    second = threading.Thread(target=lambda: f.hvp(v, **data))
    second.start()
    try:
        assert building.wait(600)  # the hvp kernel is being built, with its lock held
        done = []
        call = threading.Thread(target=lambda: done.append(f.value_and_grad(**data)))
        call.start()
        call.join(60)
        assert done and same_bits(done[0], expected)
    finally:
        release.set()
        second.join()
    assert "hvp" in f._blocks.kernels


def test_the_jacobian_of_a_mean_over_a_batch_in_blocks(blocks, data):
    """Regression: jvp in blocks read every input of the split, which for `sd.jacobian`
    includes the cotangent u of its gradient Program, and its jvp is given none: "missing
    argument u". Such a jvp runs as one kernel call, as before."""
    X, w = sd.tensor("X", ("n", D)), sd.tensor("w", (D,))
    J = sd.jacobian(sd.mean(sd.tanh(X @ w)), wrt=[w])
    z = np.tanh(data["X"] @ data["w"])
    expected = ((1.0 - z ** 2)[:, None] * data["X"]).mean(axis=0)  # d/dw of the mean
    np.testing.assert_allclose(np.ravel(J(X=data["X"], w=data["w"])), expected, rtol=1e-12)


def test_a_private_step_over_a_batch_in_blocks_clips_each_example_and_adds_the_noise(
        blocks, data):
    """A private step used to run its kernel over the whole batch (a 30-32-10 MLP's over
    100,000 rows took 63 ms against value_and_grad's 16 ms). In blocks: value_and_grad's loss,
    and the mean of the examples' gradients each clipped to norm C, plus the noise."""
    X, t = sd.tensor("X", ("n", D)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")
    f = sd.compile(sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)), wrt=[w, b],
                   check_finite=True)
    C, sigma, lr = 0.5, 1.3, 0.1
    value, _ = f.value_and_grad(**data)
    # the definition in NumPy: example i's gradient (p_i - t_i) (x_i, 1), clipped to norm C
    residual = 1.0 / (1.0 + np.exp(-(data["X"] @ data["w"] + data["b"]))) - data["t"]
    each = residual[:, None] * np.column_stack([data["X"], np.ones(N)])
    each *= np.minimum(1.0, C / np.linalg.norm(each, axis=1))[:, None]
    rng = np.random.default_rng(9)  # the step draws w's noise, then b's
    noise = np.concatenate([rng.standard_normal(D), rng.standard_normal(1)])
    expected = np.append(data["w"], data["b"]) - lr * (each.mean(axis=0) + sigma * C / N * noise)

    def step():
        p = {**data, "w": data["w"].copy(), "b": np.array(data["b"])}  # updated in place
        opt = sd.optim.SGD(lr, per_example_clip=C, noise_multiplier=sigma,
                           rng=np.random.default_rng(9))
        return f.step(opt, **p), np.append(p["w"], p["b"]), opt
    loss, updated, _ = step()
    assert "private" in f._blocks.kernels and loss == value
    np.testing.assert_allclose(updated, expected, rtol=1e-12)
    assert f._kernels["dp"]._module is None  # the one-call kernel: never compiled in blocks
    blocks.LARGE_BYTES = float("inf")  # the one-call private step: the same to rounding
    one_loss, one_updated, _ = step()
    assert f._kernels["dp"]._module is not None
    assert one_loss == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(updated, one_updated, rtol=1e-13)
    blocks.LARGE_BYTES = 8 * 4096
    X = data["X"].copy()
    X[4500, 2] = np.nan
    p = {**data, "X": X, "w": data["w"].copy(), "b": np.array(data["b"])}
    opt = sd.optim.SGD(lr, per_example_clip=C, noise_multiplier=sigma,
                       rng=np.random.default_rng(9))
    drawn = opt.rng.bit_generator.state
    with pytest.raises(sd.NonFiniteError, match="value is nan"):
        f.step(opt, **p)
    assert np.array_equal(p["w"], data["w"]) and p["b"] == data["b"]  # nothing written
    assert opt.rng.bit_generator.state == drawn and opt.count == 0  # no noise drawn


def test_a_private_step_in_blocks_names_the_clipped_gradient_as_the_compiled_step_does(
        blocks, data):
    """Regression: with a finite loss and a NaN gradient (sqrt(z^2) at z = 0 has the slope
    inf * 0), the step in blocks said "the gradient by w", the compiled one "the clipped
    gradient by w"."""
    X, w = sd.tensor("X", ("n", D)), sd.tensor("w", (D,))
    f = sd.compile(sd.mean(sd.sqrt((X @ w) ** 2)), wrt=[w], check_finite=True)
    for bound in (8 * 4096, float("inf")):  # in blocks, then as one kernel call
        blocks.LARGE_BYTES = bound
        p = {"X": data["X"], "w": np.zeros(D)}
        with pytest.raises(sd.NonFiniteError, match="the clipped gradient by w is nan"):
            f.step(sd.optim.SGD(0.1, per_example_clip=1.0), **p)
        assert not p["w"].any()
    assert "private" in f._blocks.kernels


@pytest.mark.parametrize("size", [1.0, 1e200])  # 1e200: the squares overflow
def test_a_clipped_step_from_python_has_the_compiled_steps_bits(data, size):
    """A step in blocks clips in Python (steps.clip_scale): the compiled step's arithmetic,
    so at a batch that does not run in blocks the two give the same bits."""
    f = logreg().wait()  # (its compiled steps are read below)
    small = {**data, "X": data["X"][:300] * size, "t": data["t"][:300]}
    updated = []
    for step in (lambda opt, p: f.step(opt, **p),
                 lambda opt, p: f._steps[False].python_step(opt, p)):
        p = {**small, "w": small["w"].copy(), "b": np.array(small["b"])}
        opt = sd.optim.Adam(0.01, clip_norm=0.5)
        for _ in range(3):
            step(opt, p)
        updated.append((p["w"], p["b"]))
    assert f._steps[False].compiled  # the first way ran the compiled step
    assert np.array_equal(updated[0][0], updated[1][0]) and updated[0][1] == updated[1][1]
    assert not np.array_equal(updated[0][0], small["w"])


def test_a_large_batch_refuses_what_one_call_refuses(blocks, data, mlp_planned_here):
    f = logreg()
    with pytest.raises(sd.ShapeError, match="t has n = 5001 on axis 0, but X has n = 5000"):
        f.value_and_grad(**{**data, "t": np.append(data["t"], 1.0)})
    X = data["X"].copy()
    X[4500, 2] = np.nan
    with pytest.raises(sd.NonFiniteError, match="value is nan"):
        f.value_and_grad(**{**data, "X": X})
    arguments = mlp_arguments(N, seed=4)
    arguments["y"][4321] = 3
    with pytest.raises(sd.DomainError, match="y holds the label 3, outside"):
        mlp_planned_here.value_and_grad(**arguments)


def test_a_forked_child_runs_blocks_on_threads_of_its_own(blocks, data):
    """The pool of block threads is kept for the process; a child forked after a call must
    not take its parent's pool, whose threads it does not have (it would wait forever)."""
    import multiprocessing
    f = logreg()
    value, _ = f.value_and_grad(**data)
    assert f._blocks.kernels  # the parent ran in blocks, on threads where it has two
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(f.value_and_grad(**data)[0]))
    child.start()
    try:
        assert queue.get(timeout=60) == value
    finally:
        child.join(10)
        child.kill()


def test_float32_arguments_give_the_bits_of_their_float64_values(blocks, data):
    """Converted once for the whole call: the epilogue (the mean's 1/n, the penalty on w)
    computes in float64 as a one-call kernel does, not in the parameters' float32."""
    f = logreg()
    single = {k: np.float32(v) if np.ndim(v) == 0 else v.astype(np.float32)
              for k, v in data.items()}
    double = {k: np.float64(v) if np.ndim(v) == 0 else v.astype(np.float64)
              for k, v in single.items()}
    result = f.value_and_grad(**single)
    assert f._blocks.kernels and same_bits(result, f.value_and_grad(**double))


def test_a_step_in_blocks_before_the_kernel_arrives_has_value_and_grads_bits(blocks, data,
                                                                            monkeypatch):
    """A plain step over a batch that runs in blocks, taken while the one-call kernel still
    compiled, took its loss from the one-call route: other last bits than value_and_grad's
    in blocks (found by delaying every background load by a second)."""
    from symdiff.codegen import kernel as kernel_module
    reference = logreg().wait()
    release, load = threading.Event(), kernel_module.load_module
    monkeypatch.setattr(kernel_module, "load_module", lambda source: (
        source != reference._grad.source or release.wait(600), load(source))[1])
    try:
        f = logreg()  # its one-call kernel held back; the block kernels are not
        value, grads = f.value_and_grad(**data)
        assert f.tier == "python" and f._blocks.kernels
        assert same_bits((value, grads), reference.value_and_grad(**data))
        for step in (lambda p: f.step(sd.optim.SGD(0.1), **p), lambda p: f.sgd_step(0.1, **p)):
            p = {**data, "w": data["w"].copy(), "b": np.array(data["b"])}
            assert step(p) == value and f.tier == "python"
            assert np.array_equal(p["w"], data["w"] - 0.1 * grads["w"])
    finally:
        release.set()


def run_program(program: list, parts: list) -> list:
    """The sums a driver's program computes, as codegen/driver.py's `drive` computes them."""
    from symdiff.codegen.driver import MERGE, TILE
    stack, sums = [], []
    for op in program:
        if op >= 0:
            stack.append(parts[op])
        elif op == MERGE:
            upper = stack.pop()
            stack[-1] = tuple(x + y for x, y in zip(stack[-1], upper))
        else:
            assert op == TILE and len(stack) == 1
            sums.append(stack.pop())
    return sums


def test_the_drivers_programs_add_as_the_pairwise_tree_adds():
    from symdiff.codegen.blocks import node, program, tiles
    for count in range(1, 300):
        parts = [(Sum(k), Sum(-k)) for k in range(count)]
        for threads in (1, 2, 3, 5):
            known = {}
            for t in range(threads):  # as blocks._sums writes each thread's program
                first, end = count * t // threads, count * (t + 1) // threads
                spans = tiles(first, end, count)
                sums = run_program(program(tuple(spans), count), parts)
                known.update({(a, min(a + size, count)): total
                              for (a, size), total in zip(spans, sums)})
            assert node(count, known) == level_by_level(parts), (count, threads)


def test_the_compiled_driver_gives_the_python_paths_bits(blocks, data, mlp_planned_here,
                                                         monkeypatch):
    """Each kind of call in blocks, first from Python while its driver compiles, then in the
    driver alone (the Python path's block calls would raise): the same bits, at one and two
    threads. The logistic regression's 5 blocks end in a node that is carried up, and its b
    is a number among arrays. A label the MLP's kernel refuses raises inside the driver, and
    the Python path then names it."""
    f = logreg()
    X, t = sd.tensor("X", ("n", D)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (D,)), sd.scalar("b")  # without the penalty, for a private step
    g = sd.compile(sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)), wrt=[w, b])
    tangents = {"w": np.linspace(-1.0, 1.0, D), "b": 0.7}

    def private_step():
        params = {**data, "w": data["w"].copy(), "b": np.array(data["b"])}
        opt = sd.optim.SGD(0.1, per_example_clip=0.5, noise_multiplier=1.3,
                           rng=np.random.default_rng(9))
        return g.step(opt, **params), params["w"], float(params["b"])

    def calls():
        return (f.value_and_grad(**data), f(**data), f.jvp(tangents, **data),
                f.hvp(tangents, **data), private_step())

    before = at_one_and_two_threads(calls)
    for model, kinds in ((f, {True, False, "jvp", "hvp"}), (g, {"private"})):
        p = blocks.plan(model)
        p.wait_drivers()
        assert not p.driver_errors
        assert {kind for kind, k in p.kernels.items() if p.drivers.get(k)} == kinds

    def python_path(*args):
        raise AssertionError("a block ran from Python")
    with monkeypatch.context() as patch:
        patch.setattr(blocks, "run", python_path)
        after = at_one_and_two_threads(calls)
    for one, two in zip(before, after):
        assert same_bits(one, two)

    mlp = mlp_planned_here
    arguments = mlp_arguments(N, seed=4)
    mlp.value_and_grad(**arguments)
    mlp._blocks.wait_drivers()
    assert mlp._blocks.drivers[mlp._blocks.kernels[True]] is not None
    arguments["y"][4321] = 3
    with pytest.raises(sd.DomainError, match="y holds the label 3, outside"):
        mlp.value_and_grad(**arguments)

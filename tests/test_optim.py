"""Optimizers in the kernel: step for step against NumPy updates written from the papers'
formulas, on gradients from an independent NumPy forward and backward pass; refused steps
change nothing."""
import numpy as np
import pytest

import symdiff as sd
from conftest import mlp_arguments
from symdiff.errors import ArgumentError, NonFiniteError, ShapeError

PARAMS = ("W1", "b1", "W2", "b2")


def numpy_grad(params, X, y):
    """The mean softmax cross-entropy of relu(X W1 + b1) W2 + b2 and its gradients."""
    a = X @ params["W1"] + params["b1"]
    h = np.maximum(a, 0.0)
    z = h @ params["W2"] + params["b2"]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.mean(np.log(p[rows, y]))
    dz = p.copy()
    dz[rows, y] -= 1.0
    dz /= len(y)
    da = (dz @ params["W2"].T) * (a > 0)
    return loss, {"W1": X.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


class Reference:
    """The updates as the papers write them, on NumPy copies of the parameters."""

    def __init__(self, kind, params, lr, clip=None, **hyper):
        self.kind, self.lr, self.clip, self.hyper = kind, lr, clip, hyper
        self.params = {k: params[k].copy() for k in PARAMS}
        self.state = {k: {"m": 0.0 * v, "v": 0.0 * v, "b": 0.0 * v}
                      for k, v in self.params.items()}
        self.t = 0

    def step(self, X, y):
        loss, g = numpy_grad(self.params, X, y)
        if self.clip is not None:  # global norm over every parameter
            norm = np.sqrt(sum(np.sum(v * v) for v in g.values()))
            g = {k: v * min(1.0, self.clip / norm) for k, v in g.items()}
        lr = self.lr(self.t) if callable(self.lr) else self.lr
        self.t += 1
        for k, p in self.params.items():
            getattr(self, self.kind)(p, g[k], self.state[k], lr, **self.hyper)
        return loss

    def sgd(self, p, g, s, lr, momentum=0.0, nesterov=False):
        if momentum:  # PyTorch: b_t = mu b_{t-1} + g_t; Nesterov steps along g_t + mu b_t
            s["b"][...] = momentum * s["b"] + g
            g = g + momentum * s["b"] if nesterov else s["b"]
        p -= lr * g

    def adam(self, p, g, s, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        # Kingma & Ba, Algorithm 1; with weight_decay, Loshchilov & Hutter's decoupled decay:
        # theta_t = theta_{t-1} - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay theta_{t-1})
        (b1, b2), t = betas, self.t
        s["m"][...] = b1 * s["m"] + (1 - b1) * g
        s["v"][...] = b2 * s["v"] + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1 ** t), s["v"] / (1 - b2 ** t)
        p -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)


def schedule(count):
    return 0.05 * 0.7 ** count


CASES = {
    "sgd": (lambda: sd.optim.SGD(0.3), ("sgd", 0.3), {}),
    "momentum": (lambda: sd.optim.SGD(0.1, momentum=0.9), ("sgd", 0.1), {"momentum": 0.9}),
    "nesterov": (lambda: sd.optim.SGD(0.1, momentum=0.8, nesterov=True), ("sgd", 0.1),
                 {"momentum": 0.8, "nesterov": True}),
    "adam": (lambda: sd.optim.Adam(0.02, betas=(0.8, 0.99), eps=1e-7), ("adam", 0.02),
             {"betas": (0.8, 0.99), "eps": 1e-7}),
    "adamw": (lambda: sd.optim.AdamW(0.02, weight_decay=0.1), ("adam", 0.02),
              {"weight_decay": 0.1}),
    "adam, schedule, clipped": (lambda: sd.optim.Adam(schedule, clip_norm=0.5),
                                ("adam", schedule), {}),
}


@pytest.mark.parametrize("case", CASES)
def test_each_optimizer_matches_its_formulas_step_for_step(mlp, case):
    make, (kind, lr), hyper = CASES[case]
    opt = make()
    data = [mlp_arguments(11, seed=s) for s in range(6)]
    params = {k: data[0][k].copy() for k in PARAMS}
    clip = 0.5 if "clipped" in case else None
    reference = Reference(kind, params, lr, clip, **hyper)
    for batch in data:
        loss = mlp.step(opt, X=batch["X"], y=batch["y"], **params)
        assert loss == pytest.approx(reference.step(batch["X"], batch["y"]), rel=1e-13)
        for k in PARAMS:
            np.testing.assert_allclose(params[k], reference.params[k], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{case}: {k} after step {opt.count}")
    assert opt.count == len(data)
    names = {"m": "m", "v": "v", "velocity": "b"}
    for k in PARAMS:
        for s, array in opt.state[k].items():
            np.testing.assert_allclose(array, reference.state[k][names[s]], rtol=1e-12,
                                       atol=1e-15, err_msg=f"{case}: state {s} of {k}")


def test_global_norm_clipping_binds_only_above_the_norm(mlp):
    batch = mlp_arguments(8, seed=1)
    _, grads = mlp.value_and_grad(**batch)
    norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
    for clip, factor in ((norm / 4, 0.25), (norm * 2, 1.0)):
        params = {k: batch[k].copy() for k in PARAMS}
        mlp.step(sd.optim.SGD(1.0, clip_norm=clip), X=batch["X"], y=batch["y"], **params)
        for k in PARAMS:
            np.testing.assert_allclose(batch[k] - params[k], factor * grads[k], rtol=1e-12,
                                       atol=1e-15, err_msg=k)


def test_sgd_step_is_the_sgd_optimizer(mlp):
    batch = mlp_arguments(7, seed=2)
    one = {k: batch[k].copy() for k in PARAMS}
    two = {k: batch[k].copy() for k in PARAMS}
    assert mlp.sgd_step(0.2, X=batch["X"], y=batch["y"], **one) == \
        mlp.step(sd.optim.SGD(0.2), X=batch["X"], y=batch["y"], **two)
    for k in PARAMS:
        np.testing.assert_array_equal(one[k], two[k])


def _snapshot(params, opt):
    return ({k: v.copy() for k, v in params.items()}, opt.count,
            {k: {s: a.copy() for s, a in states.items()} for k, states in opt.state.items()})


def _assert_unchanged(before, params, opt):
    values, count, state = before
    assert opt.count == count
    for k in PARAMS:
        np.testing.assert_array_equal(params[k], values[k], err_msg=k)
        for s, a in state.get(k, {}).items():
            np.testing.assert_array_equal(opt.state[k][s], a, err_msg=f"{s} of {k}")


@pytest.mark.parametrize("warm", [False, True], ids=["first steps", "fast path"])
def test_a_refused_step_changes_nothing(mlp, warm):
    batch = mlp_arguments(6, seed=3)
    params = {k: batch[k].copy() for k in PARAMS}
    data = {"X": batch["X"], "y": batch["y"]}
    opt = sd.optim.Adam(0.01)
    if warm:
        for _ in range(2):
            mlp.step(opt, **data, **params)
    else:
        opt.init(params)
    before = _snapshot(params, opt)
    frozen = opt.state["W1"]["m"].copy()
    frozen.flags.writeable = False
    bad_state = [("m", "W1", frozen, ArgumentError, "state 'm' of W1.*read-only"),
                 ("v", "b2", np.zeros(4), ShapeError, r"state 'v' of b2.*shape \(3,\)"),
                 ("m", "b1", np.zeros(5, np.float32), ArgumentError, "dtype float32"),
                 ("v", "W2", np.zeros((3, 5)).T, ArgumentError, "non-contiguous")]
    for s, p, array, error, message in bad_state:
        good = opt.state[p][s]
        opt.state = {**opt.state, p: {**opt.state[p], s: array}}
        with pytest.raises(error, match=message):
            mlp.step(opt, **data, **params)
        opt.state = {**opt.state, p: {**opt.state[p], s: good}}
        _assert_unchanged(before, params, opt)
    frozen = params["b1"].copy()
    frozen.flags.writeable = False
    bad_calls = [({"b1": frozen}, ArgumentError, "step updates b1 in place.*read-only"),
                 ({"W2": params["W2"].T.copy()}, ShapeError, "W2 must have shape"),
                 ({"Z": np.ones(3)}, ArgumentError, "unknown argument Z"),
                 ({"y": np.array([0, 1, 3, 0, 1, 2])}, sd.DomainError, "label 3")]
    for change, error, message in bad_calls:
        with pytest.raises(error, match=message):
            mlp.step(opt, **{**data, **params, **change})
        _assert_unchanged(before, params, opt)
    with pytest.raises(ArgumentError, match="step takes an optimizer"):
        mlp.step("adam", **data, **params)


def test_check_finite_raises_before_any_update():
    f = sd.compile("log(x) * w + v * v", wrt=["w", "v"], batch=["x"], check_finite=True)
    w, v = np.array(1.0), np.array(0.5)
    opt = sd.optim.Adam(0.1)
    f.step(opt, w=w, v=v, x=np.array([1.0, np.e]))
    before = (float(w), float(v), opt.count, {k: dict(s) for k, s in opt.state.items()})
    state = {k: {s: a.copy() for s, a in states.items()} for k, states in opt.state.items()}
    for x in (np.array([0.0, 1.0]), np.array([np.nan, 1.0])):
        with pytest.raises(NonFiniteError, match="value is (-inf|nan)"):
            f.step(opt, w=w, v=v, x=x)
        assert (float(w), float(v), opt.count) == before[:3]
        for k in state:
            for s in state[k]:
                np.testing.assert_array_equal(opt.state[k][s], state[k][s])


def test_scalar_parameters_keep_0d_state_updated_in_place():
    """Steps receive a scalar's state as a 1-entry view; opt.state keeps the 0-d arrays, and
    they are the ones updated (Adam by its formulas, on the closed-form gradient of a line)."""
    f = sd.compile("(a*x + c - y)**2", wrt=["a", "c"], batch=["x", "y"])
    x, y = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 3.0])
    a, c = np.array(0.3), np.array(-0.2)
    opt = sd.optim.Adam(0.1, betas=(0.8, 0.9), eps=1e-8)
    ref, m, v = np.array([0.3, -0.2]), np.zeros(2), np.zeros(2)
    for t in range(1, 5):
        f.step(opt, x=x, y=y, a=a, c=c)
        r = ref[0] * x + ref[1] - y
        g = np.array([np.mean(2 * r * x), np.mean(2 * r)])
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        ref = ref - 0.1 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-8)
        np.testing.assert_allclose([a, c], ref, rtol=1e-13)
    for p, k in (("a", 0), ("c", 1)):
        assert opt.state[p]["m"].shape == () and opt.state[p]["m"] == pytest.approx(m[k])
        assert opt.state[p]["v"] == pytest.approx(v[k], rel=1e-13)
    frozen = opt.state["c"]["v"].copy()
    frozen.flags.writeable = False
    opt.state = {**opt.state, "c": {**opt.state["c"], "v": frozen}}
    with pytest.raises(ArgumentError, match="state 'v' of c.*read-only"):
        f.step(opt, x=x, y=y, a=a, c=c)
    np.testing.assert_allclose([a, c], ref, rtol=1e-13)


def test_the_tape_tier_steps_with_the_same_rules():
    formula = "(a*sin(b*x) + c - y)**2"
    kernel = sd.compile(formula, wrt=["a", "b", "c"], batch=["x", "y"], tier="kernel")
    tape = sd.compile(formula, wrt=["a", "b", "c"], batch=["x", "y"], tier="tape")
    assert tape.tier == "tape"
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, 50)
    y = 2 * np.sin(1.5 * x) + 0.5 + rng.normal(0, 0.1, 50)
    runs = []
    for f in (kernel, tape):
        params = {"a": np.array(1.0), "b": np.array(1.2), "c": np.array(0.0)}
        opt = sd.optim.AdamW(0.05, clip_norm=1.0)
        losses = [f.step(opt, x=x, y=y, **params) for _ in range(5)]
        runs.append((losses, {k: float(v) for k, v in params.items()}))
    assert runs[1][0] == pytest.approx(runs[0][0], rel=1e-12)
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-12)


def test_float32_models_step_in_float32():
    X = sd.tensor("X", ("n", 3), "float32")
    w = sd.tensor("w", (3,), "float32")
    f = sd.compile(sd.mean((X @ w - 1.0) ** 2), wrt=[w])
    rng = np.random.default_rng(5)
    Xv = rng.normal(size=(20, 3)).astype(np.float32)
    w32 = np.array([0.1, -0.2, 0.3], np.float32)
    w64 = w32.astype(np.float64)
    opt, m, v = sd.optim.Adam(0.1), np.zeros(3), np.zeros(3)
    for t in range(1, 4):
        loss = f.step(opt, X=Xv, w=w32)
        g = 2 * Xv.astype(np.float64).T @ (Xv.astype(np.float64) @ w64 - 1.0) / 20
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w64 = w64 - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert w32.dtype == np.float32 and opt.state["w"]["m"].dtype == np.float32
    assert isinstance(loss, np.float32)
    np.testing.assert_allclose(w32, w64, rtol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda: sd.optim.Adam(betas=(0.9, 1.0)), r"beta2 must lie in \[0.0, 1.0\)"),
    (lambda: sd.optim.Adam(lr="fast"), "learning rate lr must be a real number"),
    (lambda: sd.optim.SGD(0.1, nesterov=True), "nesterov=True needs a momentum"),
    (lambda: sd.optim.SGD(0.1, noise_multiplier=1.0), "needs per_example_clip"),
    (lambda: sd.optim.SGD(0.1, per_example_clip=1.0, noise_multiplier=1.0), "needs rng"),
    (lambda: sd.optim.AdamW(weight_decay=-1), r"weight_decay must lie in"),
])
def test_bad_hyper_parameters_are_refused_when_the_optimizer_is_made(make, message):
    with pytest.raises(ArgumentError, match=message):
        make()


def test_a_schedule_returning_nonsense_is_refused_before_the_step(mlp):
    batch = mlp_arguments(5, seed=6)
    params = {k: batch[k].copy() for k in PARAMS}
    opt = sd.optim.SGD(lambda count: None)
    with pytest.raises(ArgumentError, match="schedule's learning rate at step 0"):
        mlp.step(opt, X=batch["X"], y=batch["y"], **params)
    assert opt.count == 0
    for k in PARAMS:
        np.testing.assert_array_equal(params[k], batch[k])


def one_at_a_time(f, batch, params):
    """Each example's own gradient, from a call on a batch of that one example."""
    rows = []
    for i in range(len(batch["y"])):
        _, g = f.value_and_grad(X=batch["X"][i:i + 1], y=batch["y"][i:i + 1], **params)
        rows.append(g)
    return rows


@pytest.mark.parametrize("sigma", [0.0, 1.3])
def test_private_sgd_clips_each_example_then_adds_seeded_noise(mlp, sigma):
    C, lr = 2.0, 0.2
    batches = [mlp_arguments(9, seed=s) for s in (7, 8, 9)]
    params = {k: batches[0][k].copy() for k in PARAMS}
    expected = {k: v.copy() for k, v in params.items()}
    opt = sd.optim.SGD(lr, per_example_clip=C, noise_multiplier=sigma,
                       rng=np.random.default_rng(11))
    noise_rng, clipped = np.random.default_rng(11), 0
    for batch in batches:
        data = {"X": batch["X"], "y": batch["y"]}
        rows = one_at_a_time(mlp, data, expected)
        loss = mlp.step(opt, **data, **params)
        assert loss == pytest.approx(numpy_grad(expected, **data)[0], rel=1e-13)
        norms = [np.sqrt(sum(np.sum(g[k] ** 2) for k in PARAMS)) for g in rows]
        clipped += sum(norm > C for norm in norms)
        for k in PARAMS:
            total = sum(g[k] * min(1.0, C / norm) for g, norm in zip(rows, norms))
            noise = noise_rng.standard_normal(expected[k].shape) if sigma else 0.0
            expected[k] -= lr * (total + sigma * C * noise) / len(rows)
        for k in PARAMS:
            np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{k} after step {opt.count}")
    assert 0 < clipped < 27  # the bound binds for some examples, not all


def test_clipping_that_never_binds_is_the_plain_step(mlp):
    """Regression: the clipped step's kernel wrote ReLU's adjoint over relu3 (reusing its
    array), which a later `np.dot(relu3.T, ...)` read for W2's gradient."""
    batch = mlp_arguments(7, seed=5)
    params = {k: batch[k].copy() for k in PARAMS}
    _, grads = numpy_grad(params, batch["X"], batch["y"])
    opt = sd.optim.SGD(0.5, per_example_clip=1e6)
    mlp.step(opt, X=batch["X"], y=batch["y"], **params)
    for k in PARAMS:
        np.testing.assert_allclose(params[k], batch[k] - 0.5 * grads[k], rtol=1e-12,
                                   atol=1e-14, err_msg=k)


def test_per_example_norms_never_build_a_per_example_weight_gradient(mlp):
    program = mlp._programs["dp"]()
    ranks = {s.name: len(s.node.shape) for s in program.stmts}
    assert max(ranks.values()) == 2, [n for n, r in ranks.items() if r > 2]
    sizes = {("n",) + p.shape for p in program.inputs if p.attr("name") in ("W1", "W2")}
    assert not any(s.node.shape in sizes for s in program.stmts)


def test_the_private_step_does_the_matrix_products_of_a_plain_gradient(mlp):
    # the clipped sums reuse the per-example pass's adjoints, scaled per example: no second
    # backpropagation through the layers (its products with W1' and W2' would be extra)
    def products(program):
        return sorted(str([i.shape for i in s.node.inputs]) for s in program.stmts
                      if s.node.op == "matmul")
    assert products(mlp._programs["dp"]()) == products(mlp.program)


def test_private_steps_with_adam_and_a_sum_loss():
    X = sd.tensor("X", ("n", 3)); t = sd.tensor("t", ("n",)); w = sd.tensor("w", (3,))
    b = sd.scalar("b")
    f = sd.compile(sd.sum(sd.binary_cross_entropy_with_logits(X @ w + b, t)), wrt=[w, b])
    rng = np.random.default_rng(12)
    Xv, tv = rng.normal(size=(10, 3)), rng.integers(0, 2, 10).astype(float)
    w0, b0 = rng.normal(size=3), np.array(0.2)
    params, ref = {"w": w0.copy(), "b": b0.copy()}, {"w": w0.copy(), "b": b0.copy()}
    opt = sd.optim.Adam(0.1, per_example_clip=0.8, noise_multiplier=0.5,
                        rng=np.random.default_rng(3))
    noise_rng, m, v = np.random.default_rng(3), {"w": 0.0, "b": 0.0}, {"w": 0.0, "b": 0.0}
    for t_ in range(1, 4):
        f.step(opt, X=Xv, t=tv, **params)
        z = Xv @ ref["w"] + ref["b"]
        slope = 1 / (1 + np.exp(-z)) - tv  # d BCE / d logit, per example
        rows = [{"w": slope[i] * Xv[i], "b": slope[i]} for i in range(10)]
        scale = [min(1.0, 0.8 / np.sqrt(r["w"] @ r["w"] + r["b"] ** 2)) for r in rows]
        for k in ("w", "b"):
            g = sum(c * r[k] for c, r in zip(scale, rows))
            g = g + 0.5 * 0.8 * noise_rng.standard_normal(np.shape(ref[k]))  # a sum: no 1/n
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            ref[k] = ref[k] - 0.1 * (m[k] / (1 - 0.9 ** t_)) / (
                np.sqrt(v[k] / (1 - 0.999 ** t_)) + 1e-8)
        for k in ("w", "b"):
            np.testing.assert_allclose(params[k], ref[k], rtol=1e-12, err_msg=k)


def test_a_refused_private_step_draws_no_noise(mlp):
    batch = mlp_arguments(6, seed=10)
    params = {k: batch[k].copy() for k in PARAMS}
    opt = sd.optim.SGD(0.1, per_example_clip=1.0, noise_multiplier=1.0,
                       rng=np.random.default_rng(5))
    drawn = opt.rng.bit_generator.state
    with pytest.raises(sd.DomainError, match="label 3"):
        mlp.step(opt, X=batch["X"], y=np.array([0, 1, 3, 0, 1, 2]), **params)
    assert opt.rng.bit_generator.state == drawn and opt.count == 0
    for k in PARAMS:
        np.testing.assert_array_equal(params[k], batch[k])


def test_per_example_clipping_needs_a_mean_or_sum_over_examples():
    X = sd.tensor("X", ("n", 3)); w = sd.tensor("w", (3,))
    f = sd.compile(sd.mean((X @ w) ** 2) + 0.1 * sd.sum(w * w), wrt=[w])
    opt = sd.optim.SGD(0.1, per_example_clip=1.0)
    with pytest.raises(sd.DifferentiationError, match="mean or sum of one term per example"):
        f.step(opt, X=np.ones((4, 3)), w=np.zeros(3))

"""The modelling surface: indexing, multi-line formulas, auxiliary outputs, sd.function,
allow_unused and scalars in every form. Derivatives are checked against central differences
of NumPy forward passes written here by hand, never against symdiff's own interpreter."""
import re

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.autodiff import differentiate
from symdiff.numpy_eval import run
from symdiff.program import verify
from differences import central




# ---------------------------------------------------------------- indexing

def random_key(rng, shape):
    """A random NumPy index for `shape`: ints, strided slices, None, ..., one int array."""
    key, array_used = [], False
    for size in shape:
        kind = rng.integers(0, 4 if not array_used else 3)
        if kind == 0:
            key.append(int(rng.integers(-size, size)))
        elif kind == 1:
            step = int(rng.choice([-3, -2, -1, 1, 2, 3]))
            start = int(rng.integers(-size, size))
            key.append(slice(start, None, step))
        elif kind == 2:
            key.append(slice(None))
        else:
            array_used = True
            key.append(rng.integers(-size, size, size=int(rng.integers(1, 5))))
        if rng.random() < 0.2:
            key.append(None)
    if rng.random() < 0.4:  # leading whole slices as `...`
        lead = 0
        while lead < len(key) and isinstance(key[lead], slice) and key[lead] == slice(None):
            lead += 1
        key = [Ellipsis] + key[lead:]
    return tuple(key)


def _usable(x_value, key):
    try:
        return x_value[key].size > 0
    except IndexError:
        return False


@pytest.mark.parametrize("seed", range(60))
def test_random_indexing_matches_numpy_and_central_differences(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 4)))
    x_value = rng.normal(size=shape)
    key = random_key(rng, shape)
    if not _usable(x_value, key):
        key = (slice(None, None, -1),)
    x = sd.tensor("x", shape)
    y = x[key]
    weights = rng.normal(size=x_value[key].shape)
    assert y.shape == weights.shape

    def forward(v):  # the same model in NumPy
        return float(np.sum(weights * np.sin(v[key])))
    w = sd.tensor("w", weights.shape)
    program = differentiate(sd.sum(w * sd.sin(y)), [x])
    verify(program)
    got = run(program, {"x": x_value, "w": weights})
    assert got["value"] == pytest.approx(forward(x_value), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(got["dx"], central(forward, x_value), rtol=1e-6, atol=1e-8)


def test_random_indexing_in_one_kernel():
    """Random keys of several inputs in one compiled kernel, against NumPy."""
    rng = np.random.default_rng(1234)
    inputs, keys, weights, values, loss = {}, [], [], {}, 0.0
    for k in range(12):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 4)))
        values[f"x{k}"] = rng.normal(size=shape)
        key = random_key(rng, shape)
        key = key if _usable(values[f"x{k}"], key) else (slice(None, None, -1),)
        weights.append(rng.normal(size=values[f"x{k}"][key].shape))
        keys.append(key)
        inputs[f"x{k}"] = sd.tensor(f"x{k}", shape)
        weight = sd.tensor(f"w{k}", weights[-1].shape)
        loss = loss + sd.sum(weight * sd.sin(inputs[f"x{k}"][key]))
    f = sd.compile(loss, wrt=list(inputs.values()))
    value, grads = f.value_and_grad(**values, **{f"w{k}": w for k, w in enumerate(weights)})

    def forward(name, v):
        moved = {**values, name: v}
        return sum(float(np.sum(w * np.sin(moved[f"x{k}"][key])))
                   for k, (w, key) in enumerate(zip(weights, keys)))
    assert value == pytest.approx(forward("x0", values["x0"]), rel=1e-12)
    for name in inputs:
        np.testing.assert_allclose(grads[name], central(lambda v: forward(name, v), values[name]),
                                   rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def indexed():
    """One kernel reading many slices and gathers of X (n, 4) and w (5,), in place."""
    X, w, t = sd.tensor("X", ("n", 4)), sd.tensor("w", (5,)), sd.tensor("t", ("n",))
    z = X[:, 0] * w[1] + X[:, ::-2] @ w[[4, 0]] + X[..., 1:3].sum(axis=1) * w[-1] \
        + X[:, None, 2][:, 0] * w[::2].sum()
    loss = sd.mean((sd.tanh(z) - t) ** 2) + sd.sum(w[1:4] ** 2)
    return sd.compile(loss, wrt=[X, w])


def indexed_numpy(X, w, t):
    z = X[:, 0] * w[1] + X[:, ::-2] @ w[[4, 0]] + X[..., 1:3].sum(axis=1) * w[-1] \
        + X[:, None, 2][:, 0] * w[::2].sum()
    return np.mean((np.tanh(z) - t) ** 2) + np.sum(w[1:4] ** 2)


@pytest.mark.parametrize("n", [1, 7])
def test_indexed_kernel_matches_numpy_and_central_differences(indexed, n):
    rng = np.random.default_rng(n)
    a = dict(X=rng.normal(size=(n, 4)), w=rng.normal(size=5), t=rng.normal(size=n))
    value, grads = indexed.value_and_grad(**a)
    assert value == pytest.approx(indexed_numpy(**a), rel=1e-12)
    np.testing.assert_allclose(grads["w"], central(lambda w: indexed_numpy(a["X"], w, a["t"]),
                                                   a["w"]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grads["X"], central(lambda X: indexed_numpy(X, a["w"], a["t"]),
                                                   a["X"]), rtol=1e-6, atol=1e-9)


def test_loops_read_slices_in_place(indexed):
    source = indexed.kernel_source
    assert "X[i, 0]" in source and "X[i, 3 - 2*j]" in source  # no copy of X[:, 0] or X[:, ::-2]
    assert "ascontiguousarray" not in source


def test_repeated_gather_indices_add_up_and_hvp_matches_differences():
    w = sd.tensor("w", (3,))
    f = sd.compile(sd.sum(sd.sin(w[[0, 2, 2, 0, 0]] * w[::-1][[1, 1, 0, 2, 2]])), wrt=[w])

    def forward(v):
        return np.sum(np.sin(v[[0, 2, 2, 0, 0]] * v[::-1][[1, 1, 0, 2, 2]]))
    v = np.array([0.3, -1.1, 0.7])
    np.testing.assert_allclose(f.grad(w=v)["w"], central(forward, v), rtol=1e-7)
    direction = np.array([1.0, -2.0, 0.5])
    hv = sd.hvp(f)(v={"w": direction}, w=v)["w"]
    numeric = (f.grad(w=v + 1e-5 * direction)["w"] - f.grad(w=v - 1e-5 * direction)["w"]) / 2e-5
    np.testing.assert_allclose(hv, numeric, rtol=1e-5)


def test_per_example_gradients_through_slices_of_a_parameter():
    x, w = sd.tensor("x", ("n",)), sd.tensor("w", (4,))
    f = sd.compile(sd.sin(w[1] * x + w[[3, 0]][0] * x ** 2 + w[None, ::2][0, 1]), wrt=[w],
                   reduce=None)
    xs, v = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.2, -0.3, 0.4])
    values, grads = f.value_and_grad(x=xs, w=v)
    for i, xi in enumerate(xs):
        def forward(p):
            return np.sin(p[1] * xi + p[3] * xi ** 2 + p[2])
        np.testing.assert_allclose(grads["w"][i], central(forward, v), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("key, error, fragment", [
    ((5,), sd.ShapeError, "index 5 is out of range for axis 0 of W"),
    ((0, -4), sd.ShapeError, "index -4 is out of range for axis 1 of W"),
    ((0, 0, 0), sd.ShapeError, "too many indices for W"),
    ((slice(None, None, 0),), sd.ShapeError, "W: a slice step cannot be zero"),
    ((slice(3, 1),), sd.ShapeError, "selects nothing from axis 0 of W"),
    ((..., ...), sd.ShapeError, "W: an index can only have a single ellipsis"),
    ((0.5,), sd.ArgumentError, "W: an index entry must be"),
])
def test_bad_indices_name_the_tensor(key, error, fragment):
    W = sd.tensor("W", (2, 3))
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        W[key]


def test_symbolic_axes_are_taken_whole():
    X = sd.tensor("X", ("n", 3))
    assert X[:, 0].shape == ("n",) and X[..., ::2].shape == ("n", 2)
    with pytest.raises(sd.ShapeError, match="X: axis 0 has the symbolic size n"):
        X[0]
    with pytest.raises(sd.ShapeError, match="X: axis 0 has the symbolic size n"):
        X[1:]
    with pytest.raises(sd.ArgumentError, match="X is indexed by a Tensor"):
        X[:, sd.tensor("k", (), dtype=int)]


def test_formula_subscripts_need_a_declared_array():
    f = sd.compile("X[:, 0]*w[1] + X[:, 2]**2 - w[-1]", wrt=["w"],
                   shapes={"X": ("n", 3), "w": (2,)})
    X, w = np.arange(6.0).reshape(2, 3), np.array([1.0, 2.0])
    value, grads = f.value_and_grad(**dict(X=X, w=w))
    assert value == pytest.approx(np.mean(X[:, 0] * w[1] + X[:, 2] ** 2 - w[-1]))
    np.testing.assert_allclose(grads["w"], [0.0, np.mean(X[:, 0]) - 1.0])  # w[-1] is w[1]
    with pytest.raises(sd.ParseError, match=r"x is a scalar, so it cannot be indexed.*\[col 1\]"):
        sd.compile("x[0] + 1", wrt=["x"])
    with pytest.raises(sd.ParseError, match="an index in a formula is a constant"):
        sd.compile("w[k]", wrt=["w"], shapes={"w": (3,)})
    with pytest.raises(sd.ShapeError, match=r"index 3 is out of range for axis 0 of w, of size 3 in w\[3\] \[col 1\]"):
        sd.compile("w[3]", wrt=["w"], shapes={"w": (3,)})


def test_the_tape_says_why_it_cannot_index():
    with pytest.raises(sd.ArgumentError, match="tier='tape' cannot run this model"):
        sd.compile("sin(w[0]*x)", wrt=["w"], batch=["x"], shapes={"w": (2,)}, tier="tape")


# ---------------------------------------------------------------- multi-line formulas

NEURON = """
    h = tanh(w*x + b)
    loss = (h - y)**2
"""


@pytest.fixture(scope="module")
def neuron_lines():
    return sd.compile(NEURON, wrt=["w", "b"], batch=["x", "y"],
                      aux={"h": "h", "hit": "where(h*y > 0, 1, 0)"})


def test_lines_keep_their_names_and_match_numpy(neuron_lines):
    source = neuron_lines.kernel_source
    assert re.search(r"\bh(\[i\])? = (math|_vm)\.tanh\(", source) and "loss = " in source
    assert "# from: h = tanh(add2)" in source
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=9), rng.choice([-1.0, 1.0], 9)

    def forward(p):
        return np.mean((np.tanh(p[0] * x + p[1]) - y) ** 2)
    value, grads, aux = neuron_lines.value_and_grad(w=0.4, b=-0.2, x=x, y=y)
    assert value == pytest.approx(forward([0.4, -0.2]), rel=1e-12)
    np.testing.assert_allclose([grads["w"], grads["b"]], central(forward, [0.4, -0.2]),
                               rtol=1e-7)
    np.testing.assert_allclose(aux["h"], np.tanh(0.4 * x - 0.2), rtol=1e-13)
    np.testing.assert_array_equal(aux["hit"], (np.tanh(0.4 * x - 0.2) * y > 0).astype(float))


@pytest.mark.parametrize("text, fragment", [
    ("h = x\nh = 2*x\nh", r"h is assigned twice \(lines 1 and 2\).*\[line 2, col 1\]"),
    ("x = 1\ny = x + z\nz = y", r"z is used on line 2 before this line assigns it.*\[line 3"),
    ("a = x\nb = 2*x\nb", r"a is never used.*\[line 1, col 1\]"),
    ("a = x\na\nb = a", r"only the last line may be a bare expression.*\[line 2"),
    ("a, b = x, y\na", "a line assigns one name"),
    ("a = x\nif a: a", r"If is not allowed.*\[line 2"),
    ("a = x\nb = a +* 2\nb", r"invalid syntax.*\[line 2, col 8\]"),
    ("exp = x\nexp", "'exp' is a function"),
])
def test_bad_lines_are_parse_errors_with_line_and_column(text, fragment):
    with pytest.raises(sd.ParseError, match=fragment):
        sd.compile(text, wrt=["x"])


def test_errors_in_a_line_say_which_line():
    with pytest.raises(sd.ShapeError, match=r"in X @ X \[line 2, col 5\]"):
        sd.compile("a = 2*X\nb = X @ X\na + b", wrt=["X"], shapes={"X": ("n", 3)})
    with pytest.raises(sd.DifferentiationError, match="wrt 'h' is a line of the formula"):
        sd.compile(NEURON, wrt=["h"], batch=["x", "y"])


@pytest.mark.parametrize("seed", range(4))
def test_random_multiline_chains_match_numpy(seed):
    """A chain of named steps against the same chain in NumPy, and its central differences."""
    rng = np.random.default_rng(100 + seed)
    steps = [("sin", np.sin), ("tanh", np.tanh), ("exp", np.exp), ("sigmoid",
                                                                   lambda v: 1 / (1 + np.exp(-v)))]
    lines, fns = [], []
    previous = "a*x"
    for k in range(int(rng.integers(2, 5))):
        name, fn = steps[rng.integers(0, len(steps))]
        c = round(float(rng.normal()), 3)
        lines.append(f"s{k} = {name}({previous}) * {c} + b")
        fns.append((fn, c))
        previous = f"s{k}"
    text = "\n".join(lines + [f"{previous} * x"])
    f = sd.compile(text, wrt=["a", "b"], batch=["x"])
    x = rng.normal(size=6)

    def forward(p):
        v = p[0] * x
        for fn, c in fns:
            v = fn(v) * c + p[1]
        return np.mean(v * x)
    value, grads = f.value_and_grad(a=0.3, b=0.1, x=x)
    assert value == pytest.approx(forward([0.3, 0.1]), rel=1e-12)
    np.testing.assert_allclose([grads["a"], grads["b"]], central(forward, [0.3, 0.1]),
                               rtol=1e-6, atol=1e-9)
    assert all(f"s{k} = " in f.kernel_source for k in range(len(fns)))


# ---------------------------------------------------------------- auxiliary outputs

@pytest.fixture(scope="module")
def mlp_aux():
    X, y = sd.tensor("X", ("n", 4)), sd.tensor("y", ("n",), dtype=int)
    W1, W2 = sd.tensor("W1", (4, 5)), sd.tensor("W2", (5, 3))
    logits = sd.relu(X @ W1) @ W2
    predicted = logits[:, 1] > sd.maximum(logits[:, 0], logits[:, 2])
    return sd.compile(sd.mean(sd.softmax_cross_entropy(logits, y)), wrt=[W1, W2],
                      aux={"logits": logits, "says_one": sd.mean(sd.where(predicted, 1, 0)),
                           "losses": sd.softmax_cross_entropy(logits, y)})


def mlp_numpy(X, y, W1, W2):
    logits = np.maximum(X @ W1, 0) @ W2
    losses = np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]
    return logits, losses


def test_aux_outputs_come_from_the_same_call(mlp_aux):
    rng = np.random.default_rng(5)
    a = dict(X=rng.normal(size=(8, 4)), y=rng.integers(0, 3, 8), W1=rng.normal(size=(4, 5)),
             W2=rng.normal(size=(5, 3)))
    value, grads, aux = mlp_aux.value_and_grad(**a)
    logits, losses = mlp_numpy(**a)
    np.testing.assert_allclose(aux["logits"], logits, rtol=1e-12)
    np.testing.assert_allclose(aux["losses"], losses, rtol=1e-12)
    assert aux["says_one"] == np.mean(logits.argmax(1) == 1)
    assert value == pytest.approx(losses.mean(), rel=1e-12)
    np.testing.assert_allclose(grads["W2"], central(
        lambda W2: mlp_numpy(a["X"], a["y"], a["W1"], W2)[1].mean(), a["W2"]), rtol=1e-6)
    value2, aux2 = mlp_aux(**a)
    assert value2 == value and set(aux2) == set(aux)
    params = {"W1": a["W1"].copy(), "W2": a["W2"].copy()}
    step_value, step_aux = mlp_aux.sgd_step(0.1, X=a["X"], y=a["y"], **params)
    assert step_value == value
    np.testing.assert_array_equal(step_aux["logits"], aux["logits"])
    np.testing.assert_allclose(params["W2"], a["W2"] - 0.1 * grads["W2"], rtol=1e-15)


def test_aux_on_the_tape_and_bad_aux():
    f = sd.compile("(w*x - y)**2", wrt=["w"], batch=["x", "y"], tier="tape",
                   aux={"residual": "w*x - y", "big": "where(abs(w*x - y) > 1, 1, 0)",
                        "w2": "w**2"})
    assert f.tier == "tape"
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    value, grads, aux = f.value_and_grad(w=1.5, x=x, y=y)
    np.testing.assert_allclose(aux["residual"], 1.5 * x - y, rtol=1e-15)
    np.testing.assert_array_equal(aux["big"], [0.0, 1.0, 0.0])
    assert aux["w2"] == 2.25
    assert grads["w"] == pytest.approx(np.mean(2 * (1.5 * x - y) * x), rel=1e-12)
    with pytest.raises(sd.ArgumentError, match="aux 'r' reads q, which the model does not"):
        sd.compile("(w*x)**2", wrt=["w"], aux={"r": "q + 1"})
    with pytest.raises(sd.ArgumentError, match="aux must be a dict"):
        sd.compile("(w*x)**2", wrt=["w"], aux=["w"])


# ---------------------------------------------------------------- sd.function

x_, d_ = sp.symbols("x d", real=True)


@pytest.fixture(scope="module")
def custom():
    gelu = sd.function("gelu_t", lambda x: x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi)
                                                                 * (x + 0.044715 * x ** 3))))
    huber = sd.function("huber_t", sp.Piecewise((x_ ** 2 / 2, sp.Abs(x_) <= d_),
                                                (d_ * (sp.Abs(x_) - d_ / 2), True)),
                        args=[x_, d_])
    ste = sd.function("ste_t", sp.floor(x_ + sp.Rational(1, 2)), derivative=1)
    return gelu, huber, ste


def gelu_numpy(v):
    return v / 2 * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


def huber_numpy(v, d):
    return np.where(np.abs(v) <= d, v ** 2 / 2, d * (np.abs(v) - d / 2))


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_custom_functions_from_formulas_match_numpy(custom, tier):
    f = sd.compile("huber_t(gelu_t(w*u) - y, 0.5)", wrt=["w"], batch=["u", "y"], tier=tier)
    assert f.wait().tier == tier
    rng = np.random.default_rng(11)
    u, y = rng.normal(size=30), rng.normal(size=30)

    def forward(w):
        return np.mean(huber_numpy(gelu_numpy(w[0] * u) - y, 0.5))
    value, grads = f.value_and_grad(w=0.8, u=u, y=y)
    assert value == pytest.approx(forward([0.8]), rel=1e-12)
    assert grads["w"] == pytest.approx(central(forward, [0.8])[0], rel=1e-7)


def test_custom_functions_on_tensors_and_sympy_and_float32(custom):
    gelu, _, _ = custom
    X = sd.tensor("X", (3,))
    v = np.array([0.1, -1.0, 2.0])
    g = sd.compile(sd.sum(gelu(X)), wrt=[X]).grad(X=v)["X"]
    np.testing.assert_allclose(g, central(lambda z: np.sum(gelu_numpy(z)), v), rtol=1e-7)
    w = sp.Symbol("w")
    value, grads = sd.compile(2 * gelu(w), wrt=["w"]).value_and_grad(w=0.3)
    assert value == pytest.approx(2 * gelu_numpy(0.3), rel=1e-14)
    single = sd.compile("gelu_t(w*x)", wrt=["w"], batch=["x"], dtype="float32")
    value = single(w=np.float32(0.5), x=np.ones(4, np.float32))
    assert value.dtype == np.float32 and value == pytest.approx(gelu_numpy(0.5), rel=1e-6)


def test_a_wrong_derivative_is_caught_by_check_grad(custom):
    _, _, ste = custom
    f = sd.compile("ste_t(w*x) * y", wrt=["w"], batch=["x", "y"])
    a = dict(w=0.7, x=np.array([0.3, 1.7, -2.2]), y=np.array([1.0, -2.0, 0.5]))
    assert f.grad(**a)["w"] == pytest.approx(np.mean(a["x"] * a["y"]))  # straight through
    assert sd.check_grad(f, **a) > 0.1
    lines = sd.check_grad(f, by_line=True, **a)
    # the first line that disagrees reads dste_t2 where the true derivative is 0
    assert not lines.ok and "dste_t" in lines.first.statement


def test_bad_function_definitions():
    with pytest.raises(sd.ArgumentError, match="'exp' is a built-in function"):
        sd.function("exp", x_ ** 2)
    with pytest.raises(sd.ArgumentError, match="uses gamma"):
        sd.function("mine", sp.gamma(x_))
    with pytest.raises(sd.ArgumentError, match="uses d, which are not among its arguments"):
        sd.function("mine", x_ * d_, args=[x_])
    with pytest.raises(sd.ArgumentError, match="one derivative per argument"):
        sd.function("mine", x_ * d_, [1, 2, 3])


# ---------------------------------------------------------------- allow_unused, scalars

def test_allow_unused_gives_zeros_of_the_declared_shape():
    with pytest.raises(sd.DifferentiationError, match="allow_unused=True"):
        sd.compile("x * y", wrt=["x", "q"])
    f = sd.compile("x * y", wrt=["x", "q"], shapes={"q": (2, 3)}, allow_unused=True)
    value, grads = f.value_and_grad(x=2.0, y=3.0, q=np.ones((2, 3)))
    assert value == 6.0 and grads["x"] == 3.0
    np.testing.assert_array_equal(grads["q"], np.zeros((2, 3)))
    W = sd.tensor("W", (4,))
    g = sd.compile(sd.sum(sd.tensor("v", (4,)) ** 2), wrt=["v", W], allow_unused=True)
    assert g.grad(v=np.ones(4), W=np.ones(4))["W"].shape == (4,)


@pytest.mark.parametrize("form", [float, np.float64, np.array])
def test_every_form_of_a_scalar_gives_the_same_results(form, logistic_data):
    f = sd.compile("log(1 + exp(-y*(w0*x0 + w1*x1 + b)))", wrt=["w0", "w1", "b"],
                   batch=["x0", "x1", "y"])
    data = {k: (form(v) if np.ndim(v) == 0 else v) for k, v in logistic_data.items()}
    base = f.value_and_grad(**logistic_data)
    for _ in range(3):  # the first calls, then the fast path
        assert f.value_and_grad(**data) == base
        assert f(**data) == base[0]
    assert f.jvp({"b": 1.0}, **data) == f.jvp({"b": 1.0}, **logistic_data)

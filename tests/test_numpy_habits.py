"""NumPy habits on Tensors (symdiff/numpy_protocol.py): NumPy arrays as constants, NumPy's
functions on Tensors, and the methods NumPy users expect.

The oracle is NumPy itself: each model is one Python function of np.* calls, run once on
NumPy arrays (the forward pass, and central differences of it for the gradient) and once on
Tensors (traced into symdiff). Few models are compiled with Numba; the rest run through
symdiff's NumPy interpreter of the differentiated Program.
"""
import pickle

import numpy as np
import pytest

import symdiff as sd
from symdiff.autodiff import differentiate
from symdiff.numpy_eval import run

RNG = np.random.default_rng(26)


def central_differences(f, point: dict, h=1e-6) -> dict:
    """{name: d f / d name} of a NumPy function of named arrays, by central differences."""
    gradients = {}
    for name, value in point.items():
        g = np.zeros_like(value)
        for k in np.ndindex(value.shape):
            up, down = {**point}, {**point}
            up[name], down[name] = value.copy(), value.copy()
            up[name][k] += h
            down[name][k] -= h
            g[k] = (f(**up) - f(**down)) / (2 * h)
        gradients[name] = g
    return gradients


def tensors_like(point: dict) -> dict:
    return {name: sd.tensor(name, value.shape) for name, value in point.items()}


def traced(f, point: dict):
    """`f` called on Tensors of `point`'s shapes, and those Tensors."""
    tensors = tensors_like(point)
    return f(**tensors), tensors


def interpreted(f, point: dict):
    """Value and gradients of `f` on `point`, traced and run by symdiff's NumPy interpreter."""
    loss, tensors = traced(f, point)
    outputs = run(differentiate(loss, list(tensors.values())), point)
    return outputs["value"], {name: outputs[f"d{name}"] for name in point}


def check(f, point: dict, tol=1e-6):
    value, gradients = interpreted(f, point)
    assert np.allclose(value, f(**point), rtol=1e-12, atol=1e-12)
    expected = central_differences(f, point)
    for name in point:
        assert np.allclose(gradients[name], expected[name], rtol=tol, atol=tol), name


def positive(*shape):
    return RNG.uniform(0.5, 2.0, shape)


def signed(*shape):
    return RNG.uniform(-2.0, 2.0, shape)


U = RNG.normal(size=(3, 4))  # weights that make every output entry count in the loss
V = RNG.normal(size=(4, 2))

# one model per NumPy function mapped to symdiff: (id, model, point)
MAPPED = [
    ("sin", lambda x: np.sum(np.sin(x) * U), dict(x=signed(3, 4))),
    ("exp", lambda x: np.sum(np.exp(x) * U), dict(x=signed(3, 4))),
    ("log", lambda x: np.sum(np.log(x) * U), dict(x=positive(3, 4))),
    ("tanh", lambda x: np.sum(np.tanh(x) * U), dict(x=signed(3, 4))),
    ("sqrt", lambda x: np.sum(np.sqrt(x) * U), dict(x=positive(3, 4))),
    ("abs", lambda x: np.sum(np.abs(x) * U), dict(x=positive(3, 4) * np.sign(U))),
    ("maximum", lambda x, y: np.sum(np.maximum(x, y) * U), dict(x=signed(3, 4), y=signed(3, 4))),
    ("minimum", lambda x, y: np.sum(np.minimum(x, y) * U), dict(x=signed(3, 4), y=signed(3, 4))),
    ("add", lambda x, y: np.sum(np.add(x, y) ** 2), dict(x=signed(3, 4), y=signed(3, 4))),
    ("subtract", lambda x, y: np.sum(np.subtract(x, y) ** 2), dict(x=signed(3), y=signed(3))),
    ("multiply", lambda x, y: np.sum(np.multiply(x, y) * U), dict(x=signed(3, 4), y=signed(4))),
    ("divide", lambda x, y: np.sum(np.divide(x, y)), dict(x=signed(3, 4), y=positive(3, 4))),
    ("power", lambda x, y: np.sum(np.power(x, y)), dict(x=positive(3, 4), y=signed(3, 4))),
    ("negative", lambda x: np.sum(np.negative(x) * U), dict(x=signed(3, 4))),
    ("sum", lambda x: np.sum(np.sum(x, axis=0) ** 2), dict(x=signed(3, 4))),
    ("mean", lambda x: np.sum(np.mean(x, axis=1) ** 2), dict(x=signed(3, 4))),
    ("max", lambda x: np.sum(np.max(x, axis=0) ** 2), dict(x=signed(3, 4))),
    ("dot", lambda x, w: np.sum(np.dot(x, w) ** 2), dict(x=signed(3, 4), w=signed(4, 2))),
    ("matmul", lambda x, w: np.sum(np.matmul(x, w) ** 2), dict(x=signed(3, 4), w=signed(4, 2))),
    ("where", lambda x, y: np.sum(np.where(np.greater(x, 0), x, y) * U),
     dict(x=signed(3, 4), y=signed(3, 4))),
    ("concatenate", lambda x, y: np.sum(np.concatenate([x, y], axis=1) ** 3),
     dict(x=signed(3, 2), y=signed(3, 4))),
    ("stack", lambda x, y: np.sum(np.stack([x, y]) ** 3), dict(x=signed(3), y=signed(3))),
    ("transpose", lambda x: np.sum(np.transpose(x) * U.T), dict(x=signed(3, 4))),
    ("transpose axes=", lambda x: np.sum(np.transpose(x, axes=(2, 0, 1)) ** 3),
     dict(x=signed(2, 3, 2))),
    ("reshape", lambda x: np.sum(np.reshape(x, (4, 3)) * U.reshape(4, 3)), dict(x=signed(3, 4))),
    ("clip", lambda x: np.sum(np.clip(x, -0.5, 1.0) * U), dict(x=signed(3, 4))),
    ("clip a_max=", lambda x, y: np.sum(np.clip(x, y, a_max=1.0) * U),
     dict(x=signed(3, 4), y=signed(4) / 2)),
    ("clip min= only", lambda x: np.sum(np.clip(x, min=0.25) * U), dict(x=signed(3, 4))),
    ("mod", lambda x, y: np.sum(np.mod(x, y) * U), dict(x=signed(3, 4) * 3, y=positive(4))),
    ("remainder", lambda x, y: np.sum(np.remainder(x, -y) * U),
     dict(x=signed(3, 4) * 3, y=positive(3, 4))),
    ("x % y", lambda x, y: np.sum((x % y + 5.0 % y) * U), dict(x=signed(3, 4) * 3,
                                                               y=positive(3, 4))),
    ("linalg.norm", lambda x: np.linalg.norm(x), dict(x=signed(3, 4))),
    ("linalg.norm axis=1", lambda x: np.sum(np.linalg.norm(x, axis=1) ** 3),
     dict(x=signed(3, 4))),
    ("linalg.norm ord=2 keepdims", lambda x: np.sum(np.linalg.norm(x, 2, 0, True) * U),
     dict(x=signed(3, 4))),
    ("linalg.norm fro axes", lambda x: np.sum(np.linalg.norm(x, "fro", (0, 2)) ** 3),
     dict(x=signed(2, 3, 2))),
    # NumPy arrays on the left of an operator reach us as ufuncs too
    ("array @ x", lambda x: np.sum((U @ x) ** 2), dict(x=signed(4, 2))),
    ("array + x", lambda x: np.sum(np.exp(U + x)), dict(x=signed(3, 4))),
    ("array / x", lambda x: np.sum(U / x), dict(x=positive(3, 4))),
    ("array > x", lambda x: np.sum(np.where(U > x, x, 2 * x) * U), dict(x=signed(3, 4))),
]


@pytest.mark.parametrize("f, point", [case[1:] for case in MAPPED], ids=[c[0] for c in MAPPED])
def test_each_mapped_numpy_function_matches_numpy_and_central_differences(f, point):
    check(f, point)


METHODS = [
    ("sum", lambda x: (x.sum(axis=0, keepdims=True) * U).sum()),
    ("mean", lambda x: (x * U).mean()),
    ("max", lambda x: x.max(axis=1).sum() + x.max()),
    ("T", lambda x: (x.T @ U).sum()),
    ("reshape varargs", lambda x: (x.reshape(2, 6) ** 2).sum()),
    ("reshape tuple", lambda x: (x.reshape((6, 2)) @ V[:2]).sum()),
    ("astype", lambda x: ((x > 0).astype(float) * x.astype(np.float64) * U).sum()),
]


@pytest.mark.parametrize("f", [case[1] for case in METHODS], ids=[c[0] for c in METHODS])
def test_tensor_methods_match_numpy(f):
    check(f, dict(x=signed(3, 4)))


def test_tensor_attributes_are_numpy_s():
    x = sd.tensor("x", ("n", 3))
    assert (x.ndim, x.shape, x.dtype, x.T.shape) == (2, ("n", 3), "float64", (3, "n"))


def _constants_model(x, lib):
    """Every place a NumPy array can stand: matmul on either side, a bool mask, concatenate,
    a product and a sum with the array on either side."""
    W = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [0.0, 1.0, 1.0]])
    mask = np.array([[True, False, True], [False, True, True]])
    a = x @ W + [0.1, 0.2, 0.3]  # a nested list is an array too
    b = (W @ x.T).T
    c = lib.where(mask, a, b)
    d = lib.concatenate([np.ones((1, 3)), c])
    return lib.sum(np.tanh(d * np.arange(1.0, 4.0) - np.full(3, 0.5)))


def test_numpy_constants_compile_and_match_numpy():
    point = dict(x=signed(2, 3))
    f = sd.compile(traced(lambda x: _constants_model(x, sd), point)[0], wrt=["x"])
    value, gradients = f.value_and_grad(**point)
    numpy_model = lambda x: _constants_model(x, np)  # noqa: E731
    assert np.isclose(value, numpy_model(**point), rtol=1e-12)
    assert np.allclose(gradients["x"], central_differences(numpy_model, point)["x"], atol=1e-7)
    assert "np.array(((0.5, -1.0, 2.0), (1.5, 0.25, -0.5), (0.0, 1.0, 1.0)), " \
        "dtype=np.float64)" in f.source


def mlp(X, W1, b1, W2, b2):
    """A small MLP as a NumPy user writes it; P is a fixed NumPy projection of the inputs."""
    P = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    h = np.maximum(X @ P @ W1 + b1, 0)
    logits = np.tanh(h @ W2 + b2)
    return np.mean(np.log(np.sum(np.exp(logits), axis=1)) - logits[:, 0])


def test_a_numpy_mlp_traces_compiles_and_matches_numpy():
    point = dict(W1=signed(4, 5), b1=signed(5), W2=signed(5, 3), b2=signed(3))
    X = RNG.normal(size=(7, 3))
    loss = mlp(sd.tensor("X", ("n", 3)), **tensors_like(point))
    f = sd.compile(loss, wrt=list(point))
    value, gradients = f.value_and_grad(X=X, **point)
    numpy_loss = lambda **p: mlp(X, **p)  # noqa: E731
    assert np.isclose(value, numpy_loss(**point), rtol=1e-12)
    expected = central_differences(numpy_loss, point)
    for name in point:
        assert np.allclose(gradients[name], expected[name], atol=1e-7), name


def test_a_constant_is_frozen_shared_and_pickles():
    V = np.arange(6.0).reshape(2, 3)
    x = sd.tensor("x", (3,))
    first, second = V @ x, V.copy() @ x
    V[0, 0] = 100.0  # the model keeps the values it was built with
    assert first.node is second.node
    attr = first.node.inputs[0].attr("value")
    assert attr.array[0, 0] == 0.0 and not attr.array.flags.writeable
    assert pickle.loads(pickle.dumps(attr)) == attr
    assert hash(pickle.loads(pickle.dumps(attr))) == hash(attr)


REFUSED = [
    ("np.fft.fft", lambda x: np.fft.fft(x), "np.fft.fft has no symdiff counterpart"),
    ("np.isnan", lambda x: np.isnan(x), "np.isnan has no symdiff counterpart"),
    ("np.sum(dtype=)", lambda x: np.sum(x, dtype=np.float32),
     "np.sum on a Tensor: got an unexpected keyword argument 'dtype' (symdiff runs it as sd.sum("),
    ("np.exp(out=)", lambda x: np.exp(x, out=np.empty((3, 4))), "np.exp on a Tensor"),
    ("np.add.reduce", lambda x: np.add.reduce(x), "np.add.reduce on a Tensor"),
    ("large constant", lambda x: x @ np.ones((4, 100)),
     "right operand of @: a constant array of shape (4, 100) is written into the generated "
     "code, which takes 1 to 256 entries: make it an input"),
    ("strings", lambda x: x + np.array(["a"]), "not ndarray of <U1"),
    ("np.linalg.norm(ord=1)", lambda x: np.linalg.norm(x, 1, axis=1),
     "np.linalg.norm(ord=1) of a Tensor over 1 axis: symdiff computes the 2-norm of vectors "
     "(ord None or 2) and the Frobenius norm of matrices (ord None or 'fro')"),
    ("np.linalg.norm(ord=2) of a matrix", lambda x: np.linalg.norm(x, 2),
     "np.linalg.norm(ord=2) of a Tensor over 2 axes"),
    ("np.clip()", lambda x: np.clip(x, None, None),
     "np.clip on a Tensor: give a lower bound, an upper bound or both"),
    ("astype(int)", lambda x: x.astype(int), "astype(int64): symdiff computes in float32 or "
                                             "float64"),
    ("astype(float32)", lambda x: x.astype(np.float32),
     "astype(float32) of a float64 Tensor: a model computes in one float type"),
]


@pytest.mark.parametrize("f, message", [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED])
def test_refusals_name_the_function_and_what_to_do(f, message):
    with pytest.raises(sd.ArgumentError) as caught:
        f(sd.tensor("x", (3, 4)))
    assert isinstance(caught.value, TypeError)
    assert message in str(caught.value)

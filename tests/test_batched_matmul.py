"""@ over stacks of matrices with NumPy's matmul rules: one attention layer against an
independent NumPy forward pass and central differences, per-example gradients of its weights,
and the shapes NumPy's rules give."""
import re

import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen.emit import emit_source
from differences import central

RNG = np.random.default_rng(31)
WEIGHTS = {name: RNG.normal(size=(4, 2)) for name in ("Wq", "Wk", "Wv")}


def _attention(X, Wq, Wk, Wv):
    """NumPy: one attention head per sequence of X (n, T, D); each sequence's sum of squares."""
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ np.swapaxes(K, -1, -2) / np.sqrt(2.0)
    P = np.exp(S - S.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    return np.sum((P @ V) ** 2, axis=(-2, -1))


def _model():
    X = sd.tensor("X", ("n", 3, 4))
    Wq, Wk, Wv = (sd.tensor(name, (4, 2)) for name in WEIGHTS)
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    P = sd.softmax(Q @ sd.transpose(K, (0, 2, 1)) / np.sqrt(2.0), axis=-1)
    return sd.sum((P @ V) ** 2, axis=(1, 2)), [Wq, Wk, Wv]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_attention_layer_matches_numpy_and_central_differences():
    rows, wrt = _model()
    f = sd.compile(sd.mean(rows), wrt=wrt, tier="kernel")
    for n in (5, 20_000):  # one chunk; many, on threads
        X = RNG.normal(size=(n, 3, 4))
        value, grads = f.value_and_grad(X=X, **WEIGHTS)
        assert np.isclose(value, np.mean(_attention(X, **WEIGHTS)), rtol=1e-12)
        if n > 5:
            continue
        for name, w in WEIGHTS.items():
            def loss(v):
                return np.mean(_attention(X, **{**WEIGHTS, name: v}))
            assert np.allclose(grads[name], central(loss, w), rtol=1e-6, atol=1e-8), name


def test_per_example_gradients_of_attention_weights():
    rows, wrt = _model()
    f = sd.compile(rows, wrt=wrt, batch=["X"], reduce=None, tier="kernel")
    X = RNG.normal(size=(3, 3, 4))
    grads = f.grad(X=X, **WEIGHTS)
    for i in range(3):
        for name, w in WEIGHTS.items():
            def loss(v):
                return _attention(X[i], **{**WEIGHTS, name: v})
            assert np.allclose(grads[name][i], central(loss, w), rtol=1e-6, atol=1e-8)


SHAPES = [((2, 3, 4), (4,)), ((4,), (2, 4, 5)), ((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
          ((2, 1, 3, 4), (5, 4, 2))]


def test_numpy_matmul_shapes_and_values():
    """Each pair of shapes, one model: a vector on either side, a matrix times a stack, leading
    axes that broadcast."""
    pairs = [(sd.tensor(f"A{k}", a), sd.tensor(f"B{k}", b)) for k, (a, b) in enumerate(SHAPES)]
    f = sd.compile(sum(sd.sum(sd.sin(A @ B)) for A, B in pairs),
                   wrt=[t for pair in pairs for t in pair], tier="kernel")
    data = {f"{n}{k}": RNG.normal(size=shape) for k, shapes in enumerate(SHAPES)
            for n, shape in zip("AB", shapes)}
    value, grads = f.value_and_grad(**data)
    assert np.isclose(value, sum(np.sum(np.sin(data[f"A{k}"] @ data[f"B{k}"]))
                                 for k in range(len(SHAPES))), rtol=1e-12)
    for k, ((A, B), (a, b)) in enumerate(zip(pairs, SHAPES)):
        x, y = data[f"A{k}"], data[f"B{k}"]
        assert (A @ B).shape == np.matmul(x, y).shape
        assert np.allclose(grads[f"A{k}"], central(lambda v: np.sum(np.sin(v @ y)), x),
                           rtol=1e-6, atol=1e-8)
        assert np.allclose(grads[f"B{k}"], central(lambda v: np.sum(np.sin(x @ v)), y),
                           rtol=1e-6, atol=1e-8)


def test_stacks_that_do_not_fit_are_refused():
    with pytest.raises(sd.ShapeError, match="cannot broadcast"):
        sd.tensor("A", (2, 3, 4)) @ sd.tensor("B", (3, 4, 5))
    with pytest.raises(sd.ShapeError, match="do not fit"):
        sd.tensor("A", (2, 3, 4)) @ sd.tensor("B", (2, 3, 5))


def test_a_stacks_transposes_are_read_from_their_sources_never_computed():
    """The adjoints of a product of stacks read each matrix transposed in np.dot (a `.T` per
    matrix): no transpose of a stack is a statement (one once sat unread in the kernel, and
    Numba compiles np.transpose for about 2.5 s per process)."""
    A, B = sd.tensor("A", (2, 3, 4)), sd.tensor("B", (2, 4, 3))
    source = emit_source(sd.differentiate(sd.sum(sd.sin(A @ B)), [A, B]))
    assert "np.transpose(" not in source
    q = r"\w*\[q\w*\]"
    assert re.search(rf"_dot_into\(left{q}\.T, right{q}, ", source)  # dB_q = A_qᵀ dC_q
    assert re.search(rf"_dot_into\(left{q}, right{q}\.T, ", source)  # dA_q = dC_q B_qᵀ

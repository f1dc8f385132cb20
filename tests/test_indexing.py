"""NumPy's indexing rules on Tensors (symdiff/indexing.py), value and gradient, against NumPy
itself: the value of `X[key]` is NumPy's `x[key]`, and the gradient of `sum(X[key] * C)` is
NumPy's `np.add.at(zeros, key, C)`. Keys are drawn at random: ints, strided slices (negative
steps too), integer lists and arrays (several, broadcast together, of rank 1 and 2), boolean
masks, `None` and `...`, in every position."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symdiff as sd
from campaign import sizes
from symdiff.autodiff import differentiate
from symdiff.numpy_eval import run
from symdiff.program import verify

SHAPE = (4, 5, 3)
X_VALUE = np.random.default_rng(0).normal(size=SHAPE)


# ---------------------------------------------------------------- random keys


def _index_array(draw, size, broadcast):
    """Ints in [-size, size) of a shape that broadcasts to `broadcast` (now and then of a
    shape of its own, which need not), as a NumPy array or a (nested) list."""
    if draw(st.integers(0, 9)) == 0:
        shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    else:
        rank = draw(st.integers(1, len(broadcast)))
        shape = tuple(d if draw(st.booleans()) else 1 for d in broadcast[-rank:])
    count = int(np.prod(shape))
    values = np.array(draw(st.lists(st.integers(-size, size - 1), min_size=count,
                                    max_size=count)), dtype=np.int64).reshape(shape)
    return values.tolist() if draw(st.booleans()) else values


def _entries(draw, axes, broadcast):
    """Entries for the consecutive axes `axes` of SHAPE, each consuming one axis (a mask one
    or more)."""
    entries, axis = [], axes.start
    while axis < axes.stop:
        kind = draw(st.sampled_from(["int", "slice", "array", "array", "mask"]))
        size = SHAPE[axis]
        if kind == "int":
            entries.append(draw(st.integers(-size, size - 1)))
        elif kind == "slice":
            bound = st.none() | st.integers(-size - 1, size)
            entries.append(slice(draw(bound), draw(bound),
                                 draw(st.sampled_from([None, 1, 2, 3, -1, -2, -3]))))
        elif kind == "array":
            entries.append(_index_array(draw, size, broadcast))
        else:
            rank = draw(st.integers(1, axes.stop - axis))
            count = int(np.prod(SHAPE[axis:axis + rank]))
            mask = draw(st.lists(st.booleans(), min_size=count, max_size=count))
            entries.append(np.array(mask).reshape(SHAPE[axis:axis + rank]))
            axis += rank - 1
        axis += 1
    return entries


@st.composite
def keys(draw):
    """A NumPy index for an array of shape SHAPE (some select nothing, or hold arrays that do
    not broadcast: NumPy refuses those, and so must symdiff)."""
    broadcast = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    if draw(st.booleans()):  # `...` taking `length` axes from `start`
        start = draw(st.integers(0, len(SHAPE)))
        length = draw(st.integers(0, len(SHAPE) - start))
        key = (_entries(draw, range(start), broadcast) + [Ellipsis]
               + _entries(draw, range(start + length, len(SHAPE)), broadcast))
    else:  # the trailing axes taken whole
        key = _entries(draw, range(draw(st.integers(0, len(SHAPE)))), broadcast)
    for _ in range(draw(st.integers(0, 2))):
        key.insert(draw(st.integers(0, len(key))), None)
    if len(key) == 1 and draw(st.booleans()):
        return key[0]
    return tuple(key)


def expected(key):
    """(NumPy's x[key], or None where NumPy refuses the key or selects nothing)."""
    try:
        value = X_VALUE[key]
    except IndexError:
        return None
    return value if value.size else None


def adjoint(key, C):
    """d sum(x[key] * C) / dx, by NumPy."""
    G = np.zeros(SHAPE)
    np.add.at(G, key, C)
    return G


def _refused(X, key):
    with pytest.raises(sd.ShapeError, match=r"\bX\b"):
        X[key]


# ---------------------------------------------------------------- against NumPy


def _case(key, seed):
    """(X[key], NumPy's X_VALUE[key], a random C of its shape), or None where NumPy refuses
    the key (and symdiff must too)."""
    X = sd.tensor("X", SHAPE)
    want = expected(key)
    if want is None:
        _refused(X, key)
        return None
    y = X[key]
    assert y.shape == want.shape
    return y, want, np.random.default_rng(seed).normal(size=want.shape)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys(), seed=st.integers(0, 2 ** 16))
def test_random_keys_match_numpy_in_the_program(key, seed):
    """Many keys through the IR and the NumPy interpreter of the Program (no compile)."""
    case = _case(key, seed)
    if case is None:
        return
    y, want, C = case
    program = differentiate(sd.sum(y * sd.tensor("C", want.shape)), [sd.tensor("X", SHAPE)])
    verify(program)
    got = run(program, {"X": X_VALUE, "C": C})
    assert got["value"] == pytest.approx(np.sum(want * C), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(got["dX"], adjoint(key, C), rtol=1e-14, atol=0)


@pytest.mark.parametrize("examples", sizes(8, 35))
def test_random_keys_match_numpy_in_the_kernel(examples):
    """Compiled (the tape does not index): the entries of X[key] as an aux output, the value
    and the gradient, from one kernel."""
    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(key=keys(), seed=st.integers(0, 2 ** 16))
    def check(key, seed):
        case = _case(key, seed)
        if case is None:
            return
        y, want, C = case
        f = sd.compile(sd.sum(y * sd.tensor("C", want.shape)), wrt=[sd.tensor("X", SHAPE)],
                       aux={"y": y})
        value, grads, aux = f.value_and_grad(X=X_VALUE, C=C)
        np.testing.assert_array_equal(aux["y"], want)
        assert value == pytest.approx(np.sum(want * C), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grads["X"], adjoint(key, C), rtol=1e-14, atol=0)
    check()


@pytest.mark.parametrize("key, shape", [
    ((3, slice(2, None), [1, 2]), (2, 3)),  # an int and an array apart: the array axis first
    ((slice(None), [1, 2], 0), (4, 2)),  # side by side: in place
    (([0, 1], slice(None), [2, 1]), (2, 5)),
    (([[0], [1]], [0, 2]), (2, 2, 3)),
    ((slice(None), [0, 1], ..., [0, 1]), (2, 4)),  # `...` of no axes still stands between
    (([0, 1], None, [0, 1]), (2, 1, 3)),
    ((None, 1, ..., [0, 2]), (2, 1, 5)),
    ((np.array([True, False, True, True]), slice(None, None, -2)), (3, 3, 3)),
    ((slice(None), np.eye(5, 3, dtype=bool)), (4, 3)),
])
def test_known_result_shapes(key, shape):
    assert sd.tensor("X", SHAPE)[key].shape == shape == X_VALUE[key].shape


# ---------------------------------------------------------------- the IR it builds


def test_one_array_in_place_is_a_slice_and_one_gather():
    """The common case builds what it did before (the loops read both in place)."""
    X, w = sd.tensor("X", ("n", 4)), sd.tensor("w", (2,))
    program = differentiate(sd.mean(X[:, ::-1][:, [3, 0]] @ w), [w])
    verify(program)
    assert str(program).splitlines()[:2] == ["slice1 = X[:, 3::-1]",
                                             "gather2 = gather(slice1, axis=1, indices=[3, 0])"]
    assert "reshape" not in str(program)


def test_several_arrays_are_one_gather_of_flat_indices():
    """X[[0, 3], :, [[2], [1]]] reads (0, 2) (3, 2) (0, 1) (3, 1) of axes 0 and 2: those axes
    moved side by side and merged (12 entries, flat indices 2, 11, 1, 10), then split."""
    X = sd.tensor("X", (4, 5, 3))
    program = differentiate(sd.sum(X[[0, 3], :, [[2], [1]]]), [X])
    verify(program)
    assert str(program).splitlines()[:4] == [
        "transpose1 = transpose(X, perm=(0, 2, 1))",
        "reshape2 = reshape(transpose1, shape=(12, 5))",
        "gather3 = gather(reshape2, axis=0, indices=[2, 11, 1, 10])",
        "reshape4 = reshape(gather3, shape=(2, 2, 5))"]


# ---------------------------------------------------------------- batches, modes, refusals


def test_arrays_beside_the_batch_axis_and_forward_mode():
    """A symbolic batch axis taken whole next to arrays on static axes, in one kernel: the
    array axes in place, or moved before the batch axis; jvp and the gradient by NumPy."""
    X, w = sd.tensor("X", ("n", 4, 5)), sd.tensor("w", (3, 4))
    loss = sd.sum(X[:, [0, 3], [[1], [4]]] * w[[[0], [2]], [1, 3]]) \
        + sd.sum(sd.sin(X[:, 1, None, [0, 2]]) * w[2, 1:3, None, None])
    f = sd.compile(loss, wrt=[X, w])
    rng = np.random.default_rng(3)
    x, v = rng.normal(size=(6, 4, 5)), rng.normal(size=(3, 4))
    tx, tv = rng.normal(size=x.shape), rng.normal(size=v.shape)
    assert sd.tensor("X", ("n", 4, 5))[:, 1, None, [0, 2]].shape == (2, "n", 1)

    def numpy_loss(x, v):
        return (np.sum(x[:, [0, 3], [[1], [4]]] * v[[[0], [2]], [1, 3]])
                + np.sum(np.sin(x[:, 1, None, [0, 2]]) * v[2, 1:3, None, None]))
    value, grads = f.value_and_grad(X=x, w=v)
    assert value == pytest.approx(numpy_loss(x, v), rel=1e-12)
    dx = np.zeros_like(x)
    np.add.at(dx, (slice(None), [0, 3], [[1], [4]]), v[[[0], [2]], [1, 3]])
    np.add.at(dx, (slice(None), 1, None, [0, 2]),
              np.cos(x[:, 1, None, [0, 2]]) * v[2, 1:3, None, None])
    np.testing.assert_allclose(grads["X"], dx, rtol=1e-14)
    h = 1e-6
    numeric = (numpy_loss(x + h * tx, v + h * tv) - numpy_loss(x - h * tx, v - h * tv)) / (2 * h)
    assert f.jvp({"X": tx, "w": tv}, X=x, w=v)[1] == pytest.approx(numeric, rel=1e-7)


def test_per_example_gradients_through_two_arrays_of_a_parameter():
    x, W = sd.tensor("x", ("n",)), sd.tensor("W", (3, 4))
    P = W[[[0], [2]], [1, 3]]  # [[W01, W03], [W21, W23]]
    f = sd.compile(sd.sin(x * P[0, 1] + P[1, 0] * x ** 2 + W[1, [2, 0]][0]), wrt=[W],
                   reduce=None)
    xs, v = np.array([0.5, -1.0, 2.0]), np.arange(12.0).reshape(3, 4) / 10
    _, grads = f.value_and_grad(x=xs, W=v)
    for i, xi in enumerate(xs):
        slope = np.cos(xi * v[0, 3] + v[2, 1] * xi ** 2 + v[1, 2])
        want = np.zeros((3, 4))
        want[0, 3], want[2, 1], want[1, 2] = slope * xi, slope * xi ** 2, slope
        np.testing.assert_allclose(grads["W"][i], want, rtol=1e-14)


@pytest.mark.parametrize("key, error, fragment", [
    (([0, 1], slice(None), [0, 1, 2]), sd.ShapeError,
     "X: the integer arrays indexing axes 0, 2 have shapes (2,), (3,), which do not broadcast"),
    ((np.array([True, False]),), sd.ShapeError,
     "X: a boolean mask of shape (2,) cannot index axis 0, of size 4"),
    ((np.zeros((4, 5), dtype=bool),), sd.ShapeError,
     "X: a boolean mask with no True entry selects nothing from axes 0 to 1"),
    ((np.array(True),), sd.ShapeError, "X: a boolean scalar (True or False) cannot be an index"),
    ((slice(None), [[0], [1, 2]]), sd.ArgumentError, "X: an index array must be rectangular"),
    ((slice(None), [0.5]), sd.ShapeError, "X: an integer-array index must be a non-empty array"),
    (([],), sd.ShapeError, "X: an integer-array index must be a non-empty array"),
    (([0, 4],), sd.ShapeError, "index 4 is out of range for axis 0 of X"),
    ((0, [[-6]]), sd.ShapeError, "index -6 is out of range for axis 1 of X"),
    ((np.ones((4, 5, 3, 1), dtype=bool),), sd.ShapeError, "too many indices for X"),
])
def test_bad_keys_name_the_tensor_and_axis(key, error, fragment):
    X = sd.tensor("X", (4, 5, 3))
    with pytest.raises(error, match=re.escape(fragment)):
        X[key]


def test_arrays_and_masks_cannot_index_a_symbolic_axis():
    X = sd.tensor("X", ("n", 3))
    with pytest.raises(sd.ShapeError, match="X: axis 0 has the symbolic size n; an integer array"):
        X[[0, 1], [0, 1]]
    with pytest.raises(sd.ShapeError, match="X: a boolean mask cannot index axis 0, of size n"):
        X[np.array([True, False])]

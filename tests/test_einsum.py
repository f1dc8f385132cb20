"""sd.einsum (symdiff/einsum.py) and np.einsum on Tensors: values against NumPy's einsum,
gradients against central differences of NumPy's forward pass and against JAX, in the
Program (NumPy's interpreter), the kernel and the tape; and the subscripts it refuses."""
import numpy as np
import pytest

import symdiff as sd
from symdiff.autodiff import differentiate
from symdiff.forward import jvp
from symdiff.numpy_eval import run
from symdiff.program import verify
from differences import central

RNG = np.random.default_rng(28)
N = 3  # the size of the symbolic dimension "n"

# subscripts and the operands' shapes ("n": a dimension known at call time)
CASES = [
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("nij,njk->nik", [("n", 3, 4), ("n", 4, 2)]),
    ("nij,jk->nik", [("n", 3, 4), (4, 2)]),
    ("jk,nij->kni", [(4, 2), ("n", 3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 2), (2, 3, 5, 2)]),
    ("i,i->", [(3,), (3,)]),
    ("ij->ji", [(2, 3)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij->", [(2, 3)]),
    ("i,j->ij", [(2,), (3,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
    ("...ij,...jk", [(2, 1, 3, 4), (3, 4, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ijk,jkl->il", [(2, 3, 4), (3, 4, 2)]),
    ("ij,ij->ij", [(3, 1), (3, 4)]),
    ("ni,ni->n", [("n", 4), ("n", 4)]),
    ("ij,kj->ik", [(3, 4), (2, 4)]),
    ("ji,jk", [(4, 3), (4, 2)]),
    ("bA", [(2, 3)]),
    (",i->i", [(), (3,)]),
    ("i,i,i->", [(3,), (3,), (3,)]),
    ("ab,bc,ca->", [(2, 3), (3, 4), (4, 2)]),
    ("nd,de,ne->n", [("n", 3), (3, 2), ("n", 2)]),
]
SHAPES = dict(CASES)


def _sizes(shape):
    return tuple(N if d == "n" else d for d in shape)


def _case_inputs(case):
    subscripts, shapes = case
    tensors = [sd.tensor(f"x{k}", shape) for k, shape in enumerate(shapes)]
    arrays = {f"x{k}": RNG.normal(size=_sizes(shape)) for k, shape in enumerate(shapes)}
    return subscripts, tensors, arrays


def _loss(subscripts, arrays, k, v):
    """NumPy: sum(sin(einsum)) with operand k replaced by v (the oracle's forward pass)."""
    operands = [v if j == k else a for j, a in enumerate(arrays)]
    return np.sum(np.sin(np.einsum(subscripts, *operands)))


@pytest.mark.parametrize("case", CASES, ids=[c[0] or "scalar" for c in CASES])
def test_values_and_gradients_in_the_program(case):
    subscripts, tensors, arrays = _case_inputs(case)
    out = sd.einsum(subscripts, *tensors)
    want = np.einsum(subscripts, *arrays.values())
    assert _sizes(out.shape) == want.shape
    program = differentiate(sd.sum(sd.sin(out)), tensors, extra=[("out", out)])
    verify(program)
    got = run(program, arrays)
    np.testing.assert_allclose(got["out"], want, rtol=1e-13, atol=1e-14)
    values = list(arrays.values())
    for k, name in enumerate(arrays):
        expected = central(lambda v: _loss(subscripts, values, k, v), values[k])
        np.testing.assert_allclose(got[f"d{name}"], expected, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{subscripts}: d{name}")


def test_numpy_einsum_on_tensors_is_sd_einsum():
    A, B = sd.tensor("A", (2, 3)), sd.tensor("B", (3, 4))
    assert np.einsum("ij,jk->ik", A, B, optimize=True).node is sd.einsum("ij,jk->ik", A, B).node
    constant = np.arange(12.0).reshape(3, 4)  # an array among the operands is a constant
    f = sd.compile(sd.sum(np.einsum("ij,jk", A, constant) ** 2), wrt=[A])
    a = RNG.normal(size=(2, 3))
    assert np.isclose(f(A=a), np.sum((a @ constant) ** 2), rtol=1e-13)
    assert "einsum" in sd.__all__


def test_a_batched_product_is_one_product_of_stacked_matrices():
    Q, K = sd.tensor("Q", ("n", 2, 5, 4)), sd.tensor("K", ("n", 2, 6, 4))
    scores = sd.einsum("bhqd,bhkd->bhqk", Q, K)
    assert scores.node.op == "bmm" and scores.shape == ("n", 2, 5, 6)
    assert sd.einsum("ij,jk->ik", sd.tensor("A", (2, 3)), sd.tensor("B", (3, 4))).node.op \
        == "matmul"
    X, W = sd.tensor("X", ("n", 3, 4)), sd.tensor("W", (4, 2))  # the examples' rows times W:
    assert sd.einsum("nij,jk->nik", X, W).node.op == "bmm"      # one product for all of them
    assert sd.einsum("jk,nij->nik", W, X).node.op == "bmm"


def test_forward_mode_matches_central_differences_along_the_tangent():
    subscripts, tensors, arrays = _case_inputs(("bij,bkj,bk->bi", [(2, 3, 4), (2, 5, 4),
                                                                   (2, 5)]))
    directions = {t: sd.tensor(f"t{k}", t.shape) for k, t in enumerate(tensors)}
    tangents = [RNG.normal(size=a.shape) for a in arrays.values()]
    loss = sd.sum(sd.sin(sd.einsum(subscripts, *tensors)))
    program = differentiate(jvp(loss, directions), [])
    got = run(program, {**arrays, **{f"t{k}": t for k, t in enumerate(tangents)}})["value"]

    def along(h):  # NumPy's loss at x + h t
        moved = [a + h * t for a, t in zip(arrays.values(), tangents)]
        return np.sum(np.sin(np.einsum(subscripts, *moved)))
    assert np.isclose(got, (along(1e-6) - along(-1e-6)) / 2e-6, rtol=1e-6)


# ---------------------------------------------------------------- the kernel and the tape

# one of each way einsum is built: a product of stacked matrices with a transposed operand, a
# matrix product of grouped axes, a diagonal, a broadcast product summed, an outer product
KERNEL = [(subscripts, SHAPES[subscripts]) for subscripts in (
    "nij,njk->nik", "bhqd,bhkd->bhqk", "ijk,jkl->il", "ii", "ni,ni->n", "i,j->ij")]


def test_the_kernel_matches_numpy_and_central_differences():
    cases, tensors, data = [], [], {}
    for c, (subscripts, shapes) in enumerate(KERNEL):
        operands = [sd.tensor(f"c{c}x{k}", shape) for k, shape in enumerate(shapes)]
        arrays = [RNG.normal(size=_sizes(shape)) for shape in shapes]
        cases.append((subscripts, operands, arrays))
        tensors += operands
        data.update({f"c{c}x{k}": a for k, a in enumerate(arrays)})
    outs = [sd.einsum(subscripts, *operands) for subscripts, operands, _ in cases]
    f = sd.compile(sum(sd.sum(sd.sin(out)) for out in outs), wrt=tensors, tier="kernel")
    value, grads = f.value_and_grad(**data)
    want = sum(np.sum(np.sin(np.einsum(subscripts, *arrays)))
               for subscripts, _, arrays in cases)
    assert np.isclose(value, want, rtol=1e-13)
    for c, (subscripts, _, arrays) in enumerate(cases):
        for k, a in enumerate(arrays):
            expected = central(lambda v: _loss(subscripts, arrays, k, v), a)
            np.testing.assert_allclose(grads[f"c{c}x{k}"], expected, rtol=1e-6, atol=1e-8,
                                       err_msg=f"{subscripts}: operand {k}")


def test_the_tape_runs_per_sample_products_and_names_itself_for_contractions():
    x, y, w = sd.tensor("x", ("n",)), sd.tensor("y", ("n",)), sd.scalar("w")
    per_sample = sd.einsum(",n,n->n", w, x, y)
    f = sd.compile(sd.mean(sd.sin(per_sample)), wrt=[w], tier="tape")
    assert f.tier == "tape"
    xs, ys = RNG.normal(size=7), RNG.normal(size=7)
    value, grads = f.value_and_grad(w=0.3, x=xs, y=ys)
    assert np.isclose(value, np.mean(np.sin(0.3 * xs * ys)), rtol=1e-13)
    assert np.isclose(grads["w"], np.mean(np.cos(0.3 * xs * ys) * xs * ys), rtol=1e-12)
    A, B = sd.tensor("A", (2, 3)), sd.tensor("B", (3, 4))
    with pytest.raises(sd.ArgumentError, match="tape"):
        sd.compile(sd.sum(sd.einsum("ij,jk", A, B)), wrt=[A], tier="tape")


# ---------------------------------------------------------------- errors


def test_bad_subscripts_and_shapes_are_refused_naming_what_is_wrong():
    A, B, v = sd.tensor("A", (2, 3)), sd.tensor("B", (4, 5)), sd.tensor("v", (3,))
    with pytest.raises(sd.ShapeError, match=r"index 'j' has size 3 in operand 0 but 4 in "
                                            r"operand 1"):
        sd.einsum("ij,jk->ik", A, B)
    with pytest.raises(sd.ShapeError, match=r"index 'i' has size 2 in operand 0 but 3"):
        sd.einsum("ii->i", A)
    with pytest.raises(sd.ArgumentError, match="subscripts for 2 operands, but 1 was given"):
        sd.einsum("ij,jk", A)
    with pytest.raises(sd.ArgumentError, match="subscripts for 1 operand, but 2 were given"):
        sd.einsum("ij", A, v)
    with pytest.raises(sd.ShapeError, match=r"operand 1 has shape \(3,\), but its subscripts "
                                            r"'jk' name 2 axes"):
        sd.einsum("ij,jk", A, v)
    with pytest.raises(sd.ArgumentError, match="'1'; indices are the letters"):
        sd.einsum("i1", A)
    with pytest.raises(sd.ArgumentError, match="output index 'z' is in no operand"):
        sd.einsum("ij->iz", A)
    with pytest.raises(sd.ArgumentError, match="names index 'i' twice"):
        sd.einsum("ij->ii", A)
    with pytest.raises(sd.ArgumentError, match="not one '...'"):
        sd.einsum("i.j", A)
    with pytest.raises(sd.ArgumentError, match="write '...' in the output"):
        sd.einsum("...j->j", A)
    with pytest.raises(sd.ArgumentError, match="string first"):
        sd.einsum(A, [0, 1])
    for error in (sd.ShapeError, sd.ArgumentError):
        assert issubclass(error, sd.SymdiffError)

"""A loss over a batch split into its per-chunk sum and its epilogue (no kernels compiled)."""
import numpy as np
import pytest

import symdiff as sd
from symdiff import tensors as T
from symdiff.autodiff import differentiate
from symdiff.numpy_eval import run
from symdiff.program import verify
from symdiff.split import split_loss


def program_of(loss, wrt):
    inputs = {n.attr("name"): T.Tensor(n) for n in sd.ir.topological([loss.node])
              if n.op == "input"}
    return differentiate(loss, wrt, inputs=[inputs[k] for k in sorted(inputs)])


def test_partial_sums_and_the_epilogue_give_the_loss_and_its_gradient():
    x, w = sd.tensor("x", ("n",)), sd.scalar("w")
    loss = sd.mean(sd.log(1 + sd.exp(-w * x))) + 0.5 * w * w  # mean, then a penalty
    split = split_loss(program_of(loss, [w]), ["w"])
    for program in (split.value, split.grad, split.epilogue):
        verify(program)
    # the epilogue reads the total, the batch size and the parameter, never the batch
    assert [n.attr("name") for n in split.epilogue.inputs] == [split.total, split.count, "w"]
    xs, w0 = np.array([0.5, -1.0, 2.0, 0.25, -0.75]), 0.3
    parts = [run(split.grad, {"x": xs[a:b], "w": w0}) for a, b in [(0, 2), (2, 5)]]
    S, dS = (sum(p[k] for p in parts) for k in ("value", "dw"))
    E = run(split.epilogue, {split.total: S, split.count: 5.0, "w": w0})
    terms = np.log1p(np.exp(-w0 * xs))  # the loss and its derivative written out by hand
    assert E["value"] == pytest.approx(terms.mean() + 0.5 * w0**2, rel=1e-14)
    hand = np.mean(-xs / (1 + np.exp(w0 * xs))) + w0
    assert E["dw"] + E[f"d{split.total}"] * dS == pytest.approx(hand, rel=1e-14)


@pytest.mark.parametrize("make, reason", [
    (lambda x, w: sd.mean(x * w) * sd.mean(x), "one scalar sum"),
    (lambda x, w: sd.max(x * w), "has 0 such sums"),
    (lambda x, w: sd.sum(x * w / sd.mean(x)), "batch size 'n' inside a sample"),
    # every pair of samples: a chunk's partial sum would leave the pairs across chunks out
    (lambda x, w: sd.sum(x[:, None] * x[None, :] * w), "examples interact in mul"),
])
def test_losses_whose_chunks_depend_on_each_other_are_refused(make, reason):
    x, w = sd.tensor("x", ("n",)), sd.scalar("w")
    with pytest.raises(sd.DifferentiationError, match=reason):
        split_loss(program_of(make(x, w), [w]), ["w"])

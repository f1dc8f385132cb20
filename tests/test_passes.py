"""Passes: a small model in, a structural assertion out."""
import numpy as np
import sympy as sp

import symdiff as sd
from symdiff import tensors as T
from symdiff.autodiff import differentiate
from symdiff.codegen.emit import emit_source
from symdiff.functions import placeholder, sigmoid, softplus
from symdiff.ir import topological
from symdiff.program import verify
from symdiff.passes.fuse import fuse
from symdiff.passes.stable import stabilize
from differences import central


def bodies(t):
    return [n.attr("body") for n in topological([t.node]) if n.op == "elementwise"]


def test_identical_subexpressions_are_one_node():
    x, y = T.scalar("x"), T.scalar("y")
    assert (x * y + 1).node is (x * y + 1).node
    program = differentiate(sd.exp(x * y) + sd.sin(x * y), [x, y])
    verify(program)
    assert sum(s.node.op == "elementwise" and s.node.attr("body") == placeholder(0)
               * placeholder(1) and s.origin is None for s in program.stmts) == 1


def test_stable_forms():
    u = T.scalar("u")
    assert any(isinstance(b, softplus) for b in bodies(stabilize(sd.log(1 + sd.exp(u)))))
    assert any(isinstance(b, sigmoid) for b in bodies(stabilize(1 / (1 + sd.exp(-u)))))
    assert any(b.func.__name__ == "log1p" for b in bodies(stabilize(sd.log(1 + u * u))))
    assert any(b.func.__name__ == "expm1" for b in bodies(stabilize(sd.exp(u) - 1)))
    lecture = stabilize(-sd.log(1 / (1 + sd.exp(-u))))  # one rewrite exposes the next
    assert any(isinstance(b, softplus) for b in bodies(lecture))
    assert not any(isinstance(b, (sp.log, sigmoid)) for b in bodies(lecture))
    kept = stabilize(sd.log(u) + sd.log(u + 2))
    assert not any(b.func.__name__ in ("log1p", "softplus") for b in bodies(kept))


def test_stable_pass_keeps_named_intermediates():
    w, x, b = T.scalar("w"), T.scalar("x"), T.scalar("b")
    dot = w * x + b
    f = stabilize(1 / (1 + sd.exp(-dot)))
    assert f.node.inputs == (dot.node,) and isinstance(f.node.attr("body"), sigmoid)


def test_a_mean_loss_fuses_forward_adjoint_and_gradient_sums_into_one_loop():
    w, b = T.scalar("w"), T.scalar("b")
    x, y = T.tensor("x", ("n",)), T.tensor("y", ("n",))
    loss = T.mean((w * x + b - y) ** 2)
    program = differentiate(loss, [w, b])
    verify(program)
    units = fuse(program)
    loops = [u for u in units if u.loop and u.space == ("n",)]
    assert len(loops) == 1
    ops_in_loop = [s.node.op for s in loops[0].stmts]
    assert ops_in_loop.count("sum") == 3  # the loss and both gradients, accumulated per sample
    assert any(s.origin is not None for s in loops[0].stmts)  # adjoints in the same loop


def test_broadcasts_are_index_maps_not_statements():
    X = T.tensor("X", ("n", 4))
    bias = T.tensor("bias", (4,))
    program = differentiate(T.sum(sd.relu(X + bias)), [bias])
    units = fuse(program)
    placed = {s.node.op for u in units for s in u.stmts}
    assert "broadcast" not in placed and sum(u.loop for u in units) == 1


def _mlp_program(classes=4):
    X, y = T.tensor("X", ("n", 3)), T.tensor("y", ("n",), dtype=int)
    W1, b1 = T.tensor("W1", (3, 5)), T.tensor("b1", (5,))
    W2, b2 = T.tensor("W2", (5, classes)), T.tensor("b2", (classes,))
    logits = sd.relu(X @ W1 + b1) @ W2 + b2
    return differentiate(sd.mean(sd.softmax_cross_entropy(logits, y)), [W1, b1, W2, b2])


def test_softmax_cross_entropy_is_one_loop_over_rows():
    program = _mlp_program()
    rows = [u for u in fuse(program) if u.stages]
    assert len(rows) == 1  # the row's maximum, exponentials, loss and adjoint: one pass
    ops = [s.node.op for s in rows[0].stmts]
    assert {"max", "take_along", "sum"} <= set(ops) and ops.count("sum") >= 3
    assert all(stage.space[0] == "n" for stage in rows[0].stages)
    source = emit_source(program)  # the kernel's text; no need to compile it
    assert "max6 = -math.inf" in source and "max6[" not in source  # a local of the row
    assert "dtake13 = -dsum15" in source and "dtake13[" not in source  # computed once


def test_a_loop_after_a_batch_sum_of_its_rows_stays_apart():
    x = T.tensor("x", ("n", 3))
    centred = x - T.sum(x, axis=0)  # every row needs every row's sum first
    program = differentiate(T.sum(sd.exp(centred) * x), [x])
    unit_of = {s.node.op + str(s.node.shape): k for k, u in enumerate(fuse(program))
               for s in u.stmts if s.origin is None}
    assert unit_of["sum(3,)"] != unit_of["elementwise('n', 3)"], str(program)


def test_a_value_read_directly_and_through_an_index_map_is_complete_first():
    """Regression: in h[:, ::-1] * h the product joined the loop computing h, as h is also a
    direct input, and read entries of h's row not yet computed (a wrong sum, no error)."""
    X = sd.tensor("X", ("n", 5)); w = sd.tensor("w", (5,))
    h = sd.tanh(X * w)
    f = sd.compile(sd.sum(h[:, ::-1] * h), wrt=[w], tier="kernel")
    rng = np.random.default_rng(0)
    data, w0 = rng.normal(size=(6, 5)), rng.normal(size=5)

    def loss(w):
        t = np.tanh(data * w)
        return np.sum(t[:, ::-1] * t)
    value, grads = f.value_and_grad(X=data, w=w0)
    assert np.isclose(value, loss(w0), rtol=1e-12)
    assert np.allclose(grads["w"], central(loss, w0), rtol=1e-6, atol=1e-8)

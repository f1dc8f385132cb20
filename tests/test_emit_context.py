"""The emit interface: op records write Numba code through the documented EmitContext only,
and the names they make up never collide with a model's input names."""
import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen.emit import _Emitter
from symdiff.optable import OPS, EmitContext
from differences import central

OPS_FOLDER = Path(sd.__file__).parent / "ops"
MEMBERS = {name for name in dir(EmitContext) if not name.startswith("_")} | \
    set(EmitContext.__annotations__)


def test_every_emit_rule_takes_the_context_as_e():
    for op, record in OPS.items():
        for field in ("emit", "in_loop"):
            rule = getattr(record, field)
            if rule is not None:
                first = next(iter(inspect.signature(rule).parameters))
                assert first == "e", f"{op}.{field}: the EmitContext parameter is {first!r}"


def test_op_records_use_only_the_emit_context():
    used = {}
    for path in OPS_FOLDER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "e":
                used.setdefault(node.attr, set()).add(path.name)
    outside = {attr: files for attr, files in used.items() if attr not in MEMBERS}
    assert not outside, f"emit rules reach past the EmitContext: {outside}"
    assert used, "the scan found no emit rule"


def test_the_emitter_implements_the_emit_context():
    for member in MEMBERS - set(EmitContext.__annotations__):
        assert callable(getattr(_Emitter, member, None)), member


def test_names_an_op_makes_up_never_take_an_input_name():
    """cumsum's and scatter_add's loop variables, a register accumulator and the label check
    each pick a local name: inputs named like them must not be shadowed (a user input `acc` once
    met an accumulator `acc`, and Numba failed to type the module)."""
    step = sd.tensor("step", ("n", 4)); m = sd.tensor("m", (4,))
    acc = sd.tensor("acc", (4, 3)); label = sd.tensor("label", ("n",), dtype=int)
    h = sd.cumsum(step * m, axis=1)
    logits = h @ acc + h[:, [0, 2, 3]]
    f = sd.compile(sd.mean(sd.softmax_cross_entropy(logits, label)), wrt=[m, acc])
    for stem in ("step", "m", "label"):  # the made-up names moved aside for the inputs
        assert re.search(rf"for {stem}_\d+ in ", f.source), stem

    rng = np.random.default_rng(3)
    data = dict(step=rng.normal(size=(6, 4)), label=rng.integers(0, 3, 6))
    params = dict(m=rng.normal(size=4), acc=rng.normal(size=(4, 3)))

    def loss(m, acc):  # an independent NumPy forward pass
        h = np.cumsum(data["step"] * m, axis=1)
        z = h @ acc + h[:, [0, 2, 3]]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(6), data["label"]].mean()

    value, grads = f.value_and_grad(**data, **params)
    assert np.isclose(value, loss(**params), rtol=1e-12)
    assert np.allclose(grads["m"], central(lambda q: loss(q, params["acc"]), params["m"]),
                       rtol=1e-6, atol=1e-8)
    assert np.allclose(grads["acc"], central(lambda a: loss(params["m"], a),
                                             params["acc"]), rtol=1e-6, atol=1e-8)


def _reverse_cumsum(a, axis):
    return np.flip(np.cumsum(np.flip(a, axis), axis=axis), axis)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_row_local_op_is_a_stage_of_the_loop_over_rows():
    """cumsum along an axis other than the batch's reads row i alone: its forward and its
    adjoint (a cumsum from the far end) run as stages of the one loop over the rows, between
    the elementwise stages, instead of splitting it; checked against an independent NumPy
    forward pass and central differences, on one chunk and on many."""
    X = sd.tensor("X", ("n", 3, 4)); w = sd.tensor("w", (4,))
    rows = sd.sum(sd.cumsum(sd.tanh(X * w), axis=2, reverse=True) ** 2, axis=(1, 2))
    f = sd.compile(sd.mean(rows), wrt=[w], tier="kernel")
    loops = f.kernel_source.split("def kernel(")[0]
    assert loops.count("def _loop") == 1
    assert "cumsum3[i, m, step] = cumsum3[i, m, step + 1] + tanh2[i, m, step]" in loops
    assert "dtanh2[i, m_2, step_2] = dtanh2[i, m_2, step_2 - 1] + dcumsum3[i, m_2, step_2]" \
        in loops

    rng = np.random.default_rng(5)
    w0 = rng.normal(size=4)
    for n in (7, 40_000):  # one chunk; many, on threads
        data = rng.normal(size=(n, 3, 4))

        def loss(w):
            return np.mean(np.sum(_reverse_cumsum(np.tanh(data * w), 2) ** 2, axis=(1, 2)))
        value, grads = f.value_and_grad(X=data, w=w0)
        assert np.isclose(value, loss(w0), rtol=1e-12)
        assert np.allclose(grads["w"], central(loss, w0), rtol=1e-6, atol=1e-8)


def test_a_row_local_op_gives_per_example_gradients():
    X = sd.tensor("X", ("n", 5)); w = sd.tensor("w", (5,))
    f = sd.compile(sd.sum(sd.cumsum(sd.exp(X * w), axis=1) ** 2, axis=1), wrt=[w],
                   batch=["X"], reduce=None, tier="kernel")
    rng = np.random.default_rng(6)
    data, w0 = rng.normal(size=(4, 5)), rng.normal(size=5) * 0.3
    per_example = f.grad(X=data, w=w0)["w"]
    for i in range(4):
        expected = central(lambda w: np.sum(np.cumsum(np.exp(data[i] * w)) ** 2), w0)
        assert np.allclose(per_example[i], expected, rtol=1e-6, atol=1e-8)

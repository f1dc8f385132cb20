"""Differential tests: random formulas and tensor models against independent oracles.

Formulas come from the whole grammar (tests/formula_grammar.py) and are judged against SymPy's
derivatives evaluated with mpmath at 50 digits (tests/formula_oracle.py); tensor models against
a NumPy forward pass written from each op's definition, differentiated by central differences
(tests/tensor_oracle.py). Every path is exercised: kernel and tape tiers, reduce mean/sum/None
at n = 1, 3 and 1000, __call__/grad/value_and_grad/sgd_step, jvp/hvp/hessian/jacobian, float32.

Each random test runs a fixed number of examples, derandomized so that CI is reproducible: a
quick slice in the default run, the full count under `pytest -m campaign` (tests/campaign.py);
set SYMDIFF_FUZZ=N to run N random examples per test instead (a campaign: see
tests/fuzz_campaign.py for one that collects every failure instead of stopping at the first).
Points where the answer is a convention (kinks, where boundaries) are left to the targeted
edge tests at the end, which state the documented answer in closed form.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import symdiff as sd
from campaign import CAMPAIGN, sizes
from differential_paths import (batch_path, jacobian_path, report, scalar_paths,
                                second_order_path)
from formula_grammar import MODEST_CONSTANTS, formulas, points
from formula_oracle import FormulaOracle
from tensor_oracle import TensorCase, tensor_case, tensor_problems

FUZZ = int(os.environ.get("SYMDIFF_FUZZ", "0"))


def runs(default: int, shrink: bool = False):
    """`default` derandomized examples, or SYMDIFF_FUZZ random ones. Shrinking recompiles a
    model per step (about a second each for kernels), so only the tape test shrinks; the
    campaign script shrinks what it finds."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + [Phase.shrink] * shrink
    return settings(max_examples=FUZZ or default, deadline=None, derandomize=not FUZZ,
                    database=None, print_blob=False, phases=phases,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _oracle(text, fmt="float64"):
    return FormulaOracle(text, fmt)


def _points(data, oracle, k):
    return [data.draw(points(oracle.names)) for _ in range(k)]


@pytest.mark.parametrize("examples", sizes(30, 300))
def test_formulas_on_the_tape(examples):
    """The tape tier needs no compile per model, so it sees the most formulas."""
    @runs(examples, shrink=True)
    @given(text=formulas(), data=st.data())
    def check(text, data):
        oracle = _oracle(text)
        problems = scalar_paths(text, oracle, _points(data, oracle, 3), "tape",
                                calls=("value_and_grad", "call", "grad", "sgd_step"))
        assert not problems, report(problems)
    check()


@pytest.mark.parametrize("examples", sizes(2, 8))
def test_formulas_in_kernels(examples):
    @runs(examples)
    @given(text=formulas(), data=st.data())
    def check(text, data):
        oracle = _oracle(text)
        problems = scalar_paths(text, oracle, _points(data, oracle, 3), "kernel",
                                calls=("value_and_grad", "call", "grad", "sgd_step"))
        assert not problems, report(problems)
    check()


@pytest.mark.parametrize("examples", sizes(1, 5))
def test_formulas_in_float32(examples):
    """float32 kernels, judged against the exact answer with float32's epsilon."""
    @runs(examples)
    @given(text=formulas(max_depth=5, constants=MODEST_CONSTANTS, folds=False), data=st.data())
    def check(text, data):
        oracle = _oracle(text, "float32")
        pts = [{k: float(np.float32(v)) for k, v in p.items()}
               for p in _points(data, oracle, 3)]
        problems = scalar_paths(text, oracle, pts, "kernel", "float32")
        assert not problems, report(problems)
    check()


def _batch_case(data, text, oracle):
    assume(oracle.names)
    names = list(oracle.names)
    batch = [n for n in names if data.draw(st.booleans())] or names[:1]
    scalars = {n: v for n, v in data.draw(points(names)).items() if n not in batch}
    return batch, scalars, data.draw(st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("tier, examples", sizes(8, 40, "tape") + sizes(1, 3, "kernel"))
@pytest.mark.parametrize("reduce", ["mean", "sum", None])
def test_formulas_over_batches(tier, examples, reduce):
    """One compiled model at n = 1, 3 and 1000; per-example gradients with reduce=None,
    batch inputs in wrt included (each sample's own d loss_i / d x_i)."""
    @runs(examples)
    @given(text=formulas(max_depth=6), data=st.data())
    def check(text, data):
        oracle = _oracle(text)
        batch, scalars, seed = _batch_case(data, text, oracle)
        problems = batch_path(text, oracle, batch, reduce, (1, 3, 1000), tier, scalars, seed)
        assert not problems, report(problems)
    check()


@pytest.mark.parametrize("tier, examples", sizes(12, 60, "tape") + sizes(1, 3, "kernel"))
def test_second_order(tier, examples):
    """jvp, hvp and hessian against SymPy's second derivatives."""
    @runs(examples)
    @given(text=formulas(max_depth=5), data=st.data(),
           directions=st.lists(st.sampled_from([1.0, -0.5, 2.0, 0.0]), min_size=4, max_size=4))
    def check(text, data, directions):
        oracle = _oracle(text)
        point = data.draw(points(oracle.names))
        problems = second_order_path(text, oracle, point, tier, directions)
        assert not problems, report(problems)
    check()


@pytest.mark.parametrize("examples", sizes(1, 3))
def test_jacobian(examples):
    @runs(examples)
    @given(text=formulas(max_depth=5), data=st.data())
    def check(text, data):
        oracle = _oracle(text)
        batch, scalars, seed = _batch_case(data, text, oracle)
        problems = jacobian_path(text, oracle, batch, scalars, "kernel", seed)
        assert not problems, report(problems)
    check()


# Tensor models: the tape tier serves scalar-per-sample models only (a matrix parameter or a
# matmul is refused with an ArgumentError by design), so these run on the kernel tier alone.
@pytest.mark.parametrize("per_example, dtype, examples", [
    *[pytest.param(False, "float64", *p.values, id=f"sum-{p.id}", marks=p.marks)
      for p in sizes(1, 2)],
    *[pytest.param(True, "float64", *p.values, id=f"per-example-{p.id}", marks=p.marks)
      for p in sizes(2, 6)],
    pytest.param(False, "float32", 1, id="float32", marks=CAMPAIGN)])
def test_tensor_models(per_example, dtype, examples):
    """Value, gradients and sgd_step of random tensor models against central differences
    of an independent NumPy forward pass. Per example, the gradients are the Jacobian's
    diagonal blocks (by the batch input X too), and models whose examples interact must be
    refused."""
    @runs(examples)
    @given(case=tensor_case(per_example=per_example, dtype=dtype))
    def check(case):
        problems = tensor_problems(case)
        assert not problems, "\n".join(problems)
    check()


@CAMPAIGN
@runs(1)
@given(case=tensor_case(per_example=False, dtype="float64", second_order=True))
def test_tensor_models_second_order(case):
    problems = tensor_problems(case)
    assert not problems, "\n".join(problems)


# Targeted edges: the points the random tests leave out (kinks, boundaries, zero bases,
# non-finite constants), each with its documented answer in closed form: relu'(0) = abs'(0)
# = 0, tied maxima share the gradient equally, where selects the adjoint of the branch taken
# (a NaN or inf in the other branch does not leak), 1/0 = inf and exp(1000) = inf as in IEEE
# arithmetic, a constant subexpression has a zero gradient, and 0**y = 0 for y > 0 with both
# partial derivatives 0.
LOG15, SIG = math.log(1.5), 1 / (1 + math.exp(-0.5))
EDGES = [
    ("x + x + x", dict(x=1.5), 4.5, dict(x=3.0)),
    ("2*x + x", dict(x=1.5), 4.5, dict(x=3.0)),
    ("w - (-w)", dict(w=1.5), 3.0, dict(w=2.0)),
    ("log(1 + where(z >= 0.3, x, 0.5))", dict(x=2.0, z=0.1), LOG15, dict(x=0.0, z=0.0)),
    ("exp(where(z >= 0.3, x, 0.5)) - 1", dict(x=2.0, z=0.1), math.expm1(0.5), dict(x=0.0, z=0.0)),
    ("log(sigmoid(where(z >= 0.3, x, 0.5)))", dict(x=2.0, z=0.1), math.log(SIG),
     dict(x=0.0, z=0.0)),
    ("log(1 + exp(where(z >= 0.3, x, 0.5)))", dict(x=2.0, z=0.1), math.log1p(math.exp(0.5)),
     dict(x=0.0, z=0.0)),
    ("x + exp(1000)", dict(x=1.0), math.inf, dict(x=1.0)),
    ("x + (-1)**0.5", dict(x=1.0), math.nan, dict(x=1.0)),
    ("0**x", dict(x=2.0), 0.0, dict(x=0.0)),
    ("sin(x - x)", dict(x=1.0), 0.0, dict(x=0.0)),
    ("exp(x*0)", dict(x=1.0), 1.0, dict(x=0.0)),
    ("sqrt(relu(x))", dict(x=-1.0), 0.0, dict(x=0.0)),
    ("sqrt(where(x > 0, x, 0))", dict(x=-1.0), 0.0, dict(x=0.0)),
    ("where(x > 0, log(x), x)", dict(x=-2.0), -2.0, dict(x=1.0)),
    ("x**y", dict(x=0.0, y=2.5), 0.0, dict(x=0.0, y=0.0)),
    ("x**2", dict(x=0.0), 0.0, dict(x=0.0)),
    ("x**0", dict(x=0.0), 1.0, dict(x=0.0)),
    ("where(x < x, 1, 2) * x", dict(x=3.0), 6.0, dict(x=2.0)),
    ("where((w/0) < 0.5, w, 0)", dict(w=1.0), 0.0, dict(w=0.0)),
    ("where((w/0) < 0.5, w, 0)", dict(w=-1.0), -1.0, dict(w=1.0)),
    ("x/0", dict(x=2.0), math.inf, dict(x=math.inf)),
    ("max(x, y, z)", dict(x=1.0, y=1.0, z=1.0), 1.0, dict(x=1 / 3, y=1 / 3, z=1 / 3)),
    ("min(x, y)", dict(x=2.0, y=2.0), 2.0, dict(x=0.5, y=0.5)),
    ("max(x, y) + min(x, y)", dict(x=2.0, y=2.0), 4.0, dict(x=1.0, y=1.0)),
    ("relu(x)", dict(x=0.0), 0.0, dict(x=0.0)),
    ("abs(x)", dict(x=0.0), 0.0, dict(x=0.0)),
    ("where(x >= 0, x, 0)", dict(x=0.0), 0.0, dict(x=1.0)),
    ("where(x > 0, x, 0)", dict(x=0.0), 0.0, dict(x=0.0)),
    ("relu(x - x) + x", dict(x=1.0), 1.0, dict(x=1.0)),
    # minimal examples the campaign found (tests/fuzz_campaign.py)
    ("where(y, w, y ** w)", dict(y=-1.0, w=0.5), 0.5, dict(y=0.0, w=1.0)),
    ("max(1, w, w ** x)", dict(w=0.0, x=1e-8), 1.0, dict(w=0.0, x=0.0)),
    ("where(y, y, x / 0)", dict(y=-1.5, x=-2.0), -1.5, dict(y=1.0, x=0.0)),
    ("where(w < x, x ** x, x)", dict(w=-1.5, x=-2.0), -2.0, dict(w=0.0, x=1.0)),
    ("x / x", dict(x=0.0), math.nan, dict(x=math.nan)),       # 0/0 is NaN (README)
    ("(1 - 1) / y", dict(y=0.0), math.nan, dict(y=math.nan)),
    ("where(x <= 0, 1, 0)", dict(x=1.0), 0.0, dict(x=0.0)),  # a comparison's value
    ("(-1) ** w", dict(w=1.0), -1.0, dict(w=math.nan)),      # log(-1) is NaN, not I*pi
]


@pytest.mark.parametrize("tier", ["kernel", "tape"])
@pytest.mark.parametrize("text, point, value, grads", EDGES, ids=[e[0] for e in EDGES])
def test_edges(text, point, value, grads, tier):
    f = sd.compile(text, wrt=list(grads), tier=tier)
    got_value, got_grads = f.value_and_grad(**point)
    np.testing.assert_allclose(got_value, value, rtol=1e-15, err_msg=f"{text} at {point}")
    for name, expected in grads.items():
        np.testing.assert_allclose(got_grads[name], expected, rtol=1e-15,
                                   err_msg=f"d/d{name} of {text} at {point} ({tier})")


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_jvp_ignores_the_branch_not_taken(tier):
    """The exponent's tangent is 0 here, so log(x) of a negative x must not reach the jvp."""
    f = sd.compile("x ** where(z, 1, z)", wrt=["x", "z"], tier=tier)
    assert f.jvp({"x": 1.0, "z": 0.0}, x=-0.39, z=-1.3) == (-0.39, 1.0)


@pytest.mark.parametrize("case", [
    # loss_i depends on every row through a mean over the batch: refused (it used to return
    # the gradient of row i's own path alone)
    TensorCase("abs", "batch_mean", "squares", None, 1, 2, 1, 3, seed=0),
    # a parameter broadcast against the transposed batch
    TensorCase("sigmoid", "transpose", "take_log_softmax", None, 1, 3, 1, 3, seed=554),
    # examples that interact through H @ H.T, reversed rows, permuted rows: each returned an
    # array that was neither refused nor d value_i / d X[i] when X itself was in wrt
    TensorCase("tanh", "gram", "squares", None, 2, 3, 2, 3, seed=1, by_input=True),
    TensorCase("tanh", "reverse", "squares", None, 2, 3, 2, 5, seed=1, static=True,
               by_input=True),
    TensorCase("tanh", "permute", "squares", None, 2, 3, 2, 5, seed=1, static=True,
               by_input=True),
    # the per-example gradient by the batch input, symbolic and static batch sizes
    TensorCase("relu", "softmax", "cross_entropy", None, 2, 2, 3, 3, seed=2, by_input=True),
    TensorCase("sin", "outer", "bce", None, 2, 2, 2, 5, seed=3, static=True, by_input=True),
], ids=["coupled-examples", "transposed-broadcast", "gram-rows", "reversed-rows",
        "permuted-rows", "by-batch-input", "by-batch-input-static"])
def test_tensor_cases_found_by_the_campaign(case):
    problems = tensor_problems(case)
    assert not problems, "\n".join(problems)


def test_repeated_terms_at_scale():
    """A thousand repeats of one product: the adjoint of x is a sum of a thousand y's."""
    f = sd.compile(" + ".join(["x*y"] * 1000), wrt=["x", "y"])
    value, grads = f.value_and_grad(x=0.5, y=3.0)
    assert (value, grads) == (1500.0, {"x": 3000.0, "y": 500.0})


def test_constant_model_compiles():
    """A formula without inputs is a constant model: its value, and no gradients."""
    f = sd.compile("2 + 3", wrt=[])
    assert f.value_and_grad() == (5.0, {})

"""Named regression tests: each failure class random testing found, with its minimal example.

Expected values are closed forms worked out by hand (or NumPy's IEEE arithmetic for the
values), never symdiff's own evaluation. Scalar formulas run on both tiers.
"""
import math

import numpy as np
import pytest

import symdiff as sd

TIERS = ("kernel", "tape")


def on_both_tiers(formula, wrt, **arguments):
    """(value, gradients) of `formula` from each tier; they must agree to the bit."""
    results = [sd.compile(formula, wrt=wrt, tier=tier).value_and_grad(**arguments)
               for tier in TIERS]
    (v1, g1), (v2, g2) = results
    assert np.array_equal(v1, v2, equal_nan=True), (formula, v1, v2)
    for w in wrt:
        assert np.array_equal(g1[w], g2[w], equal_nan=True), (formula, w, g1[w], g2[w])
    return results[0]


@pytest.mark.parametrize("formula, wrt, at, value, grads", [
    ("x + x + x", ["x"], {"x": 1.5}, 4.5, {"x": 3.0}),
    ("2*x + x", ["x"], {"x": 1.5}, 4.5, {"x": 3.0}),
    ("w - (-w)", ["w"], {"w": 1.5}, 3.0, {"w": 2.0}),
])
def test_repeated_terms_whose_adjoint_is_a_sum_of_constants(formula, wrt, at, value, grads):
    # was: AttributeError: 'float' object has no attribute 'node'
    assert on_both_tiers(formula, wrt, **at) == (value, grads)


def test_a_thousand_repeated_products():
    f = sd.compile(" + ".join(["x*y"] * 1000), wrt=["x", "y"])
    value, grads = f.value_and_grad(x=1.5, y=-2.0)
    assert value == pytest.approx(-3000.0, rel=1e-12)
    assert grads == pytest.approx({"x": -2000.0, "y": 1500.0}, rel=1e-12)


@pytest.mark.parametrize("formula, taken, expected, slope", [
    # where(z >= 0.3, x, 0.5) at z = 0.1 is 0.5: the rewrite must not drop the where
    ("log(1 + where(z >= 0.3, x, 0.5))", False, math.log(1.5), 0.0),
    ("log(1 + where(z >= 0.3, x, 0.5))", True, math.log(3.0), 1 / 3),
    ("exp(where(z >= 0.3, x, 0.5)) - 1", False, math.expm1(0.5), 0.0),
    ("exp(where(z >= 0.3, x, 0.5)) - 1", True, math.expm1(2.0), math.exp(2.0)),
    ("log(sigmoid(where(z >= 0.3, x, 0.5)))", False, -math.log1p(math.exp(-0.5)), 0.0),
    ("log(sigmoid(where(z >= 0.3, x, 0.5)))", True, -math.log1p(math.exp(-2.0)),
     1 / (1 + math.exp(2.0))),
    ("log(1 + exp(where(z >= 0.3, x, 0.5)))", False, math.log1p(math.exp(0.5)), 0.0),
    ("log(1 + exp(where(z >= 0.3, x, 0.5)))", True, math.log1p(math.exp(2.0)),
     1 / (1 + math.exp(-2.0))),
])
def test_stable_rewrites_keep_selects_and_their_conditions(formula, taken, expected, slope):
    value, grads = on_both_tiers(formula, ["x"], x=2.0, z=0.5 if taken else 0.1)
    assert value == pytest.approx(expected, rel=1e-14)
    assert grads["x"] == pytest.approx(slope, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("formula, value", [
    ("x + exp(1000)", math.inf), ("x + (-1)**0.5", math.nan), ("x - 1/0", -math.inf)])
def test_non_finite_constants_compile_on_every_tier(formula, value):
    got, grads = on_both_tiers(formula, ["x"], x=1.5)
    assert got == value or math.isnan(value) and math.isnan(got)
    assert grads == {"x": 1.0}
    got32, grads32 = sd.compile(formula, wrt=["x"], dtype="float32").value_and_grad(x=1.5)
    assert got32.dtype == np.float32 and np.array_equal(got32, np.float32(value), equal_nan=True)
    assert grads32["x"] == np.float32(1.0)


@pytest.mark.parametrize("formula, value", [("sin(x - x)", 0.0), ("exp(x*0)", 1.0),
                                            ("x/x", 1.0), ("(x + 1) - x", 1.0)])
def test_constant_subexpressions_compile_with_zero_gradients(formula, value):
    assert on_both_tiers(formula, ["x"], x=0.75) == (value, {"x": 0.0})


def test_a_constant_model_compiles():
    f = sd.compile("3.5", wrt=[])
    assert f() == 3.5 and f.value_and_grad() == (3.5, {})
    batch = sd.compile("0*x + 2", wrt=["x"], batch=["x"])
    value, grads = batch.value_and_grad(x=np.array([1.0, 2.0, 3.0]))
    assert value == 2.0 and np.array_equal(grads["x"], np.zeros(3))


@pytest.mark.parametrize("formula", ["sqrt(relu(x))", "sqrt(where(x > 0, x, 0))",
                                     "sqrt(max(x, 0))", "where(x > 0, sqrt(x), 0)",
                                     "where(x > 0, x**0.5 + log(x), 0)"])
def test_no_nan_from_the_branch_not_taken(formula):
    # sqrt' is inf at 0 (and NaN at -1); the select passes 0 where the branch was not taken,
    # and a product with a select's 0 stays 0: never 0 * inf or 0 * NaN
    assert on_both_tiers(formula, ["x"], x=-1.0) == (0.0, {"x": 0.0})


def test_relu_and_abs_at_zero_select_not_mask():
    # d/dx sqrt(relu(x)) at 0: the branch x > 0 is not taken, so 0, not inf * 0 = nan
    assert on_both_tiers("sqrt(relu(x))", ["x"], x=0.0) == (0.0, {"x": 0.0})
    assert on_both_tiers("sqrt(abs(x))", ["x"], x=0.0) == (0.0, {"x": 0.0})


def test_max_reduction_and_gather_adjoints_select():
    x, labels = sd.tensor("x", (2, 3)), sd.tensor("labels", (2,), int)
    top = sd.compile(sd.sum(sd.sqrt(sd.max(x, axis=1))), wrt=[x])
    value, grads = top.value_and_grad(x=np.array([[-1.0, 0.0, 0.0], [4.0, 1.0, 4.0]]))
    assert value == 2.0
    # row 0: sqrt'(0) = inf split between the two tied maxima, 0 (not nan) elsewhere
    np.testing.assert_array_equal(grads["x"], [[0.0, np.inf, np.inf], [0.125, 0.0, 0.125]])
    picked = sd.compile(sd.sum(sd.sqrt(sd.take_along(x, labels))), wrt=[x])
    _, grads = picked.value_and_grad(x=np.array([[0.0, 1.0, 4.0], [9.0, 0.0, 1.0]]),
                                     labels=np.array([0, 2]))
    np.testing.assert_array_equal(grads["x"], [[np.inf, 0.0, 0.0], [0.0, 0.0, 0.5]])


@pytest.mark.parametrize("formula, at, value, grads", [
    ("x**y", {"x": 0.0, "y": 2.5}, 0.0, {"x": 0.0, "y": 0.0}),
    ("x**y", {"x": 0.0, "y": 0.0}, 1.0, {"x": 0.0, "y": 0.0}),
    ("x**y", {"x": 0.0, "y": 1.0}, 0.0, {"x": 1.0, "y": 0.0}),
    ("x**y", {"x": 2.0, "y": 3.0}, 8.0, {"x": 12.0, "y": 8.0 * math.log(2.0)}),
    ("x**2.5", {"x": 0.0}, 0.0, {"x": 0.0}),
    ("x**0.5", {"x": 0.0}, 0.0, {"x": math.inf}),
])
def test_powers_at_zero_bases(formula, at, value, grads):
    assert on_both_tiers(formula, sorted(at), **at) == (value, grads)


def test_zero_to_a_variable_power():
    assert on_both_tiers("0**x", ["x"], x=2.0) == (0.0, {"x": 0.0})
    assert on_both_tiers("x * 0**y", ["x", "y"], x=3.0, y=0.0) == (3.0, {"x": 1.0, "y": 0.0})


def test_folded_comparisons_on_the_tape():
    # x < x folds to false: where(false, 1, 2) * x = 2x
    assert on_both_tiers("where(x < x, 1, 2) * x", ["x"], x=2.0) == (4.0, {"x": 2.0})
    assert on_both_tiers("where(x <= x, x, 2)", ["x"], x=3.0) == (3.0, {"x": 1.0})


def test_division_by_a_constant_zero_is_ieee():
    # w/0 is +inf for w > 0 and -inf for w < 0
    assert on_both_tiers("where((w/0) < 0.5, w, 0)", ["w"], w=2.0) == (0.0, {"w": 0.0})
    assert on_both_tiers("where((w/0) < 0.5, w, 0)", ["w"], w=-2.0) == (-2.0, {"w": 1.0})
    assert on_both_tiers("x/0", ["x"], x=1.0)[0] == math.inf


@pytest.mark.parametrize("formula, share", [("max(x, y, z)", 1 / 3), ("min(x, y, z)", 1 / 3),
                                            ("max(x, y, z) * 1", 1 / 3)])
def test_tied_gradients_sum_to_the_incoming_one(formula, share):
    value, grads = on_both_tiers(formula, ["x", "y", "z"], x=1.0, y=1.0, z=1.0)
    assert value == 1.0
    assert grads == pytest.approx({"x": share, "y": share, "z": share}, rel=1e-15)
    assert sum(grads.values()) == pytest.approx(1.0, rel=1e-15)


def test_two_way_ties_and_no_tie():
    assert on_both_tiers("max(x, y)", ["x", "y"], x=2.0, y=2.0) == (2.0, {"x": 0.5, "y": 0.5})
    assert on_both_tiers("max(x, y, z)", ["x", "y", "z"], x=1.0, y=3.0, z=3.0) \
        == (3.0, {"x": 0.0, "y": 0.5, "z": 0.5})


def test_two_tensors_with_one_name_and_two_shapes_are_named_in_the_error():
    a, b = sd.tensor("A", (2, 3)), sd.tensor("A", (3, 2))
    with pytest.raises(sd.ShapeError, match=r"'A'.*\(2, 3\).*\(3, 2\)"):
        sd.compile(sd.sum(a) + sd.sum(b), wrt=["A"])


def test_per_sample_gradients_by_a_batch_input():
    # loss_i = w * x_i**2: d loss_i / d x_i = 2 w x_i (what vmap(grad) gives), d loss_i/dw = x_i**2
    f = sd.compile("w * x**2", wrt=["x", "w"], batch=["x"], reduce=None)
    x = np.array([1.0, -2.0, 3.0])
    values, grads = f.value_and_grad(x=x, w=0.5)
    np.testing.assert_array_equal(values, 0.5 * x**2)
    np.testing.assert_array_equal(grads["x"], 2 * 0.5 * x)
    np.testing.assert_array_equal(grads["w"], x**2)


# Found by the differential campaign (tests/test_differential.py, tests/fuzz_campaign.py)


@pytest.mark.parametrize("formula, at, grads", [
    ("where(y, w, y ** w)", {"y": -1.0, "w": 0.5}, {"y": 0.0, "w": 1.0}),
    ("max(1, w, w ** x)", {"w": 0.0, "x": 1e-8}, {"w": 0.0, "x": 0.0}),
    ("where(y, y, x / 0)", {"x": -2.0, "y": -1.5}, {"x": 0.0, "y": 1.0}),
])
def test_a_select_zero_times_a_nan_local_derivative_is_zero(formula, at, grads):
    # the untaken branch's own derivative is NaN or inf there; its incoming adjoint is a 0
    assert on_both_tiers(formula, sorted(at), **at)[1] == grads


def test_forward_mode_ignores_the_branch_not_taken_too():
    for tier in TIERS:
        f = sd.compile("x ** where(z, 1, z)", wrt=["x", "z"], tier=tier)
        assert f.jvp({"x": 1.0, "z": 0.0}, x=-0.39, z=-1.3) == (-0.39, 1.0)


@pytest.mark.parametrize("formula, at", [("x / x", {"x": 0.0}), ("(1 - 1) / y", {"y": 0.0}),
                                         ("x - x", {"x": math.inf}), ("0 * x", {"x": math.inf})])
def test_no_simplification_that_ieee_would_not_make(formula, at):
    # SymPy would fold these to 1 or 0; IEEE arithmetic (and NumPy) gives NaN
    value, _ = on_both_tiers(formula, sorted(at), **at)
    assert math.isnan(value)


def test_the_log_of_a_negative_constant_base_is_a_real_nan():
    # d/dw (-1)**w = (-1)**w * log(-1): SymPy's log(-1) is i*pi; a real kernel gives NaN
    value, grads = on_both_tiers("(-1) ** w", ["w"], w=1.0)
    assert value == -1.0 and isinstance(grads["w"], float) and math.isnan(grads["w"])


@pytest.mark.parametrize("formula, x, value", [("sqrt(x < 0)", -2.0, 1.0),
                                               ("where(x <= 0, 1.0, 0.0)", -1.0, 1.0)])
def test_a_comparison_inside_the_value_is_zero_or_one_with_no_gradient(formula, x, value):
    got, grads = on_both_tiers(formula, ["x"], x=x)
    assert type(got) is float and got == value and grads == {"x": 0.0}


@pytest.mark.parametrize("model", ["x <= 0", "x < y", lambda x, y: x < y])
def test_a_comparison_as_the_model_is_refused(model):
    # it used to return 0.0 or 1.0 with zero gradients, as if it were a differentiable model
    with pytest.raises(sd.DifferentiationError, match="is a comparison, which has no derivative"):
        sd.compile(model, wrt=["x"])


def test_per_example_gradients_of_a_parameter_broadcast_against_a_transposed_batch():
    X, c = sd.tensor("X", ("n", 3)), sd.tensor("c", (3,))
    per_example = sd.sum(sd.transpose(sd.transpose(X) * sd.reshape(c, (3, 1))) ** 2, axis=1)
    f = sd.compile(per_example, wrt=[c], reduce=None)  # loss_i = sum_j (X_ij c_j)^2
    x, cv = np.arange(6.0).reshape(2, 3), np.array([0.5, -1.0, 2.0])
    values, grads = f.value_and_grad(X=x, c=cv)
    np.testing.assert_allclose(values, np.sum((x * cv) ** 2, axis=1), rtol=1e-15)
    np.testing.assert_allclose(grads["c"], 2 * x**2 * cv, rtol=1e-15)  # row i: d loss_i / dc


def test_per_example_gradients_of_coupled_examples_are_refused():
    X, w = sd.tensor("X", ("n", 2)), sd.tensor("w", (2,))
    H = X * w
    coupled = sd.sum(H * sd.mean(H, axis=0, keepdims=True), axis=1)
    with pytest.raises(sd.DifferentiationError, match=r"examples interact in sum.*batch 'n'"):
        sd.compile(coupled, wrt=[w], reduce=None)


def test_sgd_step_on_a_model_with_nothing_to_update_says_so():
    with pytest.raises(sd.ArgumentError, match="nothing to update: wrt is empty"):
        sd.compile("0.5", wrt=[]).sgd_step(0.1)


def test_a_select_zero_seen_through_a_negation_or_a_sum():
    # the adjoint into asin is -(a select's 0); asin' is NaN at z = 1.28
    assert on_both_tiers("where(w, x, -asin(z))", ["w", "x", "z"], w=0.5, x=1.0, z=1.28)[1] \
        == {"w": 0.0, "x": 1.0, "z": 0.0}
    assert on_both_tiers("where(w, x, 2*asin(z) + asin(z))", ["w", "x", "z"], w=0.5, x=1.0,
                         z=1.28)[1] == {"w": 0.0, "x": 1.0, "z": 0.0}


def test_a_hessian_entry_does_not_take_nan_from_another_direction():
    # d2/dx2 x**y = y (y - 1) x**(y - 2) = 2 at y = 2, x < 0, although d/dy (x**y) is NaN there
    for tier in TIERS:
        H = sd.hessian(sd.compile("x**y", wrt=["x", "y"], tier=tier))(x=-0.375, y=2.0)
        assert H[0, 0] == 2.0 and math.isnan(H[1, 1])


def test_second_derivatives_where_a_guarded_gradient_is_zero():
    # at w = 0 the adjoint into max is exactly 0; d2/dy dw = 1/u**2 = 0.25 all the same
    # (a guard that made the product 0 there used to make its derivative 0 too)
    for tier in TIERS:
        H = sd.hessian(sd.compile("atan2(relu(max(y, x)), w)", wrt=["y", "x", "w"],
                                  tier=tier))(y=2.0, x=-1.0, w=0.0)
        np.testing.assert_array_equal(H, [[0, 0, 0.25], [0, 0, 0], [0.25, 0, 0]])


@pytest.mark.parametrize("formula, at, grads", [
    ("where(1 > 1, atan2(y, 1) / 0, x)", {"x": 2.5, "y": 1e-8}, {"x": 1.0, "y": 0.0}),
    ("where(2 > x, (-2.5 + -2.5) ** min(z, 10, z), w)", {"w": -1.7, "x": 2.7, "z": 0.7},
     {"w": 1.0, "x": 0.0, "z": 0.0}),
])
def test_constant_conditions_and_nan_local_derivatives_in_the_branch_not_taken(formula, at,
                                                                                grads):
    assert on_both_tiers(formula, sorted(at), **at)[1] == grads


@pytest.mark.parametrize("formula, at", [("where(x, x, y ** y)", {"x": 1.99, "y": -0.478}),
                                         ("where(w, x, 0.5 ** y ** y)",
                                          {"w": 1.0, "x": -1.0, "y": -1.904})])
def test_a_guarded_adjoint_is_itself_a_select_zero_for_the_next_rule(formula, at):
    # the adjoint into y**y is a guarded product, 0 where the where's adjoint is: the guard
    # carries on into pow's own rule (d/dy y**y is NaN at y < 0)
    assert on_both_tiers(formula, sorted(at), **at)[1]["y"] == 0.0


def test_a_select_zero_seen_through_a_batch_sum():
    # x is a parameter broadcast over the batch: its adjoint is the batch sum of select zeros
    for tier in TIERS:
        f = sd.compile("where(z, y, w * sqrt(x))", wrt=["z", "y", "x", "w"], batch=["w"],
                       tier=tier)
        _, grads = f.value_and_grad(z=-1.0, y=-2.5, x=-2.7, w=np.array([2.4, 1.0]))
        assert grads["x"] == 0.0 and grads["y"] == 1.0


@pytest.mark.parametrize("formula, at", [
    ("where(x, w, x ** x)", {"x": -1.25, "w": 0.945}),
    ("where(x, min(acos(z / z), z), w)", {"x": 2.7, "z": -2.97, "w": -0.16}),
    ("where(0.5 >= abs(y), (w - 0 ** 0) ** z, x)", {"y": 2.54, "w": -1.45, "z": -1.53, "x": 2.69}),
])
def test_second_derivatives_through_a_branch_not_taken_whose_own_slope_is_nan(formula, at):
    # each model is one input in the branch taken; the other branch's second derivative is NaN
    # there (d2/dx2 x**x at x < 0, acos'' at 1, a negative base's log): the guard's own slope
    # is 0 where its adjoint is, so the Hessian is exactly 0
    for tier in TIERS:
        H = sd.hessian(sd.compile(formula, wrt=sorted(at), tier=tier))(**at)
        np.testing.assert_array_equal(H, np.zeros((len(at), len(at))))


@pytest.mark.parametrize("formula, batch", [
    ("where(x < -3 ** x, z * (-1) ** 0.5 * 0, 2)", []),
    ("where(z, x, 1e-300 ** z * 0)", ["z"]),
])
def test_a_select_zero_times_a_constant_zero_stays_a_select_zero(formula, batch):
    # the where's 0 times the literal 0 folds to a constant 0 adjoint; the NaN (or inf*0)
    # local derivative behind it must not turn it into NaN
    for tier in TIERS:
        f = sd.compile(formula, wrt=["x", "z"], batch=batch, tier=tier)
        at = {"x": 1.0, "z": np.array([-2.55]) if batch else 1e-8}
        _, grads = f.value_and_grad(**at)
        assert float(np.sum(grads["z"])) == 0.0


def test_forward_mode_and_second_order_of_a_float32_model():
    # the tangent inputs were float64 whatever the model's dtype: "inputs mix float32 and
    # float64". f = sum(w**3): jvp along v is 3 w**2 . v, H v = 6 w * v
    w = sd.tensor("w", (2,), dtype="float32")
    f = sd.compile(sd.sum(w * w * w), wrt=[w])
    at = np.array([1.0, -2.0], np.float32)
    v = np.array([0.5, 1.0], np.float32)
    value, derivative = f.jvp({"w": v}, w=at)
    assert (value, derivative) == (-7.0, 3 * 0.5 + 12 * 1.0)
    hv = f.hvp({"w": v}, w=at)["w"]
    assert hv.dtype == np.float32 and hv.tolist() == [3.0, -12.0]


def test_a_private_step_of_a_float32_model():
    # the clipping norm C was a float64 input of a float32 Program: "inputs mix float32 and
    # float64". Expected: the mean of per-example gradients, each clipped to norm 1 (NumPy)
    X = sd.tensor("X", ("n", 3), dtype="float32")
    w = sd.tensor("w", (3,), dtype="float32")
    t = sd.tensor("t", ("n",), dtype="float32")
    f = sd.compile(sd.mean(sd.binary_cross_entropy_with_logits(X @ w, t)), wrt=[w])
    rng = np.random.default_rng(1)
    Xv, tv = rng.normal(size=(8, 3)).astype(np.float32), (rng.random(8) < 0.5).astype(np.float32)
    W = np.zeros(3, np.float32)
    f.step(sd.optim.SGD(lr=0.5, per_example_clip=1.0), X=Xv, t=tv, w=W)
    G = (0.5 - tv)[:, None] * Xv.astype(np.float64)  # sigmoid(0) = 1/2
    G *= np.minimum(1.0, 1.0 / np.linalg.norm(G, axis=1))[:, None]
    np.testing.assert_allclose(W, -0.5 * G.mean(axis=0), rtol=1e-6)


def test_the_mixed_second_derivative_of_a_power_at_exponent_zero():
    # d2/dx dw x**w = x**(w - 1) (1 + w log x) = 1/x at w = 0; the slope w*x**(w - 1) was
    # selected to 0 wherever w = 0, which cut its derivative by w there
    for tier in TIERS:
        H = sd.hessian(sd.compile("x**w", wrt=["x", "w"], tier=tier))(x=1.25, w=0.0)
        np.testing.assert_allclose(H, [[0.0, 0.8], [0.8, math.log(1.25) ** 2]], rtol=1e-15)


def test_a_sum_over_the_batch_of_a_square_array_is_not_read_row_by_row():
    """Regression: the column sums of an (n, n) array have shape (n,), like a value per row;
    row fusion read them in the loop that was still summing them (NameError in the kernel)."""
    x = sd.tensor("x", ("n", "n"))
    f = sd.compile(sd.sum(sd.sum(x, axis=0) * sd.sum(x, axis=1)), wrt=[x])
    a = np.arange(25.0).reshape(5, 5) % 7 - 3
    value, grads = f.value_and_grad(x=a)
    assert value == np.sum(a.sum(0) * a.sum(1))  # small integers: exact
    np.testing.assert_array_equal(grads["x"], a.sum(1)[None, :] + a.sum(0)[:, None])


def test_clipping_a_gradient_whose_squared_norm_overflows():
    """Every entry of the gradient is 1e200: its norm over three entries is sqrt(3) 1e200, but
    the squares pass float64's range, and a clipped step once took the norm as inf and scaled
    the update to zero, on both tiers. Clipped to norm 1, each entry of the step is
    -lr / sqrt(3), by hand. The kernel tier is also checked through a vector parameter."""
    models = [(sd.compile("1e200*w0 + 1e200*w1 + 1e200*b", wrt=["w0", "w1", "b"], tier=tier),
               {"w0": np.zeros(()), "w1": np.zeros(()), "b": np.zeros(())}) for tier in TIERS]
    w, b = sd.tensor("w", (2,)), sd.scalar("b")
    models.append((sd.compile(sd.sum(1e200 * w) + 1e200 * b, wrt=[w, b]),
                   {"w": np.zeros(2), "b": np.zeros(())}))
    for f, params in models:
        f.step(sd.optim.SGD(0.5, clip_norm=1.0), **params)
        entries = np.concatenate([np.ravel(v) for v in params.values()])
        np.testing.assert_allclose(entries, -0.5 / math.sqrt(3.0), rtol=1e-15)


def test_per_example_clipping_of_an_example_whose_squared_norm_overflows():
    """Example 0's gradient by (w, b) is (x_0, 1) with x_0 = 1e200: its squared norm passes
    float64's range, and the per-example factor C / sqrt(inf) = 0 dropped the example instead
    of clipping it to norm C. Expected by hand (math.hypot): each example's gradient times
    min(1, C / |g_i|), then the mean. The kernel tier is also checked through a matrix
    weight, whose norm comes from its factors |x_i| |d_i|."""
    xs, C, lr = np.array([1e200, 0.3, -2.0]), 1.0, 0.5
    expected = np.zeros(2)
    for x in xs:
        norm = math.hypot(x, 1.0)
        expected += np.array([x, 1.0]) * min(1.0, C / norm) / len(xs)
    for tier in TIERS:
        f = sd.compile("w * x + b", wrt=["w", "b"], batch=["x"], tier=tier)
        params = {"w": np.zeros(()), "b": np.zeros(())}
        f.step(sd.optim.SGD(lr, per_example_clip=C), x=xs, **params)
        np.testing.assert_allclose([params["w"], params["b"]], -lr * expected, rtol=1e-14,
                                   err_msg=tier)
    X, W = sd.tensor("X", ("n", 2)), sd.tensor("W", (2, 2))
    f = sd.compile(sd.mean(sd.sum(X @ W, axis=1)), wrt=[W])
    rows = np.array([[1e200, 1e200], [0.25, -0.125]])
    Wv = np.zeros((2, 2))
    f.step(sd.optim.SGD(lr, per_example_clip=C), X=rows, W=Wv)
    # example i's gradient is outer(x_i, (1, 1)), of norm |x_i| sqrt(2)
    grads = [np.outer(x, np.ones(2)) for x in rows]
    norms = [math.hypot(*x) * math.sqrt(2.0) for x in rows]
    mean = sum(g * min(1.0, C / n) for g, n in zip(grads, norms)) / 2
    np.testing.assert_allclose(Wv, -lr * mean, rtol=1e-14)


def test_per_example_gradients_through_a_batch_statistic_of_data_not_differentiated():
    # w * mean(X, axis=0) is the same for every example: its adjoint needs a row per example.
    # The shape-based rule took it for a per-example value and refused the model ("a parameter
    # enters"); the example-axis pass reads it as parameter-only. Expected: x_i * mean(X).
    X, w = sd.tensor("X", ("n", 3)), sd.tensor("w", (3,))
    f = sd.compile(sd.sum(X * (w * sd.mean(X, axis=0)), axis=1), wrt=[w], reduce=None)
    x = np.random.default_rng(0).normal(size=(4, 3))
    _, grads = f.value_and_grad(X=x, w=np.ones(3))
    np.testing.assert_allclose(grads["w"], x * x.mean(axis=0), rtol=1e-14)
    with pytest.raises(sd.DifferentiationError, match="examples interact in sum"):
        sd.compile(sd.sum(X * (w * sd.mean(X, axis=0)), axis=1), wrt=[X], reduce=None)


def test_an_int_and_an_array_apart_put_the_array_axis_first():
    """On a (5, 6, 4) tensor, X[3, 2:, [1, 3]] had shape (4, 2); NumPy gives (2, 4): an int
    beside an array index is an advanced index too, and advanced indices a slice separates
    move to the front. Entry [i, j] is X[3, 2 + j, (1, 3)[i]]: of arange, 72 + 4 (2 + j) + c."""
    X, C = sd.tensor("X", (5, 6, 4)), sd.tensor("C", (2, 4))
    y = X[3, 2:, [1, 3]]
    assert y.shape == (2, 4)
    f = sd.compile(sd.sum(y * C), wrt=[X], aux={"y": y})
    c = np.arange(1.0, 9.0).reshape(2, 4)
    value, grads, aux = f.value_and_grad(X=np.arange(120.0).reshape(5, 6, 4), C=c)
    np.testing.assert_array_equal(aux["y"], [[81, 85, 89, 93], [83, 87, 91, 95]])
    assert value == np.sum(aux["y"] * c)
    want = np.zeros((5, 6, 4))
    want[3, 2:, 1], want[3, 2:, 3] = c[0], c[1]
    np.testing.assert_array_equal(grads["X"], want)


def test_two_integer_arrays_index_together():
    """X[[0, 1], :, [2, 3]] was refused (one integer array per subscript); NumPy broadcasts
    the arrays together: entry [i, j] is X[(0, 1)[i], j, (2, 3)[i]], the array axis first."""
    X, C = sd.tensor("X", (5, 6, 4)), sd.tensor("C", (2, 6))
    y = X[[0, 1], :, [2, 3]]
    assert y.shape == (2, 6)
    f = sd.compile(sd.sum(y * C), wrt=[X], aux={"y": y})
    c = np.arange(1.0, 13.0).reshape(2, 6)
    value, grads, aux = f.value_and_grad(X=np.arange(120.0).reshape(5, 6, 4), C=c)
    np.testing.assert_array_equal(aux["y"], [[2 + 4 * j for j in range(6)],
                                             [24 + 3 + 4 * j for j in range(6)]])
    assert value == np.sum(aux["y"] * c)
    want = np.zeros((5, 6, 4))
    want[0, :, 2], want[1, :, 3] = c[0], c[1]
    np.testing.assert_array_equal(grads["X"], want)


def test_a_per_example_gradient_by_a_batch_input_the_value_does_not_read():
    # where(x > 3, 0, 0) folds to 0, so the value does not read x: its per-example gradient is
    # zeros of x's own shape (n,), not a parameter's (n, n), which the tape refused
    for tier in TIERS:
        f = sd.compile("atan2(-2.5, where(x > 3, 0, 0))", wrt=["x"], batch=["x"], reduce=None,
                       tier=tier)
        _, grads = f.value_and_grad(x=np.array([1.0, 4.0, -2.0]))
        np.testing.assert_array_equal(grads["x"], np.zeros(3))


@pytest.mark.parametrize("tier", TIERS)
def test_the_orders_agree_where_an_infinite_derivative_meets_a_zero_one(tier):
    # sqrt(x*x) at 0: reverse mode gave NaN (inf * 0) but forward mode 0 (every tangent product
    # was guarded), and the Hessian-vector product inf. A computed 0 times an infinite local
    # derivative is now NaN in every order, as in JAX and PyTorch; only a direction's own 0 (x
    # not moved) is guarded, so the jvp along x of x + sqrt(y) at y = 0 is 1.
    f = sd.compile("sqrt(x*x)", wrt=["x"], tier=tier)
    assert math.isnan(f.grad(x=0.0)["x"])
    assert math.isnan(f.jvp({"x": 1.0}, x=0.0)[1])
    assert math.isnan(f.hvp({"x": 1.0}, x=0.0)["x"])
    g = sd.compile("x + sqrt(y)", wrt=["x", "y"], tier=tier)
    assert g.jvp({"x": 1.0, "y": 0.0}, x=2.0, y=0.0) == (2.0, 1.0)


def test_the_std_of_a_constant_row_has_nan_derivatives_in_every_order():
    # it had a NaN gradient but a zero jvp and zero Hessian-vector products on rows the
    # direction did not move
    X = sd.tensor("X", ("n", 3))
    centred = X - sd.mean(X, axis=1, keepdims=True)
    f = sd.compile(sd.mean(sd.sqrt(sd.mean(centred * centred, axis=1))), wrt=[X])
    x, v = np.ones((2, 3)), np.zeros((2, 3))
    v[0, 0] = 1.0
    assert np.isnan(f.grad(X=x)["X"]).all()
    assert math.isnan(f.jvp({"X": v}, X=x)[1])
    assert np.isnan(f.hvp({"X": v}, X=x)["X"]).all()


def test_a_step_of_a_model_with_one_input():
    # the step's generated entry unpacked its one argument as `w, = _arguments['w']`, which
    # fails on a 0-d array, so every sgd_step of the model "w" ended in an AssertionError
    f = sd.compile("w", wrt=["w"], tier="kernel")
    w = np.array(-1.5)
    assert f.sgd_step(0.125, w=w) == -1.5 and w == -1.625
    assert f.sgd_step(0.125, w=w) == -1.625 and w == -1.75  # the direct path, compiled


@pytest.mark.parametrize("tier", TIERS)
def test_a_gradient_that_is_a_comparison_is_a_float(tier):
    # d/dx x*(x > 2) is the comparison itself: the kernel returned it as a bool (True, False)
    f = sd.compile("x*(x > 2)", wrt=["x"], tier=tier)
    for x, slope in ((3.0, 1.0), (1.0, 0.0)):
        grad = f.grad(x=x)["x"]
        assert type(grad) is float and grad == slope


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("formula, at_half", [("xlogy(x, 0)", -math.inf),
                                              ("xlog1py(x, -1)", -math.inf),
                                              ("xlogy(x, -1)", math.nan)])
def test_a_composite_function_of_a_constant_outside_its_domain(formula, at_half, tier):
    # found by the 5,000-formula campaign: a constant y folded into xlogy's definition made
    # log(0) = zoo (log(-1) = I*pi) inside it, and every tier failed with "no NumPy
    # evaluation for ComplexInfinity"; now the constant stays an operand, as it does for
    # x*log(0), and IEEE decides: x*log(0) = -inf, x*log(-1) = NaN; 0 where x = 0
    f = sd.compile(formula, wrt=["x"], tier=tier)
    value, grads = f.value_and_grad(x=0.5)
    np.testing.assert_equal([value, grads["x"]], [0.5 * at_half, at_half])
    assert f.value_and_grad(x=0.0)[0] == 0.0


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("formula", ["xlogy(x, 1)", "xlog1py(x, 0)"])
def test_a_composite_function_of_a_constant_keeps_an_infinite_operand(formula, tier):
    # found by the campaign: the constant folded into the definition made x*log(1) = 0, so
    # an infinite x gave 0 where x*log(1), SciPy's xlogy and xlogy(x, y) at y = 1 give NaN
    f = sd.compile(formula, wrt=["x"], tier=tier)
    value, grads = f.value_and_grad(x=math.inf)
    assert math.isnan(value) and grads["x"] == 0.0
    assert f.value_and_grad(x=2.0) == (0.0, {"x": 0.0})


@pytest.mark.parametrize("tier", TIERS)
def test_log1p_of_a_tiny_constant_keeps_its_digits(tier):
    # xlog1py(x, 1e-300) was 0: SymPy's log1p of a Float is the log of the exact rational
    # 1 + 1e-300, which the kernel rounds to log(1.0) = 0. log1p(c) = c - c**2/2 + ..., so
    # the closed forms are 2e-300 and 1e-300 (and log1p(1e-17) = 1e-17 to double precision)
    for formula, c in (("xlog1py(x, 1e-300)", 1e-300), ("x*log1p(1e-17)", 1e-17)):
        f = sd.compile(formula, wrt=["x"], tier=tier)
        assert f.value_and_grad(x=2.0) == (2 * c, {"x": c}), formula


@pytest.mark.parametrize("tier", TIERS)
def test_the_hessian_through_max_times_a_constant_zero_is_symmetric(tier):
    # the Hessian of w**(max(x, y)*0) at (-2, 1, -1) had a NaN row and a zero column: reverse
    # mode takes max's adjoint times the literal 0 as 0, but forward mode did not see max's
    # tangent (a sum of selects) as a select's 0, so that 0 met d/de of w**e's derivative,
    # which holds log(-2) = NaN. The function is w**0 = 1 near the point: every entry is 0
    at = {"w": -2.0, "x": 1.0, "y": -1.0}
    f = sd.compile("w**(max(x, y)*0)", wrt=list(at), tier=tier)
    assert f.value_and_grad(**at) == (1.0, {"w": 0.0, "x": 0.0, "y": 0.0})
    np.testing.assert_array_equal(sd.hessian(f)(**at), np.zeros((3, 3)))


@pytest.mark.parametrize("tier", TIERS)
def test_the_second_derivatives_of_erfinv_read_its_value(tier):
    # found by the campaign: the tape's hvp of (where(-1 >= atan2(x, -2.5), erfinv(y),
    # atan2(y, y)))**x gave no answer in 300 s: erfinv's derivative was written over its
    # definition (a Halley step from a series), so the hvp differentiated and printed that
    # again. It is now sqrt(pi)/2 exp(erfinv(y)**2), which reads the forward value. With
    # E = erfinv(y): E' = sqrt(pi)/2 exp(E**2), E'' = 2 E E'**2, and for E**x
    # d2/dy2 = x (x - 1) E**(x-2) E'**2 + x E**(x-1) E'', d2/dx dy = E' E**(x-1) (1 + x log E)
    import mpmath as mp
    x, y = 2.0, 0.9
    E = mp.erfinv(y)
    E1 = mp.sqrt(mp.pi) / 2 * mp.exp(E**2)
    E2 = 2 * E * E1**2
    f = sd.compile("erfinv(y)**x", wrt=["x", "y"], tier=tier)
    column = f.hvp({"x": 0.0, "y": 1.0}, x=x, y=y)
    assert column["y"] == pytest.approx(float(x * (x - 1) * E**(x - 2) * E1**2
                                              + x * E**(x - 1) * E2), rel=1e-13)
    assert column["x"] == pytest.approx(float(E1 * E**(x - 1) * (1 + x * mp.log(E))), rel=1e-13)
    # the hvp computes erf as often as the value does: its derivatives never expand erfinv
    assert f.source_of("hvp").count("erf(") == f.source.count("erf(")


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_the_value_has_the_same_bits_from_f_value_and_grad_and_jvp(tier):
    # each Program chunked the batch from its own number of statements: logistic regression's
    # gradient from 1,819 rows, its value from 3,077, so between them f() and value_and_grad
    # added the batch's sum in another order (12 sizes in 42 from 1,000 to 5,000 differed in
    # their last bits). Every Program of a model now chunks where its gradient does.
    f = sd.compile("log(1 + exp(-y*(w0*x0 + w1*x1 + b)))", wrt=["w0", "w1", "b"],
                   batch=["x0", "x1", "y"], tier=tier)
    rng = np.random.default_rng(3)
    for n in range(1000, 5000, 97):
        data = dict(w0=0.3, w1=-0.2, b=0.1, x0=rng.normal(size=n), x1=rng.normal(size=n),
                    y=rng.choice([-1.0, 1.0], n))
        value = f.value_and_grad(**data)[0]
        assert f(**data) == value, n
        assert f.jvp({"w0": 1.0}, **data)[0] == value, n


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_parallel_true_or_false_gives_the_default_bits(tier):
    # parallel=False ran a large batch in one pass, parallel=True a small one in 16 chunks,
    # where the default chunks from 1,819 rows (logistic regression): so the option changed the
    # last bits at 10,000 rows (False) and at 37 (True). The batch size alone now decides the
    # chunks; parallel only chooses whether they run on threads.
    kw = dict(wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], tier=tier)
    text = "log(1 + exp(-y*(w0*x0 + w1*x1 + b)))"
    models = [sd.compile(text, parallel=p, **kw) for p in (None, False, True)]
    rng = np.random.default_rng(3)
    for n in (37, 1000, 1819, 10_000, 100_000):
        data = dict(w0=0.3, w1=-0.2, b=0.1, x0=rng.normal(size=n), x1=rng.normal(size=n),
                    y=rng.choice([-1.0, 1.0], n))
        (value, grads), *others = [f.value_and_grad(**data) for f in models]
        for other_value, other_grads in others:
            assert other_value == value and other_grads == grads, n


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_a_negative_integer_power_of_zero_is_inf_not_an_exception(tier):
    # Numba computes x**-k as 1.0 / x**k under Python's error model whatever the kernel's:
    # a kernel with x**-2 raised ZeroDivisionError at x = 0 (found by comparing integer powers
    # with CPython's). The printer now writes the division itself, which gives IEEE's inf.
    f = sd.compile("w*x**-2 + x**-3", wrt=["w"], batch=["x"], tier=tier)
    value, grads = f.value_and_grad(w=2.0, x=np.array([0.0, 0.5]))
    with np.errstate(divide="ignore"):
        expected = np.mean(2.0 / np.array([0.0, 0.5]) ** 2 + 1.0 / np.array([0.0, 0.5]) ** 3)
    assert value == expected == np.inf and grads["w"] == np.inf
    value, grads = f.value_and_grad(w=2.0, x=np.array([-0.5, 0.5]))
    assert value == pytest.approx(8.0) and grads["w"] == pytest.approx(4.0)

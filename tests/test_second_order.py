"""Second order of deep scalar models: y <- cos(y)*w + x, iterated, on both tiers.

The Hessian-vector product of an n-step map is about 11 n statements, with a branch guarding
each tangent product: from 10 steps on, tier="kernel" runs it on the tape (`f.tiers`) instead
of a Numba compile that grows with the square of its size. References: SymPy's Hessian of the whole
expression in mpmath at 10 steps, and first and second derivatives carried through the steps
by hand at 30 and 50.
"""
from functools import lru_cache

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.codegen.compiled import TAPE_MIN_STATEMENTS, compile_size

W, X = 0.7, 0.3


def deep_map(steps):
    def model(w, x):
        y = x
        for _ in range(steps):
            y = sd.cos(y) * w + x
        return y
    return model


def deep_formula(steps):
    return "\n".join(["y0 = x"] + [f"y{k + 1} = cos(y{k})*w + x" for k in range(steps)]
                     + [f"y{steps}"])


@lru_cache(maxsize=None)
def compiled(steps):
    """{tier: the n-step map compiled on it}: a formula on the kernel tier, a function on the
    tape."""
    return {"kernel": sd.compile(deep_formula(steps), wrt=["w", "x"], tier="kernel",
                                 wait=True),
            "tape": sd.compile(deep_map(steps), wrt=["w", "x"], tier="tape")}


def sympy_hessian(steps, w, x):
    """The Hessian by (w, x) of the whole expression, from SymPy, in 30-digit mpmath."""
    ws, xs = sp.symbols("w x", real=True)
    y = xs
    for _ in range(steps):
        y = sp.cos(y) * ws + xs
    with mp.workdps(30):
        H = sp.lambdify((ws, xs), sp.hessian(y, (ws, xs)), "mpmath")(mp.mpf(w), mp.mpf(x))
    return np.array(H.tolist(), dtype=float)


def hand_hessian(steps, w, x):
    """The same Hessian, with first and second derivatives carried through each step:
    y' = cos(y) w + x, so y'_w = c - s w y_w, y'_ww = -c w y_w^2 - s w y_ww - 2 s y_w, ..."""
    y, yw, yx, yww, ywx, yxx = x, 0.0, 1.0, 0.0, 0.0, 0.0
    for _ in range(steps):
        c, s = np.cos(y), np.sin(y)
        yww, ywx, yxx = (-c * w * yw * yw - s * w * yww - 2 * s * yw,
                         -c * w * yw * yx - s * w * ywx - s * yx,
                         -c * w * yx * yx - s * w * yxx)
        yw, yx = c - s * w * yw, 1.0 - s * w * yx
        y = c * w + x
    return np.array([[yww, ywx], [ywx, yxx]])


@pytest.mark.parametrize("steps", [10, 30, 50])
def test_the_hessian_matches_the_reference_on_both_tiers(steps):
    expected = hand_hessian(steps, W, X)
    if steps == 10:  # the reference itself, against SymPy's
        np.testing.assert_allclose(expected, sympy_hessian(steps, W, X), rtol=1e-13)
    for tier, f in compiled(steps).items():
        np.testing.assert_allclose(f.hessian(w=W, x=X), expected, rtol=1e-10, atol=1e-12,
                                   err_msg=f"{steps} steps, tier={tier}")


@pytest.mark.parametrize("steps, runs_on", [(10, "kernel"), (30, "tape"), (50, "tape")])
def test_the_kernel_tier_runs_deep_second_order_on_the_tape_and_agrees_with_it(steps, runs_on):
    kernel, tape = compiled(steps)["kernel"], compiled(steps)["tape"]
    v = {"w": 0.25, "x": -1.5}
    products = [f.hvp(v, w=W, x=X) for f in (kernel, tape)]
    assert kernel.tier == "kernel" and kernel.tiers["hvp"] == runs_on
    assert tape.tiers == {"grad": "tape", "hvp": "tape"}
    for name in ("w", "x"):
        assert products[0][name] == products[1][name]
    expected = hand_hessian(steps, W, X) @ [v["w"], v["x"]]
    np.testing.assert_allclose([products[0]["w"], products[0]["x"]], expected, rtol=1e-10)


def test_the_tier_rule_counts_the_branches_of_forward_mode():
    # the 10-step jvp: 60 statements and 24 branches guarding tangent products, compile_size 132
    kernel, auto = compiled(10)["kernel"], sd.compile(deep_formula(10), wrt=["w", "x"])
    results = [f.jvp({"w": 1.0}, w=W, x=X) for f in (kernel, auto)]
    kernel.wait(), auto.wait()
    assert len(auto._kernels["jvp"].program.stmts) < TAPE_MIN_STATEMENTS
    assert compile_size(auto._kernels["jvp"].program) == 132
    assert auto.tiers == {"grad": "kernel", "jvp": "tape"}  # auto: a compile of seconds
    assert kernel.tiers["jvp"] == "kernel"  # asked for, and below FORWARD_KERNEL_MAX
    value, grads = compiled(10)["tape"].value_and_grad(w=W, x=X)
    for result in results:
        assert result[0] == value and result[1] == pytest.approx(grads["w"], rel=1e-14)


def test_a_50_step_map_asked_for_its_hessian_on_tier_kernel_compiles_no_kernel_for_it():
    # was: RecursionError inside Numba after minutes (a 546-statement Hessian-vector product
    # kernel with 888 conditional expressions; 72 s where Numba finished it); the first
    # Hessian took 8 s at 10 steps and 133 s at 30
    f = sd.compile(deep_formula(50), wrt=["w", "x"], tier="kernel", wait=True)  # a new Compiled
    H = f.hessian(w=W, x=X)
    assert f.tiers == {"grad": "kernel", "hvp": "tape"}
    assert "precompiled interpreter" in f.source_of("hvp")
    np.testing.assert_allclose(H, hand_hessian(50, W, X), rtol=1e-10, atol=1e-12)

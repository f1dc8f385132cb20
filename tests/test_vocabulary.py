"""The NumPy vocabulary's elementwise functions against mpmath, which shares no code with
symdiff: values and derivatives at points across each function's domain and at the edges
where naive forms overflow or cancel, on the kernel and tape tiers, in float32, through
formulas, `sd.*`, traced functions and SymPy input, and by forward mode and Hessian-vector
products. The kinks' conventions (the README's edge table) are pinned by name.
"""
import inspect
import math
from functools import lru_cache

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import exp2, hypot, log2, log10

import symdiff as sd
from symdiff.functions import ALIASES, BUILTINS, FUNCTIONS
from campaign import CAMPAIGN, slice_of

mp.mp.dps = 40
SELU_ALPHA = mp.mpf("1.6732632423543772848170429916717")  # Klambauer et al.'s constants
SELU_SCALE = mp.mpf("1.0507009873554804934193349852946")


def _elu(x):
    return x if x > 0 else mp.expm1(x)


def _sinc(x):
    return mp.mpf(1) if x == 0 else mp.sin(mp.pi * x) / (mp.pi * x)


# name -> (exact value in mpmath, points where it is smooth: its derivative is mp.diff's)
UNARY = {
    "log_sigmoid": (lambda x: -mp.log(1 + mp.exp(-x)), (-30, -2.5, -0.3, 0.0, 0.7, 4, 30)),
    "silu": (lambda x: x / (1 + mp.exp(-x)), (-20, -1.5, 0.0, 0.4, 3)),
    "softsign": (lambda x: x / (1 + abs(x)), (-50, -1.5, 0.0, 0.4, 3)),
    "elu": (_elu, (-40, -1.5, -0.01, 0.4, 3)),
    "celu": (_elu, (-40, -1.5, -0.01, 0.4, 3)),
    "selu": (lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * mp.expm1(x)),
             (-40, -1.5, -0.01, 0.4, 3)),
    "mish": (lambda x: x * mp.tanh(mp.log(1 + mp.exp(x))), (-20, -1.5, 0.0, 0.4, 3, 20)),
    "gelu": (lambda x: x * mp.ncdf(x), (-30, -10, -1.5, 0.0, 0.4, 3, 10)),
    "ndtr": (mp.ncdf, (-30, -10, -1.5, 0.0, 0.4, 3)),
    "hardtanh": (lambda x: min(max(x, -1), 1), (-3, -0.5, 0.3, 2)),
    "relu6": (lambda x: min(max(x, 0), 6), (-3, 0.5, 5.5, 7)),
    "leaky_relu": (lambda x: x if x > 0 else x / 100, (-3, -0.5, 0.3, 2)),
    "asinh": (mp.asinh, (-30, -0.5, 0.0, 0.3, 2)),
    "acosh": (mp.acosh, (1.01, 1.5, 3, 30)),
    "atanh": (mp.atanh, (-0.99, -0.5, 0.0, 0.3, 0.9)),
    "log2": (lambda x: mp.log(x, 2), (1e-5, 0.3, 1.0, 2.0, 1e5)),
    "log10": (mp.log10, (1e-5, 0.3, 1.0, 2.0, 1e5)),
    "exp2": (lambda x: mp.mpf(2) ** x, (-30, -0.5, 0.0, 0.3, 10)),
    "square": (lambda x: x * x, (-3, -0.5, 0.0, 0.3, 2)),
    "reciprocal": (lambda x: 1 / x, (-3, -0.5, 0.3, 2)),
    "rsqrt": (lambda x: 1 / mp.sqrt(x), (1e-4, 0.3, 2, 1e4)),
    "cbrt": (lambda x: mp.sign(x) * mp.cbrt(abs(x)), (-27, -8, -0.5, 0.3, 2)),
    "logit": (lambda x: mp.log(x / (1 - x)), (1e-4, 0.2, 0.5, 0.7, 0.999)),
    "sign": (mp.sign, (-3, -0.5, 0.3, 2)),
    "ceil": (mp.ceil, (-2.5, -0.3, 0.4, 1.7)),
    "trunc": (lambda x: mp.sign(x) * mp.floor(abs(x)), (-2.5, -0.3, 0.4, 1.7)),
    "round": (lambda x: mp.floor(x + mp.mpf(1) / 2), (-2.7, -1.2, -0.3, 0.4, 1.7)),  # no ties
    "sinc": (_sinc, (-0.9, -0.3, -0.126, -0.124, -1e-3, 0.0, 1e-6, 0.12, 0.7)),
    "log_ndtr": (lambda x: mp.log(mp.ncdf(x)),
                 (-100, -30, -20.5, -19.5, -5, -0.5, 0.0, 0.5, 3, 10)),
    "lgamma": (lambda x: mp.log(abs(mp.gamma(x))), (-2.5, -0.5, 0.1, 1.0, 1.5, 2.0, 3.7, 30, 1e3)),
    "digamma": (mp.digamma, (-2.7, -1.3, 0.01, 0.3, 1.0, 1.17, 1.46, 1.4616321449683622, 1.77,
                             2.0, 5.5, 9.99, 10.5, 30, 1e3)),
    "erfinv": (mp.erfinv, (-0.999, -0.7, -0.3, 0.0, 1e-10, 0.1, 0.49, 0.51, 0.9, 0.999999)),
}
# float32 points away from digamma's roots (float32's X0 is 3e-8 off the root, and below 0
# the reflection cancels)
FLOAT32 = {"digamma": (0.3, 1.0, 2.0, 5.5, 9.99), "lgamma": (0.1, 1.0, 2.0, 3.7)}
BINARY = {
    "logaddexp": (lambda a, b: mp.log(mp.exp(a) + mp.exp(b)),
                  ((0.3, -1.2), (-2, 5), (1, 1), (40, -40), (-700, -705))),
    "logaddexp2": (lambda a, b: mp.log(mp.mpf(2) ** a + mp.mpf(2) ** b, 2),
                   ((0.3, -1.2), (-2, 5), (1, 1), (40, -40))),
    "hypot": (lambda a, b: mp.sqrt(a * a + b * b), ((3, 4), (-1.5, 0.2), (0, 2), (-2, 0))),
    "mod": (lambda a, b: a - b * mp.floor(a / b),
            ((5.5, 3), (-1, 3), (5, -3), (-7.25, -2), (1e-3, 2), (-1e-3, 2))),
    "fmod": (lambda a, b: a - b * mp.sign(a / b) * mp.floor(abs(a / b)),
             ((5.5, 3), (-1, 3), (5, -3), (-7.25, -2), (1e-3, 2), (-1e-3, 2))),
    "xlogy": (lambda a, b: 0 if a == 0 else a * mp.log(b),
              ((0.5, 2), (-3, 0.1), (2, 1e-5), (1.5, 40), (0, 2))),
    "xlog1py": (lambda a, b: 0 if a == 0 else a * mp.log1p(b),
                ((0.5, 2), (-3, -0.9), (2, 1e-10), (1.5, 40), (0, 0.5))),
    "clip": (lambda x, lo, hi: min(max(x, lo), hi),  # three arguments
             ((0.5, 0, 1), (-2, -1, 3), (4, -1, 3), (-0.5, 1, 2), (0.5, 2, 1))),
}
SMOOTH = ("log_sigmoid", "silu", "softsign", "mish", "gelu", "asinh", "acosh", "atanh",
          "log2", "log10", "exp2", "square", "reciprocal", "rsqrt", "cbrt", "logit",
          "logaddexp", "logaddexp2", "hypot", "sinc", "log_ndtr", "xlogy", "xlog1py", "mod",
          "fmod", "clip", "lgamma", "digamma", "erfinv")  # second derivatives checked at
# every point (smooth between the jumps)


def exact(name, *point):
    f = (UNARY.get(name) or BINARY[name])[0]
    return f(*(mp.mpf(p) for p in point))


def slope(name, point, k, order=1):
    """d^order f / d(argument k)^order at `point`, numerically in 40-digit arithmetic."""
    f = (UNARY.get(name) or BINARY[name])[0]
    point = [mp.mpf(p) for p in point]

    def along(t):
        return f(*(p + t if j == k else p for j, p in enumerate(point)))
    return mp.diff(along, 0, order)


@lru_cache(maxsize=None)
def per_sample(name: str, tier: str = "auto", dtype: str = "float64"):
    """f(u + c) per example, its gradient by c at c = 0 f'(u): one model per function, tier
    and dtype, shared by the tests below (u + 0.0 is u, so it is also the model of f(u))."""
    return sd.compile(f"{name}(u + c)", wrt=["c"], batch=["u"], reduce=None, tier=tier,
                      dtype=dtype)


def close(got, want, rtol, what, atol=1e-300):
    want = float(want)
    assert got == pytest.approx(want, rel=rtol, abs=atol), what


def test_every_function_here_has_a_record_and_every_new_record_is_here():
    new = set(UNARY) | set(BINARY)
    assert new <= set(FUNCTIONS)
    assert {"swish": "silu", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh",
            "arcsin": "asin", "arccos": "acos", "arctan": "atan"}.items() <= ALIASES.items()


@pytest.mark.parametrize("tier", ["kernel", "tape"])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_value_and_derivative_against_mpmath(name, tier):
    """Per-example: the value of f(u + c) and its gradient by c at c = 0 is f'(u)."""
    points = UNARY[name][1]
    f = per_sample(name, tier)
    values, grads = f.value_and_grad(u=np.array(points, dtype=float), c=0.0)
    for p, v, g in zip(points, values, grads["c"]):
        close(v, exact(name, p), 1e-12, f"{name}({p})")
        close(g, slope(name, [p], 0), 1e-12, f"{name}'({p})")


@pytest.mark.parametrize("tier", ["kernel", "tape"])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_value_and_gradient_against_mpmath(name, tier):
    points = BINARY[name][1]
    shifts, batch = "abc"[:len(points[0])], "uvw"[:len(points[0])]
    call = ", ".join(f"{u} + {a}" for u, a in zip(batch, shifts))
    f = sd.compile(f"{name}({call})", wrt=list(shifts), batch=list(batch), reduce=None,
                   tier=tier)
    columns = {u: np.array(column, dtype=float) for u, column in zip(batch, zip(*points))}
    values, grads = f.value_and_grad(**columns, **{a: 0.0 for a in shifts})
    for i, p in enumerate(points):
        close(values[i], exact(name, *p), 1e-12, f"{name}{p}")
        for k, wrt in enumerate(shifts):
            close(grads[wrt][i], slope(name, p, k), 1e-12, f"d{name}{p}/d{wrt}")


@pytest.mark.parametrize("name", slice_of(sorted(UNARY), {"log_sigmoid", "gelu", "logit"}))
def test_float32_kernel_against_mpmath(name):
    points = np.array([p for p in FLOAT32.get(name, UNARY[name][1]) if abs(p) <= 10],
                      dtype=np.float32)
    f = per_sample(name, dtype="float32")
    values, grads = f.value_and_grad(u=points, c=np.float32(0.0))
    assert values.dtype == grads["c"].dtype == np.float32
    for p, v, g in zip(points, values, grads["c"]):  # at the float32 point itself
        close(float(v), exact(name, float(p)), 2e-6, f"{name}({p})")
        close(float(g), slope(name, [float(p)], 0), 2e-6, f"{name}'({p})")


# on the tape: these special functions' gradient, jvp and hvp kernels together compile for
# 2 to 13 s of CPU (sinc's to log_ndtr's; erfinv's, called as a helper function, and
# lgamma's for about 1 s); their kernels are checked to first order above (float64 and
# float32), and the kernel tier's forward mode and hvp by the other functions
SECOND_ORDER_ON_THE_TAPE = ("log_ndtr", "digamma", "sinc")


@pytest.mark.parametrize("name", slice_of(SMOOTH, {"silu", "hypot", "clip"}))
def test_forward_mode_and_hessian_vector_products_against_mpmath(name):
    points = UNARY[name][1] if name in UNARY else BINARY[name][1]
    args = ["x"] if name in UNARY else ["x", "y", "z"][:len(points[0])]
    f = sd.compile(f"{name}({', '.join(args)})", wrt=args,
                   tier="tape" if name in SECOND_ORDER_ON_THE_TAPE else "auto")
    hvp = sd.hvp(f)
    for p in points:
        if name in ("exp2", "rsqrt", "mish", "silu", "log_sigmoid") and abs(p) > 10:
            continue  # the second derivative underflows or its mp.diff loses digits there
        at = {a: float(v) for a, v in zip(args, np.atleast_1d(p))}
        point = list(at.values())
        for k, a in enumerate(args):
            tangent = {b: float(b == a) for b in args}
            value, derivative = f.jvp(tangent, **at)
            close(value, exact(name, *point), 1e-12, f"{name}{point}")
            close(derivative, slope(name, point, k), 1e-12, f"jvp {name}{point} by {a}")
            column = hvp(tangent, **at)
            for j, b in enumerate(args):
                if j == k:
                    want = slope(name, point, k, 2)
                else:  # the mixed second derivative, by central differences in mpmath
                    h = mp.mpf("1e-12")
                    shifted = [q + h if i == j else q for i, q in enumerate(point)]
                    back = [q - h if i == j else q for i, q in enumerate(point)]
                    want = (slope(name, shifted, k) - slope(name, back, k)) / (2 * h)
                close(column[b], want, 1e-9, f"hvp {name}{point} d{a}d{b}", atol=1e-12)


# ---------------------------------------------------------------- the stable forms' edges


def test_logaddexp_at_1000_and_999():
    f = sd.compile("logaddexp(x, y)", wrt=["x", "y"])
    value, grads = f.value_and_grad(x=1000.0, y=999.0)
    assert value == float(1000 + mp.log1p(mp.exp(-1)))
    assert grads["x"] == pytest.approx(float(1 / (1 + mp.exp(-1))), rel=1e-15)
    assert grads["y"] == pytest.approx(float(1 / (1 + mp.exp(1))), rel=1e-15)
    assert f.value_and_grad(x=-1000.0, y=-1000.0) == (-1000.0 + math.log(2.0), {"x": 0.5,
                                                                              "y": 0.5})
    assert f(x=math.inf, y=math.inf) == math.inf and f(x=-math.inf, y=-math.inf) == -math.inf
    g = sd.compile("logaddexp2(x, y)", wrt=["x", "y"])
    value, grads = g.value_and_grad(x=1000.0, y=999.0)
    assert value == pytest.approx(float(1000 + mp.log(1.5, 2)), rel=1e-15)
    assert (grads["x"], grads["y"]) == pytest.approx((2 / 3, 1 / 3), rel=1e-15)


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_log_sigmoid_at_800_and_minus_800(tier):
    f = per_sample("log_sigmoid", tier)
    values, grads = f.value_and_grad(u=np.array([-800.0, 800.0, -30.0, 30.0]), c=0.0)
    np.testing.assert_array_equal(values[:2], [-800.0, 0.0])  # e^-800 is below the subnormals
    np.testing.assert_array_equal(grads["c"][:2], [1.0, 0.0])
    for i, x in ((2, -30), (3, 30)):
        close(values[i], -mp.log1p(mp.exp(-x)), 1e-15, x)
        close(grads["c"][i], 1 / (1 + mp.exp(x)), 1e-15, x)


def test_hypot_at_1e200_and_below_the_squares_range():
    f = sd.compile("hypot(x, y)", wrt=["x", "y"])
    value, grads = f.value_and_grad(x=1e200, y=1e200)
    assert value == pytest.approx(math.sqrt(2.0) * 1e200, rel=1e-15)
    assert (grads["x"], grads["y"]) == pytest.approx((0.5 ** 0.5, 0.5 ** 0.5), rel=1e-15)
    value, grads = f.value_and_grad(x=3e-200, y=-4e-200)
    assert value == pytest.approx(5e-200, rel=1e-15)
    assert (grads["x"], grads["y"]) == pytest.approx((0.6, -0.8), rel=1e-15)


def test_gelu_in_the_far_negative_tail_against_mpmath():
    f = per_sample("gelu")
    points = [-5.0, -10.0, -20.0, -30.0, -37.0]
    values, grads = f.value_and_grad(u=np.array(points), c=0.0)
    for x, v, g in zip(points, values, grads["c"]):
        x = mp.mpf(x)  # the naive x(1 + erf(x/sqrt 2))/2 is 0 below x = -8.3
        close(v, x * mp.ncdf(x), 1e-12, x)
        close(g, mp.ncdf(x) + x * mp.npdf(x), 1e-12, x)


@pytest.mark.parametrize("name", ["elu", "selu", "celu"])
def test_exponential_units_in_their_tails(name):
    f = per_sample(name)
    values, grads = f.value_and_grad(u=np.array([-50.0, -800.0, 800.0]), c=0.0)
    scale, alpha = (SELU_SCALE, SELU_ALPHA) if name == "selu" else (1, 1)
    close(values[0], scale * alpha * mp.expm1(-50), 1e-15, -50)
    close(grads["c"][0], scale * alpha * mp.exp(-50), 1e-14, -50)  # 2e-22, not 0
    close(values[1], -scale * alpha, 1e-15, -800)
    assert grads["c"][1] == 0.0  # e^-800 underflows to 0, not NaN
    close(values[2], scale * 800, 1e-15, 800)
    close(grads["c"][2], scale, 1e-15, 800)


@pytest.mark.parametrize("tier", ["kernel", "tape"])
def test_log_ndtr_far_in_the_negative_tail(tier):
    f = per_sample("log_ndtr", tier)
    points = [-30.0, -100.0, -1e3, -1e10, -37.5, -40.0]  # erfc underflows below -37.5
    values, grads = f.value_and_grad(u=np.array(points), c=0.0)
    for x, v, g in zip(points, values, grads["c"]):
        x = mp.mpf(x)
        close(v, mp.log(mp.ncdf(x)), 1e-14, x)
        close(g, mp.npdf(x) / mp.ncdf(x), 1e-14, x)


def test_xlogy_is_0_at_x_0_even_where_y_is_0():
    for tier in ("kernel", "tape"):
        for name, y in (("xlogy", 0.0), ("xlog1py", -1.0)):
            f = sd.compile(f"{name}(x, y)", wrt=["x", "y"], tier=tier)
            value, grads = f.value_and_grad(x=0.0, y=y)  # JAX's answer: 0; -inf, nan
            assert value == 0.0 and grads["x"] == -math.inf and math.isnan(grads["y"])


def test_round_ties_to_even_and_mod_takes_the_divisors_sign_as_numpy():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -7.25, 7.25, 0.0])
    y = np.array([3.0, -3.0, 2.0, -2.0, 0.75, -0.75, 1.0, 2.0, -2.0, 1.0])
    for tier in ("kernel", "tape"):
        for dtype in ("float64", "float32")[:2 if tier == "kernel" else 1]:
            f = sd.compile("round(x) + 10*mod(x, y) + 100*fmod(x, y) + 1000*ceil(x) "
                           "+ 10000*trunc(x)", wrt=["x"], batch=["x", "y"], reduce=None,
                           tier=tier, dtype=dtype)
            got = f(x=x.astype(dtype), y=y.astype(dtype))
            want = np.round(x) + 10 * np.mod(x, y) + 100 * np.fmod(x, y) + 1000 * np.ceil(x) \
                + 10000 * np.trunc(x)
            np.testing.assert_array_equal(got, want.astype(dtype), err_msg=f"{tier} {dtype}")


def test_digamma_within_a_few_ulp_above_0_and_lgamma_from_sympy():
    xs = np.array([1e-8, 0.01, 0.3, 1.0, 1.15, 1.3, 1.4616321449683622, 1.47, 1.62, 1.77, 2.0,
                   2.5, 4.0, 7.3, 9.99, 10.0, 30.0, 1e10])
    for tier in ("kernel", "tape"):
        f = per_sample("digamma", tier)
        for x, v in zip(xs, f(u=xs, c=0.0)):  # 0 ulp at the root's float: 9.2e-17, not 0
            assert abs(v - mp.digamma(x)) <= 8 * np.spacing(abs(float(mp.digamma(x)))), x
    x = sp.Symbol("x", real=True)
    f = sd.compile(sp.loggamma(x), wrt=["x"])  # as log|Gamma(x)|
    for at in (-2.5, 0.7, 2.5):
        value, grads = f.value_and_grad(x=at)
        close(value, mp.log(abs(mp.gamma(at))), 1e-15, at)
        close(grads["x"], mp.digamma(at), 1e-14, at)
    assert f(x=0.0) == f(x=-2.0) == math.inf


def test_erfinv_within_an_ulp_up_to_1():
    xs = np.array([1e-300, 1e-10, 0.3, 0.49, 0.5, 0.51, 0.9, 0.99, 1 - 1e-6, 1 - 1e-12,
                   1 - 2.0**-53, -0.999])
    for tier in ("kernel", "tape"):
        f = per_sample("erfinv", tier)
        values, grads = f.value_and_grad(u=xs, c=0.0)
        for x, v, g in zip(xs, values, grads["c"]):
            want = mp.erfinv(x)
            assert abs(v - want) <= np.spacing(abs(float(want))), x
            close(g, mp.sqrt(mp.pi) / 2 * mp.exp(want**2), 1e-14, x)
        edges = f(u=np.array([1.0, -1.0, 1.5, math.nan]), c=0.0)
        assert list(edges[:2]) == [math.inf, -math.inf] and np.isnan(edges[2:]).all()


def test_mod_is_exact_where_x_minus_y_floor_x_over_y_is_not():
    f = sd.compile("mod(x, y)", wrt=["x", "y"])
    for x, y in ((1e17, 3.0), (-1e-300, 1.0), (5.0, 1e-300), (-7.1, 0.3)):
        assert f(x=x, y=y) == np.mod(x, y)
    assert math.isnan(f(x=1.0, y=0.0)) and math.isnan(f(x=math.nan, y=1.0))


def test_cbrt_is_real_for_negative_x():
    f = sd.compile("cbrt(x)", wrt=["x"])
    assert f.value_and_grad(x=-8.0) == (-2.0, {"x": pytest.approx(1 / 12, rel=1e-15)})
    value, grads = f.value_and_grad(x=27.0)  # Numba's cbrt is within 2 ulp, not exact
    assert (value, grads["x"]) == pytest.approx((3.0, 1 / 27), rel=1e-15)


# ---------------------------------------------------------------- kinks, as the README says


@pytest.mark.parametrize("formula, at, value, grads", [
    ("sign(x)", {"x": 0.0}, 0.0, [0.0]),
    ("hardtanh(x)", {"x": 1.0}, 1.0, [0.0]),     # PyTorch's answer; JAX's is 1
    ("hardtanh(x)", {"x": -1.0}, -1.0, [0.0]),
    ("relu6(x)", {"x": 0.0}, 0.0, [0.0]),
    ("relu6(x)", {"x": 6.0}, 6.0, [0.0]),
    ("leaky_relu(x)", {"x": 0.0}, 0.0, [0.01]),  # PyTorch's answer; JAX's is 1
    ("selu(x)", {"x": 0.0}, 0.0, [float(SELU_SCALE * SELU_ALPHA)]),
    ("elu(x)", {"x": 0.0}, 0.0, [1.0]),
    ("hypot(x, y)", {"x": 0.0, "y": 0.0}, 0.0, [0.0, 0.0]),  # as abs'(0) = 0
    ("logaddexp(x, y)", {"x": 1.0, "y": 1.0}, 1.0 + math.log(2.0), [0.5, 0.5]),
    ("clip(x, y, z)", {"x": 0.0, "y": 0.0, "z": 1.0}, 0.0, [0.0, 1.0, 0.0]),  # JAX: 1/2, 1/2
    ("clip(x, y, z)", {"x": 1.0, "y": 0.0, "z": 1.0}, 1.0, [0.0, 0.0, 1.0]),  # PyTorch: 1, 0
    ("clip(x, y, z)", {"x": 0.5, "y": 2.0, "z": 1.0}, 1.0, [0.0, 0.0, 1.0]),  # lo > hi: hi
    ("mod(x, y)", {"x": 4.0, "y": 2.0}, 0.0, [1.0, -2.0]),  # JAX's and PyTorch's
    ("mod(x, y)", {"x": -4.0, "y": 2.0}, 0.0, [1.0, 2.0]),
    ("mod(x, y)", {"x": -1.0, "y": 3.0}, 2.0, [1.0, 1.0]),
    ("mod(x, y)", {"x": 5.0, "y": -3.0}, -1.0, [1.0, 2.0]),
    ("fmod(x, y)", {"x": -1.0, "y": 3.0}, -1.0, [1.0, 0.0]),
    ("fmod(x, y)", {"x": 4.0, "y": 2.0}, 0.0, [1.0, -2.0]),
    ("round(x)", {"x": 0.5}, 0.0, [0.0]),
    ("round(x)", {"x": 1.5}, 2.0, [0.0]),
    ("round(x)", {"x": 2.5}, 2.0, [0.0]),
    ("round(x)", {"x": -2.5}, -2.0, [0.0]),
    ("ceil(x)", {"x": 1.0}, 1.0, [0.0]),
    ("trunc(x)", {"x": -1.5}, -1.0, [0.0]),
    ("sinc(x)", {"x": 0.0}, 1.0, [0.0]),
    ("xlogy(x, y)", {"x": 0.0, "y": 2.0}, 0.0, [math.log(2.0), 0.0]),
    ("where(x == y, x, 2*y)", {"x": 1.0, "y": 1.0}, 1.0, [1.0, 0.0]),
    ("where(x != y, x, 2*y)", {"x": 1.0, "y": 1.0}, 2.0, [0.0, 2.0]),
])
def test_kinks_and_ties(formula, at, value, grads):
    for tier in ("kernel", "tape"):
        f = sd.compile(formula, wrt=list(at), tier=tier)
        got, g = f.value_and_grad(**at)
        assert got == pytest.approx(value, rel=1e-15) and \
            list(g.values()) == pytest.approx(grads, rel=1e-15), tier


# ---------------------------------------------------------------- every path


def test_aliases_are_the_same_functions_by_formula_and_sd():
    for alias, name in ALIASES.items():
        middle = sum(FUNCTIONS[name].domain) / 2
        args, at = (["x", "y"], dict(x=middle, y=0.4)) if FUNCTIONS[name].arity != 1 \
            else (["x"], dict(x=middle))
        formula = f"{alias}({', '.join(args)})"
        assert sd.compile(formula, wrt=args).value_and_grad(**at) == \
            sd.compile(formula.replace(alias, name, 1), wrt=args).value_and_grad(**at), alias
        assert getattr(sd, alias) is getattr(sd, FUNCTIONS[name].api or name)


def test_traced_functions_call_the_new_records():
    def model(x, y):
        return sd.gelu(x) * sd.logaddexp(x, y) + sd.arcsinh(y) + sd.cbrt(x) * sd.hypot(x, y)
    f = sd.compile(model, wrt=["x", "y"])
    text = "gelu(x) * logaddexp(x, y) + asinh(y) + cbrt(x) * hypot(x, y)"
    g = sd.compile(text, wrt=["x", "y"])
    assert f.value_and_grad(x=-0.7, y=1.3) == g.value_and_grad(x=-0.7, y=1.3)


def test_traced_functions_and_sd_call_the_pieces_and_choices():
    def model(x, y, z):
        return sd.clip(x, y, z) * sd.mod(x, z) + sd.remainder(y, x) * sd.fmod(z, y) \
            + sd.sinc(x) * sd.xlogy(z, y * y) + sd.xlog1py(y, z) + sd.log_ndtr(x * y) \
            + sd.round(x) + sd.ceil(y) + sd.trunc(z) + sd.maximum(x, y) * sd.minimum(y, z)
    text = "clip(x, y, z) * mod(x, z) + remainder(y, x) * fmod(z, y) + sinc(x) * " \
        "xlogy(z, y * y) + xlog1py(y, z) + log_ndtr(x * y) + round(x) + ceil(y) + trunc(z) " \
        "+ max(x, y) * min(y, z)"
    at = dict(x=-0.7, y=1.3, z=2.2)
    want = sd.compile(text, wrt=list(at)).value_and_grad(**at)
    for tier in ("kernel", "tape"):
        assert sd.compile(model, wrt=list(at), tier=tier).value_and_grad(**at) == want
    assert sd.compile(text.replace("max(", "maximum(").replace("min(", "minimum("),
                      wrt=list(at)).value_and_grad(**at) == want


@CAMPAIGN
def test_per_example_gradients_float32_and_hessians_of_the_new_records():
    text = "clip(w*u, -1, 1) + mod(w*u, 0.75) + sinc(w*u) + xlogy(w, u*u) + log_ndtr(w*u)"
    u = np.array([-2.0, -0.4, 0.3, 1.1])
    per = sd.compile(text, wrt=["w"], batch=["u"], reduce=None)
    values, grads = per.value_and_grad(u=u, w=0.9)
    one = sd.compile(text, wrt=["w"])  # one example at a time, u a scalar input
    for i, ui in enumerate(u):
        v, g = one.value_and_grad(u=float(ui), w=0.9)
        assert values[i] == pytest.approx(v, rel=1e-14) and \
            grads["w"][i] == pytest.approx(g["w"], rel=1e-13)
    single = sd.compile(text, wrt=["w"], batch=["u"], reduce=None, dtype="float32")
    v32, g32 = single.value_and_grad(u=u.astype(np.float32), w=np.float32(0.9))
    assert v32.dtype == g32["w"].dtype == np.float32
    np.testing.assert_allclose(v32, values, rtol=1e-5)
    np.testing.assert_allclose(g32["w"], grads["w"], rtol=1e-4)
    total = sd.compile(text, wrt=["w"], batch=["u"], tier="tape")  # (its kernels: above)
    h = sd.hessian(total)(u=u, w=0.9)
    step = 1e-5
    numeric = (total.grad(u=u, w=0.9 + step)["w"] - total.grad(u=u, w=0.9 - step)["w"]) / \
        (2 * step)
    assert np.ravel(h["w"]["w"] if isinstance(h, dict) else h)[0] == \
        pytest.approx(numeric, rel=1e-6)


def test_sympy_input_maps_sympys_functions_to_the_records():
    x, y = sp.symbols("x y", real=True)
    expr = sp.asinh(x) + sp.atanh(x / 2) + sp.acosh(y) + sp.sign(x) + log2(y) + log10(y) \
        + exp2(x) + hypot(x, y)
    f = sd.compile(expr, wrt=["x", "y"])

    def reference(x, y):
        return mp.asinh(x) + mp.atanh(x / 2) + mp.acosh(y) + mp.sign(x) + mp.log(y, 2) \
            + mp.log10(y) + mp.mpf(2) ** x + mp.sqrt(x * x + y * y)
    value, grads = f.value_and_grad(x=-0.5, y=1.5)
    a, b = mp.mpf(-0.5), mp.mpf(1.5)
    close(value, reference(a, b), 1e-14, "value")
    close(grads["x"], mp.diff(lambda t: reference(t, b), a), 1e-13, "d/dx")
    close(grads["y"], mp.diff(lambda t: reference(a, t), b), 1e-13, "d/dy")


def test_sympy_ceiling_and_mod_are_the_records():
    x, y = sp.symbols("x y", real=True)
    f = sd.compile(sp.ceiling(x) * y + sp.Mod(x, y), wrt=["x", "y"])
    assert f.value_and_grad(x=-1.25, y=0.5) == (-0.25, {"x": 1.0, "y": 2.0})
    sd.function("ceiling_body", sp.ceiling(x) + sp.Mod(x, 3) + x**2)
    g = sd.compile("ceiling_body(x)", wrt=["x"])
    assert g.value_and_grad(x=-1.25) == (-1 + 1.75 + 1.5625, {"x": -1.5})


def test_sd_function_bodies_may_use_the_new_records():
    x = sp.Symbol("x", real=True)
    sd.function("vocabulary_body", sp.asinh(x) + sp.sign(x) + hypot(x, 2))
    f = sd.compile("vocabulary_body(x)", wrt=["x"])
    value, grads = f.value_and_grad(x=1.5)
    assert value == pytest.approx(math.asinh(1.5) + 1.0 + 2.5, rel=1e-15)
    assert grads["x"] == pytest.approx(1 / math.sqrt(1.5**2 + 1) + 1.5 / 2.5, rel=1e-15)


def test_the_formula_grammar_reads_the_records():
    from formula_grammar import BINARY_FUNCTIONS, COMPARISONS, OWN_KIND, UNARY as GRAMMAR
    public = {name for name in BUILTINS if not FUNCTIONS[name].internal}
    assert public == set(GRAMMAR) | set(BINARY_FUNCTIONS) | set(OWN_KIND)
    assert {"erfc", "gelu", "log_sigmoid", "asinh", "cbrt", "logit", "ceil", "sinc",
            "erfinv"} <= set(GRAMMAR)
    assert set(BINARY_FUNCTIONS) == {"logaddexp", "logaddexp2", "hypot", "mod", "fmod", "clip",
                                     "xlogy", "xlog1py"}
    assert {"==", "!="} <= set(COMPARISONS)


def test_a_model_of_every_new_function_pickles():
    import pickle
    terms = [f"{name}(x)" for name in UNARY if name not in ("acosh", "logit", "rsqrt")]
    terms += ["acosh(1 + x*x)", "logit(sigmoid(x))", "rsqrt(1 + x*x)"]
    terms += [f"{name}({', '.join(['x', 'y', '1 - x'][:len(p[0])])})"
              for name, (_, p) in BINARY.items()]
    f = sd.compile(" + ".join(terms), wrt=["x", "y"])
    g = pickle.loads(pickle.dumps(f))
    assert g.value_and_grad(x=0.3, y=0.2) == f.value_and_grad(x=0.3, y=0.2)


def test_new_names_and_aliases_cannot_be_redefined():
    x = sp.Symbol("x", real=True)
    for name in ("gelu", "swish", "arcsinh"):
        with pytest.raises(sd.ArgumentError, match=f"'{name}' is a built-in function"):
            sd.function(name, x**2)


# ---------------------------------------------------------------- parameters


def _gelu_tanh(x):  # the tanh approximation as its papers write it; 1 + tanh(u) cancels
    with mp.extradps(300):  # to e^-2|u|, 1e-261 at x = -20: 300 more digits keep 40 of it
        u = mp.sqrt(2 / mp.pi) * (x + mp.mpf("0.044715") * x**3)
        return x / 2 * (1 + mp.tanh(u))


# name -> (exact value of (x, *parameters), the call's text, points (x, *parameters))
PARAMETERISED = {
    "elu": (lambda x, a: x if x > 0 else a * mp.expm1(x), "elu(x, alpha=a)",
            ((-2.0, 0.5), (-0.3, 2.0), (1.5, 0.7), (-40.0, 3.0))),
    "celu": (lambda x, a: x if x > 0 else a * mp.expm1(x / a), "celu(x, a)",
             ((-2.0, 0.5), (-0.3, 2.0), (1.5, 0.7), (-40.0, 3.0))),
    "leaky_relu": (lambda x, a: x if x > 0 else a * x, "leaky_relu(x, negative_slope=a)",
                   ((-2.0, 0.2), (-0.3, 0.01), (1.5, 0.3))),
    "hardtanh": (lambda x, a, b: min(max(x, a), b), "hardtanh(x, a, max_val=b)",
                 ((-2.5, -2.0, 3.0), (0.5, -2.0, 3.0), (3.5, -2.0, 3.0), (0.2, 0.5, 2.0))),
    "gelu": (lambda x: _gelu_tanh(x), "gelu(x, approximate=True)",
             ((-5.0,), (-1.5,), (0.0,), (0.4,), (3.0,), (20.0,))),
}


def _parameterised_slope(name, point, k, order=1):
    f = PARAMETERISED[name][0]
    point = [mp.mpf(p) for p in point]
    return mp.diff(lambda t: f(*(p + t if j == k else p for j, p in enumerate(point))), 0, order)


@pytest.mark.parametrize("tier", ["kernel", "tape"])
@pytest.mark.parametrize("name", sorted(PARAMETERISED))
def test_parameters_value_and_gradients_against_mpmath(name, tier):
    """The parameters are operands like x: given by name or position, and differentiated."""
    f, text, points = PARAMETERISED[name]
    args = ["x", "a", "b"][:len(points[0])]
    g = sd.compile(text, wrt=args, batch=args, reduce=None, tier=tier)
    columns = {a: np.array(column) for a, column in zip(args, zip(*points))}
    values, grads = g.value_and_grad(**columns)
    for i, p in enumerate(points):
        close(values[i], f(*map(mp.mpf, p)), 1e-14, f"{name}{p}")
        for k, a in enumerate(args):
            close(grads[a][i], _parameterised_slope(name, p, k), 1e-12, f"d{name}{p}/d{a}")


@pytest.mark.parametrize("name", slice_of(sorted(PARAMETERISED), {"elu"}))
def test_parameters_in_float32_jvp_and_hessians(name):
    f, text, points = PARAMETERISED[name]
    args = ["x", "a", "b"][:len(points[0])]
    single = sd.compile(text, wrt=args, batch=args, reduce=None, dtype="float32")
    small = [p for p in points if abs(p[0]) <= 5]
    columns = {a: np.array(column, dtype=np.float32) for a, column in zip(args, zip(*small))}
    values, grads = single.value_and_grad(**columns)
    assert values.dtype == np.float32
    for i, p in enumerate(small):
        p = [float(np.float32(q)) for q in p]
        close(float(values[i]), f(*map(mp.mpf, p)), 2e-6, f"{name}{p}")
        close(float(grads["x"][i]), _parameterised_slope(name, p, 0), 2e-6, f"{name}'{p}")
    g = sd.compile(text, wrt=args)
    hvp = sd.hvp(g)
    for p in small:
        at = dict(zip(args, p))
        for k, a in enumerate(args):
            tangent = {b: float(b == a) for b in args}
            close(g.jvp(tangent, **at)[1], _parameterised_slope(name, p, k), 1e-12,
                  f"jvp {name}{p} by {a}")
        if name != "hardtanh":  # piecewise linear: its second derivatives are 0
            close(hvp({"x": 1.0, **{b: 0.0 for b in args[1:]}}, **at)["x"],
                  _parameterised_slope(name, p, 0, 2), 1e-9, f"hvp {name}{p}")


def test_parameters_by_sd_sympy_traced_functions_and_per_example_gradients():
    from symdiff.functions import celu, elu, gelu, hardtanh, leaky_relu
    x, a = sp.symbols("x a", real=True)
    text = "elu(x, alpha=a) + celu(x, 2) + leaky_relu(x, 0.2) + hardtanh(x, -0.5, a) " \
        "+ gelu(x, approximate=True) + gelu(x)"

    def model(x, a):
        return sd.elu(x, alpha=a) + sd.celu(x, 2.0) + sd.leaky_relu(x, negative_slope=0.2) \
            + sd.hardtanh(x, -0.5, max_val=a) + sd.gelu(x, approximate=True) + sd.gelu(x)
    expr = elu(x, a) + celu(x, 2) + leaky_relu(x, sp.Float(0.2)) + hardtanh(x, -0.5, a) \
        + gelu(x, 1) + gelu(x)
    at = dict(x=-0.7, a=1.3)
    want = sd.compile(text, wrt=["x", "a"]).value_and_grad(**at)
    exact = float(mp.expm1(-0.7) * 1.3 + 2 * mp.expm1(-0.35) - 0.14 - 0.5
                  + _gelu_tanh(mp.mpf(-0.7)) - 0.7 * mp.ncdf(-0.7))
    close(want[0], exact, 1e-14, "value")
    for tier in ("kernel", "tape"):
        assert sd.compile(model, wrt=["x", "a"], tier=tier).value_and_grad(**at) == want
        assert sd.compile(expr, wrt=["x", "a"], tier=tier).value_and_grad(**at) == want
    assert elu(x) == elu(x, 1) and gelu(x) == gelu(x, 0)  # SymPy calls take the defaults
    per = sd.compile("leaky_relu(u, a) + elu(u, alpha=a)", wrt=["a"], batch=["u"], reduce=None)
    u = np.array([-2.0, 0.5, -0.1])
    np.testing.assert_allclose(per.grad(u=u, a=0.3)["a"], np.where(u > 0, 0.0, u + np.expm1(u)),
                               rtol=1e-15)


def test_default_parameters_are_pytorchs():
    """elu and celu alpha 1, leaky_relu 0.01, hardtanh [-1, 1] (as PyTorch and JAX), and
    gelu's exact form (PyTorch's default; JAX's gelu defaults to approximate=True)."""
    at = {"x": -0.7}
    for short, full in (("elu(x)", "elu(x, 1.0)"), ("celu(x)", "celu(x, alpha=1)"),
                        ("leaky_relu(x)", "leaky_relu(x, 0.01)"),
                        ("hardtanh(x)", "hardtanh(x, min_val=-1, max_val=1)"),
                        ("gelu(x)", "gelu(x, approximate=False)")):
        assert sd.compile(short, wrt=["x"]).value_and_grad(**at) == \
            sd.compile(full, wrt=["x"]).value_and_grad(**at), short
    close(sd.compile("gelu(x)", wrt=["x"])(**at), -0.7 * mp.ncdf(-0.7), 1e-15, "gelu")


def test_the_tanh_gelu_in_its_tails():
    """x sigmoid(2u) for x/2 (1 + tanh u): accurate where 1 + tanh u cancels (jax.nn.gelu
    with approximate=True gives 0 at -10 and -20), and no NaN slope where u overflows."""
    f = sd.compile("gelu(u + c, approximate=True)", wrt=["c"], batch=["u"], reduce=None)
    points = [-10.0, -20.0, -30.0, 1e200, -1e200, 150.0, -150.0]
    values, grads = f.value_and_grad(u=np.array(points), c=0.0)
    for x, v, g in zip(points[:2], values, grads["c"]):
        close(v, _gelu_tanh(mp.mpf(x)), 1e-13, x)
        close(g, mp.diff(_gelu_tanh, mp.mpf(x)), 1e-12, x)
    assert values[2] == 0.0 and grads["c"][2] == 0.0  # e^-1700: below the subnormals
    np.testing.assert_array_equal(values[3:], [1e200, -0.0, 150.0, -0.0])
    np.testing.assert_array_equal(grads["c"][3:], [1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("name", ["elu", "celu"])
def test_exponential_units_with_a_parameter_in_their_tails(name):
    f = sd.compile(f"{name}(u + c, a)", wrt=["c", "a"], batch=["u"], reduce=None)
    values, grads = f.value_and_grad(u=np.array([-50.0, -800.0]), c=0.0, a=2.0)
    scale = 2 if name == "celu" else 1  # celu: a expm1(x/a)
    close(values[0], 2 * mp.expm1(mp.mpf(-50) / scale), 1e-15, -50)
    close(grads["c"][0], mp.exp(mp.mpf(-50) / scale) * 2 / scale, 1e-14, -50)
    assert values[1] == -2.0  # e^-800 underflows to 0 (e^-400 does not), never NaN
    close(grads["c"][1], mp.exp(mp.mpf(-800) / scale) * 2 / scale, 1e-14, -800)
    assert grads["a"][1] == -1.0  # d/da of a expm1(x/a) = expm1(x/a) - x/a exp(x/a): -1


@pytest.mark.parametrize("formula, at, value, grads", [
    ("leaky_relu(x, 0.2)", {"x": 0.0}, 0.0, [0.2]),
    ("hardtanh(x, -2, 3)", {"x": 3.0}, 3.0, [0.0]),
    ("hardtanh(x, -2, 3)", {"x": -2.0}, -2.0, [0.0]),
    ("hardtanh(x, y, 3)", {"x": -2.0, "y": -2.0}, -2.0, [0.0, 1.0]),
    ("elu(x, 3)", {"x": 0.0}, 0.0, [3.0]),
    ("gelu(x, approximate=True)", {"x": 0.0}, 0.0, [0.5]),
])
def test_kinks_of_the_parameterised_forms(formula, at, value, grads):
    test_kinks_and_ties(formula, at, value, grads)


def test_parameters_are_refused_by_name():
    with pytest.raises(sd.ParseError, match="no parameter 'beta'; its parameters by name: "
                                            "alpha"):
        sd.compile("elu(x, beta=1)", wrt=["x"])
    with pytest.raises(sd.ParseError, match=r"exp\(\) takes positional arguments only"):
        sd.compile("exp(x=1)", wrt=["x"])
    with pytest.raises(sd.ParseError, match="the literal True is not a real number"):
        sd.compile("exp(True)", wrt=["x"])
    x = sd.scalar("x")
    with pytest.raises(sd.ArgumentError, match="approximate must be a number or a Tensor, "
                                               "not the string 'tanh'"):
        sd.gelu(x, approximate="tanh")
    with pytest.raises(sd.ArgumentError, match="unexpected keyword argument 'slope'"):
        sd.leaky_relu(x, slope=0.2)
    assert str(inspect.signature(sd.hardtanh)) == "(x, min_val=-1.0, max_val=1.0)"


def test_digamma_below_0_reduces_its_reflection_exactly():
    """psi(x) = psi(1 - x) - pi/tan(pi (x - round(x))): pi*x itself would round by eps*|x|
    (at -100.25 the error was 220 ulp); now within 4 ulp away from its roots, and its
    derivative, pi**2/sin(pi (x - round(x)))**2 - psi'(1 - x), within 1e-14."""
    xs = np.array([-100.25, -25.3, -7.3, -3.9, -2.7, -1.3, -0.4, -1e-3, -100000.3])
    for tier in ("kernel", "tape"):
        f = per_sample("digamma", tier)
        values, grads = f.value_and_grad(u=xs, c=0.0)
        for x, v, g in zip(xs, values, grads["c"]):
            assert abs(v - mp.digamma(x)) <= 4 * np.spacing(abs(float(mp.digamma(x)))), x
            close(g, mp.psi(1, x), 1e-14, x)

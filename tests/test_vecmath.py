"""codegen/vecmath.py against mpmath: at most 1 ulp over each function's whole range, and the
C library's special values (inf, NaN, signed zeros, subnormals, the overflow thresholds).

Samples are random bit patterns, so every binade of the domain is hit as often as any other
(subnormals included), plus points drawn uniformly by value where the function is curved.
`python -m benchmarks.vecmath` runs the same measurement on many more samples.
"""
import math

import mpmath as mp
import numpy as np
import pytest

from symdiff.codegen import vecmath

# name: (mpmath's function, NumPy's (the C library's) for special values, where it is finite
# and not trivially x or a constant: the interval sampled by value)
FUNCTIONS = {
    "exp": (mp.exp, np.exp, (-746.0, 710.0)),
    "log": (mp.log, np.log, (0.0, 4.0)),
    "log1p": (mp.log1p, np.log1p, (-1.0, 4.0)),
    "expm1": (mp.expm1, np.expm1, (-40.0, 710.0)),
    "tanh": (mp.tanh, np.tanh, (-20.0, 20.0)),
}
# per format: +inf's bit pattern, significand bits, least exponent, least value rounding to inf
FORMATS = {np.float64: (0x7FF0000000000000, 53, -1021, mp.ldexp(1 - mp.mpf(2) ** -54, 1024)),
           np.float32: (0x7F800000, 24, -125, mp.ldexp(1 - mp.mpf(2) ** -25, 128))}
SINGLE = {"exp": "exp32", "log": "log32", "log1p": "log1p32", "expm1": "expm1_32",
          "tanh": "tanh32"}


def as_numba_vectorised(name):
    """vecmath.`name` applied elementwise in one Numba loop (as generated kernels call it)."""
    from numba import njit
    f = getattr(vecmath, name)

    @njit(error_model="numpy")
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = f(x[i])
        return out
    return apply


def sample(name: str, n: int, rng, dtype=np.float64) -> np.ndarray:
    """n/2 random bit patterns (sign, exponent and mantissa all random) up to the largest |x|
    where the function is not a constant, and n/2 points uniform in the sampled interval."""
    lo, hi = FUNCTIONS[name][2]
    top = FORMATS[dtype][0]
    if name in ("exp", "expm1"):
        top = dtype(max(-lo, hi)).view(np.int64 if dtype is np.float64 else np.int32)
    integer = np.int64 if dtype is np.float64 else np.int32
    bits = rng.integers(1, top, n // 2).astype(integer).view(dtype)
    signs = np.where(rng.random(n // 2) < 0.5, -1.0, 1.0).astype(dtype)
    x = np.concatenate([bits * signs, rng.uniform(lo, hi, n - n // 2).astype(dtype)])
    return x[x > {"log": 0.0, "log1p": -1.0}.get(name, -np.inf)]


def ulps(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|y - f(x)| in units in the last place of f(x) in y's format, f in mpmath at 120 bits;
    where f(x) rounds beyond the largest finite value, 0 if y is the infinity of its sign."""
    f = FUNCTIONS[name][0]
    _, digits, least, overflow = FORMATS[y.dtype.type]
    errors = np.empty(len(x))
    with mp.workprec(120):
        for k, (a, b) in enumerate(zip(x.tolist(), y.tolist())):
            exact = f(mp.mpf(a))
            if math.isinf(b) or abs(exact) >= overflow:
                right = abs(exact) >= overflow and b == math.copysign(math.inf, exact)
                errors[k] = 0.0 if right else math.inf
                continue
            _, e = mp.frexp(exact) if exact else (0, least)  # exact in [2**(e-1), 2**e)
            errors[k] = float(abs(mp.mpf(b) - exact) / mp.ldexp(1, max(e, least) - digits))
    return errors


@pytest.fixture(scope="module")
def vectorised():
    names = list(FUNCTIONS) + list(SINGLE.values())
    return {name: as_numba_vectorised(name) for name in names}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_error_at_most_one_ulp(name, vectorised):
    rng = np.random.default_rng(sum(map(ord, name)))
    x = sample(name, 12_000, rng)
    errors = ulps(name, x, vectorised[name](x))
    worst = int(np.argmax(errors))
    assert errors[worst] <= 1.0, f"{name}({x[worst]!r}) is {errors[worst]:.3f} ulp off"


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float32_forms_at_most_one_ulp(name, vectorised):
    x = sample(name, 6_000, np.random.default_rng(5), np.float32)
    y = vectorised[SINGLE[name]](x)
    assert y.dtype == np.float32
    errors = ulps(name, x, y)
    worst = int(np.argmax(errors))
    assert errors[worst] <= 1.0, f"{name}({x[worst]!r}) is {errors[worst]:.3f} ulp off"


SPECIAL = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324,
           2.2250738585072014e-308, 2.225073858507201e-308, 1e-300, -1e-300, 1e-17, -1e-17,
           709.782712893384, 709.7827128933841, -745.1332191019411, -745.1332191019412,
           -708.4, -744.0, 1e308, -1e308, 22.0, -22.0, 2.0**-55, -(2.0**-55), 0.5, -0.5,
           0.41421353816986084, -0.29289323091506958, -0.9999999999999999, 40.0, -60.0, -61.0]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_special_values_are_the_c_librarys(name, vectorised):
    x = np.array(SPECIAL)
    with np.errstate(all="ignore"):
        want = FUNCTIONS[name][1](x)
    got = vectorised[name](x)
    finite = np.isfinite(want) & (want != 0)
    assert np.array_equal(np.isnan(got), np.isnan(want)), x[np.isnan(got) != np.isnan(want)]
    exact = ~finite & ~np.isnan(want)  # inf, -inf, +0 and -0 exactly, sign included
    assert np.array_equal(got[exact], want[exact])
    assert np.array_equal(np.signbit(got[exact]), np.signbit(want[exact]))
    assert ulps(name, x[finite], got[finite]).max() <= 1.0


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_scalar_and_vectorised_calls_give_the_same_bits(name, vectorised):
    """The tape's instruction loops and a kernel's fused loop must agree bit for bit."""
    x = sample(name, 2_000, np.random.default_rng(3))
    scalar = np.array([getattr(vecmath, name)(v) for v in x.tolist()])
    assert np.array_equal(scalar.view(np.int64), vectorised[name](x).view(np.int64))


def test_a_loop_with_a_running_sum_vectorises_and_adds_in_order():
    """The loop of a fused loss: LLVM vectorises it (ordered reductions, set by vecmath) and
    its sum has the bits of adding the scalar results one by one."""
    import re
    from numba import njit

    @njit(error_model="numpy")
    def total(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += vecmath.log1p(vecmath.exp(-abs(x[i]))) + max(x[i], 0.0)
        return s
    x = np.random.default_rng(4).normal(0.0, 5.0, 3001)
    expected = 0.0
    for v in x.tolist():
        expected += vecmath.log1p(vecmath.exp(-abs(v))) + max(v, 0.0)
    assert total(x) == expected
    assert re.search(r"<\d+ x double>", total.inspect_llvm(total.signatures[0]))

# The integration: generated kernels and the tape's interpreter call these functions.
ELEMENTWISE = "exp(x) + log(x) * log1p(x) - expm1(-x) + sigmoid(x - 1) * softplus(2 - x)"


def test_kernels_and_the_tape_call_vecmath_and_give_the_same_bits():
    import symdiff as sd
    from symdiff.codegen import interpreter
    kernel, tape = (sd.compile(ELEMENTWISE, wrt=["x"], batch=["x"], reduce=None, tier=tier)
                    for tier in ("kernel", "tape"))
    assert "from symdiff.codegen import vecmath as _vm" in kernel.source
    assert "math.exp(" not in kernel.source and "_vm.log1p(" in kernel.source
    assert "_vm.expm1(v)" in interpreter.source()
    x = np.concatenate([np.geomspace(1e-300, 700.0, 997), [0.0, 5e-324, np.inf]])
    with np.errstate(all="ignore"):
        (v1, g1), (v2, g2) = kernel.value_and_grad(x=x), tape.value_and_grad(x=x)
    np.testing.assert_array_equal(v1.view(np.int64), v2.view(np.int64))
    np.testing.assert_array_equal(g1["x"].view(np.int64), g2["x"].view(np.int64))


def test_symdiff_libm_keeps_the_c_librarys_calls_in_the_text(monkeypatch):
    """The option changes the generated text, hence the cache key: no stale machine code."""
    import sympy as sp
    from symdiff.codegen import printer
    from symdiff.functions import placeholder, softplus
    body = softplus(sp.exp(placeholder(0)))
    vector = printer.print_body(body, ["x"])
    monkeypatch.setattr(printer, "LIBM", True)
    libm = printer.print_body(body, ["x"])
    assert vector == "(max(_vm.exp(x), 0.0) + _vm.log1p(_vm.exp(-abs(_vm.exp(x)))))"
    assert libm == vector.replace("_vm.", "math.")
    assert printer.vecmath_import([libm]) == ""
    assert printer.vecmath_import([vector]).strip().startswith("from symdiff.codegen import")
    assert "_vm." not in printer.print_body(body, ["x"], "float32")  # float32: NumPy's calls

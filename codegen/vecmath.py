"""exp, log, log1p, expm1 and tanh as Numba functions LLVM can vectorise (float64, and float32).

Generated loops call these instead of the C library's (codegen/printer.py spells them, and a
generated module imports this one as `_vm`). Numba compiles math.exp and math.log to scalar
calls into libm, and llvmlite's wheels are built without SVML, so a loop that calls them never
vectorises; no library gives Numba a vectorisable exp. So they are written here: fdlibm's
algorithms (the ones musl keeps) for exp, log, log1p and expm1, and for tanh two polynomials
below |x| = 1, then fdlibm's form through expm1. Each is a branch-free range reduction and a
rational or polynomial approximation, with special values (inf, NaN, +-0, subnormals, overflow
and underflow) chosen by selects, not branches. Measured against mpmath over every binade,
subnormals and special values: at most 1 ulp (tests/test_vecmath.py). The float32 forms round
the float64 result once more: at most 0.5 + 2**-29 ulp of float32.

Loops that also add into running sums (a fused loss and its gradient sums) vectorise only if
LLVM may keep the sums in order: importing this module sets LLVM's `-force-ordered-reductions`
for the process, so the vectoriser adds each vector's lanes one by one, in order, giving the
bits of the scalar loop (Numba's strict IEEE forbids reordering the sums). Measured on the
neuron's fused loop (10**6 rows, exp and log1p per row, four sums): without it the loop stays
scalar and runs 2x slower than with libm's calls; with it, it vectorises and beats libm.
It also raises LLVM's inlining threshold for the process to 1000, so that LLVM inlines these
functions into the caller's loop: Numba's own inlining (inline="always") did that too but cost
0.6-1.5 s of compile per call site of log1p, expm1 or tanh; LLVM's costs about 0.05 s.

Integers travel as int64 bit patterns (`_bits`, `_float`): AVX2 has no vector conversion
between float64 and int64, so rounding and 2**k are done with the 1.5 * 2**52 shifter, not
with int() or float().
"""
import math

import llvmlite.binding
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

# LLVM options for the process (see above); the inliner's threshold (275 at -O3) lets it inline
# tanh, the largest here, into the caller's loop, where the vectoriser must see it
llvmlite.binding.set_option("symdiff", "-force-ordered-reductions=true")
llvmlite.binding.set_option("symdiff", "-inline-threshold=1000")

JIT = dict(cache=True, error_model="numpy")  # strict IEEE, as in generated kernels


@intrinsic
def _bits(typingctx, x):
    """The int64 bit pattern of a float64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@intrinsic
def _float(typingctx, i):
    """The float64 whose bit pattern is the int64 `i`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + SHIFT rounds x to an integer in the low bits
SHIFT_BITS = 0x4338000000000000
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln2_hi * k exact
INV_LN2 = 1.44269504088896338700e+00
EXP_MAX, EXP_MIN = 7.09782712893383973096e+02, -7.45133219101941108420e+02
P1, P2, P3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
P4, P5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08
LG1, LG2, LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
LG4, LG5, LG6 = 2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01
Q1, Q2, Q3 = -3.33333333333331316428e-02, 1.58730158725481460165e-03, -7.93650757867487942473e-05
Q4, Q5 = 4.00821782732936239552e-06, -2.01099218183624371326e-07


@njit(**JIT)
def _round(x):
    """(k, kd): x rounded to the nearest integer, as int64 and as float64 (|x| < 2**51)."""
    s = x + SHIFT
    return _bits(s) - SHIFT_BITS, s - SHIFT


@njit(**JIT)
def _pow2(k):
    """2.0**k for integer k in [-1022, 1023], built from its exponent bits."""
    return _float((k + 1023) << 52)


@njit(**JIT)
def exp(x):
    """e**x; fdlibm's e_exp: x = k ln2 + r, |r| <= ln2/2, exp(r) by a rational form."""
    xc = min(max(x, -746.0), 710.0)  # keeps k in range; the selects below give the limits
    k, kd = _round(xc * INV_LN2)
    hi = xc - kd * LN2_HI
    lo = kd * LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    h = k >> 1  # 2**k in two normal factors: exact, then one rounding into subnormals
    y = y * _pow2(h) * _pow2(k - h)
    y = math.inf if x > EXP_MAX else y
    y = 0.0 if x < EXP_MIN else y
    return x if x != x else y


@njit(**JIT)
def _log_tail(f, dk, c):
    """log(1 + f) + dk ln2 + c for f in [sqrt(2)/2 - 1, sqrt(2) - 1]: fdlibm's e_log."""
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LG2 + w * (LG4 + w * LG6))
    t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    return s * (hfsq + t1 + t2) + (dk * LN2_LO + c) - hfsq + f + dk * LN2_HI


@njit(**JIT)
def _reduce(u):
    """(m, k): u = m * 2**k with m in [sqrt(2)/2, sqrt(2)), for positive normal u."""
    hu = (_bits(u) >> 32) + (0x3FF00000 - 0x3FE6A09E)
    k = (hu >> 20) - 0x3FF
    m = _float((((hu & 0x000FFFFF) + 0x3FE6A09E) << 32) | (_bits(u) & 0xFFFFFFFF))
    return m, k


@njit(**JIT)
def _to_float(k):
    """An integer |k| < 2**51 as float64, without an int64 -> float64 conversion."""
    return _float(k + SHIFT_BITS) - SHIFT


@njit(**JIT)
def log(x):
    """The natural logarithm; fdlibm's e_log, subnormals scaled by 2**54 first."""
    tiny = x < 2.2250738585072014e-308
    u = x * 18014398509481984.0 if tiny else x
    u = u if u > 0.0 and u < math.inf else 1.0  # NaN, inf, zero and negatives: chosen below
    m, k = _reduce(u)
    k = k - 54 if tiny else k
    y = _log_tail(m - 1.0, _to_float(k), 0.0)
    y = x if x == math.inf else y
    y = -math.inf if x == 0.0 else y
    return math.nan if x < 0.0 or x != x else y


@njit(**JIT)
def log1p(x):
    """log(1 + x); fdlibm's s_log1p: 1 + x = m 2**k, the rounding of 1 + x corrected by c."""
    u = 1.0 + x
    uc = u if u > 0.0 and u < math.inf else 1.0
    m, k = _reduce(uc)
    c = 1.0 - (u - x) if k >= 2 else x - (u - 1.0)
    c = c / u if k < 54 else 0.0
    near = x < 0.41421353816986084 and x > -0.29289323091506958  # 1 + x in [.707, 1.414]
    f = x if near else m - 1.0
    c = 0.0 if near else c
    k = 0 if near else k
    y = _log_tail(f, _to_float(k), c)
    y = x if abs(x) < 5.551115123125783e-17 or x == math.inf else y  # below 2**-54: x
    y = -math.inf if x == -1.0 else y
    return math.nan if x < -1.0 or x != x else y


@njit(**JIT)
def expm1(x):
    """e**x - 1; fdlibm's s_expm1: x = k ln2 + r, then one of five exact recombinations."""
    xc = min(max(x, -60.0), 710.0)
    k, kd = _round(xc * INV_LN2)
    hi = xc - kd * LN2_HI
    lo = kd * LN2_LO
    r = hi - lo
    c = (hi - r) - lo
    hfx = 0.5 * r
    hxs = r * hfx
    r1 = 1.0 + hxs * (Q1 + hxs * (Q2 + hxs * (Q3 + hxs * (Q4 + hxs * Q5))))
    t = 3.0 - r1 * hfx
    e = hxs * ((r1 - t) / (6.0 - r * t))
    y0 = r - (r * e - hxs)  # k == 0
    e = r * (e - c) - c - hxs
    y = ((r - e + 1.0) * 2.0) * _pow2(min(k, 1025) - 1) - 1.0  # k < -1 or k > 56
    kk = min(max(k, 0), 60)
    two_mk = _pow2(-kk)
    y = (r - e + (1.0 - two_mk)) * _pow2(kk) if k >= 2 and k < 20 else y
    y = (r - e - two_mk + 1.0) * _pow2(kk) if k >= 20 and k <= 56 else y
    y1 = -2.0 * (e - (r + 0.5)) if r < -0.25 else 1.0 + 2.0 * (r - e)
    y = y1 if k == 1 else y
    y = 0.5 * (r - e) - 0.5 if k == -1 else y
    y = y0 if k == 0 else y
    y = x if abs(x) < 5.551115123125783e-17 else y  # below 2**-54: x, and -0.0 stays
    y = math.inf if x > EXP_MAX else y  # below -60 (the clamp), e**x - 1 rounds to -1
    return x if x != x else y


# tanh below |x| = 0.55: x + x s T(s), T(s) = (tanh(x)/x - 1)/s in s = x**2 (degree 11);
# from 0.55 to 1: tanh(C) + d U(d) at d = x - C, C = 0.775 (tanh(C) = TANH_C + its rounding
# error TANH_C_LO), U(d) = (tanh(C + d) - tanh(C))/d (degree 16); lowest degree first, from
# mpmath's Chebyshev fits (2e-19 and 6e-21 from the functions)
T = (-0.3333333333333333, 0.1333333333333331, -0.05396825396822037, 0.021869488534073906,
     -0.0088632354631468, 0.0035921267699626346, -0.001455819097151351, 0.0005899052969492733,
     -0.0002384727248015252, 9.455133052924858e-05, -3.372080112046316e-05,
     7.874274345344419e-06)
U = (0.577724267457719, -0.3754210954237677, 0.051384182428921295, 0.09174951220061438,
     -0.06391109656148557, 0.0026053240361791513, 0.019529861601641052, -0.010726061737601697,
     -0.0009465908680522689, 0.003974738444324594, -0.0016995810204355288,
     -0.00043693413031018234, 0.0007747198687237975, -0.0002483771908888886,
     -0.00012719666760184552, 0.00013840303635291484, -2.65985883546802e-05)
C, TANH_C, TANH_C_LO = 0.775, 0.6498274636719203, 2.982620721595445e-17


@njit(**JIT)
def _t(s):
    """T(s) by Horner's rule (written out: a loop inside the caller's loop would not vectorise)."""
    return T[0] + s * (T[1] + s * (T[2] + s * (T[3] + s * (T[4] + s * (T[5] + s * (T[6] + s * (
        T[7] + s * (T[8] + s * (T[9] + s * (T[10] + s * T[11]))))))))))


@njit(**JIT)
def _u(d):
    """U(d) by Horner's rule."""
    return U[0] + d * (U[1] + d * (U[2] + d * (U[3] + d * (U[4] + d * (U[5] + d * (U[6] + d * (
        U[7] + d * (U[8] + d * (U[9] + d * (U[10] + d * (U[11] + d * (U[12] + d * (U[13] + d * (
            U[14] + d * (U[15] + d * U[16])))))))))))))))


@njit(**JIT)
def tanh(x):
    """tanh(x): two polynomials below |x| = 1 (the second about 0.775: from 0.55 up, x + x s T(s)
    was up to 1.1 ulp off), then 1 - 2/(e**(2|x|) + 1) through expm1, as fdlibm's s_tanh."""
    a = abs(x)
    s = a * a
    d = a - C  # exact from 0.3875 to 1.55
    z = a + a * (s * _t(s))
    z = TANH_C + (TANH_C_LO + d * _u(d)) if a >= 0.55 else z
    z = 1.0 - 2.0 / (expm1(2.0 * a) + 2.0) if a >= 1.0 else z
    z = 1.0 if a > 22.0 else z
    return x if x != x else math.copysign(z, x)


# float32: the float64 function, rounded to float32 (vectorised as conversions both ways)
@njit(**JIT)
def exp32(x):
    return np.float32(exp(np.float64(x)))


@njit(**JIT)
def log32(x):
    return np.float32(log(np.float64(x)))


@njit(**JIT)
def log1p32(x):
    return np.float32(log1p(np.float64(x)))


@njit(**JIT)
def expm1_32(x):
    return np.float32(expm1(np.float64(x)))


@njit(**JIT)
def tanh32(x):
    return np.float32(tanh(np.float64(x)))

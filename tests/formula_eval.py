"""Exact evaluation of a formula's syntax tree at a point, for the formula oracle.

Input: a formula parsed by Python's `ast` and a point. Output: every node's value in mpmath at
50 digits, with IEEE rules for inf and NaN (`_Pass`), either unbounded or emulating a float
format's range, with each node's first-order rounding-error bound R; and, walking down from
the output (`resolve`), each kink's and where's decision at the point and how much of each
node reaches the output. Shares no code with symdiff.
"""
from __future__ import annotations

import ast

import mpmath as mp
import numpy as np

mp.mp.dps = 50
GRAD, VALUE, DEAD = 2, 1, 0  # how much of a node's value reaches the output
FORMATS = {"float64": (float(np.finfo(np.float64).max), float(np.finfo(np.float64).tiny), 53),
           "float32": (float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny), 24)}
NEAR = mp.mpf("1e-9")  # a kink's margin below NEAR * (its rounding scale) is "at the kink"
NAN, INF = mp.nan, mp.inf


class Reject(Exception):
    """The point sits where the answer is a convention (kink, boundary, NaN in a comparison)."""


def _real(v):
    if isinstance(v, mp.mpc):
        return v.real if v.imag == 0 else NAN
    return v


def _finite(v) -> bool:
    return mp.isfinite(v)


def _clamp(v):
    """v within +-2**40 if finite: exp of either bound is beyond every float format, and
    mpmath takes for ever on exp(2**(2**30)), which `power` can make."""
    return max(min(v, mp.mpf(2) ** 40), -mp.mpf(2) ** 40) if _finite(v) else v


def _exp(v):
    return mp.exp(_clamp(v))


def _sigmoid(v):
    return 1 / (1 + _exp(-v)) if v >= 0 else _exp(v) / (1 + _exp(v))


def _softplus(v):
    return mp.log1p(_exp(v)) if v <= 0 else v + mp.log1p(_exp(-v))


def _ncdf(v):
    """The normal CDF; beyond |v| = 1e20 by its asymptotic form phi(v)/|v|, exact to 40
    digits there (mpmath's own overflows at 1e300)."""
    if v < -1e20:
        return mp.npdf(_clamp(v)) / -_clamp(v)
    return mp.mpf(1) if v > 1e20 else mp.ncdf(v)


def _log(v):
    return -INF if v == 0 else mp.log(v)


_SINC = [(-1) ** k * mp.pi ** (2 * k) / mp.factorial(2 * k + 1) for k in range(30)]


def _sinc(a, order=0):
    """sin(pi a)/(pi a) (1 at 0) or its derivative of `order` (1 or 2); near 0 by its
    Maclaurin series, where the quotient's forms cancel."""
    if abs(a) < mp.mpf(1) / 32:
        return mp.fsum(c * mp.ff(2 * k, order) * a ** (2 * k - order)
                       for k, c in enumerate(_SINC) if 2 * k >= order)
    s, c = mp.sincpi(a), mp.cospi(a)
    if order == 0:
        return s
    if order == 1:
        return (c - s) / a
    return -mp.pi ** 2 * s - 2 * (c - s) / (a * a)


def _lgamma(a):
    """log|Gamma(a)|, C's lgamma: inf at the poles 0, -1, -2, ... and at +-inf."""
    if mp.isinf(a) or a <= 0 and a == mp.floor(a):
        return INF
    return mp.re(mp.loggamma(a))


def _psi(order):
    def psi(a):
        if a <= 0 and a == mp.floor(a):
            return NAN
        if mp.isinf(a):
            return INF if a > 0 and order == 0 else NAN if a < 0 else mp.mpf(0)
        return mp.psi(order, a)
    return psi


def _log_ndtr(v):
    """log Phi(v): log1p(-Phi(-v)) above 0 (Phi(v) is 1 to 50 digits above 15), and below
    -1e5 by the asymptotic series of Phi (mpmath's erfc would take for ever there)."""
    if v > 0:
        return mp.log1p(-_ncdf(-v))
    if v < -100000:
        return -v * v / 2 - mp.log(-v) - mp.log(2 * mp.pi) / 2 + mp.log(_mills(v))
    return mp.log(mp.ncdf(v))


def _mills(v):
    """Phi(v) * (-v) / phi(v) for v < -1e5: 1 - 1/v**2 + 3/v**4 - ..."""
    return mp.fsum((-1) ** k * mp.fac2(2 * k - 1) / v ** (2 * k) for k in range(8))


def _ndtr_ratio(v):
    """phi(v)/Phi(v), log_ndtr's derivative."""
    if mp.isinf(v):
        return INF if v < 0 else mp.mpf(0)
    if v < -100000:
        return -v / _mills(v)
    return mp.npdf(v) / mp.ncdf(v)


def _erfinv(v):
    if abs(v) > 1:
        return NAN
    return mp.sign(v) * INF if abs(v) == 1 else mp.erfinv(v)


# name -> (value, derivative); derivatives written from the textbook, by this module
UNARY = {
    "exp": (_exp, _exp), "log": (_log, lambda a: 1 / a),
    "sqrt": (mp.sqrt, lambda a: 1 / (2 * mp.sqrt(a))),
    "sin": (mp.sin, mp.cos), "cos": (mp.cos, lambda a: -mp.sin(a)),
    "tan": (mp.tan, lambda a: 1 + mp.tan(a) ** 2),
    "sinh": (lambda a: mp.sinh(_clamp(a)), lambda a: mp.cosh(_clamp(a))),
    "cosh": (lambda a: mp.cosh(_clamp(a)), lambda a: mp.sinh(_clamp(a))),
    "tanh": (mp.tanh, lambda a: 1 - mp.tanh(a) ** 2),
    "asin": (mp.asin, lambda a: 1 / mp.sqrt(1 - a * a)),
    "acos": (mp.acos, lambda a: -1 / mp.sqrt(1 - a * a)),
    "atan": (mp.atan, lambda a: 1 / (1 + a * a)),
    "erf": (mp.erf, lambda a: 2 / mp.sqrt(mp.pi) * _exp(-a * a)),
    "log1p": (lambda a: -INF if a == -1 else mp.log1p(a), lambda a: 1 / (1 + a)),
    "expm1": (lambda a: mp.expm1(_clamp(a)), _exp),
    "sigmoid": (_sigmoid, lambda a: _sigmoid(a) * _sigmoid(-a)),
    "softplus": (_softplus, _sigmoid), "abs": (mp.fabs, lambda a: mp.sign(a)),
    "erfc": (lambda a: 2 * _ncdf(-a * mp.sqrt(2)),
             lambda a: -2 / mp.sqrt(mp.pi) * _exp(-a * a)),
    "ndtr": (_ncdf, lambda a: mp.npdf(_clamp(a))),
    "gelu": (lambda a: a * _ncdf(a), lambda a: _ncdf(a) + a * mp.npdf(_clamp(a))),
    "log_sigmoid": (lambda a: -_softplus(-a), lambda a: _sigmoid(-a)),
    "silu": (lambda a: a * _sigmoid(a), lambda a: _sigmoid(a) * (1 + a * _sigmoid(-a))),
    "mish": (lambda a: a * mp.tanh(_softplus(a)), lambda a: mp.tanh(_softplus(a))
             + a * (1 - mp.tanh(_softplus(a)) ** 2) * _sigmoid(a)),
    "asinh": (mp.asinh, lambda a: 1 / mp.sqrt(1 + a * a)),
    "acosh": (mp.acosh, lambda a: 1 / mp.sqrt(a * a - 1)),
    "atanh": (mp.atanh, lambda a: 1 / (1 - a * a)),
    "log2": (lambda a: _log(a) / mp.ln2, lambda a: 1 / (a * mp.ln2)),
    "log10": (lambda a: _log(a) / mp.ln10, lambda a: 1 / (a * mp.ln10)),
    "exp2": (lambda a: mp.mpf(2) ** _clamp(a), lambda a: mp.mpf(2) ** _clamp(a) * mp.ln2),
    "square": (lambda a: a * a, lambda a: 2 * a),
    "reciprocal": (lambda a: divide(1, a), lambda a: -1 / (a * a)),
    "rsqrt": (lambda a: INF if a == 0 else 1 / mp.sqrt(a), lambda a: -a ** mp.mpf(-1.5) / 2),
    "cbrt": (lambda a: mp.sign(a) * mp.cbrt(abs(a)), lambda a: 1 / (3 * mp.cbrt(a * a))),
    "logit": (lambda a: -INF if a == 0 else INF if a == 1 else mp.log(a / (1 - a)),
              lambda a: 1 / (a * (1 - a))),
    "sinc": (_sinc, lambda a: _sinc(a, 1)),
    "sinc'": (lambda a: _sinc(a, 1), lambda a: _sinc(a, 2)),  # its derivatives, for SymPy's
    "sinc''": (lambda a: _sinc(a, 2), lambda a: mp.diff(lambda t: _sinc(t, 2), a)),
    "log_ndtr": (lambda a: -INF if a == -INF else _log_ndtr(a), _ndtr_ratio),
    "ndtr_ratio": (_ndtr_ratio, lambda a: -_ndtr_ratio(a) * (a + _ndtr_ratio(a))),
    "erfinv": (_erfinv, lambda a: mp.sqrt(mp.pi) / 2 * mp.exp(_erfinv(a) ** 2)),
    "lgamma": (_lgamma, _psi(0)), "digamma": (_psi(0), _psi(1)),
    "trigamma": (_psi(1), _psi(2)), "tetragamma": (_psi(2), _psi(3)),
}


def _logaddexp(a, b, base=mp.e):
    """log_base(base**a + base**b); equal infinities give themselves, as in IEEE."""
    if a == b:
        return a + mp.log(2, base)
    return max(a, b) + mp.log1p(mp.power(base, -_clamp(abs(a - b)))) / mp.log(base)


def _hypot(a, b):
    return mp.sqrt(a * a + b * b)


def _fmod(a, b):
    """C's fmod, exact: the sign of a."""
    if mp.isinf(a) or b == 0:
        return NAN
    return a if mp.isinf(b) else mp.sign(a) * mp.fmod(abs(a), abs(b))


def _mod(a, b):
    """Python's %: the sign of b (fmod, moved by b where their signs differ)."""
    r = _fmod(a, b)
    return r + b if r != 0 and (r < 0) != (b < 0) else r


def quotient(name: str, a, b):
    """n with mod(a, b) (or fmod) = a - n*b: the piece's slope by b is -n."""
    r = (_mod if name == "mod" else _fmod)(a, b)
    if not _finite(r):
        return NAN
    return mp.mpf(0) if r == a else mp.mpf(-1) if mp.isinf(b) else mp.nint((a - r) / b)


def _log1p(v):
    return -INF if v == -1 else mp.log1p(v)


def _xlog(log):
    """x*log(y) (or log1p), 0 wherever x = 0 whatever y is."""
    def f(a, b):
        return mp.mpf(0) if a == 0 else _real(a * log(b))
    return f


# two-argument functions: name -> (value, d/da, d/db), written from the textbook here
BINARY = {
    "logaddexp": (_logaddexp, lambda a, b: 1 / (1 + _exp(b - a)),
                  lambda a, b: 1 / (1 + _exp(a - b))),
    "logaddexp2": (lambda a, b: _logaddexp(a, b, 2),
                   lambda a, b: 1 / (1 + mp.power(2, _clamp(b - a))),
                   lambda a, b: 1 / (1 + mp.power(2, _clamp(a - b)))),
    "hypot": (_hypot, lambda a, b: a / _hypot(a, b), lambda a, b: b / _hypot(a, b)),
    "mod": (_mod, lambda a, b: 1, lambda a, b: -quotient("mod", a, b)),
    "fmod": (_fmod, lambda a, b: 1, lambda a, b: -quotient("fmod", a, b)),
    "xlogy": (_xlog(_log), lambda a, b: _real(_log(b)), lambda a, b: a / b),
    "xlog1py": (_xlog(_log1p), lambda a, b: _real(_log1p(b)), lambda a, b: a / (1 + b)),
}
CLIP_ARGUMENT = (2, 2, 1, 0)  # by clip_piece: hi, hi, lo, x
POLES = ("lgamma", "digamma")  # at 0, -1, -2, ...


def clip_piece(x, lo, hi) -> int:
    """NumPy's clip: hi where x >= hi or lo >= hi, else lo where x <= lo, else x."""
    return 0 if x >= hi else 1 if lo >= hi else 2 if x <= lo else 3


SELU_SCALE = mp.mpf("1.0507009873554804934193349852946")  # Klambauer et al.'s constants
SELU_ALPHA = mp.mpf("1.6732632423543772848170429916717")
_ONE, _NONE = (lambda a: 1), None  # a constant piece has no slope: its gradient is 0


def _constant(c):
    return lambda a: mp.mpf(c)


def _elu(scale, alpha):
    return [(lambda a: a > 0, lambda a: scale * a, lambda a: scale),
            (lambda a: True, lambda a: scale * alpha * mp.expm1(_clamp(a)),
             lambda a: scale * alpha * _exp(a))]


def _trunc(a):
    return mp.floor(a) if a >= 0 else mp.ceil(a)


def _halves(a):
    """round's jumps: the half-integers either side of a."""
    return (mp.floor(a) + mp.mpf(1) / 2, mp.floor(a) - mp.mpf(1) / 2)


# functions with kinks: name -> (kinks (None: every integer; a function: those near a),
# whether the value jumps there,
# pieces). A piece is (holds(a), value(a), slope(a) or None where it is constant); the first
# that holds is taken, as the record's select takes it. The answer at a kink is a convention,
# left to the targeted tests: `resolve` rejects points near one.
KINKED = {
    "sign": ((0,), True, [(lambda a: a > 0, _constant(1), _NONE),
                          (lambda a: a < 0, _constant(-1), _NONE),
                          (lambda a: True, _constant(0), _NONE)]),
    "floor": (None, True, [(lambda a: True, mp.floor, _NONE)]),
    "ceil": (None, True, [(lambda a: True, mp.ceil, _NONE)]),
    "trunc": (None, True, [(lambda a: True, _trunc, _NONE)]),
    "round": (_halves, True, [(lambda a: True, mp.nint, _NONE)]),  # ties to even
    "hardtanh": ((-1, 1), False, [(lambda a: a <= -1, _constant(-1), _NONE),
                                  (lambda a: a >= 1, _constant(1), _NONE),
                                  (lambda a: True, lambda a: a, _ONE)]),
    "relu6": ((0, 6), False, [(lambda a: a <= 0, _constant(0), _NONE),
                              (lambda a: a >= 6, _constant(6), _NONE),
                              (lambda a: True, lambda a: a, _ONE)]),
    "leaky_relu": ((0,), False, [(lambda a: a > 0, lambda a: a, _ONE),
                                 (lambda a: True, lambda a: a / 100, lambda a: mp.mpf(1) / 100)]),
    "elu": ((0,), False, _elu(1, 1)), "celu": ((0,), False, _elu(1, 1)),
    "selu": ((0,), False, _elu(SELU_SCALE, SELU_ALPHA)),
    "softsign": ((0,), False, [(lambda a: a > 0, lambda a: a / (1 + a),
                                lambda a: 1 / (1 + a) ** 2),
                               (lambda a: True, lambda a: a / (1 - a),
                                lambda a: 1 / (1 - a) ** 2)]),
}


def piece(name: str, a) -> int:
    """The index of the piece of KINKED[name] taken at a."""
    return next(k for k, (holds, _, _) in enumerate(KINKED[name][2]) if holds(a))


def inner_rounding(name: str, a):
    """The rounding error (in units of eps) of the argument a function scales first: sinc
    takes sin of a rounded pi*a, log_ndtr erfc of a rounded a/sqrt(2), and libm's lgamma
    below 0 is as accurate as a sin(pi*a) (measured: within 60 eps (|a psi(a)| + |lgamma a|),
    17,759 ulp near its roots). digamma's reflection below 0 reduces a by round(a) exactly
    first: only pi*(a - round(a)) rounds."""
    if not _finite(a) or a >= 0 and not name.startswith("sinc") and \
            name not in ("log_ndtr", "ndtr_ratio"):
        return 0
    if name in ("digamma", "trigamma", "tetragamma"):
        return abs(a - mp.nint(a))
    scaled = name.startswith("sinc") or name in ("log_ndtr", "ndtr_ratio", "lgamma")
    return abs(a) if scaled else 0


def apply(name: str, a):
    """UNARY[name] at a, NaN outside its real domain (as IEEE arithmetic gives)."""
    if mp.isnan(a) or name in ("sin", "cos", "tan") and not abs(a) < mp.mpf("1e400"):
        return NAN  # (a float argument that large is inf: NaN; mpmath would recurse for ever)
    try:
        return _real(UNARY[name][0](a))
    except (ValueError, ZeroDivisionError, OverflowError):
        return NAN


def atan2(y, x):
    """C's atan2, infinities included (atan2(inf, inf) = pi/4, atan2(-1, -inf) = -pi)."""
    if mp.isnan(y) or mp.isnan(x):
        return NAN
    if mp.isinf(y):
        y, x = mp.sign(y), (mp.sign(x) if mp.isinf(x) else mp.mpf(0))
    elif mp.isinf(x):
        y, x = mp.sign(y) * mp.mpf("1e-1000"), mp.sign(x)
    return mp.atan2(y, x)


def divide(a, b):
    if b == 0:
        return NAN if a == 0 or mp.isnan(a) else mp.sign(a) * INF
    return a / b


def _odd(b) -> bool:
    """Whether b is an odd integer. Beyond 2**53 every float is even, and the exact parity of
    a number that large (exp(1000) exactly, say) is both unknowable to floats and too large
    an integer to compute."""
    return _finite(b) and abs(b) < 2 ** 53 and b == mp.floor(b) and int(b) % 2 == 1


def power(a, b):
    """C's pow: x**0 = 1 = 1**y, 0**negative = inf, negative**non-integer = NaN."""
    if b == 0 or a == 1:
        return mp.mpf(1)
    if mp.isnan(a) or mp.isnan(b):
        return NAN
    if a == 0:
        return mp.mpf(0) if b > 0 else INF
    if mp.isinf(b):  # C's pow: |a| < 1 shrinks to 0 under +inf, |a| > 1 grows; -1 stays 1
        grows = (abs(a) > 1) == (b > 0)
        return mp.mpf(1) if abs(a) == 1 else INF if grows else mp.mpf(0)
    odd = _odd(b)
    if a == -INF:
        return (-1 if odd else 1) * (INF if b > 0 else mp.mpf(0))
    if a < 0 and _finite(b) and b != mp.floor(b):
        return NAN
    if _finite(a) and abs(b) > 2 ** 20:  # as exp(b log|a|): mpmath's exact integer power of
        # a 50-digit base never ends; beyond 2**(2**30) (no float is near) the exponent is
        # clamped there, as mpmath cannot take exp of an argument that large
        exponent = b * mp.log(abs(a)) / mp.ln2
        exponent = max(min(exponent, 2 ** 30), -2 ** 30)
        return (-1 if odd else 1) * mp.power(2, exponent)
    try:
        return _real(mp.power(a, b))
    except (ValueError, ZeroDivisionError, OverflowError):
        return NAN


def _d(f, a, Ra):
    """|f'(a)| * Ra, zero when Ra is (an exact operand contributes no error)."""
    if Ra == 0:
        return mp.mpf(0)
    if not abs(a) < mp.mpf("1e400"):  # far beyond floats (mpmath recurses too deep there)
        return INF
    try:
        return abs(f(a)) * Ra
    except (ZeroDivisionError, OverflowError):  # mpmath's exp of a huge argument
        return INF


def _near(margin, scale) -> bool:
    return margin == 0 or (_finite(margin) and _finite(scale) and abs(margin) <= NEAR * scale)


class _Pass:
    """Every node's value at one point, in exact arithmetic with IEEE rules for inf and NaN
    (`bounded=False`; with rounding bounds R) or emulating the float format's range
    (`bounded=True`: overflow to inf, underflow to 0, `flagged` where the format is imprecise).
    """

    def __init__(self, env: dict, fmt: str, bounded: bool):
        self.env, self.fmt, self.bounded = env, fmt, bounded
        self.max, self.tiny, bits = (mp.mpf(v) for v in FORMATS[fmt])
        self.bits = int(bits)  # the format's precision: 53, or 24 for float32
        self.flush = self.tiny * mp.mpf(2) ** -bits
        self.value, self.R, self.flagged, self.sides = {}, {}, set(), {}

    def run(self, node):
        v, R = self._node(node)
        v = _real(v)
        if self.bounded and not mp.isnan(v):
            if abs(v) > self.max:
                v = mp.sign(v) * INF
            if 0 < abs(v) < self.tiny or self.max / 8 < abs(v) < INF:
                self.flagged.add(id(node))  # underflow (to 0 or subnormal), or near overflow
            if 0 < abs(v) < self.flush:
                v = mp.mpf(0)
        self.value[id(node)], self.R[id(node)] = v, R
        return v, R

    def _node(self, node):
        if isinstance(node, ast.Constant):
            c = float(node.value)
            rounded = c if self.fmt == "float64" else float(np.float32(c)) if abs(c) < 1e38 else 0
            return mp.mpf(c), (mp.mpf(0) if rounded == c else abs(mp.mpf(c)))
        if isinstance(node, ast.Name):
            return self.env[node.id], mp.mpf(0)
        if isinstance(node, ast.UnaryOp):
            a, Ra = self.run(node.operand)
            return (-a if isinstance(node.op, ast.USub) else a), Ra
        if isinstance(node, ast.BinOp):
            return self._binary(type(node.op), *self.run(node.left), *self.run(node.right))
        if isinstance(node, ast.Compare):
            (l, Rl), (r, Rr) = self.run(node.left), self.run(node.comparators[0])
            self.sides[id(node)] = (l, r, Rl + Rr + abs(l) + abs(r))
            truth = {ast.Lt: l < r, ast.LtE: l <= r, ast.Gt: l > r, ast.GtE: l >= r,
                     ast.Eq: l == r, ast.NotEq: l != r}
            return mp.mpf(truth[type(node.ops[0])]), mp.mpf(0)
        return self._call(node.func.id, node.args)

    def _binary(self, op, a, Ra, b, Rb):
        if op is ast.Add or op is ast.Sub:
            v = a + b if op is ast.Add else a - b
            return v, Ra + Rb + abs(v)
        if op is ast.Mult:  # and the second-order term: two inexact zeros (sinc(1)**2,
            v = a * b  # 0 exactly, 1.5e-33 in floats) multiply their errors, eps Ra Rb
            second = Ra * Rb * mp.mpf(2) ** (1 - self.bits) if _finite(Ra * Rb) else 0
            return v, _d(lambda _: b, a, Ra) + _d(lambda _: a, b, Rb) + abs(v) + second
        if op is ast.Div:
            v = divide(a, b)
            return v, _d(lambda _: divide(1, b), a, Ra) + _d(lambda _: divide(a, b * b), b, Rb) \
                + abs(v)
        if _finite(a) and a < 0 and _finite(b) and b != mp.nint(b) \
                and abs(b - mp.nint(b)) <= 4 * (Rb + abs(b)) * mp.mpf(2) ** (1 - self.bits):
            # a negative base to a power that rounding may make an integer: real or NaN
            # depends on the last bit (x**(1 + 1e-38) is NaN exactly, -1 in floats)
            raise Reject("a negative base to a power within rounding of an integer")
        if _finite(a) and a < 0 and _finite(b) and abs(b) >= 2 ** self.bits:
            # every float that large is even: b - 1 rounds to b, and the derivative's sign
            # (-1)**(b - 1) with it
            raise Reject("a negative base to a power beyond the floats' odd integers")
        v = power(a, b)
        return v, _d(lambda _: b * power(a, b - 1), a, Ra) + \
            _d(lambda _: v * _log(abs(a)), b, Rb) + abs(v)

    def _call(self, name, args):
        if name == "where":
            cond, _ = self.run(args[0])
            (a, Ra), (b, Rb) = self.run(args[1]), self.run(args[2])
            return (a, Ra) if (mp.isnan(cond) or cond != 0) else (b, Rb)
        vals = [self.run(a) for a in args]
        if name == "hypot" and any(mp.isinf(v) for v, _ in vals):
            return INF, mp.mpf(0)  # C's hypot: an infinite leg wins, even over NaN
        if name in ("xlogy", "xlog1py") and vals[0][0] == 0:
            return mp.mpf(0), mp.mpf(0)  # whatever y is, NaN included
        if any(mp.isnan(v) for v, _ in vals):
            return NAN, mp.mpf(0)
        if name == "clip":
            return vals[CLIP_ARGUMENT[clip_piece(*(v for v, _ in vals))]]
        if name in KINKED:
            (a, Ra), = vals
            _, value, slope = KINKED[name][2][piece(name, a)]
            v = value(a)
            return (v, mp.mpf(0)) if slope is None else (v, _d(slope, a, Ra) + 2 * abs(v))
        if name in BINARY:
            (a, Ra), (b, Rb) = vals
            f, da, db = BINARY[name]
            try:
                v = f(a, b)
            except (ValueError, ZeroDivisionError, OverflowError):
                v = NAN
            return v, _d(lambda _: da(a, b), a, Ra) + _d(lambda _: db(a, b), b, Rb) + abs(v)
        if name in ("max", "min"):
            pick = max if name == "max" else min
            return vals[pick(range(len(vals)), key=lambda k: vals[k][0])]
        if name == "relu":
            a, Ra = vals[0]
            return (a, Ra) if a > 0 else (mp.mpf(0), mp.mpf(0))
        if name == "atan2":
            (y, Ry), (x, Rx) = vals
            v = atan2(y, x)
            r2 = x * x + y * y
            return v, _d(lambda _: divide(x, r2), y, Ry) + _d(lambda _: divide(y, r2), x, Rx) \
                + abs(v)
        (a, Ra), = vals
        v = apply(name, a)
        Ra = Ra + inner_rounding(name, a)
        return v, _d(UNARY[name][1], a, Ra) + (0 if name == "abs" else abs(v))


def _same(a: ast.AST, b: ast.AST) -> bool:
    """Structurally equal subtrees: symdiff computes them once, so their floats are equal."""
    return ast.dump(a) == ast.dump(b)


def resolve(p: _Pass, node, level: int, live: dict, decisions: dict, strict: bool) -> None:
    """Walk from the output down, recording each kink's and where's decision and each node's
    level (GRAD: its gradient matters; VALUE: only its value; DEAD: a branch not taken).
    With `strict`, raise Reject where a decision sits on its boundary."""
    live[id(node)] = max(level, live.get(id(node), DEAD))
    v = lambda n: p.value[id(n)]  # noqa: E731
    children = [(c, level) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
    if isinstance(node, ast.Compare):  # a comparison used as a value: 1 or 0
        decisions[id(node)] = _condition(p, node, level, strict)
    if isinstance(node, ast.Call):
        name, args = node.func.id, node.args
        children = [(a, level) for a in args]
        if level > DEAD and name != "where" and any(mp.isnan(v(a)) for a in args) and \
                (name in ("relu", "abs", "max", "min", "atan2", "clip") or name in KINKED) \
                and strict:
            raise Reject(f"NaN reaches {name}")
        if name in ("relu", "abs"):
            a = v(args[0])
            if strict and level == GRAD and _near(a, p.R[id(args[0])] + abs(a)):
                raise Reject(f"{name} at its kink")
            decisions[id(node)] = bool(a > 0)
            if name == "relu" and not a > 0:
                children = [(args[0], min(level, VALUE))]
        elif name in ("max", "min"):
            best = p.value[id(node)]
            k = next((i for i, a in enumerate(args) if v(a) == best), 0)
            for i, a in enumerate(args):
                scale = p.R[id(a)] + p.R[id(args[k])] + abs(v(a)) + abs(best)
                if strict and level == GRAD and i != k and _near(v(a) - best, scale) \
                        and not _same(a, args[k]):
                    raise Reject(f"{name} with a near tie")
            decisions[id(node)] = k
            children = [(a, level if i == k else min(level, VALUE)) for i, a in enumerate(args)]
        elif name == "where":
            truth = _condition(p, args[0], level, strict)
            decisions[id(node)] = truth
            children = [(args[0], min(level, VALUE)), (args[1], level if truth else DEAD),
                        (args[2], DEAD if truth else level)]
        elif name == "clip":
            decisions[id(node)] = k = clip_piece(*(v(a) for a in args))
            _clip_ties(p, args, k, strict and level == GRAD)
            children = [(a, level if i == CLIP_ARGUMENT[k] else min(level, VALUE))
                        for i, a in enumerate(args)]
        elif name in ("mod", "fmod"):
            a, b = v(args[0]), v(args[1])
            decisions[id(node)] = quotient(name, a, b)
            if strict and level > DEAD and undetermined(p, args[1]):
                raise Reject(f"{name} by a divisor whose 0 floats decide")
            if strict and level > DEAD and _finite(a) and _finite(b) and b != 0:
                n = mp.nint(a / b)  # the nearest multiple: a jump
                if _near(a - n * b, p.R[id(args[0])] + abs(n) * p.R[id(args[1])] + abs(a)):
                    raise Reject(f"{name} at a multiple of its divisor")
        elif name in ("xlogy", "xlog1py") and strict and level > DEAD:
            b = v(args[1])
            if undetermined(p, args[0]) and not (_finite(b) and b > (0 if name == "xlogy" else -1)):
                raise Reject(f"{name} of an x whose 0 floats decide, where log(y) is not finite")
        elif name in POLES and strict and level > DEAD and _finite(v(args[0])):
            a = v(args[0])
            if a < 1 and _near(a - mp.nint(a), p.R[id(args[0])] + abs(a)):
                raise Reject(f"{name} at a pole")
        elif name == "erfinv" and strict and level > DEAD and _finite(v(args[0])):
            a = v(args[0])
            computed = not isinstance(args[0], (ast.Constant, ast.Name, ast.UnaryOp))
            if computed and _near(abs(a) - 1, p.R[id(args[0])] + abs(a)):
                raise Reject("erfinv at +-1, where floats decide between inf and NaN")
        elif name == "hypot" and strict and level == GRAD and all(
                _near(v(a), p.R[id(a)] + abs(v(a))) for a in args):
            raise Reject("hypot at its kink (0, 0)")
        elif name in KINKED:
            a, (kinks, jumps, pieces) = v(args[0]), KINKED[name]
            if strict and (level > DEAD if jumps else level == GRAD) and _finite(a) and any(
                    _near(a - k, p.R[id(args[0])] + abs(a))
                    for k in (kinks(a) if callable(kinks) else kinks or (mp.floor(a),
                                                                          mp.ceil(a)))):
                raise Reject(f"{name} at its kink")
            k = piece(name, a)
            if pieces[k][2] is None:  # a constant: the decision says which
                decisions[id(node)] = (k, pieces[k][1](a))
                children = [(args[0], min(level, VALUE))]
            else:
                decisions[id(node)] = k
        elif name == "cbrt":  # the oracle's SymPy form depends on the argument's sign
            decisions[id(node)] = bool(v(args[0]) >= 0)
        elif name == "atan2" and strict and level > DEAD:
            y, x = v(args[0]), v(args[1])
            if _near(y, p.R[id(args[0])] + abs(y)) and (x < 0 or level == GRAD and
                                                        _near(x, p.R[id(args[1])] + abs(x))):
                raise Reject("atan2 on its branch cut")
    if strict and level > DEAD:
        _signs_matter(p, node)
    for child, lev in children:
        resolve(p, child, lev, live, decisions, strict)


def _clip_ties(p: _Pass, args, k: int, strict: bool) -> None:
    """Reject where one of clip's comparisons (x with hi, lo with hi, x with lo) that
    decided piece k sits on its boundary: its slopes there are a convention."""
    if not strict:
        return
    pairs = [(0, 2)] + ([(1, 2), (0, 1)] if k > 0 else [])
    for i, j in pairs:
        a, b = args[i], args[j]
        scale = p.R[id(a)] + p.R[id(b)] + abs(p.value[id(a)]) + abs(p.value[id(b)])
        if _near(p.value[id(a)] - p.value[id(b)], scale) and not _same(a, b):
            raise Reject("clip at a bound")


def undetermined(p: _Pass, node) -> bool:
    """Whether floats may not even get the sign of node's value: 0 (IEEE has two, mpmath one;
    literal constants and the points' inputs are +0) or within the rounding bound of 0."""
    if isinstance(node, (ast.Constant, ast.Name)) or isinstance(node, ast.UnaryOp) and \
            isinstance(node.operand, (ast.Constant, ast.Name)):
        return False
    v = p.value[id(node)]
    return _finite(v) and _near(v, p.R[id(node)] + abs(v))


def at_a_pole(p: _Pass, node) -> bool:
    """Whether node is tan of a computed value within its rounding bound of a pole: floats
    may land on either side (tan(atan2(1, 0)) is +1.6e16 in floats, of either sign exactly)."""
    if not (isinstance(node, ast.Call) and node.func.id == "tan"):
        return False
    a = node.args[0]
    v = p.value[id(a)]
    return not isinstance(a, (ast.Constant, ast.Name)) and _finite(v) and \
        _near(mp.cos(v), p.R[id(a)] + abs(v))


def _signs_matter(p: _Pass, node) -> None:
    """Reject where the result hangs on the sign of an operand that floats may not get: a
    divisor (x/+0 = inf, x/-0 = -inf), a power's base (NaN or a number; 1/+0 or 1/-0), the
    argument of sqrt or log (NaN or a number), both arguments of atan2 at zeros."""
    v = lambda n: p.value[id(n)]  # noqa: E731
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        if undetermined(p, node.right) and v(node.left) != 0 and not mp.isnan(v(node.left)):
            raise Reject("a division by a zero whose sign floats decide")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, e = node.left, v(node.right)
        odd_negative = e < 0 and _odd(e)
        if undetermined(p, base) and (v(base) != 0 and e != mp.floor(e) or
                                      v(base) == 0 and odd_negative):
            raise Reject("a power of a base whose sign floats decide")
    if isinstance(node, ast.Call) and node.func.id == "atan2" and \
            undetermined(p, node.args[1]) and v(node.args[1]) == 0 and \
            (v(node.args[0]) == 0 or undetermined(p, node.args[0])):
        raise Reject("atan2 of zeros whose signs floats decide (0, pi or -pi)")
    if isinstance(node, ast.Call) and node.func.id in ("sqrt", "log", "log2", "log10", "rsqrt",
                                                       "logit") and \
            undetermined(p, node.args[0]) and v(node.args[0]) != 0:
        raise Reject(f"{node.func.id} of a value whose sign floats decide")
    if isinstance(node, ast.Call) and node.func.id == "xlogy" and v(node.args[0]) != 0 and \
            undetermined(p, node.args[1]) and v(node.args[1]) != 0:
        raise Reject("xlogy of a y whose sign floats decide")


def _condition(p: _Pass, cond, level: int, strict: bool) -> bool:
    if isinstance(cond, ast.Compare):
        l, r, scale = p.sides[id(cond)]
        if strict and level > DEAD:
            if mp.isnan(l) or mp.isnan(r):
                raise Reject("NaN in a comparison")
            if _near(l - r, scale) and not _same(cond.left, cond.comparators[0]):
                raise Reject("where on its boundary")
        return bool(p.value[id(cond)] != 0)
    c = p.value[id(cond)]
    if strict and level > DEAD and (mp.isnan(c) or _near(c, p.R[id(cond)] + abs(c))):
        raise Reject("where's condition at 0 or NaN")
    return bool(mp.isnan(c) or c != 0)



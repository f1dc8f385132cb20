"""Elementwise functions as records, SymPy bodies, and their memoised local derivatives.

Bodies are SymPy expressions over placeholders a0, a1, ...; FUNCTIONS holds one record per
function that formulas and `sd.*` may call by name, read by every backend (adding a function
is adding a record). Functions SymPy has no class for (gelu, logaddexp, ...) are composite
records, defined by their stable formulas over the others; ALIASES maps other names (NumPy's
arcsinh) to records. A local derivative is `sympy.diff` of one small body, never of a whole
model, rewritten through the forward value `out` where that is simpler (d exp = out,
d sigmoid = out*(1 - out)), and cached: bodies repeat across a model and across models.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Callable

import numpy as np
import sympy as sp
from sympy.codegen import cfunctions
from sympy.codegen.cfunctions import exp2, expm1, log1p, log2, log10

class sigmoid(sp.Function):
    """1 / (1 + exp(-x)); its derivative reuses the forward value."""

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sp.exp(-x))


class softplus(sp.Function):
    """log(1 + exp(x)), printed in its overflow-free form."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.log(1 + sp.exp(x))


class floor(sp.Function):
    """The largest integer not above x; its derivative is 0 (it is constant between jumps)."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.floor(x)


class ceil(sp.Function):
    """The smallest integer not below x; its derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.ceiling(x)


class trunc(sp.Function):
    """x rounded toward 0; its derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sp.floor(x) if x >= 0 else sp.ceiling(x)


class round(sp.Function):
    """x rounded to the nearest integer, ties to even (NumPy's round, C's rint); its
    derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            down = sp.floor(x)
            rest = x - down
            return down + (1 if rest > sp.S.Half or rest == sp.S.Half and down % 2 else 0)


class fmod(sp.Function):
    """C's fmod: x - trunc(x/y)*y, with the sign of x. It jumps where x/y is an integer; between
    the jumps its slopes are 1 by x and -trunc(x/y) by y (so also at a jump, where it is 0)."""

    def fdiff(self, argindex=1):
        x, y = self.args
        return sp.S.One if argindex == 1 else -trunc(x / y)

    @classmethod
    def eval(cls, x, y):
        if x.is_Number and y.is_Number and x.is_finite and y.is_finite and y != 0:
            return x - trunc(x / y) * y


class relu(sp.Function):
    """max(x, 0), with relu'(0) = 0 as in PyTorch and JAX."""

    def fdiff(self, argindex=1):  # relu(x) > 0 exactly where x > 0: the adjoint reads the
        return sp.Heaviside(self, 0)  # output, so the input need not be kept

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)


class ndtr(sp.Function):
    """The standard normal CDF, erfc(-x/sqrt(2))/2: accurate in the far negative tail, where
    (1 + erf(x/sqrt(2)))/2 cancels to 0. Its own class because SymPy rewrites erfc(-u) as
    2 - erfc(u), the cancelling form."""

    def fdiff(self, argindex=1):
        return sp.Float(1 / math.sqrt(2 * math.pi)) * sp.exp(-self.args[0]**2 / 2)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return (1 + sp.erf(x / sp.sqrt(2))) / 2


class cbrt(sp.Function):
    """The real cube root, negative for negative x (SymPy's cbrt is the principal root,
    complex there); cbrt'(x) = 1/(3 cbrt(x)**2) is finite for negative x too."""

    def fdiff(self, argindex=1):
        return 1 / (3 * cbrt(self.args[0]) ** 2)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.real_root(x, 3)


class hypot(cfunctions.hypot):
    """sqrt(x**2 + y**2) without overflow; its slope at (0, 0) is 0, as abs'(0) is."""

    def fdiff(self, argindex=1):
        return sp.Piecewise((self.args[argindex - 1] / self, sp.Ne(self, 0)), (0, True))


class lgamma(sp.Function):
    """log|Gamma(x)| (C's lgamma, real for negative x, where SymPy's loggamma is complex); its
    derivative is digamma."""

    def fdiff(self, argindex=1):
        return digamma(self.args[0])  # noqa: F821  (a composite record, defined below)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Float(_lgamma_scalar(float(x)))


def _lgamma_scalar(x: float) -> float:
    try:
        return math.lgamma(x)
    except (ValueError, OverflowError):  # its poles, and beyond 1e305: +inf, as C's lgamma
        return math.inf


_erf, _erfc = (np.vectorize(f, otypes=[float]) for f in (math.erf, math.erfc))  # no scipy:
# importing scipy.special would cost 0.3 s


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


@dataclass(frozen=True)
class Function:
    """Everything symdiff knows about one elementwise function; every backend reads it.

    `sympy` builds the body (its derivative comes from SymPy); `numpy` evaluates it on
    arrays; `numba` and `numba32` are scalar Numba code for float64 and float32 ({0}, {1}:
    the operands; np.* keeps float32 where math.* would give float64), and the tape's
    interpreter gets an instruction from the float64 form. `api` is its name in `sd.*`,
    `arity` None means two or more, `domain` is where tests sample it.

    A composite record (`sd.function`) has a `definition`, a SymPy expression of `params`
    over functions that have records: the backends expand it in place of a call (the kernel
    printer prints it, the tape lowers it to existing instructions, `numpy` evaluates it),
    and its SymPy class's derivative is the user's, or SymPy's of the definition.
    """

    name: str
    sympy: Callable
    numpy: Callable
    numba: str
    numba32: str
    arity: int | None = 1
    domain: tuple[float, float] = (-3.0, 3.0)
    api: str = ""
    definition: sp.Expr | None = None
    params: tuple = ()
    derivatives: tuple | None = None  # a composite record's own derivatives, if given
    internal: bool = False  # used by symdiff's own rules, not offered to formulas or sd.*
    aliases: tuple[str, ...] = ()  # other names formulas and sd.* accept (NumPy's spellings)

    @property
    def sympy_class(self):
        """The SymPy class of a body built by this function (sqrt gives a Pow: None)."""
        return self.sympy if isinstance(self.sympy, type) else None

    def expand(self, args) -> sp.Expr:
        """A composite record's definition applied to `args`."""
        return self.definition.xreplace(dict(zip(self.params, args)))


class finite(sp.Function):
    """x where x is finite, else 0: what a product with an exact 0 keeps of x (0 * inf is
    taken as 0 there). Its derivative is 1, as x's where x is finite."""

    def fdiff(self, argindex=1):
        return sp.S.One

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.S.Zero if x in (sp.nan, sp.oo, -sp.oo, sp.zoo) else x


def _unary(name, sympy, numpy, numba=None, numba32=None, **more):
    return Function(name, sympy, numpy, numba or f"math.{name}({{0}})",
                    numba32 or f"np.{name}({{0}})", **more)


_SIGMOID = "(({one} if {{0}} >= 0.0 else {m}.exp(-abs({{0}}))) / ({one} + {m}.exp(-abs({{0}}))))"
_SOFTPLUS = "(max({{0}}, {zero}) + {m}.log1p({m}.exp(-abs({{0}}))))"
F32 = {"one": "np.float32(1.0)", "zero": "np.float32(0.0)", "m": "np"}
F64 = {"one": "1.0", "zero": "0.0", "m": "math"}

FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    _unary("exp", sp.exp, np.exp),
    _unary("log", sp.log, np.log, domain=(0.1, 3.0)),
    _unary("sqrt", sp.sqrt, np.sqrt, domain=(0.1, 3.0)),
    _unary("sin", sp.sin, np.sin), _unary("cos", sp.cos, np.cos),
    _unary("tan", sp.tan, np.tan, domain=(-1.2, 1.2)),
    _unary("sinh", sp.sinh, np.sinh), _unary("cosh", sp.cosh, np.cosh),
    _unary("tanh", sp.tanh, np.tanh),
    _unary("asin", sp.asin, np.arcsin, numba32="np.arcsin({0})", domain=(-0.9, 0.9),
           aliases=("arcsin",)),
    _unary("acos", sp.acos, np.arccos, numba32="np.arccos({0})", domain=(-0.9, 0.9),
           aliases=("arccos",)),
    _unary("atan", sp.atan, np.arctan, numba32="np.arctan({0})", aliases=("arctan",)),
    Function("atan2", sp.atan2, np.arctan2, "math.atan2({0}, {1})", "np.arctan2({0}, {1})",
             arity=2, domain=(0.2, 3.0), aliases=("arctan2",)),
    _unary("asinh", sp.asinh, np.arcsinh, numba32="np.arcsinh({0})", aliases=("arcsinh",)),
    _unary("acosh", sp.acosh, np.arccosh, numba32="np.arccosh({0})", domain=(1.1, 3.0),
           aliases=("arccosh",)),
    _unary("atanh", sp.atanh, np.arctanh, numba32="np.arctanh({0})", domain=(-0.9, 0.9),
           aliases=("arctanh",)),
    _unary("log2", log2, np.log2, domain=(0.1, 3.0)),
    _unary("log10", log10, np.log10, domain=(0.1, 3.0)),
    _unary("exp2", exp2, np.exp2, numba="np.exp2({0})"),  # Numba has no math.exp2
    _unary("cbrt", cbrt, np.cbrt, numba="np.cbrt({0})"),  # nor math.cbrt
    Function("hypot", hypot, np.hypot, "math.hypot({0}, {1})", "np.hypot({0}, {1})", arity=2),
    Function("sign", sp.sign, np.sign, "np.sign({0})", "np.sign({0})"),
    Function("abs", sp.Abs, np.abs, "abs({0})", "abs({0})"),
    _unary("erf", sp.erf, _erf, numba32="np.float32(math.erf({0}))"),  # only math.erf compiles
    _unary("erfc", sp.erfc, _erfc, numba32="np.float32(math.erfc({0}))"),
    _unary("log1p", log1p, np.log1p, domain=(-0.9, 3.0)),
    _unary("expm1", expm1, np.expm1),
    Function("ndtr", ndtr, lambda x: 0.5 * _erfc(-x / math.sqrt(2.0)),
             "(0.5 * math.erfc(-0.7071067811865476 * {0}))",  # erfc(-x/sqrt 2)/2
             "np.float32(0.5 * math.erfc(-0.7071067811865476 * {0}))"),
    Function("lgamma", lgamma, np.vectorize(_lgamma_scalar, otypes=[float]),
             "math.lgamma({0})", "np.float32(math.lgamma({0}))", domain=(0.2, 5.0)),
    Function("sigmoid", sigmoid, _sigmoid, _SIGMOID.format(**F64), _SIGMOID.format(**F32)),
    Function("softplus", softplus, lambda x: np.logaddexp(0.0, x), _SOFTPLUS.format(**F64),
             _SOFTPLUS.format(**F32)),
    Function("relu", relu, lambda x: np.maximum(x, 0.0), "np.maximum({0}, 0.0)",
             "np.maximum({0}, np.float32(0.0))"),
    Function("max", sp.Max, np.maximum, "np.maximum({0}, {1})", "np.maximum({0}, {1})",
             arity=None, api="maximum", aliases=("maximum",)),
    Function("min", sp.Min, np.minimum, "np.minimum({0}, {1})", "np.minimum({0}, {1})",
             arity=None, api="minimum", aliases=("minimum",)),
    Function("floor", floor, np.floor, "np.floor({0})", "np.floor({0})"),
    Function("ceil", ceil, np.ceil, "np.ceil({0})", "np.ceil({0})"),
    Function("trunc", trunc, np.trunc, "np.trunc({0})", "np.trunc({0})"),
    Function("round", round, np.rint, "np.rint({0})", "np.rint({0})",  # ties to even
             domain=(0.6, 2.4)),  # samples away from its jumps at 0.5 and 2.5
    Function("fmod", fmod, np.fmod, "np.fmod({0}, {1})", "np.fmod({0}, {1})", arity=2,
             domain=(0.5, 3.0)),  # Numba has no math.fmod
    Function("finite", finite, lambda x: np.where(np.isfinite(x), x, 0.0),
             "({0} if math.isfinite({0}) else 0.0)",
             "({0} if math.isfinite({0}) else np.float32(0.0))", internal=True),
]}
BY_CLASS = {f.sympy_class: f for f in FUNCTIONS.values() if f.sympy_class is not None}
# SymPy's own classes for functions whose records have their own: the records' classes
# replace them in SymPy models and sd.function bodies
EQUIVALENT = {sp.floor: floor, sp.ceiling: ceil, cfunctions.hypot: hypot,
              sp.loggamma: lgamma}  # loggamma: as log|Gamma| (complex below 0 in SymPy)
BY_CLASS.update({cls: BY_CLASS[ours] for cls, ours in EQUIVALENT.items()})


def define_composite(name: str, definition: sp.Expr, params: tuple, derivatives=None,
                     domain=(-3.0, 3.0), aliases=()) -> Function:
    """Add (or replace) the composite record `name`: `definition` over `params`, with
    `derivatives` (one expression of `params` per parameter) or SymPy's."""
    def fdiff(self, argindex=1):
        k = argindex - 1
        d = derivatives[k] if derivatives else sp.diff(definition, params[k])
        return d.xreplace(dict(zip(params, self.args)))

    def eval(cls, *args):
        if all(a.is_Number for a in args):
            return definition.xreplace(dict(zip(params, args)))

    cls = type(name, (sp.Function,), {"nargs": len(params), "fdiff": fdiff,
                                      "eval": classmethod(eval)})
    names = [p.name for p in params]
    record = Function(name, cls, lambda *values: evaluate_body(definition,
                                                               dict(zip(names, values))),
                      "", "", arity=len(params), domain=domain, definition=definition,
                      params=tuple(params), derivatives=derivatives and tuple(derivatives),
                      aliases=tuple(aliases))
    FUNCTIONS[name] = BY_CLASS[cls] = record
    return record


def _composite(name, body, derivatives=None, **more) -> None:
    """A built-in composite record: `body` (and `derivatives`) a Python function of real
    SymPy symbols named by its parameters."""
    params = [sp.Symbol(p, real=True) for p in inspect.signature(body).parameters]
    record = define_composite(name, body(*params), tuple(params),
                              derivatives and [d(*params) for d in derivatives], **more)
    globals()[name] = record.sympy  # its class by name here, where pickle looks for it


# Functions SymPy has no class for, defined by their stable forms: the backends expand them
# into the records above. Branches follow relu's convention: at a kink the derivative is the
# one of the branch that holds for x < 0 or beyond a bound (relu'(0) = 0), and NaN takes the
# last branch, so it reaches the result.
LN2 = sp.Float(math.log(2.0))
SELU_ALPHA, SELU_SCALE = sp.Float(1.6732632423543772), sp.Float(1.0507009873554805)
_composite("log_sigmoid", lambda x: -softplus(-x))  # log(sigmoid(x)) without overflow
_composite("silu", lambda x: x * sigmoid(x), aliases=("swish",))
_composite("softsign", lambda x: x / (1 + sp.Abs(x)))
_composite("elu", lambda x: sp.Piecewise((x, x > 0), (expm1(x), True)))  # alpha = 1
_composite("selu", lambda x: SELU_SCALE * sp.Piecewise((x, x > 0),
                                                        (SELU_ALPHA * expm1(x), True)))
_composite("celu", lambda x: sp.Piecewise((x, x > 0), (expm1(x), True)))  # alpha = 1
_composite("mish", lambda x: x * sp.tanh(softplus(x)))
_composite("gelu", lambda x: x * ndtr(x))  # the exact (erf) form
_composite("hardtanh", lambda x: sp.Piecewise(  # nested: SymPy's Or of two bounds would not
    (-1, x <= -1), (sp.Piecewise((1, x >= 1), (x, True)), True)))  # lower to the tape
_composite("relu6", lambda x: sp.Piecewise(
    (0, x <= 0), (sp.Piecewise((6, x >= 6), (x, True)), True)), domain=(-2.0, 8.0))
_composite("leaky_relu", lambda x: sp.Piecewise((x, x > 0), (sp.Float(0.01) * x, True)))
# max(a, b) + log(1 + exp(-|a - b|)); equal infinities take the first branch (inf - inf is
# NaN); d/da = sigmoid(a - b), exact at ties (1/2) and without Max's select
_composite("logaddexp", lambda a, b: sp.Piecewise(
    (sp.Max(a, b) + LN2, sp.Eq(a, b)), (sp.Max(a, b) + log1p(sp.exp(-sp.Abs(a - b))), True)),
    [lambda a, b: sigmoid(a - b), lambda a, b: sigmoid(b - a)])
_composite("logaddexp2", lambda a, b: sp.Piecewise(
    (sp.Max(a, b) + 1, sp.Eq(a, b)), (sp.Max(a, b) + log1p(exp2(-sp.Abs(a - b))) / LN2, True)),
    [lambda a, b: 1 / (1 + exp2(b - a)), lambda a, b: 1 / (1 + exp2(a - b))])  # not
# sigmoid(ln2 (a - b)): SymPy would distribute ln2, and ln2 a - ln2 b cancels
_composite("square", lambda x: x**2)
_composite("reciprocal", lambda x: 1 / x, domain=(0.5, 3.0))
_composite("rsqrt", lambda x: 1 / sp.sqrt(x), domain=(0.5, 3.0))
_composite("logit", lambda x: sp.log(x) - log1p(-x), domain=(0.05, 0.95))
# min(max(x, lo), hi) as NumPy computes it (hi wherever lo > hi), nested (SymPy would join
# two bounds in an And the tape cannot lower); at a bound the slope is the one beyond it:
# 0 by x, 1 by the bound (Max and Min would split ties in halves)
_composite("clip", lambda x, lo, hi: sp.Piecewise((hi, x >= hi), (sp.Piecewise(
    (hi, lo >= hi), (sp.Piecewise((lo, x <= lo), (x, True)), True)), True)))
# the sign of the divisor (Python's and NumPy's %): fmod, moved by y where their signs differ
# (exact, as x - y*floor(x/y) is not); 0 at multiples of y, where the slope by y is -x/y
_composite("mod", lambda x, y: sp.Piecewise(
    (sp.Piecewise((fmod(x, y) + y, fmod(x, y) < 0), (fmod(x, y), True)), y > 0),
    (sp.Piecewise((fmod(x, y) + y, fmod(x, y) > 0), (fmod(x, y), True)), True)),
    domain=(0.5, 3.0), aliases=("remainder",))


def _maclaurin(coefficients, t):
    """sum of c_k t**k, by Horner's rule."""
    return reduce(lambda acc, c: acc * t + c, reversed(coefficients[:-1]), coefficients[-1])


# sin(pi x)/(pi x), 1 at 0; below |x| = 1/8 by its Maclaurin series (8 terms, exact to
# rounding there), where the quotient's derivatives would cancel
_SINC = [sp.Float((-1) ** k * math.pi ** (2 * k) / math.factorial(2 * k + 1)) for k in range(8)]
_PI = sp.Float(math.pi)
_composite("sinc", lambda x: sp.Piecewise((_maclaurin(_SINC, x * x), sp.Abs(x) < 0.125),
                                          (sp.sin(_PI * x) / (_PI * x), True)))
# x*log(y), 0 where x = 0 whatever y is; its slopes stay those of x*log(y) there (log(y)
# by x, -inf at y = 0; x/y by y, NaN at y = 0), so the mixed second derivatives agree
_composite("xlogy", lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * sp.log(y), True)),
           [lambda x, y: sp.log(y), lambda x, y: x / y], domain=(0.5, 3.0))
_composite("xlog1py", lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * log1p(y), True)),
           [lambda x, y: log1p(y), lambda x, y: x / (1 + y)], domain=(0.5, 3.0))
# log(ndtr(x)): log1p(-ndtr(-x)) above 0 (ndtr rounds to 1 there), and below -20 the
# asymptotic series ndtr(x) = phi(x)/(-x) * (1 - 1/x**2 + 3/x**4 - ...), whose 12 terms are
# exact to rounding there; erfc underflows below -37
_LOG_NDTR = [sp.S.Zero] + [sp.Integer((-1) ** k * math.prod(range(1, 2 * k, 2)))
                           for k in range(1, 13)]
_LOG_SQRT_2PI = sp.Float(0.5 * math.log(2 * math.pi))
_composite("log_ndtr", lambda x: sp.Piecewise(
    (log1p(-ndtr(-x)), x > 0),
    (sp.Piecewise((sp.log(ndtr(x)), x > -20),
                  (-x**2 / 2 - sp.log(-x) - _LOG_SQRT_2PI
                   + log1p(_maclaurin(_LOG_NDTR, 1 / x**2)), True)), True)),
    domain=(-30.0, 5.0))
# digamma = lgamma': within 0.3 of its positive root by its Taylor series (25 terms; the
# other forms cancel there); above 10 by the asymptotic series log x - 1/(2x) - sum of
# B_2k/(2k x**2k) (8 terms); between 0 and 10 by psi(x) = psi(x + 10) - sum 1/(x + k); below
# 0 by the reflection psi(x) = psi(1 - x) - pi/tan(pi x). Within 6 ulp above 0 (measured)
_X0 = sp.Float(1.4616321449683622)  # the float nearest the root
_DIGAMMA_X0 = [sp.Float(c) for c in (  # psi^(k)(_X0)/k!, psi(_X0) first
    -9.241265521729427e-17, 0.9676722454476212, -0.4427631689835922, 0.2584997609556511,
    -0.16394270544240658, 0.10782405069126241, -0.07219956125645474, 0.04880428816414313,
    -0.033161126474847376, 0.022597648232218118, -0.01542476590494897, 0.010538791616612184,
    -0.007204534386356875, 0.004926781395729858, -0.0033698016554393312, 0.00230512632673493,
    -0.001576936771430199, 0.0010788252019162978, -0.000738070938996006, 0.0005049532658346027,
    -0.0003454680251063082, 0.00023635601564027086, -0.00016170622091974827,
    0.00011063372768747428, -7.569179582195078e-05)]
_BERNOULLI = [sp.Float(float(sp.bernoulli(2 * k) / (2 * k))) for k in range(1, 9)]


def _digamma_above_0(x):
    def asymptotic(z):
        return sp.log(z) - 1 / (2 * z) - _maclaurin(_BERNOULLI, 1 / z**2) / z**2
    return sp.Piecewise((asymptotic(x), x >= 10),
                        (asymptotic(x + 10) - sp.Add(*(1 / (x + k) for k in range(10))), True))


_composite("digamma", lambda x: sp.Piecewise(
    (_maclaurin(_DIGAMMA_X0, x - _X0), sp.Abs(x - _X0) < 0.3),
    (sp.Piecewise((_digamma_above_0(x), x > 0),
                  (_digamma_above_0(1 - x) - _PI / sp.tan(_PI * x), True)), True)),
    domain=(0.2, 5.0))


@lru_cache(maxsize=None)  # the definition and its derivative share one build
def _erfinv_unsigned(x):
    """erfinv(x) below |x| = 1/2 (odd in x), |erfinv(x)| above: one Halley step (it cubes
    the error) from a start within 4e-7. Below 1/2 it solves erf(y) = x from the Maclaurin
    series (10 terms; analytic at 0, so every derivative is); above, log(erfc(y)) =
    log(1 - |x|) from a Chebyshev fit in sqrt(-log(1 - x**2)): exact there (1 - |x| is) and
    nearly quadratic in y, where erf(y) - x would cancel."""
    u = _SQRT_PI / 2 * x
    y = u * _maclaurin(_ERFINV, u**2)
    r = (sp.erf(y) - x) * _SQRT_PI / (2 * sp.exp(-y**2))
    y = y - r / (1 + y * r)
    a = sp.Abs(x)
    tail = _maclaurin(_ERFINV_TAIL, sp.sqrt(-sp.log((1 - a) * (1 + a))))
    g, m = sp.log(sp.erfc(tail)) - log1p(-a), 2 * sp.exp(-tail**2) / (_SQRT_PI * sp.erfc(tail))
    tail = tail + 2 * g / (2 * m - g * (2 * tail - m))
    return y, sp.Piecewise((sp.oo, sp.Eq(a, 1)), (tail, True))  # NaN beyond 1


_SQRT_PI = sp.Float(math.sqrt(math.pi))
_ERFINV = [sp.Float(c) for c in (  # erfinv(x) = u * sum c_k u**2k, u = sqrt(pi) x/2
    1.0, 0.3333333333333333, 0.23333333333333334, 0.2015873015873016, 0.19263668430335096,
    0.19532547699214367, 0.20593586454697566, 0.22320975741875212, 0.24697023314275493,
    0.277653825603224)]
_ERFINV_TAIL = [sp.Float(c) for c in (  # within 4e-7 for 0.53 <= sqrt(-log(1 - x**2)) <= 6.1
    0.000912826417255594, 0.8774109260267693, 0.03767384554227862, -0.08376467422961384,
    0.15376042047850205, -0.17316543717332594, 0.13786053341627028, -0.0792236152244358,
    0.032932146475168816, -0.009932865250169036, 0.0021727433091935306, -0.0003413404330573585,
    3.756100838631113e-05, -2.750230161440172e-06, 1.2042726090169417e-07,
    -2.3872140024237977e-09)]
_composite("erfinv", lambda x: sp.Piecewise(
    (_erfinv_unsigned(x)[0], sp.Abs(x) < 0.5), (sp.sign(x) * _erfinv_unsigned(x)[1], True)),
    [lambda x: _SQRT_PI / 2 * sp.exp(sp.Piecewise(  # sqrt(pi)/2 exp(erfinv(x)**2)
        (_erfinv_unsigned(x)[0], sp.Abs(x) < 0.5), (_erfinv_unsigned(x)[1], True))**2)],
    domain=(-0.9, 0.9))


BUILTINS = tuple(FUNCTIONS)  # the records above; sd.function adds composite ones
ALIASES = {alias: f.name for f in FUNCTIONS.values() for alias in f.aliases}
EQUIVALENT[sp.Mod] = mod  # SymPy's Mod has the divisor's sign too
BY_CLASS[sp.Mod] = FUNCTIONS["mod"]

_placeholders: list[sp.Symbol] = []
OUT = sp.Symbol("out", real=True)


def placeholder(k: int) -> sp.Symbol:
    """The k-th input of an elementwise body (a real SymPy symbol `a<k>`)."""
    while len(_placeholders) <= k:
        _placeholders.append(sp.Symbol(f"a{len(_placeholders)}", real=True))
    return _placeholders[k]


@lru_cache(maxsize=None)
def local_derivative(body: sp.Expr, k: int) -> sp.Expr:
    """d body / d a_k, written through OUT (the forward value) where that is simpler.

    Where the derivative makes a choice (relu, abs, max/min, where) it is a Piecewise, so that
    an adjoint built as `times(g, local)` selects g instead of multiplying it by 0 or 1: an
    infinite g in the branch not taken cannot turn into NaN. Ties of max/min split evenly.
    """
    a = placeholder(k)
    g = guard_symbol(body)
    if g is not None and a != g:  # where g is 0 the body is 0 whatever a is: so is its slope
        return sp.Piecewise((local_derivative(body.args[0].expr, k), sp.Ne(g, 0)), (0, True))
    if body_dtype(body) == "bool":  # a comparison: piecewise constant, no gradient
        return sp.S.Zero
    if isinstance(body, (sp.Max, sp.Min)):
        return _tie_split(body, a)
    if isinstance(body, sp.Pow) and (body.exp.has(a) or not body.exp.is_Number):
        return _power(body, a)
    derivative = sp.diff(body, a)
    # Dirac deltas live where a step jumps: zero almost everywhere.
    derivative = derivative.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    derivative = derivative.replace(lambda e: isinstance(e, (sp.Heaviside, sp.sign)), _as_select)
    if not body.is_Symbol:
        reused = derivative.subs(body, OUT)
        if sp.count_ops(reused) <= sp.count_ops(derivative) and not _divides_by(reused, a):
            derivative = reused
    return derivative


def guarded(g: sp.Expr, local: sp.Expr) -> sp.Expr:
    """g * local, but where g is 0, g * finite(local): for an incoming adjoint or tangent that
    a select set to 0, so that a NaN or inf local derivative in the branch not taken cannot
    make 0 * inf = NaN. Where g is 0 the product's slope is 0 by every input but g
    (local_derivative), so second derivatives cannot meet a NaN there either."""
    return sp.Piecewise((times(g, local), sp.Ne(g, 0)), (times(g, finite(local)), True))


def guard_symbol(body: sp.Expr) -> sp.Symbol | None:
    """The g of a body made by `guarded(g, local)`, else None."""
    if isinstance(body, sp.Piecewise) and len(body.args) == 2 and body.args[1].cond is sp.true:
        condition = body.args[0].cond
        if isinstance(condition, sp.Ne) and condition.args[0].is_Symbol and \
                condition.args[1] == 0 and body.args[1].expr.has(finite):
            return condition.args[0]
    return None


def may_be_selected_zero(body: sp.Expr) -> bool:
    """Whether a value with this body is 0 where a select did not take its branch."""
    return isinstance(body, sp.Piecewise) and any(
        value == 0 or may_be_selected_zero(value) for value, _ in body.args)


def times(g: sp.Expr, local: sp.Expr) -> sp.Expr:
    """g * local, with g moved into the branches of the selects of `local` (outermost only:
    a select inside another function's argument stays as it is)."""
    if isinstance(local, sp.Piecewise):
        return sp.Piecewise(*((times(g, value), cond) for value, cond in local.args))
    if isinstance(local, sp.Add):
        return sp.Add(*(times(g, term) for term in local.args))
    if isinstance(local, sp.Mul):
        select = next((f for f in local.args if isinstance(f, sp.Piecewise)), None)
        if select is not None:
            return times(g * sp.Mul(*(f for f in local.args if f is not select)), select)
    return g * local


def _as_select(e: sp.Expr) -> sp.Piecewise:
    """Heaviside(x, h0) or sign(x) as a select on x's sign (NaN takes the last branch)."""
    x = e.args[0]
    if isinstance(e, sp.sign):
        return sp.Piecewise((1, x > 0), (-1, x < 0), (0, True))
    h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
    return sp.Piecewise((1, x > 0), (h0, sp.Eq(x, 0)), (0, True))


def _tie_split(body: sp.Expr, a: sp.Symbol) -> sp.Expr:
    """d max(args)/d a: the arguments equal to the result share the gradient evenly."""
    count = sp.Add(*(sp.Piecewise((1, sp.Eq(arg, OUT)), (0, True)) for arg in body.args))
    return sp.Add(*(sp.Piecewise((sp.diff(arg, a) / count, sp.Eq(arg, OUT)), (0, True))
                    for arg in body.args if arg.has(a)))


def _power(body: sp.Pow, a: sp.Symbol) -> sp.Expr:
    """d b**e / d a, finite where the power is: e*b**(e-1) is taken as 0 where b = e = 0,
    and b**e*log(b) as 0 where b = 0 (JAX agrees, but for NaN by b at b = e = 0)."""
    b, e = body.args
    derivative = sp.S.Zero
    if b.has(a):  # selected at b = 0 only: its own derivative by e is b**-1 at e = 0
        slope = e * b ** (e - 1) if e.is_Number else sp.Piecewise(
            (e * b ** (e - 1), sp.Ne(b, 0)), (0, sp.Eq(e, 0)), (e * b ** (e - 1), True))
        derivative += times(sp.diff(b, a), slope)
    if e.has(a):  # the real log of a negative constant base is NaN (SymPy's would be complex)
        log_b = sp.nan if b.is_Number and b.is_negative else sp.log(b)
        growth = sp.Piecewise((0, sp.Eq(b, 0)), (OUT * log_b, True))
        derivative += times(sp.diff(e, a), growth)
    return derivative


def _divides_by(e: sp.Expr, a: sp.Symbol) -> bool:
    """Whether `e` divides by a power of `a` (x**2.5 written as out/x would be 0/0 at 0)."""
    return any(isinstance(p, sp.Pow) and p.base == a and p.exp.is_negative
               for p in sp.preorder_traversal(e))


_COMPARE = {sp.StrictGreaterThan: np.greater, sp.GreaterThan: np.greater_equal,
            sp.StrictLessThan: np.less, sp.LessThan: np.less_equal, sp.Eq: np.equal,
            sp.Ne: np.not_equal}


def evaluate_body(body: sp.Expr, env: dict):
    """Evaluate a SymPy body with NumPy, its symbols bound by `env` (name -> value)."""
    with np.errstate(all="ignore"):
        return _evaluate(body, env)


def _evaluate(e, env):
    if e.is_Symbol:
        return env[e.name]
    if e.is_Number or e in (sp.pi, sp.E):
        return np.float64(float(e))
    args = [_evaluate(a, env) for a in e.args] if not isinstance(e, sp.Piecewise) else None
    if isinstance(e, sp.Add):
        return reduce(np.add, args)
    if isinstance(e, sp.Mul):
        return reduce(np.multiply, args)
    if isinstance(e, sp.Pow):
        return np.power(np.float64(args[0]) if np.ndim(args[0]) == 0 else args[0], args[1])
    if isinstance(e, sp.Piecewise):
        result = _evaluate(e.args[-1][0], env)
        for value, cond in reversed(e.args[:-1]):
            result = np.where(_evaluate(cond, env), _evaluate(value, env), result)
        return result
    if type(e) in _COMPARE:
        return _COMPARE[type(e)](*args)
    if type(e) in BY_CLASS:
        record = BY_CLASS[type(e)]
        return reduce(record.numpy, args) if record.arity is None else record.numpy(*args)
    raise NotImplementedError(f"no NumPy evaluation for {e.func}")


def body_dtype(body: sp.Expr) -> str:
    """bool for comparisons, float64 otherwise."""
    return "bool" if isinstance(body, (sp.core.relational.Relational, sp.logic.boolalg.Boolean)) \
        else "float64"

"""Elementwise functions as records, SymPy bodies, and their memoised local derivatives.

Bodies are SymPy expressions over placeholders a0, a1, ...; FUNCTIONS holds one record per
function that formulas and `sd.*` may call by name, read by every backend (adding a function
is adding a record); their SymPy classes, where SymPy has none or another meaning, are in
symdiff/sympy_classes.py. Functions SymPy has no class for (gelu, logaddexp, ...) are
composite records, defined by their stable formulas over the others (the special functions'
in symdiff/special.py), built on first use; a composite's last parameters may have defaults
(elu's alpha). ALIASES maps other names (NumPy's arcsinh) to records. A local derivative is
`sympy.diff` of one small body, never of a whole model, rewritten through the forward value
`out` where that is simpler (d exp = out, d sigmoid = out*(1 - out)), and cached: bodies
repeat across a model and across models.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import lru_cache, reduce
from typing import Callable

import numpy as np
import sympy as sp
from sympy.codegen import cfunctions
from sympy.codegen.cfunctions import exp2, expm1, log2, log10

from . import special
from .sympy_classes import (_lgamma_scalar, cbrt, ceil, finite, floor, fmod, hypot, lgamma,
                            log1p, ndtr, relu, round, sigmoid, softplus, trunc)

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
    printer prints it, or calls a helper function of it when it is long; the tape lowers it
    to existing instructions; `numpy` evaluates it), and its SymPy class's derivative is the
    user's, or SymPy's of the definition. `defaults` are the values of its last parameters
    when a call leaves them out.
    """

    name: str
    sympy: Callable
    numpy: Callable
    numba: str
    numba32: str
    arity: int | None = 1
    domain: tuple[float, float] = (-3.0, 3.0)
    api: str = ""
    # a composite's definition and its own derivatives (if given): SymPy expressions, or a
    # built-in composite's function that builds them on first use (import stays fast)
    lazy_definition: object = field(default=None, compare=False, repr=False)
    params: tuple = ()
    lazy_derivatives: object = field(default=None, compare=False, repr=False)
    internal: bool = False  # used by symdiff's own rules, not offered to formulas or sd.*
    aliases: tuple[str, ...] = ()  # other names formulas and sd.* accept (NumPy's spellings)
    defaults: tuple = ()  # the values of the last parameters when a call leaves them out
    # the (float64, float32) spelling of a part `numba` and `numba32` write as {e}: a loop
    # computes it once per operand, for every call that writes it (sigmoid's and softplus's
    # exp(-|x|), so a logistic loss and its gradient take one exp per sample)
    part: tuple[str, str] | tuple[()] = ()

    @property
    def definition(self) -> sp.Expr | None:
        """A composite record's definition, a SymPy expression of `params` (else None)."""
        return self._built("lazy_definition")

    @property
    def composite(self) -> bool:
        """Whether the record has a definition, without building it (a built-in's is built
        on first use: erfinv's takes 0.14 s)."""
        return self.lazy_definition is not None

    @property
    def derivatives(self) -> tuple | None:
        """A composite record's own derivatives, one expression of `params` per parameter."""
        return self._built("lazy_derivatives")

    def _built(self, attribute):
        value = getattr(self, attribute)
        if callable(value) and not isinstance(value, sp.Basic):
            value = value()
            object.__setattr__(self, attribute, value)  # once: a frozen record's cache
        return value

    @property
    def required(self) -> int | None:
        """How many arguments a call must give (the rest take `defaults`)."""
        return None if self.arity is None else self.arity - len(self.defaults)

    @property
    def sympy_class(self):
        """The SymPy class of a body built by this function (sqrt gives a Pow: None)."""
        return self.sympy if isinstance(self.sympy, type) else None

    def expand(self, args) -> sp.Expr:
        """A composite record's definition applied to `args`."""
        return self.definition.xreplace(dict(zip(self.params, args)))


def _unary(name, sympy, numpy, numba=None, numba32=None, **more):
    return Function(name, sympy, numpy, numba or f"math.{name}({{0}})",
                    numba32 or f"np.{name}({{0}})", **more)


_SIGMOID = "(({one} if {{0}} >= 0.0 else {{e}}) / ({one} + {{e}}))"
_SOFTPLUS = "(max({{0}}, {zero}) + {m}.log1p({{e}}))"
_EXP_NEG_ABS = ("math.exp(-abs({0}))", "np.exp(-abs({0}))")  # their {e}
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
    Function("sigmoid", sigmoid, _sigmoid, _SIGMOID.format(**F64), _SIGMOID.format(**F32),
             part=_EXP_NEG_ABS),
    Function("softplus", softplus, lambda x: np.logaddexp(0.0, x), _SOFTPLUS.format(**F64),
             _SOFTPLUS.format(**F32), part=_EXP_NEG_ABS),
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
              cfunctions.log1p: log1p,
              sp.loggamma: lgamma}  # loggamma: as log|Gamma| (complex below 0 in SymPy)
BY_CLASS.update({cls: BY_CLASS[ours] for cls, ours in EQUIVALENT.items()})


def define_composite(name: str, definition: sp.Expr, params: tuple, derivatives=None,
                     domain=(-3.0, 3.0), aliases=(), defaults=()) -> Function:
    """Add (or replace) the composite record `name`: `definition` over `params`, with
    `derivatives` (one expression of `params` per parameter) or SymPy's, and `defaults` for
    its last parameters (a SymPy call that leaves them out gets them). `definition` and
    `derivatives` may be functions that build them, called on first use."""
    def fdiff(self, argindex=1):
        k = argindex - 1
        given = record.derivatives
        d = given[k] if given else sp.diff(record.definition, params[k])
        return d.xreplace(dict(zip(params, self.args)))

    def eval(cls, *args):
        if len(args) < len(params):
            return cls(*args, *map(_constant, defaults[len(args) - len(params):]))
        if all(a.is_Number for a in args):
            return record.expand(args)

    counts = tuple(range(len(params) - len(defaults), len(params) + 1))
    cls = type(name, (sp.Function,), {"nargs": counts if defaults else len(params),
                                      "fdiff": fdiff, "eval": classmethod(eval)})
    names = [p.name for p in params]
    record = Function(name, cls, lambda *values: evaluate_body(record.definition,
                                                               dict(zip(names, values))),
                      "", "", arity=len(params), domain=domain, lazy_definition=definition,
                      params=tuple(params), aliases=tuple(aliases), defaults=tuple(defaults),
                      lazy_derivatives=derivatives if callable(derivatives) else
                      derivatives and tuple(derivatives))
    FUNCTIONS[name] = BY_CLASS[cls] = record
    return record


def _constant(value) -> sp.Expr:
    """A parameter's default value as a SymPy number (False is 0)."""
    return sp.Integer(int(value)) if float(value).is_integer() else sp.Float(value)


def _composite(name, body, derivatives=None, **more) -> None:
    """A built-in composite record: `body` (and `derivatives`) a Python function of real
    SymPy symbols named by its parameters, whose defaults are the record's."""
    signature = inspect.signature(body).parameters.values()
    params = [sp.Symbol(p.name, real=True) for p in signature]
    defaults = tuple(p.default for p in signature if p.default is not p.empty)
    record = define_composite(name, lambda: body(*params), tuple(params),
                              derivatives and (lambda: tuple(d(*params) for d in derivatives)),
                              defaults=defaults, **more)
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
_composite("elu", lambda x, alpha=1.0: sp.Piecewise((x, x > 0), (alpha * expm1(x), True)))
_composite("selu", lambda x: SELU_SCALE * sp.Piecewise((x, x > 0),
                                                        (SELU_ALPHA * expm1(x), True)))
_composite("celu", lambda x, alpha=1.0: sp.Piecewise((x, x > 0),
                                                     (alpha * expm1(x / alpha), True)))
_composite("mish", lambda x: x * sp.tanh(softplus(x)))
# x*ndtr(x) (the erf form, PyTorch's default), or with approximate (nonzero) the tanh form
# x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x**3), computed as x sigmoid(2u): the same
# number (1 + tanh u = 2 sigmoid 2u), without the cancellation of 1 + tanh(u) for x < 0. Its
# slope is sigmoid(2u) beyond |x| = 100, where the other term is 0 but would be 0*inf there
_GELU_U = (sp.Float(2 * math.sqrt(2 / math.pi)), sp.Float(2 * math.sqrt(2 / math.pi) * 0.044715))


def _gelu_tanh_slope(x):
    s = sigmoid(_GELU_U[0] * x + _GELU_U[1] * x**3)
    return sp.Piecewise((s + x * (_GELU_U[0] + 3 * _GELU_U[1] * x**2) * s * (1 - s),
                         sp.Abs(x) < 100), (s, True))


_composite("gelu", lambda x, approximate=False: sp.Piecewise(
    (x * sigmoid(_GELU_U[0] * x + _GELU_U[1] * x**3), sp.Ne(approximate, 0)),
    (x * ndtr(x), True)),
    [lambda x, approximate=False: sp.Piecewise(
        (_gelu_tanh_slope(x), sp.Ne(approximate, 0)), (sp.diff(x * ndtr(x), x), True)),
     lambda x, approximate=False: sp.S.Zero])
_composite("relu6", lambda x: sp.Piecewise(
    (0, x <= 0), (sp.Piecewise((6, x >= 6), (x, True)), True)), domain=(-2.0, 8.0))
_composite("leaky_relu", lambda x, negative_slope=0.01: sp.Piecewise(
    (x, x > 0), (negative_slope * x, True)))
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


def _clip(x, lo, hi):
    """min(max(x, lo), hi) as NumPy computes it (hi wherever lo > hi), nested (SymPy would
    join two bounds in an And the tape cannot lower); at a bound the slope is the one beyond
    it: 0 by x, 1 by the bound (Max and Min would split ties in halves)."""
    return sp.Piecewise((hi, x >= hi), (sp.Piecewise(
        (hi, lo >= hi), (sp.Piecewise((lo, x <= lo), (x, True)), True)), True))


_composite("clip", lambda x, lo, hi: _clip(x, lo, hi))
_composite("hardtanh", lambda x, min_val=-1.0, max_val=1.0: _clip(x, min_val, max_val))
# the sign of the divisor (Python's and NumPy's %): fmod, moved by y where their signs differ
# (exact, as x - y*floor(x/y) is not); 0 at multiples of y, where the slope by y is -x/y
_composite("mod", lambda x, y: sp.Piecewise(
    (sp.Piecewise((fmod(x, y) + y, fmod(x, y) < 0), (fmod(x, y), True)), y > 0),
    (sp.Piecewise((fmod(x, y) + y, fmod(x, y) > 0), (fmod(x, y), True)), True)),
    domain=(0.5, 3.0), aliases=("remainder",))


# x*log(y), 0 where x = 0 whatever y is; its slopes stay those of x*log(y) there (log(y)
# by x, -inf at y = 0; x/y by y, NaN at y = 0), so the mixed second derivatives agree
_composite("xlogy", lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * sp.log(y), True)),
           [lambda x, y: sp.log(y), lambda x, y: x / y], domain=(0.5, 3.0))
_composite("xlog1py", lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * log1p(y), True)),
           [lambda x, y: log1p(y), lambda x, y: x / (1 + y)], domain=(0.5, 3.0))
# the special functions' stable bodies (symdiff/special.py), built on first use
_composite("sinc", special.sinc)
_composite("log_ndtr", special.log_ndtr, domain=(-30.0, 5.0))
_composite("digamma", special.digamma, [special.trigamma], domain=(0.2, 5.0))
_composite("erfinv", special.erfinv, [special.erfinv_slope], domain=(-0.9, 0.9))


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
    """Whether a value with this body is 0 where a select did not take its branch: a select
    with such a branch, or a sum of them (max's tangent: one select per argument)."""
    if isinstance(body, sp.Add):
        return all(may_be_selected_zero(term) for term in body.args)
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

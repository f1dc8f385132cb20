"""Elementwise functions as records, SymPy bodies, and their memoised local derivatives.

Bodies are SymPy expressions over placeholders a0, a1, ...; FUNCTIONS holds one record per
function that formulas and `sd.*` may call by name, read by every backend (adding a function
is adding a record). A local derivative is `sympy.diff` of one small body, never of a whole
model, rewritten through the forward value `out` where that is simpler (d exp = out,
d sigmoid = out*(1 - out)), and cached: bodies repeat across a model and across models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Callable

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

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


class relu(sp.Function):
    """max(x, 0), with relu'(0) = 0 as in PyTorch and JAX."""

    def fdiff(self, argindex=1):  # relu(x) > 0 exactly where x > 0: the adjoint reads the
        return sp.Heaviside(self, 0)  # output, so the input need not be kept

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)


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
    _unary("asin", sp.asin, np.arcsin, numba32="np.arcsin({0})", domain=(-0.9, 0.9)),
    _unary("acos", sp.acos, np.arccos, numba32="np.arccos({0})", domain=(-0.9, 0.9)),
    _unary("atan", sp.atan, np.arctan, numba32="np.arctan({0})"),
    Function("atan2", sp.atan2, np.arctan2, "math.atan2({0}, {1})", "np.arctan2({0}, {1})",
             arity=2, domain=(0.2, 3.0)),
    Function("abs", sp.Abs, np.abs, "abs({0})", "abs({0})"),
    _unary("erf", sp.erf, _erf, numba32="np.float32(math.erf({0}))"),  # only math.erf compiles
    _unary("erfc", sp.erfc, _erfc, numba32="np.float32(math.erfc({0}))"),
    _unary("log1p", log1p, np.log1p, domain=(-0.9, 3.0)),
    _unary("expm1", expm1, np.expm1),
    Function("sigmoid", sigmoid, _sigmoid, _SIGMOID.format(**F64), _SIGMOID.format(**F32)),
    Function("softplus", softplus, lambda x: np.logaddexp(0.0, x), _SOFTPLUS.format(**F64),
             _SOFTPLUS.format(**F32)),
    Function("relu", relu, lambda x: np.maximum(x, 0.0), "np.maximum({0}, 0.0)",
             "np.maximum({0}, np.float32(0.0))"),
    Function("max", sp.Max, np.maximum, "np.maximum({0}, {1})", "np.maximum({0}, {1})",
             arity=None, api="maximum"),
    Function("min", sp.Min, np.minimum, "np.minimum({0}, {1})", "np.minimum({0}, {1})",
             arity=None, api="minimum"),
    Function("floor", floor, np.floor, "np.floor({0})", "np.floor({0})"),
    Function("finite", finite, lambda x: np.where(np.isfinite(x), x, 0.0),
             "({0} if math.isfinite({0}) else 0.0)",
             "({0} if math.isfinite({0}) else np.float32(0.0))", internal=True),
]}
BY_CLASS = {f.sympy_class: f for f in FUNCTIONS.values() if f.sympy_class is not None}
BY_CLASS[sp.floor] = FUNCTIONS["floor"]  # SymPy's own floor, in SymPy models and sd.function
BUILTINS = tuple(FUNCTIONS)  # the records above; sd.function adds composite ones


def define_composite(name: str, definition: sp.Expr, params: tuple, derivatives=None,
                     domain=(-3.0, 3.0)) -> Function:
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
                      params=tuple(params), derivatives=derivatives and tuple(derivatives))
    FUNCTIONS[name] = BY_CLASS[cls] = record
    return record

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

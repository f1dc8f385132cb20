"""Scalar functions of elementwise bodies, and their memoised local derivatives.

Bodies are SymPy expressions over placeholders a0, a1, ...; FUNCTIONS lists what formulas and
`sd.*` may call by name. A local derivative is `sympy.diff` of one small body, never of a whole
model, rewritten through the forward value `out` where that is simpler (d exp = out,
d sigmoid = out*(1 - out)), and cached: bodies repeat across a model and across models.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

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


class relu(sp.Function):
    """max(x, 0), with relu'(0) = 0 as in PyTorch and JAX."""

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)


def _max(*args):
    return sp.Max(*args)


def _min(*args):
    return sp.Min(*args)


# The functions formulas and `sd.*` know, by name: name -> (SymPy callable, arity or None).
FUNCTIONS: dict[str, tuple[Callable, int | None]] = {
    "exp": (sp.exp, 1), "log": (sp.log, 1), "sqrt": (sp.sqrt, 1),
    "sin": (sp.sin, 1), "cos": (sp.cos, 1), "tan": (sp.tan, 1),
    "sinh": (sp.sinh, 1), "cosh": (sp.cosh, 1), "tanh": (sp.tanh, 1),
    "asin": (sp.asin, 1), "acos": (sp.acos, 1), "atan": (sp.atan, 1),
    "atan2": (sp.atan2, 2), "abs": (sp.Abs, 1), "erf": (sp.erf, 1),
    "log1p": (log1p, 1), "expm1": (expm1, 1),
    "sigmoid": (sigmoid, 1), "relu": (relu, 1), "softplus": (softplus, 1),
    "min": (_min, None), "max": (_max, None),
}

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
    """d b**e / d a, finite where the power is: e*b**(e-1) is taken as 0 where e = 0, and
    b**e*log(b) as 0 where b = 0 (x**y and 0**x at zero bases, as JAX does)."""
    b, e = body.args
    derivative = sp.S.Zero
    if b.has(a):
        slope = e * b ** (e - 1) if e.is_Number else sp.Piecewise((0, sp.Eq(e, 0)),
                                                                  (e * b ** (e - 1), True))
        derivative += times(sp.diff(b, a), slope)
    if e.has(a):
        growth = sp.Piecewise((0, sp.Eq(b, 0)), (OUT * sp.log(b), True))
        derivative += times(sp.diff(e, a), growth)
    return derivative


def _divides_by(e: sp.Expr, a: sp.Symbol) -> bool:
    """Whether `e` divides by a power of `a` (x**2.5 written as out/x would be 0/0 at 0)."""
    return any(isinstance(p, sp.Pow) and p.base == a and p.exp.is_negative
               for p in sp.preorder_traversal(e))


def body_dtype(body: sp.Expr) -> str:
    """bool for comparisons, float64 otherwise."""
    return "bool" if isinstance(body, (sp.core.relational.Relational, sp.logic.boolalg.Boolean)) \
        else "float64"

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
    """d body / d a_k, written through OUT (the forward value) where that is simpler."""
    a = placeholder(k)
    if isinstance(body, sp.Pow) and body.base == a and not body.exp.is_Number:
        derivative = body.exp * a ** (body.exp - 1)  # keeps x**y finite at x = 0
        if body.exp.has(a):
            derivative += body * sp.log(a)
    else:
        derivative = sp.diff(body, a)
    # Dirac deltas live where a step jumps: zero almost everywhere.
    derivative = derivative.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    if not body.is_Symbol:
        reused = derivative.subs(body, OUT)
        if sp.count_ops(reused) <= sp.count_ops(derivative):
            derivative = reused
    return derivative


def body_dtype(body: sp.Expr) -> str:
    """bool for comparisons, float64 otherwise."""
    return "bool" if isinstance(body, (sp.core.relational.Relational, sp.logic.boolalg.Boolean)) \
        else "float64"

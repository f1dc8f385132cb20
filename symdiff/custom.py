"""`sd.function`: user-defined elementwise functions, as composite function records.

Input: a name, a SymPy expression of the arguments (or a Python function that builds one
from SymPy symbols) and, optionally, the derivative by each argument. Output: a record in
symdiff.functions (the same record built-in functions have, its body the definition) and a
callable that applies it to Tensors and numbers, or to SymPy expressions. Formulas call it by
name. Nothing the user wrote as text is evaluated: the body is already a SymPy expression.
"""
from __future__ import annotations

import inspect

import sympy as sp

from . import tensors as T
from .errors import ArgumentError
from .functions import ALIASES, BUILTINS, BY_CLASS, EQUIVALENT, FUNCTIONS, define_composite

_ALLOWED = (sp.Add, sp.Mul, sp.Pow, sp.Piecewise, sp.functions.elementary.piecewise.ExprCondPair,
            sp.core.relational.Relational,
            sp.logic.boolalg.BooleanAtom, sp.logic.boolalg.And, sp.logic.boolalg.Or)


class CustomFunction:
    """An elementwise function made by `sd.function`: call it on Tensors and numbers (a
    Tensor) or on SymPy expressions (a SymPy expression, for SymPy models)."""

    def __init__(self, record):
        self.record, self.name = record, record.name

    def __repr__(self):
        args = ", ".join(p.name for p in self.record.params)
        return f"<symdiff function {self.name}({args}) = {self.record.definition}>"

    def __call__(self, *args):
        if any(isinstance(a, sp.Basic) for a in args):
            return self.record.sympy(*args)
        return T.function(self.name, *args)


def function(name: str, body, derivative=None, *, args=None, domain=(-3.0, 3.0)):
    """Define the elementwise function `name` from a SymPy expression.

    Args:
        body: a SymPy expression of the arguments, or a Python function of them (called
            once with real SymPy symbols). It may use arithmetic, comparisons, Piecewise and
            any function symdiff has a record for (exp, tanh, erf, max, floor, ...).
        derivative: None (SymPy differentiates `body`); or the derivative, an expression of
            the same arguments (a function like `body`): for two or more arguments, a list
            with one per argument. It need not be the true derivative (a straight-through
            estimator); `sd.check_grad` reports where it disagrees with the value.
        args: the argument symbols or names in order (default: the body's symbols by name).
        domain: where tests sample the function.

    Returns a callable; formulas call it by `name` from now on. Defining a name again with
    another body replaces it for models built afterwards.

    >>> import sympy as sp, symdiff as sd
    >>> x = sp.Symbol("x", real=True)
    >>> sq = sd.function("sq", x**2)
    >>> sd.compile("sq(a) + 1", wrt=["a"]).value_and_grad(a=3.0)
    (10.0, {'a': 6.0})
    """
    T.check_name(name, what="function name")
    if name in BUILTINS or name in ALIASES or name == "where":
        raise ArgumentError(f"{name!r} is a built-in function; give yours another name")
    body, params = _expression(name, body, args)
    derivatives = None
    if derivative is not None:
        derivatives = derivative if isinstance(derivative, (list, tuple)) else [derivative]
        if len(derivatives) != len(params):
            raise ArgumentError(f"{name}: give one derivative per argument ({len(params)}), "
                                f"not {len(derivatives)}")
        derivatives = [_expression(name, d, params, "derivative")[0] for d in derivatives]
    old = FUNCTIONS.get(name)
    if old is not None and (old.definition, old.params, old.derivatives) == (
            body, params, derivatives and tuple(derivatives)):
        return CustomFunction(old)  # defined again as it was: the same function
    return CustomFunction(define_composite(name, body, params, derivatives, tuple(domain)))


def _expression(name: str, body, args, what="body") -> tuple[sp.Expr, tuple]:
    """(the expression, its argument symbols in order), checked."""
    if callable(body) and not isinstance(body, sp.Basic):
        params = tuple(sp.Symbol(p, real=True) for p in inspect.signature(body).parameters)
        if args is not None and [str(a) for a in args] != [p.name for p in params]:
            raise ArgumentError(f"{name}: the {what}'s parameters {[p.name for p in params]} "
                                f"differ from the arguments {[str(a) for a in args]}")
        body, args = body(*(params if args is None else args)), params if args is None else args
    if isinstance(body, (int, float)) and not isinstance(body, bool):
        body = sp.Integer(body) if isinstance(body, int) else sp.Float(body)
    if not isinstance(body, sp.Expr):
        raise ArgumentError(f"{name}: the {what} must be a SymPy expression or a function "
                            f"returning one, not {type(body).__name__}")
    symbols = {s.name: s for s in body.free_symbols}
    if args is None:
        params = tuple(symbols[k] for k in sorted(symbols))
    else:
        params = tuple(a if isinstance(a, sp.Symbol) else symbols.get(str(a)) or
                       sp.Symbol(str(a), real=True) for a in args)
    if not params:
        raise ArgumentError(f"{name}: the {what} has no argument")
    real = {p: sp.Symbol(p.name, real=True) for p in params}  # as bodies' placeholders are
    body = body.xreplace(real)
    for cls, ours in EQUIVALENT.items():  # SymPy's floor, hypot: the records' own classes
        body = body.replace(cls, ours)
    params = tuple(real[p] for p in params)
    extra = body.free_symbols - set(params)
    if extra:
        raise ArgumentError(f"{name}: the {what} uses {', '.join(sorted(map(str, extra)))}, "
                            f"which are not among its arguments "
                            f"({', '.join(p.name for p in params)})")
    _check_printable(name, body, what)
    return body, params


def _check_printable(name: str, body: sp.Expr, what: str) -> None:
    """Every operation in `body` is one every backend can run."""
    for e in sp.preorder_traversal(body):
        if e.is_Atom or isinstance(e, _ALLOWED) or type(e) in BY_CLASS:
            continue
        known = ", ".join(sorted(FUNCTIONS))
        raise ArgumentError(f"{name}: the {what} uses {type(e).__name__} ({e}), which symdiff "
                            f"cannot compile; known functions: {known}")

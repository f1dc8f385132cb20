"""SymPy expressions -> Tensors, one IR node per SymPy operation.

The expression tree is walked (shared subtrees once), never differentiated as a whole: reverse
mode on the resulting graph does that, so expression swell never happens.
"""
from __future__ import annotations

import operator
from functools import reduce

import sympy as sp

from . import tensors as T
from .functions import BY_CLASS, FUNCTIONS
from .errors import ParseError



def from_sympy(expr: sp.Expr, env: dict) -> T.Tensor | float:
    """Build `expr` with its free symbols bound by `env` (symbol name -> Tensor)."""
    memo: dict = {}

    def visit(e):
        if e in memo:
            return memo[e]
        if e.is_Symbol:
            result = env[e.name]
        elif e.is_Number or e in (sp.pi, sp.E):
            if not e.is_real:
                raise ParseError(f"the constant {e} is not a real number")
            result = float(e)
        elif isinstance(e, sp.Add):
            result = reduce(operator.add, [visit(a) for a in e.args])
        elif isinstance(e, sp.Mul):
            result = reduce(operator.mul, [visit(a) for a in e.args])
        elif isinstance(e, sp.Pow):
            result = visit(e.base) ** visit(e.exp)
        elif type(e) in BY_CLASS:
            result = T.function(BY_CLASS[type(e)].name, *(visit(a) for a in e.args))
        else:
            raise ParseError(f"symdiff cannot compile the SymPy {type(e).__name__} in {e}; "
                             f"known functions: {', '.join(sorted(FUNCTIONS))}")
        memo[e] = result
        return result

    return visit(expr)


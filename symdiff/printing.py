"""Prints IR statements as one readable line each: `mul2 = add1*z`, `t5 = sum(t4, axis=0)`.

Used by `str(program)`, error messages and the `# from:` comments of generated code.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

from .ir import Node, format_shape
from .optable import OPS


class _BodyPrinter(StrPrinter):
    """SymPy's str printer with placeholders replaced by statement names."""

    def __init__(self, names):
        super().__init__({"full_prec": False})
        self._names = names

    def _print_Symbol(self, expr):
        return self._names.get(expr.name, expr.name)

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Piecewise(self, expr):
        text = self._print(expr.args[-1][0])
        for value, cond in reversed(expr.args[:-1]):
            text = f"where({self._print(cond)}, {self._print(value)}, {text})"
        return text

    def _print_Unequality(self, expr):  # Ne(c, 0) is how a boolean condition is stored
        if expr.args[1] == 0:
            return self._print(expr.args[0])
        return f"{self._print(expr.args[0])} != {self._print(expr.args[1])}"

    def _print_Equality(self, expr):
        return f"{self._print(expr.args[0])} == {self._print(expr.args[1])}"


def format_expr(node: Node, names: dict[int, str]) -> str:
    """The right-hand side of `node`'s statement, its inputs named by `names` (uid -> name)."""
    args = [names.get(i.uid, f"%{i.uid}") for i in node.inputs]
    formatter = OPS[node.op].format
    if formatter is not None:
        return formatter(node, args)
    extra = "".join(f", {k}={_format_attr(v)}" for k, v in node.attrs)
    return f"{node.op}({', '.join(args)}{extra})"


def _format_attr(value):
    if isinstance(value, tuple):
        return format_shape(value)
    return repr(value)


def format_stmt(node: Node, names: dict[int, str]) -> str:
    """`name = expression`; a value no statement names (one a loop's backward step needs
    only through its adjoint) is its expression alone."""
    if node.uid not in names:
        return format_expr(node, names)
    return f"{names[node.uid]} = {format_expr(node, names)}"


def format_origin(node: Node, names: dict[int, str]) -> str:
    """What a `# from:` comment quotes: the forward statement, unless its record says."""
    origin = OPS[node.op].origin
    if origin is not None:
        return origin(node, [names.get(i.uid, "?") for i in node.inputs])
    return format_stmt(node, names)


def body_name(body: sp.Expr) -> str:
    """A short name for an elementwise body, from its outermost operation."""
    if isinstance(body, sp.core.relational.Relational):
        return "cmp"
    if isinstance(body, sp.Piecewise):
        return "select"
    if isinstance(body, sp.Mul) and body.args[0] == -1 and len(body.args) == 2:
        return "neg"
    if isinstance(body, sp.Add) and any(a.could_extract_minus_sign() for a in body.args):
        return "sub"
    if isinstance(body, sp.Mul) and any(isinstance(a, sp.Pow) and a.exp == -1 for a in body.args):
        return "div"
    return {sp.Add: "add", sp.Mul: "mul", sp.Pow: "pow", sp.Abs: "abs", sp.Max: "max",
            sp.Min: "min"}.get(type(body), type(body).__name__.lower())


def format_body(body: sp.Expr, names: dict[str, str]) -> str:
    """An elementwise body with its symbols renamed by `names` (symbol name -> text)."""
    return _BodyPrinter(names).doprint(body)

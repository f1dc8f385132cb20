"""Prints an elementwise SymPy body as a scalar Python expression that Numba compiles.

A subclass of SymPy's Python printer in strict mode: a function it has no rule for raises
instead of printing something Numba cannot compile. Placeholders a0, a1, ... print as the
operand texts given (a local name, or an array load such as `x0[i]`).
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from symdiff import ops


class KernelPrinter(PythonCodePrinter):
    """Scalar Numba code for a body whose placeholders stand for `operands`."""

    def __init__(self, operands: dict[str, str]):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self._operands = operands

    def _print_Symbol(self, expr):
        return self._operands[expr.name]

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        return f"{int(expr)}.0"

    def _print_Rational(self, expr):
        return f"({float(expr)!r})"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer:  # integer powers stay exact and fast: x**2 -> x*x by LLVM
            text = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
            if exp == -1:
                return f"1.0 / {text}"
            return f"{text}**{int(exp)}"
        if exp == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        return super()._print_Pow(expr, rational)

    def _print_sigmoid(self, expr):
        return f"(1.0 / (1.0 + math.exp(-{self._paren(expr.args[0])})))"

    def _print_softplus(self, expr):  # log(1 + exp(x)) without overflow
        x = self._paren(expr.args[0])
        return f"(max({x}, 0.0) + math.log1p(math.exp(-abs({x}))))"

    def _print_relu(self, expr):
        return f"np.maximum({self._print(expr.args[0])}, 0.0)"

    def _print_Max(self, expr):
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("np.minimum", expr.args)

    def _print_Heaviside(self, expr):  # a select, never np.heaviside (it does not compile)
        x = self._paren(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        at_zero = "0.0" if h0 == 0 else f"({self._print(h0)} if {x} == 0.0 else 0.0)"
        return f"(1.0 if {x} > 0.0 else {at_zero})"

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr):
        text = self._print(expr.args[-1][0])
        for value, cond in reversed(expr.args[:-1]):
            text = f"({self._print(value)} if {self._print(cond)} else {text})"
        return text

    def _print_Unequality(self, expr):
        if expr.args[1] == 0:  # a boolean operand used as a condition
            return f"({self._print(expr.args[0])} != 0)"
        return super()._print_Relational(expr)

    def _print_log1p(self, expr):
        return f"math.log1p({self._print(expr.args[0])})"

    def _print_expm1(self, expr):
        return f"math.expm1({self._print(expr.args[0])})"

    def _print_Exp1(self, expr):
        return "math.e"

    def _print_Pi(self, expr):
        return "math.pi"

    def _paren(self, expr):
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sp.Function) else f"({text})"

    def _fold(self, fn, args):
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}({text}, {self._print(a)})"
        return text


def print_body(body: sp.Expr, operands: list[str]) -> str:
    """`body` as Numba scalar code, with placeholder k printed as operands[k]."""
    env = {ops.placeholder(k).name: text for k, text in enumerate(operands)}
    return KernelPrinter(env).doprint(body)

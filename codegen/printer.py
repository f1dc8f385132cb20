"""Prints an elementwise SymPy body as a scalar Python expression that Numba compiles.

A subclass of SymPy's Python printer in strict mode: a function it has no rule for raises
instead of printing something Numba cannot compile. Placeholders a0, a1, ... print as the
operand texts given (a local name, or an array load such as `x0[i]`).
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from symdiff import ops


# Elementary functions: math.* keeps float64 code short; in float32 code np.* keeps float32
# (Numba's math.exp of a float32 is a float64).
ELEMENTARY = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos",
              "tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "arcsin",
              "acos": "arccos", "atan": "arctan", "atan2": "arctan2", "log1p": "log1p",
              "expm1": "expm1"}


def number(value: float, single: bool = False) -> str:
    """A float literal as kernel code: typed in float32 code (a bare 0.5 would be float64),
    and inf and nan through `math`, whose names the generated module has."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        text = text.replace("inf", "math.inf").replace("nan", "math.nan")
    return f"np.float32({text})" if single else text


class KernelPrinter(PythonCodePrinter):
    """Scalar Numba code for a body whose placeholders stand for `operands`."""

    def __init__(self, operands: dict[str, str], dtype: str = "float64"):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self._operands = operands
        self._single = dtype == "float32"

    def number(self, value: float) -> str:
        return number(value, self._single)

    def _print_Symbol(self, expr):
        return self._operands[expr.name]

    def _print_Float(self, expr):
        return self.number(float(expr))

    def _print_Integer(self, expr):
        return self.number(float(expr))

    def _print_Rational(self, expr):
        return self.number(float(expr))

    def _elementary(self, expr):
        name = type(expr).__name__
        args = ", ".join(self._print(a) for a in expr.args)
        if self._single:
            return f"np.{ELEMENTARY[name]}({args})"
        return f"math.{'atan2' if name == 'atan2' else name}({args})"

    def _print_erf(self, expr):  # only math.erf compiles: cast it back in float32 code
        text = f"math.erf({self._print(expr.args[0])})"
        return f"np.float32({text})" if self._single else text

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer:  # integer powers stay exact and fast: x**2 -> x*x by LLVM
            text = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
            if exp == -1:
                return f"{self.number(1.0)} / {text}"
            return f"{text}**{int(exp)}"
        if exp == sp.S.Half:
            return f"{'np' if self._single else 'math'}.sqrt({self._print(base)})"
        text = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
        return f"{text}**{self.parenthesize(exp, sp.printing.precedence.PRECEDENCE['Pow'])}"

    def _print_sigmoid(self, expr):  # through exp(-|x|), the same call softplus(x) makes
        x, one, m = self._paren(expr.args[0]), self.number(1.0), "np" if self._single else "math"
        e = f"{m}.exp(-abs({x}))"
        return f"(({one} if {x} >= 0.0 else {e}) / ({one} + {e}))"

    def _print_softplus(self, expr):  # log(1 + exp(x)) without overflow
        x, m = self._paren(expr.args[0]), "np" if self._single else "math"
        return f"(max({x}, {self.number(0.0)}) + {m}.log1p({m}.exp(-abs({x}))))"

    def _print_relu(self, expr):
        return f"np.maximum({self._print(expr.args[0])}, {self.number(0.0)})"

    def _print_Max(self, expr):
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("np.minimum", expr.args)

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

    def _print_Exp1(self, expr):
        return "np.float32(math.e)" if self._single else "math.e"

    def _print_Pi(self, expr):
        return "np.float32(math.pi)" if self._single else "math.pi"

    def _paren(self, expr):
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sp.Function) else f"({text})"

    def _fold(self, fn, args):
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{fn}({text}, {self._print(a)})"
        return text


for _name in ELEMENTARY:
    setattr(KernelPrinter, f"_print_{_name}", KernelPrinter._elementary)


def print_body(body: sp.Expr, operands: list[str], dtype: str = "float64") -> str:
    """`body` as Numba scalar code, with placeholder k printed as operands[k]."""
    env = {ops.placeholder(k).name: text for k, text in enumerate(operands)}
    return KernelPrinter(env, dtype).doprint(body)

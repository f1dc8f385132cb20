"""Prints an elementwise SymPy body as a scalar Python expression that Numba compiles.

A subclass of SymPy's Python printer in strict mode: a function it has no rule for raises
instead of printing something Numba cannot compile. Functions print from their records in
symdiff.functions (float64 or float32 spelling); placeholders a0, a1, ... print as the operand
texts given (a local name, or an array load such as `x0[i]`).

The C library's exp, log, log1p, expm1 and tanh in the records' spellings (math.exp in float64,
np.exp in float32, ...; so sigmoid's and softplus's too) print as calls into codegen/vecmath.py,
whose loops LLVM vectorises. Kernels and the tape's interpreter both call them, so the tiers give
the same bits. The environment variable SYMDIFF_LIBM=1, set before symdiff is imported, keeps
the C library's calls (its bits, scalar loops). The choice is part of the generated text, hence
of its cache key.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from symdiff.functions import BY_CLASS, FUNCTIONS, placeholder

LIBM = os.environ.get("SYMDIFF_LIBM", "") not in ("", "0")  # read once, at import
_NAMES = ("exp", "log", "log1p", "expm1", "tanh")
VECTOR_CALLS = {False: {f"math.{name}(": f"_vm.{name}(" for name in _NAMES},  # float64
                True: {f"np.{name}(": f"_vm.{name.replace('m1', 'm1_')}32(" for name in _NAMES}}
_VECMATH_TEXT = (Path(__file__).parent / "vecmath.py").read_bytes()
# Numba's cache does not see a change in a function a kernel calls: the kernel's text names the
# version of vecmath.py it was compiled with, so a changed file gives a new kernel (`_vm`:
# no input's name starts with an underscore)
VECMATH_IMPORT = (f"from symdiff.codegen import vecmath as _vm  "
                  f"# vecmath.py {hashlib.sha256(_VECMATH_TEXT).hexdigest()[:16]}")


def number(value: float, single: bool = False) -> str:
    """A float literal as kernel code: typed in float32 code (a bare 0.5 would be float64),
    and inf and nan through `math`, whose names the generated module has."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        text = text.replace("inf", "math.inf").replace("nan", "math.nan")
    return f"np.float32({text})" if single else text


def spell(record, args: list[str], single: bool) -> str:
    """A function record applied to operand texts; two or more operands fold pairwise."""
    template = record.numba32 if single else record.numba
    for call, vector in ({} if LIBM else VECTOR_CALLS[single]).items():
        template = template.replace(call, vector)
    text = args[0]
    if record.arity is None:
        for a in args[1:]:
            text = template.format(text, a)
        return text
    return template.format(*args)


class KernelPrinter(PythonCodePrinter):
    """Scalar Numba code for a body whose placeholders stand for `operands`."""

    def __init__(self, operands: dict[str, str], dtype: str = "float64"):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self._operands = operands
        self._single = dtype == "float32"

    def _print(self, expr, **kwargs):
        record = BY_CLASS.get(type(expr))
        if record is not None and record.definition is not None:  # sd.function: its body
            return f"({self._print(record.expand(expr.args))})"
        if record is not None:
            return spell(record, [self._paren(a) for a in expr.args], self._single)
        return super()._print(expr, **kwargs)

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

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        text = self.parenthesize(base, PRECEDENCE["Pow"])
        if exp.is_Integer:  # integer powers stay exact and fast: x**2 -> x*x by LLVM
            return f"{self.number(1.0)} / {text}" if exp == -1 else f"{text}**{int(exp)}"
        if exp == sp.S.Half:  # SymPy writes sqrt(x) as x**(1/2)
            return spell(FUNCTIONS["sqrt"], [self._print(base)], self._single)
        return f"{text}**{self.parenthesize(exp, PRECEDENCE['Pow'])}"

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


def vecmath_import(code) -> str:
    """The import line a generated module needs if any of its `code` lines call vecmath."""
    return f"\n{VECMATH_IMPORT}\n" if any("_vm." in line for line in code) else ""


def print_body(body: sp.Expr, operands: list[str], dtype: str = "float64") -> str:
    """`body` as Numba scalar code, with placeholder k printed as operands[k]."""
    env = {placeholder(k).name: text for k, text in enumerate(operands)}
    return KernelPrinter(env, dtype).doprint(body)


@lru_cache(maxsize=None)
def branches(body: sp.Expr) -> int:
    """How many conditional expressions (`a if c else b`) `print_body` writes for `body`: each
    is a branch in Numba's compile, which costs it several times what a statement does.

    >>> x = placeholder(0)
    >>> branches(FUNCTIONS["finite"].sympy(sp.Piecewise((x, x > 0), (0, True))))
    3
    """
    record = BY_CLASS.get(type(body))
    if record is not None and record.definition is not None:  # sd.function: its body
        return branches(record.expand(body.args))
    if record is not None:  # its spelling may write an operand more than once: finite's does
        return record.numba.count(" if ") + sum(
            record.numba.count(f"{{{0 if record.arity is None else k}}}") * branches(a)
            for k, a in enumerate(body.args))
    own = len(body.args) - 1 if isinstance(body, sp.Piecewise) else 0
    return own + sum(branches(a) for a in body.args)

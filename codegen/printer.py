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

A composite record (a definition over other records) prints as its definition in place, or,
if that is long, as a call of a helper function in a module of its own (HELPERS; see
`helper`).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from functools import lru_cache
from pathlib import Path

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from symdiff.functions import BUILTINS, BY_CLASS, FUNCTIONS, placeholder

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


def spell(record, args: list[str], single: bool, share=None) -> str:
    """A function record applied to operand texts; two or more operands fold pairwise. The
    record's `part` ({e}) is written out, or is the name `share(its text, the operand)` gives."""
    template = _vector(record.numba32 if single else record.numba, single)
    text = args[0]
    if record.arity is None:
        for a in args[1:]:
            text = template.format(text, a)
        return text
    if not record.part:
        return template.format(*args)
    part = _vector(record.part[single], single).format(*args)
    return template.format(*args, e=share(part, args[0]) if share else part)


def _vector(template: str, single: bool) -> str:
    for call, vector in ({} if LIBM else VECTOR_CALLS[single]).items():
        template = template.replace(call, vector)
    return template


class KernelPrinter(PythonCodePrinter):
    """Scalar Numba code for a body whose placeholders stand for `operands`."""

    def __init__(self, operands: dict[str, str], dtype: str = "float64", share=None):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self._operands = operands
        self._single = dtype == "float32"
        self._share = share  # (a record's part's text, operand) -> the name it is under
        self.named: dict[sp.Expr, str] = {}  # parts printed as a name instead (helpers)
        self.count = itertools.count()  # the names' numbers

    def _print(self, expr, **kwargs):
        if expr in self.named:  # a part of a helper's body computed once, under a name
            return self.named[expr]
        record = BY_CLASS.get(type(expr))
        if record is not None and record.definition is not None:  # sd.function: its body
            name = helper(record, self._single)
            if name is not None:  # a long one: a call of its own function
                return f"{name}({', '.join(self._print(a) for a in expr.args)})"
            return f"({self._print(record.expand(expr.args))})"
        if record is not None:
            return spell(record, [self._paren(a) for a in expr.args], self._single,
                         self._share)
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
        if exp.is_Integer:  # integer powers stay exact and fast: x**2 -> x*x by LLVM.
            # A negative one as 1 / x**k, the same operations as Numba's x**-k, which divides
            # under Python's error model and raised ZeroDivisionError at x = 0
            k = abs(int(exp))
            power = text if k == 1 else f"{text}**{k}"
            return f"{self.number(1.0)} / {power}" if exp < 0 else power
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

    def _print_Infinity(self, expr):  # typed like any number (a float32 helper returned
        return self.number(float("inf"))  # float64 for erfinv's bare math.inf)

    def _print_NegativeInfinity(self, expr):
        return self.number(float("-inf"))

    def _print_NaN(self, expr):
        return self.number(float("nan"))

    def _print_Exp1(self, expr):
        return "np.float32(math.e)" if self._single else "math.e"

    def _print_Pi(self, expr):
        return "np.float32(math.pi)" if self._single else "math.pi"

    def _paren(self, expr):
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sp.Function) else f"({text})"


# A composite record whose printed definition is longer than this is called as a function of
# its own (a "helper"), in a module of its own compiled once per machine, its parts that occur
# more than once computed once each under a name: erfinv's definition prints as 12,500
# characters, its polynomials repeated a dozen times, which took Numba 6 s to compile in every
# kernel that used it. The helper computes the same operations on the same values (the same
# bits), and LLVM still removes what repeats. An elementwise body this long (a special
# function's derivatives) becomes a function of the kernel's module the same way (emit.py).
HELPER_MIN_CHARS = 1000
HELPERS: dict[str, tuple[str]] = {}  # a helper module's text -> (its function's name,)
_helpers: dict[tuple, str | None] = {}


def helper(record, single: bool) -> str | None:
    """The name of `record`'s helper function (its module registered in HELPERS), or None if
    its definition prints shorter than HELPER_MIN_CHARS."""
    key = (record.name, record.definition, record.params, single)
    if key not in _helpers:
        params = [placeholder(k) for k in range(len(record.params))]
        body = record.expand(params)
        dtype = "float32" if single else "float64"
        operands = {p.name: f"a{k}" for k, p in enumerate(params)}
        if len(KernelPrinter(operands, dtype).doprint(body)) < HELPER_MIN_CHARS:
            _helpers[key] = None
        else:
            name = f"_record_{record.name}{'32' * single}"
            if record.name not in BUILTINS:  # a user's name may be defined again: each
                # definition its own function, whatever a kernel made later imports
                name += "_" + hashlib.sha256(sp.srepr(body).encode()).hexdigest()[:8]
            function = function_text(body, name, len(params), dtype,
                                     f"{record.name}: its definition")
            source = _HELPER.format(name=record.name, dtype=dtype, function=function)
            source = source.replace("# VECMATH\n", vecmath_import([function]))
            HELPERS[source] = (name,)
            _helpers[key] = name
    return _helpers[key]


def function_text(body: sp.Expr, name: str, arity: int, dtype: str, what: str) -> str:
    """An njit function `name(a0, a1, ...)` returning `body` (placeholders k as a<k>), each
    part that occurs more than once computed once (`_statements`)."""
    operands = {placeholder(k).name: f"a{k}" for k in range(arity)}
    lines = _used(_statements(body, KernelPrinter(operands, dtype), "    "))
    return "\n".join(['@njit(cache=True, error_model="numpy")  # strict IEEE, as in kernels',
                      f"def {name}({', '.join(f'a{k}' for k in range(arity))}):",
                      f'    """{what}, each part that occurs more than once computed once."""',
                      *lines]) + "\n"


_HELPER = '''"""symdiff: {name} ({dtype}) for generated kernels, compiled once per machine."""
import math

import numpy as np
from numba import njit
# VECMATH

{function}'''


def _statements(body: sp.Expr, printer: KernelPrinter, indent: str, target=None) -> list[str]:
    """Lines of a function body that return `body` (or assign it to `target`): a Piecewise as
    `if` blocks tried in order, one Piecewise nested in arithmetic computed first by blocks
    of its own; each other part that occurs twice or more is a statement of its own, in
    post-order (its own repeated parts first). A block's names are its own: a part is not
    taken out of a block that might not run."""
    def done(text):
        return f"{indent}{'return' if target is None else target + ' ='} {text}"

    if isinstance(body, sp.Piecewise):
        lines = []
        for k, (value, condition) in enumerate(body.args[:-1]):  # the last: what remains,
            lines.append(f"{indent}{'elif' if k else 'if'} {printer.doprint(condition)}:")
            lines += _statements(value, printer, indent + "    ", target)
        return lines + [f"{indent}else:"] + \
            _statements(body.args[-1][0], printer, indent + "    ", target)  # as kernels do
    seen, order = {}, []

    def visit(e):
        if e.is_Atom or isinstance(e, sp.logic.boolalg.Boolean):
            return
        seen[e] = seen.get(e, 0) + 1
        if seen[e] == 1:
            if not isinstance(e, sp.Piecewise):
                for a in e.args:
                    visit(a)
            order.append(e)  # after its parts

    visit(body)
    outer = dict(printer.named)
    lines = []
    for part in order:
        if part in printer.named or part == body or \
                not isinstance(part, sp.Piecewise) and seen[part] == 1:
            continue
        name = f"t{next(printer.count)}"
        if isinstance(part, sp.Piecewise):
            lines += _statements(part, printer, indent, name)
        else:
            lines.append(f"{indent}{name} = {printer.doprint(part)}")
        printer.named[part] = name
    lines.append(done(printer.doprint(body)))
    printer.named = outer
    return lines


def _used(lines: list[str]) -> list[str]:
    """`lines` without the assignments of names no later line reads (a part the printer
    writes in another form where it occurs: y**-2 as a division by y**2)."""
    for k in reversed(range(len(lines))):
        name, _, _ = lines[k].strip().partition(" = ")
        if name.isidentifier() and name.startswith("t") and not any(
                re.search(rf"\b{name}\b", line) for line in lines[k + 1:]):
            del lines[k]
    return lines


def vecmath_import(code) -> str:
    """The import line a generated module needs if any of its `code` lines call vecmath."""
    return f"\n{VECMATH_IMPORT}\n" if any("_vm." in line for line in code) else ""


def print_body(body: sp.Expr, operands: list[str], dtype: str = "float64", share=None) -> str:
    """`body` as Numba scalar code, with placeholder k printed as operands[k] (and records'
    parts as `share` names them, if given)."""
    env = {placeholder(k).name: text for k, text in enumerate(operands)}
    return KernelPrinter(env, dtype, share).doprint(body)


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
        spelled = record.numba.replace("{e}", record.part[0] if record.part else "{e}")
        return spelled.count(" if ") + sum(
            spelled.count(f"{{{0 if record.arity is None else k}}}") * branches(a)
            for k, a in enumerate(body.args))
    own = len(body.args) - 1 if isinstance(body, sp.Piecewise) else 0
    return own + sum(branches(a) for a in body.args)

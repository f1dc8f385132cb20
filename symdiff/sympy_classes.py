"""SymPy classes for the functions SymPy lacks, or defines otherwise than C and NumPy do.

Each is the `sympy` of a record in symdiff/functions.py: its derivative (`fdiff`, through the
forward value where that is simpler) and its value at a number (`eval`), as NumPy and C compute
it: relu'(0) = 0, the real cube root, log|Gamma| for C's lgamma, round half to even, C's fmod,
log1p of a float kept to its digits.
"""
from __future__ import annotations

import math

import mpmath
import sympy as sp
from sympy.codegen import cfunctions


class log1p(cfunctions.log1p):
    """log(1 + x); of a float, a float: SymPy's own class takes the log of the exact rational
    1 + x, which a kernel would round to log(1.0) = 0 for a tiny x (xlog1py(x, 1e-300))."""

    @classmethod
    def eval(cls, arg):
        if arg.is_Float:
            x = float(arg)
            return sp.Float(float(mpmath.log1p(x))) if x > -1 else -sp.oo if x == -1 else sp.nan
        return super().eval(arg)


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


class ceil(sp.Function):
    """The smallest integer not below x; its derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.ceiling(x)


class trunc(sp.Function):
    """x rounded toward 0; its derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sp.floor(x) if x >= 0 else sp.ceiling(x)


class round(sp.Function):
    """x rounded to the nearest integer, ties to even (NumPy's round, C's rint); its
    derivative is 0, as floor's."""

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            down = sp.floor(x)
            rest = x - down
            return down + (1 if rest > sp.S.Half or rest == sp.S.Half and down % 2 else 0)


class fmod(sp.Function):
    """C's fmod: x - trunc(x/y)*y, with the sign of x. It jumps where x/y is an integer; between
    the jumps its slopes are 1 by x and -trunc(x/y) by y (so also at a jump, where it is 0)."""

    def fdiff(self, argindex=1):
        x, y = self.args
        return sp.S.One if argindex == 1 else -trunc(x / y)

    @classmethod
    def eval(cls, x, y):
        if x.is_Number and y.is_Number and x.is_finite and y.is_finite and y != 0:
            return x - trunc(x / y) * y


class relu(sp.Function):
    """max(x, 0), with relu'(0) = 0 as in PyTorch and JAX."""

    def fdiff(self, argindex=1):  # relu(x) > 0 exactly where x > 0: the adjoint reads the
        return sp.Heaviside(self, 0)  # output, so the input need not be kept

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)


class ndtr(sp.Function):
    """The standard normal CDF, erfc(-x/sqrt(2))/2: accurate in the far negative tail, where
    (1 + erf(x/sqrt(2)))/2 cancels to 0. Its own class because SymPy rewrites erfc(-u) as
    2 - erfc(u), the cancelling form."""

    def fdiff(self, argindex=1):
        return sp.Float(1 / math.sqrt(2 * math.pi)) * sp.exp(-self.args[0]**2 / 2)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return (1 + sp.erf(x / sp.sqrt(2))) / 2


class cbrt(sp.Function):
    """The real cube root, negative for negative x (SymPy's cbrt is the principal root,
    complex there); cbrt'(x) = 1/(3 cbrt(x)**2) is finite for negative x too."""

    def fdiff(self, argindex=1):
        return 1 / (3 * cbrt(self.args[0]) ** 2)

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.real_root(x, 3)


class hypot(cfunctions.hypot):
    """sqrt(x**2 + y**2) without overflow; its slope at (0, 0) is 0, as abs'(0) is."""

    def fdiff(self, argindex=1):
        return sp.Piecewise((self.args[argindex - 1] / self, sp.Ne(self, 0)), (0, True))


class lgamma(sp.Function):
    """log|Gamma(x)| (C's lgamma, real for negative x, where SymPy's loggamma is complex); its
    derivative is digamma."""

    def fdiff(self, argindex=1):
        from .functions import FUNCTIONS  # digamma: a composite record, defined there
        return FUNCTIONS["digamma"].sympy(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Float(_lgamma_scalar(float(x)))


def _lgamma_scalar(x: float) -> float:
    try:
        return math.lgamma(x)
    except (ValueError, OverflowError):  # its poles, and beyond 1e305: +inf, as C's lgamma
        return math.inf


class finite(sp.Function):
    """x where x is finite, else 0: what a product with an exact 0 keeps of x (0 * inf is
    taken as 0 there). Its derivative is 1, as x's where x is finite."""

    def fdiff(self, argindex=1):
        return sp.S.One

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.S.Zero if x in (sp.nan, sp.oo, -sp.oo, sp.zoo) else x

"""The special functions' stable bodies: sinc, log_ndtr, digamma and erfinv as SymPy
expressions (series, asymptotic forms, reflections and a Newton-type step), each within a few
ulp of the function (measured against mpmath). Input: a real SymPy symbol; output: the body of
the function's composite record in symdiff/functions.py, which calls these on first use (so
importing symdiff builds none of them).
"""
from __future__ import annotations

import math
from functools import lru_cache, reduce

import sympy as sp

from .sympy_classes import log1p, ndtr, round  # noqa: A004 (the record's round)


def _maclaurin(coefficients, t):
    """sum of c_k t**k, by Horner's rule."""
    return reduce(lambda acc, c: acc * t + c, reversed(coefficients[:-1]), coefficients[-1])


# sin(pi x)/(pi x), 1 at 0; below |x| = 1/8 by its Maclaurin series (8 terms, exact to
# rounding there), where the quotient's derivatives would cancel
_SINC = [sp.Float((-1) ** k * math.pi ** (2 * k) / math.factorial(2 * k + 1)) for k in range(8)]
_PI = sp.Float(math.pi)


def sinc(x):
    return sp.Piecewise((_maclaurin(_SINC, x * x), sp.Abs(x) < 0.125),
                        (sp.sin(_PI * x) / (_PI * x), True))


# log(ndtr(x)): log1p(-ndtr(-x)) above 0 (ndtr rounds to 1 there), and below -20 the
# asymptotic series ndtr(x) = phi(x)/(-x) * (1 - 1/x**2 + 3/x**4 - ...), whose 12 terms are
# exact to rounding there; erfc underflows below -37
_LOG_NDTR = [sp.S.Zero] + [sp.Integer((-1) ** k * math.prod(range(1, 2 * k, 2)))
                           for k in range(1, 13)]
_LOG_SQRT_2PI = sp.Float(0.5 * math.log(2 * math.pi))


def log_ndtr(x):
    return sp.Piecewise(
        (log1p(-ndtr(-x)), x > 0),
        (sp.Piecewise((sp.log(ndtr(x)), x > -20),
                      (-x**2 / 2 - sp.log(-x) - _LOG_SQRT_2PI
                       + log1p(_maclaurin(_LOG_NDTR, 1 / x**2)), True)), True))


# digamma = lgamma': within 0.3 of its positive root by its Taylor series (25 terms; the
# other forms cancel there); above 10 by the asymptotic series log x - 1/(2x) - sum of
# B_2k/(2k x**2k) (8 terms); between 0 and 10 by psi(x) = psi(x + 10) - sum 1/(x + k); below
# 0 by the reflection psi(x) = psi(1 - x) - pi/tan(pi x), tan's argument reduced exactly
# (x - round(x) is exact; pi*x would round by eps*|x|; SymPy's pi, unlike a Float, is not
# distributed over the difference). Within 6 ulp above 0 (measured)
_X0 = sp.Float(1.4616321449683622)  # the float nearest the root
_DIGAMMA_X0 = [sp.Float(c) for c in (  # psi^(k)(_X0)/k!, psi(_X0) first
    -9.241265521729427e-17, 0.9676722454476212, -0.4427631689835922, 0.2584997609556511,
    -0.16394270544240658, 0.10782405069126241, -0.07219956125645474, 0.04880428816414313,
    -0.033161126474847376, 0.022597648232218118, -0.01542476590494897, 0.010538791616612184,
    -0.007204534386356875, 0.004926781395729858, -0.0033698016554393312, 0.00230512632673493,
    -0.001576936771430199, 0.0010788252019162978, -0.000738070938996006, 0.0005049532658346027,
    -0.0003454680251063082, 0.00023635601564027086, -0.00016170622091974827,
    0.00011063372768747428, -7.569179582195078e-05)]
_BERNOULLI = [sp.Float(float(sp.bernoulli(2 * k) / (2 * k))) for k in range(1, 9)]


def _digamma_above_0(x):
    def asymptotic(z):
        return sp.log(z) - 1 / (2 * z) - _maclaurin(_BERNOULLI, 1 / z**2) / z**2
    return sp.Piecewise((asymptotic(x), x >= 10),
                        (asymptotic(x + 10) - sp.Add(*(1 / (x + k) for k in range(10))), True))


def _trigamma_above_0(x):
    """The derivative of _digamma_above_0, term by term, each series by Horner's rule again
    (SymPy's derivative of a Horner form repeats it at every level: 20,000 characters)."""
    slopes = [(k + 1) * b for k, b in enumerate(_BERNOULLI)]  # d/dt of t*P(t)

    def asymptotic(z):  # d/dz of log z - 1/(2z) - t P(t), t = 1/z**2
        return 1 / z + 1 / (2 * z**2) + 2 * _maclaurin(slopes, 1 / z**2) / z**3
    return sp.Piecewise((asymptotic(x), x >= 10),
                        (asymptotic(x + 10) + sp.Add(*(1 / (x + k)**2 for k in range(10))), True))


def digamma(x):
    return sp.Piecewise(
        (_maclaurin(_DIGAMMA_X0, x - _X0), sp.Abs(x - _X0) < 0.3),
        (sp.Piecewise((_digamma_above_0(x), x > 0),
                      (_digamma_above_0(1 - x) - sp.pi / sp.tan(sp.pi * (x - round(x))), True)),
         True))


def trigamma(x):
    """digamma's derivative, piece by piece."""
    return sp.Piecewise(
        (_maclaurin([k * c for k, c in enumerate(_DIGAMMA_X0)][1:], x - _X0),
         sp.Abs(x - _X0) < 0.3),
        (sp.Piecewise((_trigamma_above_0(x), x > 0),
                      (sp.pi**2 / sp.sin(sp.pi * (x - round(x)))**2 - _trigamma_above_0(1 - x),
                       True)), True))


@lru_cache(maxsize=None)  # the definition's two branches share one build
def _erfinv_unsigned(x):
    """erfinv(x) below |x| = 1/2 (odd in x), |erfinv(x)| above: one Halley step (it cubes
    the error) from a start within 4e-7. Below 1/2 it solves erf(y) = x from the Maclaurin
    series (10 terms; analytic at 0, so every derivative is); above, log(erfc(y)) =
    log(1 - |x|) from a Chebyshev fit in sqrt(-log(1 - x**2)): exact there (1 - |x| is) and
    nearly quadratic in y, where erf(y) - x would cancel."""
    u = _SQRT_PI / 2 * x
    y = u * _maclaurin(_ERFINV, u**2)
    r = (sp.erf(y) - x) * _SQRT_PI / (2 * sp.exp(-y**2))
    y = y - r / (1 + y * r)
    a = sp.Abs(x)
    tail = _maclaurin(_ERFINV_TAIL, sp.sqrt(-sp.log((1 - a) * (1 + a))))
    g, m = sp.log(sp.erfc(tail)) - log1p(-a), 2 * sp.exp(-tail**2) / (_SQRT_PI * sp.erfc(tail))
    tail = tail + 2 * g / (2 * m - g * (2 * tail - m))
    return y, sp.Piecewise((sp.oo, sp.Eq(a, 1)), (tail, True))  # NaN beyond 1


_SQRT_PI = sp.Float(math.sqrt(math.pi))
_ERFINV = [sp.Float(c) for c in (  # erfinv(x) = u * sum c_k u**2k, u = sqrt(pi) x/2
    1.0, 0.3333333333333333, 0.23333333333333334, 0.2015873015873016, 0.19263668430335096,
    0.19532547699214367, 0.20593586454697566, 0.22320975741875212, 0.24697023314275493,
    0.277653825603224)]
_ERFINV_TAIL = [sp.Float(c) for c in (  # within 4e-7 for 0.53 <= sqrt(-log(1 - x**2)) <= 6.1
    0.000912826417255594, 0.8774109260267693, 0.03767384554227862, -0.08376467422961384,
    0.15376042047850205, -0.17316543717332594, 0.13786053341627028, -0.0792236152244358,
    0.032932146475168816, -0.009932865250169036, 0.0021727433091935306, -0.0003413404330573585,
    3.756100838631113e-05, -2.750230161440172e-06, 1.2042726090169417e-07,
    -2.3872140024237977e-09)]


def erfinv(x):
    return sp.Piecewise((_erfinv_unsigned(x)[0], sp.Abs(x) < 0.5),
                        (sp.sign(x) * _erfinv_unsigned(x)[1], True))


def erfinv_slope(x):
    """sqrt(pi)/2 exp(erfinv(x)**2), through the forward value: never the definition again."""
    from .functions import FUNCTIONS
    return _SQRT_PI / 2 * sp.exp(FUNCTIONS["erfinv"].sympy(x)**2)

"""Random formula strings over the whole formula grammar, for the differential tests.

A generator is a function of `pick(k)`, which returns an int in [0, k): Hypothesis drives it
(so failures shrink) and the campaign script drives it with a seeded `random.Random`. The
grammar covers every function record (read from symdiff's table), the operators, unary
minus, comparisons inside `where` (equality too), constants from 0 to 1e300, and the shapes
that have broken compilers before: deliberate repeats (u + u + u, u - u, u/u), subtrees
that fold to constants (inf and nan among them), kinks, and powers with zero bases.
"""
from __future__ import annotations

from hypothesis import strategies as st

from symdiff.functions import BUILTINS, FUNCTIONS

VARIABLES = ("x", "y", "z", "w")
OWN_KIND = ("relu", "abs", "min", "max", "atan2")  # kinds of their own below
# every other public record, read from the table, so the grammar never lags behind it
_OTHERS = [name for name in BUILTINS if not FUNCTIONS[name].internal
           and name not in OWN_KIND]
UNARY = tuple(name for name in _OTHERS if FUNCTIONS[name].required == 1)  # and those whose
# other parameters have defaults (elu's alpha), given or not
BINARY_FUNCTIONS = tuple(name for name in _OTHERS if FUNCTIONS[name].required != 1)  # and clip
CONSTANTS = ("0", "1", "2", "3", "0.5", "0.1", "-1", "-2.5", "10", "1000", "1e-300", "1e300")
MODEST_CONSTANTS = ("0", "1", "2", "3", "0.5", "0.1", "-1", "-2.5", "10")  # for float32
REPEATS = ("{u} + {u} + {u}", "{u} - {u}", "{u}/{u}", "{u}*{u}", "2*{u} + {u}",
           "{u} - (-{u})", "{u} - {u} + {u}", "({u})*0")
FOLDS = ("exp(1000)", "(-1)**0.5", "1/0", "-1/0", "0/0", "log(0)", "sqrt(-1)", "0**0",
         "2**2**2", "1e300*1e300", "1e-300*1e-300", "(1 - 1)", "exp(-1000)")
POWERS = ("2", "3", "0.5", "-1", "2.5", "0", "-0.5", "1")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
BINARY = ("+", "-", "*", "/", "**")
KINDS = ("variable", "constant", "unary", "binary", "negate", "repeat", "fold", "relu", "abs",
         "minmax", "where", "power", "atan2", "function2")


def _choice(pick, options):
    return options[pick(len(options))]


def formula(pick, depth: int, constants=CONSTANTS, folds=True) -> str:
    """A random formula of nesting depth at most `depth` (>= 1)."""
    if depth <= 1 or pick(5) == 0:
        return _choice(pick, VARIABLES) if pick(3) else _choice(pick, constants)
    kind = _choice(pick, KINDS if folds else tuple(k for k in KINDS if k != "fold"))

    def sub():
        return formula(pick, depth - 1, constants, folds)

    if kind == "variable":
        return _choice(pick, VARIABLES)
    if kind == "constant":
        return _choice(pick, constants)
    if kind == "unary":
        name = _choice(pick, UNARY)
        return f"{name}({sub()}{_parameters(pick, FUNCTIONS[name], sub)})"
    if kind == "binary":
        return f"({sub()}) {_choice(pick, BINARY)} ({sub()})"
    if kind == "negate":
        return f"-({sub()})"
    if kind == "repeat":
        return "(" + _choice(pick, REPEATS).format(u=f"({sub()})") + ")"
    if kind == "fold":
        return f"({sub()}) {_choice(pick, ('+', '*', '-'))} {_choice(pick, FOLDS)}"
    if kind in ("relu", "abs"):
        return f"{kind}({sub()})"
    if kind == "minmax":
        args = ", ".join(sub() for _ in range(2 + pick(2)))
        return f"{_choice(pick, ('min', 'max'))}({args})"
    if kind == "where":
        cond = sub() if pick(5) == 0 else f"({sub()}) {_choice(pick, COMPARISONS)} ({sub()})"
        return f"where({cond}, {sub()}, {sub()})"
    if kind == "power":
        shape = pick(4)
        if shape == 0:
            return f"({sub()})**{_choice(pick, POWERS)}"
        if shape == 1:
            return f"({sub()})**({sub()})"
        if shape == 2:
            return f"0**({sub()})"
        return f"{_choice(pick, ('2', '0.5', '0', '10'))}**({sub()})"
    if kind == "function2":
        name = _choice(pick, BINARY_FUNCTIONS)
        return f"{name}({', '.join(sub() for _ in range(FUNCTIONS[name].arity))})"
    return f"atan2({sub()}, {sub()})"


def _parameters(pick, record, sub) -> str:
    """Some of the parameters with defaults (none, the first, ...), by position or by name;
    a True/False parameter (gelu's approximate) gets either."""
    named = record.params[record.required:]
    count = pick(len(named) + 1)
    keyword = pick(2)
    text = ""
    for param, default in zip(named[:count], record.defaults):
        value = _choice(pick, ("True", "False")) if isinstance(default, bool) else sub()
        text += f", {param.name}={value}" if keyword else f", {value}"
    return text


POINT_VALUES = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 1e-8, 100.0)


def point_value(pick, random_float) -> float:
    """An input value: mostly a random float in [-3, 3], sometimes a special one."""
    return _choice(pick, POINT_VALUES) if pick(4) == 0 else random_float()


@st.composite
def formulas(draw, max_depth: int = 8, constants=CONSTANTS, folds=True):
    """A Hypothesis strategy of formula strings, depth 1 to max_depth."""
    depth = draw(st.integers(1, max_depth))
    return formula(lambda k: draw(st.integers(0, k - 1)), depth, constants, folds)


@st.composite
def points(draw, names):
    """{name: float} for `names`: random floats in [-3, 3] and special values."""
    floats = st.floats(-3, 3, allow_nan=False, allow_infinity=False)
    return {n: point_value(lambda k: draw(st.integers(0, k - 1)), lambda: draw(floats))
            for n in names}

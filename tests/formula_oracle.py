"""An oracle for formula strings that shares no code with symdiff: value, gradient, Hessian.

Input: a formula string and a point {name: float}. The string is parsed here with Python's
`ast` (not symdiff's parser). Output: a `Sample` with the exact value (mpmath, 50 digits, IEEE
rules for inf and nan), and the exact gradient and second derivatives from `sympy.diff` of the
whole expression, each with a rounding-error bound `R` that the judge scales by the format's
epsilon. `Reject` is raised for points where the answer depends on a convention (at a kink, a
`where` boundary, NaN reaching a comparison): targeted tests with closed forms cover those.

How a point is judged (the "condition" of the comparison):

* Branches are resolved at the point first: relu, abs, max/min and where are replaced by the
  argument or branch they select, so SymPy differentiates the smooth expression that equals
  the formula near the point (the branch not taken contributes nothing, as it must).
* R is a first-order rounding-error bound in units of epsilon: every operation of an
  expression tree is assumed to round its result once (relative error <= eps), and R sums
  |d result / d node| * |node| over the tree (running error analysis). For the value it is
  taken over the formula's own tree; for a derivative over SymPy's derivative expression,
  plus the value's R (a derivative computed through the forward value, like sigmoid' =
  s*(1 - s) or tanh' = 1 - t*t, has an absolute error of the order eps * value). A result is
  right when |got - exact| <= K * eps * R: cancellation and ill-conditioned functions widen
  the band exactly where float arithmetic cannot do better.
* Values are compared as numbers only when no live intermediate overflows, underflows or is
  non-finite in float arithmetic. Otherwise the kind is judged where IEEE arithmetic and exact
  arithmetic agree on it (both NaN: NaN is expected; exact beyond the float range and the
  float emulation infinite: an infinity is expected), and nothing is judged where they differ
  (exp(1000)/exp(1000): float arithmetic gives NaN, an algebraic rewrite may give 1).
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

import mpmath as mp
import numpy as np
import sympy as sp

from formula_chain import adjoints, edges_of, textbook_fits, through_value_floor
from formula_eval import (CLIP_ARGUMENT, DEAD, FORMATS, GRAD, INF, KINKED, NAN, UNARY, _d,
                          _finite, _log, _near, _Pass, apply, at_a_pole, atan2, divide,
                          inner_rounding, power, resolve, undetermined)


def rtol(fmt: str) -> float:
    """K * eps: 64 units in the last place, room for libm's few-ulp functions."""
    return 64.0 * 2.0 ** -FORMATS[fmt][2]


class Ncdf(sp.Function):
    """The normal CDF as a function of its own: SymPy writes erfc(-u/sqrt(2)) as
    2 - erfc(u/sqrt(2)), which at 50 digits cancels to nothing below u = -15."""

    def fdiff(self, argindex=1):
        return sp.exp(-self.args[0] ** 2 / 2) / sp.sqrt(2 * sp.pi)


def _chain(names, last):
    """SymPy functions names[0], names[1], ... each the derivative of the one before, the
    last one's derivative `last`; each evaluated in mpmath by its UNARY entry."""
    classes = []
    for name in names:
        classes.append(type(name.replace("'", "_d"), (sp.Function,), {}))
    for k, cls in enumerate(classes):
        following = classes[k + 1] if k + 1 < len(classes) else None
        cls.fdiff = (lambda self, argindex=1, f=following: f(self.args[0])) if following \
            else (lambda self, argindex=1: last(self.args[0]))
    return classes


# functions whose derivatives SymPy has no name for: classes of their own, with their
# derivatives written in formula_eval.UNARY (sinc's are at 0 its series, as the quotient's
# would be 0/0 there)
Sinc, Sinc1, Sinc2 = _chain(["sinc", "sinc'", "sinc''"], lambda u: sp.nan)
LogNdtr, NdtrRatio = _chain(["log_ndtr", "ndtr_ratio"],
                            lambda u: -NdtrRatio(u) * (u + NdtrRatio(u)))
Lgamma, Digamma, Trigamma, Tetragamma = _chain(["lgamma", "digamma", "trigamma", "tetragamma"],
                                               lambda u: sp.nan)

_SYMPY = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos,
          "tan": sp.tan, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "asin": sp.asin,
          "acos": sp.acos, "atan": sp.atan, "erf": sp.erf,
          "log1p": lambda u: sp.log(1 + u), "expm1": lambda u: sp.exp(u) - 1,
          "sigmoid": lambda u: 1 / (1 + sp.exp(-u)), "softplus": lambda u: sp.log(1 + sp.exp(u)),
          "erfc": sp.erfc, "ndtr": Ncdf, "gelu": lambda u: u * Ncdf(u),
          "log_sigmoid": lambda u: -sp.log(1 + sp.exp(-u)),
          "silu": lambda u: u / (1 + sp.exp(-u)),
          "mish": lambda u: u * sp.tanh(sp.log(1 + sp.exp(u))),
          "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
          "log2": lambda u: sp.log(u) / sp.log(2), "log10": lambda u: sp.log(u) / sp.log(10),
          "exp2": lambda u: 2 ** u, "square": lambda u: u ** 2, "reciprocal": lambda u: 1 / u,
          "rsqrt": lambda u: u ** sp.Rational(-1, 2),
          "logit": lambda u: sp.log(u / (1 - u)), "sinc": Sinc, "log_ndtr": LogNdtr,
          "lgamma": Lgamma, "digamma": Digamma, "erfinv": sp.erfinv}


_SYMPY2 = {"logaddexp": lambda a, b: sp.log(sp.exp(a) + sp.exp(b)),
           "logaddexp2": lambda a, b: sp.log(2 ** a + 2 ** b) / sp.log(2),
           "hypot": lambda a, b: sp.sqrt(a ** 2 + b ** 2),
           "xlogy": lambda a, b: a * sp.log(b), "xlog1py": lambda a, b: a * sp.log(1 + b)}


_SELU = (sp.Float("1.0507009873554804934193349852946", 40),
         sp.Float("1.6732632423543772848170429916717", 40))
# the kinked functions' pieces that are not constants (formula_eval.KINKED), by index
_PIECES = {"hardtanh": {2: lambda u: u}, "relu6": {2: lambda u: u},
           "leaky_relu": {0: lambda u: u, 1: lambda u: u / 100},
           "elu": {0: lambda u: u, 1: lambda u: sp.exp(u) - 1},
           "celu": {0: lambda u: u, 1: lambda u: sp.exp(u) - 1},
           "selu": {0: lambda u: _SELU[0] * u, 1: lambda u: _SELU[0] * _SELU[1] * (sp.exp(u) - 1)},
           "softsign": {0: lambda u: u / (1 + u), 1: lambda u: u / (1 - u)}}


def to_sympy(node, decisions: dict, symbols: dict, constants: dict) -> sp.Expr:
    """The smooth SymPy expression equal to the formula near the point whose branch
    `decisions` are given (each kink and where replaced by what it selects there); the
    constant pieces of kinked functions become symbols bound in `constants`."""
    go = lambda n: to_sympy(n, decisions, symbols, constants)  # noqa: E731
    if isinstance(node, ast.Constant):  # a symbol too, bound to its value when evaluated
        return symbols[id(node)]
    if isinstance(node, ast.Name):  # each occurrence of a variable is a symbol of its own
        return symbols[id(node)]
    if isinstance(node, ast.UnaryOp):
        return -go(node.operand) if isinstance(node.op, ast.USub) else go(node.operand)
    if isinstance(node, ast.Compare):
        return sp.Integer(int(decisions[id(node)]))
    if isinstance(node, ast.BinOp):
        a, b = go(node.left), go(node.right)
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b, ast.Pow: lambda: a ** b}[type(node.op)]()
    name, args = node.func.id, node.args
    if name == "where":
        return go(args[1] if decisions[id(node)] else args[2])
    if name in ("max", "min"):
        return go(args[decisions[id(node)]])
    if name == "relu":
        return go(args[0]) if decisions[id(node)] else symbols[id(node)]
    if name == "abs":
        return go(args[0]) if decisions[id(node)] else -go(args[0])
    if name == "atan2":
        return sp.atan2(go(args[0]), go(args[1]), evaluate=False)
    if name == "clip":
        return go(args[CLIP_ARGUMENT[decisions[id(node)]]])
    if name in ("mod", "fmod"):  # a - n*b, n the piece's integer quotient at the point: a
        n = decisions[id(node)]  # symbol, as SymPy would drop 0*b (IEEE: NaN where b' is)
        symbol = sp.Symbol(f"_q{id(node)}_{mp.nstr(n, 20)}", real=True)
        constants[symbol] = n
        return go(args[0]) - symbol * go(args[1])
    if name in _SYMPY2:
        return _SYMPY2[name](go(args[0]), go(args[1]))
    if name in KINKED:
        decided = decisions[id(node)]
        if isinstance(decided, tuple):  # a symbol, not a number SymPy would fold away
            symbol = sp.Symbol(f"_k{id(node)}_{decided[0]}_{mp.nstr(decided[1], 20)}", real=True)
            constants[symbol] = decided[1]
            return symbol
        return _PIECES[name][decided](go(args[0]))
    if name == "cbrt":  # the real root, by the argument's sign at the point
        third = sp.Rational(1, 3)
        return go(args[0]) ** third if decisions[id(node)] else -(-go(args[0])) ** third
    fn = _SYMPY[name]  # unevaluated: SymPy would turn tan(atan2(x, c)) into x/c, a formula
    return fn(go(args[0]), evaluate=False) if isinstance(fn, type) else fn(go(args[0]))


_MPMATH = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
           sp.sinh: "sinh", sp.cosh: "cosh", sp.tanh: "tanh", sp.asin: "asin", sp.acos: "acos",
           sp.atan: "atan", sp.erf: "erf", sp.Abs: "abs", sp.erfc: "erfc", Ncdf: "ndtr",
           sp.asinh: "asinh", sp.acosh: "acosh", sp.atanh: "atanh", sp.erfinv: "erfinv",
           Sinc: "sinc", Sinc1: "sinc'", Sinc2: "sinc''", LogNdtr: "log_ndtr",
           NdtrRatio: "ndtr_ratio", Lgamma: "lgamma", Digamma: "digamma",
           Trigamma: "trigamma", Tetragamma: "tetragamma"}


def bound(expr: sp.Expr, env: dict, memo: dict | None = None):
    """(value, R) of a SymPy expression at `env` {Symbol: mpf}: its exact value and the
    rounding-error bound of evaluating its tree in floats (see the module docstring)."""
    memo = {} if memo is None else memo
    if expr in memo:
        return memo[expr]
    zero = mp.mpf(0)
    if expr.is_number and expr.is_extended_real is not True or expr.has(sp.zoo, sp.nan):
        out = NAN, zero  # I, zoo, nan and oo: not a float the kernel could hold
    elif expr.is_Symbol:
        out = env[expr], zero
    elif expr.is_Rational:
        v = mp.mpf(expr.p) / expr.q
        out = v, zero if expr.q & (expr.q - 1) == 0 else abs(v)
    elif expr.is_Number or isinstance(expr, sp.NumberSymbol):
        if expr.has(sp.zoo, sp.nan, sp.oo, sp.I) or not expr.is_real:
            out = NAN, zero
        else:
            v = mp.mpf(sp.Float(expr, 60))
            out = v, abs(v)
    else:
        args = [bound(a, env, memo) for a in expr.args]
        out = _bound_op(expr, args)
    v = out[0]
    if _finite(v) and v != 0 and not FLOAT_RANGE[0] <= abs(v) <= FLOAT_RANGE[1]:
        memo["outside float range"] = True
    memo[expr] = out
    return out


FLOAT_RANGE = (mp.mpf(FORMATS["float64"][1]), mp.mpf(FORMATS["float64"][0]))


def _bound_op(expr, args):
    if isinstance(expr, sp.Add):
        v = mp.fsum(a for a, _ in args)
        return v, mp.fsum(R for _, R in args) + (len(args) - 1) * mp.fsum(abs(a) for a, _ in args)
    if isinstance(expr, sp.Mul):
        v = mp.fprod(a for a, _ in args)
        R = sum((abs(mp.fprod(b for j, (b, _) in enumerate(args) if j != i)) * Ri
                 for i, (_, Ri) in enumerate(args) if Ri != 0), mp.mpf(0))
        return v, R + (len(args) - 1) * abs(v)
    if isinstance(expr, sp.Pow):
        (a, Ra), (b, Rb) = args
        v = power(a, b)
        return v, _d(lambda _: b * power(a, b - 1), a, Ra) + \
            _d(lambda _: v * _log(abs(a)), b, Rb) + abs(v)
    if isinstance(expr, sp.atan2):
        (y, Ry), (x, Rx) = args
        v = atan2(y, x)
        r2 = x * x + y * y
        return v, _d(lambda _: divide(x, r2), y, Ry) + _d(lambda _: divide(y, r2), x, Rx) + abs(v)
    if isinstance(expr, sp.sign):  # from |u|'s derivative: at u = 0 a kink, not judged
        a = args[0][0]
        return (NAN if _near(a, args[0][1] + abs(a)) else mp.sign(a)), mp.mpf(0)
    if isinstance(expr, sp.DiracDelta):  # from sign's derivative (|u|''): 0 off the kink
        a = args[0][0]
        return (NAN if _near(a, args[0][1] + abs(a)) else mp.mpf(0)), mp.mpf(0)
    name = _MPMATH.get(expr.func)
    if name is None:
        raise TypeError(f"no rounding bound for {expr.func} in {expr}")
    (a, Ra), = args
    v = apply(name, a)
    return v, _d(UNARY[name][1], a, Ra + inner_rounding(name, a)) + abs(v)


@dataclass
class Sample:
    """The oracle at one point. `kind` is "number" (compare `value` within K*eps*R), "nan" or
    "inf" (a value of that kind is expected) or "unjudged"; `grads` holds (exact, R) for each
    gradient that can be judged there."""

    kind: str
    value: object
    R: object
    grads: dict = field(default_factory=dict)
    signature: tuple = ()
    decisions: dict = field(default_factory=dict)
    moderate: bool = True  # every value on the gradient's path within 1e±100 (see `second`)


# the activations' parameters, written out as the textbook formulas over functions judged
# above (name -> the formula of its arguments {0}, {1}, ..., the parameters' names and
# defaults); gelu's approximate=True is the tanh form as the papers write it
_PARAMETERISED = {
    "elu": ("where(({0}) > 0, {0}, ({1})*expm1({0}))", ("alpha",), ("1.0",)),
    "celu": ("where(({0}) > 0, {0}, ({1})*expm1(({0})/({1})))", ("alpha",), ("1.0",)),
    "leaky_relu": ("where(({0}) > 0, {0}, ({1})*({0}))", ("negative_slope",), ("0.01",)),
    "hardtanh": ("clip({0}, {1}, {2})", ("min_val", "max_val"), ("-1.0", "1.0")),
    "gelu": ("0.5*({0})*(1 + tanh(0.7978845608028654*(({0}) + 0.044715*({0})**3)))",
             ("approximate",), (None,)),
}


def expand_parameters(text: str) -> str:
    """`text` with each activation called with parameters written as its formula
    (`elu(x, 0.5)` -> `where((x) > 0, x, (0.5)*expm1(x))`)."""
    tree = ast.parse(text.strip(), mode="eval")
    if not any(isinstance(n, ast.Call) and getattr(n.func, "id", None) in _PARAMETERISED and
               (len(n.args) > 1 or n.keywords) for n in ast.walk(tree)):
        return text.strip()

    class Expand(ast.NodeTransformer):
        def visit_Call(self, node):
            self.generic_visit(node)
            name = getattr(node.func, "id", None)
            if name not in _PARAMETERISED or len(node.args) == 1 and not node.keywords:
                return node
            template, names, defaults = _PARAMETERISED[name]
            given = dict(zip(names, node.args[1:])) | {k.arg: k.value for k in node.keywords}
            if name == "gelu" and not given["approximate"].value:
                return ast.Call(node.func, node.args[:1], [])
            args = [ast.unparse(node.args[0])] + [
                ast.unparse(given[n]) if n in given else d for n, d in zip(names, defaults)]
            return ast.parse(template.format(*args), mode="eval").body
    return ast.unparse(Expand().visit(tree))


class FormulaOracle:
    """Parses `text` once; `sample(point)` gives the exact value and derivatives there."""

    def __init__(self, text: str, fmt: str = "float64"):
        self.text, self.fmt = text, fmt
        self.tree = ast.parse(expand_parameters(text), mode="eval").body
        order = [n for n in ast.walk(self.tree)]
        self.index = {id(n): i for i, n in enumerate(order)}
        called = {id(n.func) for n in order if isinstance(n, ast.Call)}
        names = [n for n in order if isinstance(n, ast.Name) and id(n) not in called]
        self.names = sorted({n.id for n in names}, key=lambda s: min(
            n.col_offset for n in names if n.id == s))
        # one symbol per occurrence of a variable: a derivative is the sum of the chain rule's
        # terms, one per occurrence, each evaluated (and range-checked) as symdiff computes it,
        # never simplified first (SymPy would turn d(x/x) into 0 and hide that the terms
        # 1/x and -x/x**2 leave the float range at tiny x)
        self.occurrences = {n: [] for n in self.names}
        self.symbols = {}
        for node in names:
            symbol = sp.Symbol(f"{node.id}_{len(self.occurrences[node.id])}", real=True)
            self.occurrences[node.id].append(symbol)
            self.symbols[id(node)] = symbol
        # and each constant: SymPy must not fold y**w * 0 to 0 (IEEE: NaN where y**w is) or
        # 1e300**2 to one exact number (in floats it overflows)
        self.constants = {}
        for k, node in enumerate(n for n in order if isinstance(n, ast.Constant)):
            self.symbols[id(node)] = symbol = sp.Symbol(f"_c{k}", real=True)
            self.constants[symbol] = mp.mpf(float(node.value))
        # and each relu that selects its 0: relu(-1)/y is 0/y, not a 0 SymPy folds away
        for k, node in enumerate(n for n in order if isinstance(n, ast.Call) and
                                 n.func.id == "relu"):
            self.symbols[id(node)] = symbol = sp.Symbol(f"_r{k}", real=True)
            self.constants[symbol] = mp.mpf(0)
        self._smooth: dict[tuple, tuple] = {}

    def sample(self, point: dict) -> Sample:
        env = {n: mp.mpf(float(point[n])) for n in self.names}
        exact = _Pass(env, self.fmt, bounded=False)
        exact.run(self.tree)
        live, decisions = {}, {}
        resolve(exact, self.tree, GRAD, live, decisions, strict=True)
        emulated = _Pass(env, self.fmt, bounded=True)
        emulated.run(self.tree)
        float_decisions = {}
        resolve(emulated, self.tree, GRAD, {}, float_decisions, strict=False)
        v, vf = exact.value[id(self.tree)], emulated.value[id(self.tree)]
        R = exact.R[id(self.tree)]
        troubled = float_decisions != decisions or any(
            not _finite(emulated.value[i]) or i in emulated.flagged or not _finite(exact.value[i])
            for i, level in live.items() if level > DEAD) or any(
            live.get(id(node), DEAD) > DEAD and at_a_pole(exact, node)
            for node in ast.walk(self.tree))
        signature = tuple(sorted((self.index[i], d) for i, d in decisions.items()))
        if not troubled and _finite(v) and _finite(R):
            sample = Sample("number", v, R, signature=signature, decisions=decisions,
                            moderate=_moderate(exact, self.tree, live))
            sample.grads = self._gradients(sample, env, exact, live)
            return sample
        if any(level > DEAD and (exact.value[id(node)] != 0 or _sinc_zero(node)) and
               undetermined(exact, node)
               for node in ast.walk(self.tree) if (level := live.get(id(node), DEAD))):
            # NaN or inf from an intermediate whose sign floats may not get (cos at a rounded
            # pi/2, tan at a rounded pole, sinc at a nonzero integer, 0 exactly but about
            # 1e-17 in floats): IEEE's answer is not determined
            return Sample("unjudged", v, R)
        if mp.isnan(v) and mp.isnan(vf):
            return Sample("nan", v, R)
        if mp.isinf(vf) and (mp.isinf(v) or abs(v) > FORMATS[self.fmt][0]):
            return Sample("inf", vf, R)
        return Sample("unjudged", v, R)

    def smooth(self, sample: Sample):
        """(F, {name: dF/dname}) for the sample's branches, from SymPy, cached."""
        if sample.signature not in self._smooth:
            F = to_sympy(self.tree, sample.decisions, self.symbols, self.constants)
            self._smooth[sample.signature] = (F, {n: self._diff(F, n) for n in self.names}, {})
        return self._smooth[sample.signature]

    def _diff(self, expr, name: str) -> sp.Expr:
        """d expr / d name: the sum over the occurrences of `name`."""
        return sp.Add(*(sp.diff(expr, o) for o in self.occurrences[name]), evaluate=False)

    def _judgeable(self, expr, env, memo, floor):
        values = {o: env[n] for n in self.names for o in self.occurrences[n]}
        g, R = bound(expr, {**values, **self.constants}, memo)
        if memo.pop("outside float range", False):  # an intermediate over- or underflows:
            return None  # float arithmetic cannot be expected to reach the exact answer
        if _finite(g) and _finite(R) and abs(g) <= FORMATS[self.fmt][0] / 8:
            return g, R + floor
        return None

    def _gradients(self, sample: Sample, env: dict, exact: _Pass, live: dict) -> dict:
        edges = edges_of(exact, self.tree, live, sample.decisions)
        adjoint, fits = adjoints(edges, self.tree)
        if not fits or not textbook_fits(exact, self.tree, live):
            return {}  # an adjoint or a local derivative's intermediate leaves the float range
        _, derivatives, _ = self.smooth(sample)
        grads = {}
        for name, D in derivatives.items():  # a memo of its own: _judgeable's range check
            floor = sample.R + through_value_floor(exact, edges, adjoint, name)
            judged = self._judgeable(D, env, {}, floor)  # sees every intermediate
            if judged is not None:
                grads[name] = judged
        return grads

    def second(self, sample: Sample, point: dict, a: str, b: str):
        """(exact, R) of d2F/da db at the sample's point, or None if it cannot be judged."""
        if sample.kind != "number":
            return None
        _, derivatives, seconds = self.smooth(sample)
        if (a, b) not in seconds:
            seconds[(a, b)] = self._diff(derivatives[a], b)
        if sample.kind != "number" or a not in sample.grads or b not in sample.grads or \
                not sample.moderate:
            return None
        env = {n: mp.mpf(float(point[n])) for n in self.names}
        floor = sample.grads[a][1] + sample.grads[b][1]
        return self._judgeable(seconds[(a, b)], env, {}, floor)


def _sinc_zero(node) -> bool:
    """Whether node is sinc (its value then 0): exact at the integers, but not in floats,
    whose sin(pi*n) is sin of a rounded pi*n."""
    return isinstance(node, ast.Call) and node.func.id == "sinc"


def _moderate(p: _Pass, tree, live: dict) -> bool:
    """Whether every computed value on the gradient's path lies within 1e±100 (or is 0).
    Second derivatives square and cube such values in their textbook forms (log'' = -1/u**2,
    (a/b)'' by b = 2a/b**3): at u = 2.5e-300, u*u is 0 in floats and log(1e-300 x)'' is -inf
    there, where the exact answer is -1/x**2."""
    low, high = mp.mpf("1e-100"), mp.mpf("1e100")
    return all(v == 0 or not _finite(v) or low <= abs(v) <= high
               for n in ast.walk(tree) if live.get(id(n)) == GRAD
               and not isinstance(n, (ast.Constant, ast.Name))
               for v in [p.value[id(n)]])


def mismatch(got, kind: str, exact, R, fmt: str) -> str | None:
    """Why `got` is wrong for an oracle of `kind` (see Sample), or None if it is right."""
    got = float(np.asarray(got, dtype=np.float64))
    if kind == "nan":
        return None if math.isnan(got) else f"expected nan, got {got!r}"
    if kind == "inf":
        return None if math.isinf(got) else f"expected an infinity, got {got!r}"
    if kind != "number":
        return None
    tolerance = rtol(fmt) * R + 16 * FORMATS[fmt][1]
    error = abs(mp.mpf(got) - exact) if math.isfinite(got) else INF
    if error <= tolerance:
        return None
    return (f"expected {mp.nstr(exact, 17)}, got {got!r} (error {mp.nstr(error, 3)}, "
            f"tolerance {mp.nstr(tolerance, 3)} = K*eps*R, R = {mp.nstr(R, 3)})")

"""The chain rule on a formula's syntax tree at one point, for judging its gradients.

Input: a formula's exact pass (formula_eval._Pass), its branch decisions and live levels (from
`resolve`). Output: each live node's exact adjoint dF/dnode and tangent dnode/dname, walked in
mpmath (the oracle's expected gradients still come from SymPy's `diff`; these only say how far
a float computation of them can be trusted):

* `adjoints_in_range`: reverse mode holds every adjoint as a float. Where one leaves the float
  range (dF/dnode below the smallest normal number or overflowing) the floats lose it, in
  symdiff as in any reverse-mode system, so the gradients are not judged there.
* `textbook_fits`: the same for the intermediates of each local derivative's textbook form.
* `through_value_floor`: a local derivative computed through its node's forward value
  (sigmoid' = s(1 - s), exp' = out, sqrt' = 1/(2 out)) carries that value's rounding error R,
  magnified by the rest of the chain: summed over the tree, |dF/dnode| * err(local) *
  |dchild/dname|, the part of a gradient's rounding error SymPy's own derivative expression
  does not have.
"""
from __future__ import annotations

import ast

import mpmath as mp

from formula_eval import (BINARY, CLIP_ARGUMENT, GRAD, KINKED, UNARY, _finite, _log, divide,
                          power)


def partials(p, node, decisions: dict) -> list:
    """[(child, d node / d child)] at the point, for the children whose change reaches node."""
    v = lambda n: p.value[id(n)]  # noqa: E731
    if isinstance(node, ast.UnaryOp):
        return [(node.operand, -1 if isinstance(node.op, ast.USub) else 1)]
    if isinstance(node, ast.BinOp):
        a, b, l, r = v(node.left), v(node.right), node.left, node.right
        op = type(node.op)
        if op is ast.Add or op is ast.Sub:
            return [(l, 1), (r, 1 if op is ast.Add else -1)]
        if op is ast.Mult:
            return [(l, b), (r, a)]
        if op is ast.Div:
            return [(l, divide(1, b)), (r, -divide(a, b * b))]
        return [(l, b * power(a, b - 1)), (r, power(a, b) * _log(abs(a)))]
    if not isinstance(node, ast.Call):
        return []  # names, constants and comparisons
    name, args = node.func.id, node.args
    decided = decisions.get(id(node))
    if name == "where":
        return [(args[1] if decided else args[2], 1)]
    if name in ("max", "min"):
        return [(args[decided], 1)]
    if name == "clip":
        return [(args[CLIP_ARGUMENT[decided]], 1)]
    if name == "relu":
        return [(args[0], 1)] if decided else []
    if name == "abs":
        return [(args[0], 1 if decided else -1)]
    if name == "atan2":
        y, x = v(args[0]), v(args[1])
        r2 = x * x + y * y
        return [(args[0], divide(x, r2)), (args[1], -divide(y, r2))]
    if name in KINKED:
        slope = KINKED[name][2][decided if isinstance(decided, int) else decided[0]][2]
        return [] if slope is None else [(args[0], slope(v(args[0])))]
    try:
        if name in BINARY:
            a, b = v(args[0]), v(args[1])
            return [(args[0], BINARY[name][1](a, b)), (args[1], BINARY[name][2](a, b))]
        return [(args[0], UNARY[name][1](v(args[0])))]
    except (ZeroDivisionError, ValueError, OverflowError):
        return [(arg, mp.nan) for arg in args]


def textbook_fits(p, tree, live: dict) -> bool:
    """Whether the textbook forms of the local derivatives on the gradient's path keep their
    intermediates in the float range: the b*b of a quotient's -a/b**2, atan2's x*x + y*y, a
    power's a**(b - 1) and log|a|, the a*a of atan's, asin's, acos's, their hyperbolic twins',
    reciprocal's and gelu's, tan's squared. Where one overflows (a quotient by 6e299: -a/b**2
    is 1e-300, but b*b is inf) a float program may meet inf/inf where the exact derivative is
    an ordinary number."""
    tiny, huge = mp.mpf(2) ** -1022, mp.mpf(2) ** 1023
    v = lambda n: p.value[id(n)]  # noqa: E731
    values = []
    for n in ast.walk(tree):
        if live.get(id(n)) != GRAD:
            continue
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            values.append(v(n.right) ** 2)
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            a, b = v(n.left), v(n.right)
            values += [power(a, b - 1)] + ([_log(abs(a))] if a != 0 else [])
        elif isinstance(n, ast.Call) and n.func.id == "atan2":
            values.append(v(n.args[0]) ** 2 + v(n.args[1]) ** 2)
        elif isinstance(n, ast.Call) and n.func.id in ("atan", "asin", "acos", "asinh", "acosh",
                                                       "atanh", "reciprocal", "gelu", "sinc"):
            values.append(v(n.args[0]) ** 2)
        elif isinstance(n, ast.Call) and n.func.id == "tan":
            values.append(v(n) ** 2)
    return all(x == 0 or _finite(x) and tiny <= abs(x) <= huge for x in values
               if not mp.isnan(x))


def edges_of(p, tree, live: dict, decisions: dict) -> list:
    """[(node, child, local)] over the nodes whose gradient matters, parents first."""
    return [(n, c, mp.mpf(local)) for n in ast.walk(tree) if live.get(id(n)) == GRAD
            for c, local in partials(p, n, decisions)]


def adjoints(edges, tree) -> tuple[dict, bool]:
    """({id(node): dF/dnode}, whether every adjoint and every term of one fits a float)."""
    adjoint, fits = {id(tree): mp.mpf(1)}, True
    tiny, huge = mp.mpf(2) ** -1022, mp.mpf(2) ** 1020
    for n, c, local in edges:
        term = adjoint.get(id(n), mp.mpf(0)) * local
        total = adjoint[id(c)] = adjoint.get(id(c), mp.mpf(0)) + term
        for x in (term, total):
            fits = fits and (x == 0 or _finite(x) and tiny <= abs(x) <= huge)
    return adjoint, fits


def tangents(edges, name: str) -> dict:
    """{id(node): dnode/dname} (summed over the occurrences of `name`)."""
    tangent = {}
    for n, c, local in reversed(edges):  # children first
        if isinstance(c, ast.Name):
            tangent[id(c)] = mp.mpf(c.id == name)
        tangent[id(n)] = tangent.get(id(n), mp.mpf(0)) + local * tangent.get(id(c), 0)
    return tangent


def through_value_floor(p, edges, adjoint: dict, name: str):
    """The rounding error (in units of eps) that local derivatives computed through their
    node's forward value add to d F / d name (see the module docstring)."""
    tangent = tangents(edges, name)
    total = mp.mpf(0)
    for n, c, local in edges:
        value, R = p.value[id(n)], p.R[id(n)]
        if R == 0 or not tangent.get(id(c)):
            continue
        scale = max(1, abs(local / value)) if value != 0 else 1
        total += abs(adjoint.get(id(n), 0)) * 2 * (1 + abs(value)) * scale * R * abs(tangent[id(c)])
    return total

"""Stable forms: a model's graph -> the same function, rewritten to stay finite where it is.

Small chains of elementwise nodes are inlined into one SymPy expression (a few levels deep),
matched against known unstable shapes and rebuilt node by node: log(1 + exp(u)) becomes
softplus(u), printed overflow-free; 1/(1 + exp(-u)) becomes sigmoid(u), whose derivative
reuses its value; log(1 + u) becomes log1p(u). Runs before differentiation, so adjoints come
from the stable forms too.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .. import tensors as T
from ..functions import placeholder, sigmoid, softplus
from ..from_sympy import from_sympy
from ..ir import Node, make_node, topological



def _one_plus(e):
    """`rest` if e is literally 1 + rest, else None."""
    if isinstance(e, sp.Add) and sp.S.One in e.args:
        return sp.Add(*(a for a in e.args if a != sp.S.One))
    return None


def _log(e):  # log(1+exp(u)) -> softplus(u); log(1+u) -> log1p(u); log sigmoid u -> -softplus(-u)
    (x,) = e.args
    if isinstance(x, sigmoid):
        return -softplus(-x.args[0])
    rest = _one_plus(x)
    if rest is None:
        return None
    if isinstance(rest, sp.exp):
        return softplus(rest.args[0])
    if isinstance(-rest, sigmoid):  # log(1 - sigmoid(u)) = -softplus(u)
        return -softplus((-rest).args[0])
    return log1p(rest)


def _reciprocal(e):  # 1 / (1 + exp(-u)) -> sigmoid(u)
    rest = _one_plus(e.base) if e.exp == -1 else None
    return sigmoid(-rest.args[0]) if isinstance(rest, sp.exp) else None


def _minus_one(e):  # exp(u) - 1 -> expm1(u)
    if sp.S.NegativeOne in e.args and len(e.args) == 2:
        (x,) = (a for a in e.args if a != sp.S.NegativeOne)
        return expm1(x.args[0]) if isinstance(x, sp.exp) else None
    return None


RULES = [(sp.log, _log), (sp.Pow, _reciprocal), (sp.Add, _minus_one)]
DEPTH = 4


def stabilize(output: T.Tensor) -> T.Tensor:
    """`output` with every matched unstable subexpression replaced by its stable form."""
    new: dict[int, T.Tensor] = {}
    for node in topological([output.node]):
        inputs = [new[i.uid] for i in node.inputs]
        unchanged = all(a.node is b for a, b in zip(inputs, node.inputs))
        if node.op == "elementwise" and _candidate(node.attr("body")):
            new[node.uid] = _rewrite(node, new)
        elif unchanged:
            new[node.uid] = T.Tensor(node)
        else:
            new[node.uid] = T.Tensor(_rebuild(node, [t.node for t in inputs]))
    return new[output.node.uid]


def _candidate(body: sp.Expr) -> bool:
    """Could a rule match an expression with this body on top? (Inlining costs SymPy time.)"""
    return isinstance(body, sp.log) or isinstance(body, sp.Pow) and body.exp == -1 \
        or isinstance(body, sp.Add) and sp.S.NegativeOne in body.args


def _rebuild(node: Node, inputs: list[Node]) -> Node:
    return make_node(node.op, inputs, node.shape, node.dtype, **dict(node.attrs))


def _rewrite(node: Node, new: dict) -> T.Tensor:
    leaves: dict[sp.Symbol, T.Tensor] = {}
    expr = _inline(node, new, leaves, DEPTH)
    stable = expr
    for _ in range(3):  # a rewrite can expose another: log(1/(1+exp(-u))) -> log(sigmoid(u))
        before = stable
        for kind, rule in RULES:
            stable = stable.replace(lambda e: isinstance(e, kind) and rule(e) is not None, rule)
        if stable == before:
            break
    if stable == expr:
        env = {placeholder(k): new[i.uid] for k, i in enumerate(node.inputs)}
        return T.as_tensor(T.apply_body(node.attr("body"), env))
    # rebuilt one node per operation: unchanged parts are the very same (hash-consed) nodes
    return T.as_tensor(from_sympy(stable, {s.name: t for s, t in leaves.items()}))


def _inlinable(node: Node) -> bool:
    """Elementwise arithmetic, but never a comparison or a select: inlined into one SymPy
    expression, SymPy could decide a condition it cannot know (Ne(x >= 0.3, 0) is True)."""
    return node.op == "elementwise" and node.dtype != "bool" \
        and not node.attr("body").has(sp.Piecewise)


def _inline(node: Node, new: dict, leaves: dict, depth: int) -> sp.Expr:
    """`node`'s body with its (already rewritten) elementwise inputs of the same shape inlined
    `depth` levels deep."""
    env = {}
    for k, old in enumerate(node.inputs):
        inp = new[old.uid].node if old.uid in new else old
        if depth > 1 and _inlinable(inp) and inp.shape == node.shape:
            env[placeholder(k)] = _inline(inp, {}, leaves, depth - 1)
        else:
            symbol = sp.Symbol(f"_leaf{inp.uid}", real=True)
            leaves[symbol] = T.Tensor(inp)
            env[placeholder(k)] = symbol
    return node.attr("body").xreplace(env)

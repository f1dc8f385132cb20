"""Elementwise ops: one SymPy body over placeholders a0, a1, ... (symdiff/functions.py).

One generic record serves every body: its local derivatives come from `sympy.diff` of the
small body (memoised), so the adjoint is dy times each derivative and the tangent is the sum of
each input's tangent times its derivative. Where a derivative is a select, the incoming
adjoint goes into its branches (`times`). Per-example gradients need no rule of their own:
autodiff lifts a parameter-only body over the batch.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .. import tensors as T
from ..batching import same_axis
from ..functions import (OUT, body_dtype, evaluate_body, guard_symbol, guarded,
                         local_derivative, may_be_selected_zero, placeholder, times)
from ..optable import OPS, define
from ..printing import body_name, format_body

_G = sp.Symbol("g", real=True)  # the incoming adjoint, in an adjoint body under construction


def _shape(*inputs, body):  # a comparison is bool; float32 only if every input is
    shapes = {x.shape for x in inputs}
    assert len(shapes) <= 1, f"elementwise inputs must be broadcast first: {shapes}"
    dtype = body_dtype(body)
    if dtype != "bool":
        dtype = "float32" if inputs and all(x.dtype == "float32" for x in inputs) else "float64"
    return (inputs[0].shape if inputs else ()), dtype


def _selected(t, depth: int = 8, seeds: bool = False) -> bool:
    """Whether Tensor t may be 0 because a select did not take its branch (or, with `seeds`,
    because it is a direction's entry: a tangent input): a select with a 0 branch, seen through
    broadcasts, batch sums, reshapes, constant multiples and sums of such values (a product
    with it is then guarded: functions.guarded)."""
    node = t.node
    while OPS[node.op].passes_zeros:  # look at what they read
        node = node.inputs[0]
    if node.op == "const":  # a guarded product with a constant 0 folds to this 0
        return node.attr("value") == 0
    if node.op == "input":
        return seeds
    if node.op != "elementwise" or depth == 0:
        return False
    body = node.attr("body")
    if may_be_selected_zero(body):
        return True
    g = guard_symbol(body)
    if g is not None:  # a guarded product: 0 wherever its g is
        return _selected(T.Tensor(node.inputs[int(g.name[1:])]), depth - 1, seeds)
    scaled = isinstance(body, sp.Mul) and len(body.args) == 2 and body.args[0].is_Number
    summed = isinstance(body, sp.Add) and all(a.is_Symbol for a in body.args)
    return (scaled or summed) and all(_selected(T.Tensor(i), depth - 1, seeds)
                                      for i in node.inputs)


def _product(g, t, local, direction=False):
    """g * local, guarded where the Tensor t bound to g may be a select's 0, or for a tangent
    the 0 of a direction (forward mode along x does not see a NaN derivative by y). Any other
    0 times an infinite local derivative is NaN, in IEEE arithmetic as in reverse mode, so the
    orders agree at degenerate points: sqrt(x*x) at 0 and the std of a constant row have NaN
    derivatives in every order, as in JAX and PyTorch."""
    if local.is_Number and local.is_finite or not _selected(t, seeds=direction):
        return times(g, local)
    return guarded(g, local)


def _adjoint(dy, y, *args, body):  # y = f(a0, a1, ...): da_k = dy * df/da_k
    grads = []
    for k, a in enumerate(args):
        local = local_derivative(body, k)
        if a.dtype not in ("float64", "float32") or local == 0:
            grads.append(None)
            continue
        env = {placeholder(i): x for i, x in enumerate(args)}
        env.update({OUT: y, _G: dy})
        grads.append(T.apply_body(_product(_G, dy, local), env))
    return grads


def _tangent(y, inputs, tangents, *, body):  # dy = sum_k df/da_k * da_k
    terms, env = [], {OUT: y}
    for k, (a, da) in enumerate(zip(inputs, tangents)):
        env[placeholder(k)] = a
        local = local_derivative(body, k)
        if da is not None and local != 0:
            symbol = sp.Symbol(f"_t{k}", real=True)
            env[symbol] = da
            terms.append(_product(symbol, da, local, direction=True))
    return T.apply_body(sp.Add(*terms), env) if terms else None


def _lift(dy, y, *args, batch, body):  # each operand repeated for every example
    def batched(t):
        return T.broadcast_in_dim(t, (batch,) + t.shape, tuple(range(1, t.ndim + 1)))
    return _adjoint(dy, batched(y), *map(batched, args), body=body)


def _evaluate(node, args, dims):
    env = {placeholder(k).name: x for k, x in enumerate(args)}
    shape = tuple(dims[d] if isinstance(d, str) else d for d in node.shape)
    return np.broadcast_to(evaluate_body(node.attr("body"), env), shape)


def _tape(tape, phase, node):
    return phase.body(node.attr("body"), [tape.operand(phase, i) for i in node.inputs])


def _names(args):
    return {placeholder(k).name: name for k, name in enumerate(args)}


define("elementwise", "elementwise", shape=_shape, adjoint=_adjoint, tangent=_tangent,
       per_example=None, evaluate=_evaluate, fusable=True,
       emit=lambda e, node: [f"{e.name(node)} = "
                             f"{e.body(node.attr('body'), [e.name(i) for i in node.inputs])}"],
       in_loop=lambda e, node, idx: e.body(node.attr("body"),
                                           [e.read(i, idx) for i in node.inputs]),
       tape=_tape, format=lambda node, args: format_body(node.attr("body"), _names(args)),
       lift=_lift, batching=same_axis,
       hint=lambda node: body_name(node.attr("body")))

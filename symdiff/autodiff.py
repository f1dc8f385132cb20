"""Reverse mode: a scalar (or seeded) output Tensor and the Tensors to differentiate by ->
a Program that computes the value, then the adjoints.

The graph is walked once in reverse topological order from the output (seed 1). Each op's
adjoint rule in its op record (symdiff/ops/) is a vector-Jacobian product built from Tensor operations, so the
adjoint part is IR like the forward part. Adjoints of a value used in several places are
summed here, in one place. Every node made while handling a forward node is tagged with it,
which gives the `# from:` comments of the generated code.
"""
from __future__ import annotations

import sympy as sp

from . import tensors as T
from .batching import example_axes
from .errors import DifferentiationError
from .ir import Node, format_shape, fresh, topological
from .loops import Parts
from .optable import OPS
from .program import Program, Stmt
from .printing import format_stmt


def differentiate(output: T.Tensor, wrt, labels=None, seed: T.Tensor | None = None,
                  inputs=None, per_example: str | None = None, names=None,
                  value: T.Tensor | None = None,
                  extra=(), rescaled: "Rescaled | None" = None) -> Program:
    """The Program computing `output` and d output / d w for each w in `wrt`.

    Args:
        output: the value; rank 0 unless a `seed` of its shape is given (a VJP).
        wrt: Tensors to differentiate by, usually inputs; one unused by `output` gets zeros.
        labels: output labels for the gradients (default "d" + input name).
        inputs: the input Tensors in argument order (default: those found, by name).
        per_example: the batch dimension of an output holding one value per example; each
            gradient then gets that leading axis: example i's gradient, the batch sum not taken.
        names: {uid: name} of forward values the user named (the lines of a formula); their
            statements keep the names, their adjoints are "d" + name.
        extra: more outputs, (label, Tensor) pairs computed beside the value (auxiliary
            outputs), scheduled with the forward statements.
        value: the Program's value, if not `output` (the extra outputs follow the gradients).
        rescaled: the adjoints of a per-example walk of the same `output`, each example's
            scaled (see `Rescaled`); with it the seed is that scale and the walk reuses them.

    >>> x, y = T.scalar("x"), T.scalar("y")
    >>> print(differentiate(x * T.function("sin", y), [x, y]))
    sin1 = sin(y)
    mul2 = x*sin1
    # from: sin1 = sin(y)
    dy = x*cos(y)
    return value=mul2, dx=sin1, dy=dy
    """
    y = output.node
    walk = _ReverseWalk(y, [w.node for w in wrt], per_example, rescaled)
    walk.run(_seed(y, seed, per_example))
    grads = walk.gradients()
    labels = labels or ["d" + w.attr("name", f"w{k}") for k, w in enumerate(walk.wrt)]
    outputs = [("value", y if value is None else value.node)]
    outputs += [(lab, g.node) for lab, g in zip(labels, grads)]
    forward = walk.forward_uids | {n.uid for _, t in extra for n in topological([t.node])}
    outputs += [(lab, t.node) for lab, t in extra]
    for _, node in outputs:
        walk.claim(node, None)
    return schedule(outputs, walk.origin, walk.adjoint_of, forward, inputs, walk.step, names)


def _seed(y: Node, seed, per_example) -> T.Tensor:
    """The adjoint the walk starts from: 1 for a scalar loss, ones for per-example values."""
    if per_example is not None:
        if not y.shape or y.shape[0] != per_example:
            raise DifferentiationError(
                f"per-example gradients need one value per example along {per_example!r}, "
                f"but the model has shape {format_shape(y.shape)}")
        return T.full(y.shape, 1.0)
    if seed is None and y.shape != ():
        raise DifferentiationError(
            f"the loss must be a scalar, but it has shape {format_shape(y.shape)}: "
            f"reduce it (sd.mean, sd.sum) or pass reduce='mean'")
    return seed if seed is not None else T.full((), 1.0)


def per_example_walk(output: T.Tensor, wrt, batch: str) -> "_ReverseWalk":
    """The reverse walk of a per-example `output` (one value per example along `batch`):
    its `total` holds each value's adjoint, example i's in row i, and `gradients()` each
    parameter's per-example gradient."""
    walk = _ReverseWalk(output.node, [w.node for w in wrt], batch)
    walk.run(_seed(output.node, None, batch))
    return walk


class Rescaled:
    """The adjoints of a per-example walk, example i's multiplied by scale[i]: the adjoints of
    sum_i scale_i * output_i, since adjoints are linear in the seed. A walk given these takes
    them for every value with the batch axis and runs rules only where a parameter (a value
    without that axis) enters, so the reverse pass is not done twice."""

    def __init__(self, walk: "_ReverseWalk", scale: T.Tensor):
        self.walk, self.scale, self.batch = walk, scale, walk.per_example

    def adjoint(self, v: Node) -> T.Tensor | None:
        total = self.walk.total.get(v.uid)
        if total is None:
            return None
        if isinstance(total, Parts):  # a loop's: each part has its examples on its own axis
            axes = self.walk.axes[v.uid]
            return Parts({k: T.broadcast_in_dim(self.scale, part.shape, (axes[k],)) * part
                          for k, part in total.items()})
        return T.broadcast_in_dim(self.scale, v.shape, (0,)) * total

    def has_batch(self, v: Node) -> bool:
        return self.walk.has_examples(v)


class _ReverseWalk:
    """One reverse pass over the graph of `y`, and what it records for scheduling."""

    def __init__(self, y: Node, wrt: list[Node], per_example: str | None,
                 rescaled: Rescaled | None = None):
        self.y, self.wrt, self.per_example, self.rescaled = y, wrt, per_example, rescaled
        self.forward = topological([y])
        self.forward_uids = {n.uid for n in self.forward}
        self.wrt_uids = {w.uid for w in wrt}
        self.depends = set(self.wrt_uids)  # values with a path from some w
        for node in self.forward:
            if any(i.uid in self.depends for i in node.inputs):
                self.depends.add(node.uid)
        # per example: where each value keeps its examples; a parameter-only value (the same
        # for every example) gets an adjoint with one row per example, from its op's lift rule
        unused = [w for w in wrt if w.uid not in self.forward_uids]  # still has its axes
        self.axes = example_axes(self.forward + unused, per_example, self.depends) \
            if per_example else {}
        self.lifted = {n.uid for n in self.forward
                       if per_example and n.uid in self.depends and self.axes[n.uid] is None}
        self.total: dict[int, T.Tensor] = {}  # forward uid -> its adjoint
        self.adjoint_of: dict[int, Node] = {}  # uid of an adjoint total -> its forward node
        self.origin: dict[int, Node] = {}  # uid of an adjoint-part node -> its forward node
        self.step: dict[int, int] = {}  # forward uid -> when the walk handled it

    def run(self, seed: T.Tensor) -> None:
        """Walk back from `y`: sum each value's pending adjoints, then apply its op's rule."""
        pending: dict[int, list[T.Tensor]] = {self.y.uid: [seed]}
        reuse = self.rescaled
        for v in reversed(self.forward):
            batched = reuse is not None and reuse.has_batch(v)
            if batched:  # its adjoint is known; rules run only into parameter values
                known = None if OPS[v.op].kind == "leaf" or all(
                    reuse.has_batch(i) for i in v.inputs if i.uid in self.depends) \
                    else reuse.adjoint(v)
                if known is None:
                    continue
                pending[v.uid] = [known]
            if v.uid not in pending:
                continue
            self.step[v.uid] = len(self.step)
            dv = _sum_all(pending.pop(v.uid))
            self.total[v.uid] = dv
            for part in (dv.values() if isinstance(dv, Parts) else (dv,)):
                self.adjoint_of.setdefault(part.node.uid, v)
                if part.node.op == "broadcast" and part.node.inputs[0].rank == 0:
                    self.adjoint_of.setdefault(part.node.inputs[0].uid, v)  # the same at every row
                self.claim(part.node, v)
            if OPS[v.op].kind == "leaf":
                continue
            for inp, g in zip(v.inputs, self.rule(v, dv)):
                if g is not None and inp.uid in self.depends and not (
                        batched and reuse.has_batch(inp)):
                    if isinstance(g, Parts):  # of a value made of parts (a loop's)
                        for part in g.values():
                            self.claim(part.node, v)
                        pending.setdefault(inp.uid, []).append(g)
                        continue
                    g = T.as_tensor(g)
                    if g.dtype == "bool":  # x*(x > 2): the adjoint of x is the comparison
                        g = T.where(g, 1.0, 0.0)
                    self.claim(g.node, v)
                    pending.setdefault(inp.uid, []).append(g)

    def rule(self, v: Node, dv: T.Tensor) -> list:
        """The adjoints of v's inputs, given v's adjoint dv."""
        rule = OPS[v.op].adjoint
        if rule is None:
            raise DifferentiationError(f"no adjoint rule for '{v.op}' in {format_stmt(v, {})}")
        args = [T.Tensor(i) for i in v.inputs]
        if v.uid in self.lifted:
            return _lifted_rule(v, dv, args, self.per_example)
        needed = {"needed": tuple(i.uid in self.depends for i in v.inputs)} \
            if OPS[v.op].adjoint_needed else {}
        grads = list(rule(dv, T.Tensor(v), *args, **dict(v.attrs), **needed))
        for k, inp in enumerate(v.inputs):
            if inp.uid in self.lifted:
                grads[k] = _per_example_rule(v, k, dv, args, self.per_example)
        return grads

    def has_examples(self, v: Node) -> bool:
        """Whether v has an axis of examples (its adjoint's entries are per example already)."""
        return self.per_example is None or self.axes.get(v.uid) is not None

    def gradients(self) -> list[T.Tensor]:
        """d y / d w for each w in wrt (zeros where y does not depend on w); per example, a
        parameter's gets a leading axis of examples."""
        return [_materialize(self.total.get(w.uid), w.shape if self.has_examples(w)
                             else (self.per_example,) + w.shape) for w in self.wrt]

    def claim(self, node: Node, v: Node | None) -> None:
        """Tag the adjoint-part nodes computing `node` needs, and no tag yet, with `v`."""
        stack = [node]
        while stack:
            n = stack.pop()
            if n.uid in self.forward_uids or n.uid in self.origin or n.op == "input":
                continue
            self.origin[n.uid] = v
            stack.extend(n.inputs)


def gradients(program: Program) -> list[T.Tensor]:
    """The gradient Tensors a `differentiate` Program returns, in `wrt` order."""
    return [T.Tensor(node) for _, node in program.outputs[1:]]


def vjp_parts(output: T.Tensor, wrt) -> tuple[list[T.Tensor | None], "_ReverseWalk"]:
    """The gradient of the scalar `output` by each node of `wrt` (None where it does not
    depend on one), and the walk that made them, whose tags give `# from:` comments (a loop's
    step uses this for its adjoint)."""
    walk = _ReverseWalk(output.node, list(wrt), None)
    walk.run(T.full((), 1.0))
    return [None if walk.total.get(w.uid) is None else _materialize(walk.total[w.uid], w.shape)
            for w in wrt], walk


def _sum_all(terms: list) -> T.Tensor | Parts:
    """The adjoint of a value used in several places: the sum of every use's adjoint (part by
    part, for a value made of parts)."""
    if isinstance(terms[0], Parts):
        total = Parts()
        for t in terms:
            total = total.plus(t)
        return total
    if len(terms) == 1:
        return terms[0]
    symbols = [sp.Symbol(f"_g{k}", real=True) for k in range(len(terms))]
    return T.apply_body(sp.Add(*symbols), dict(zip(symbols, terms)))


def _materialize(grad, shape) -> T.Tensor:
    if grad is None:  # the output does not depend on w differentiably
        return T.zeros(shape)
    if grad.shape != shape:
        grad = T.broadcast_to(grad, shape)
    return grad


def _lifted_rule(v: Node, dv: T.Tensor, args, batch: str):
    """A parameter-only op's rule, with the adjoint carrying one row per example."""
    lift = OPS[v.op].lift
    if lift is None:
        raise DifferentiationError(
            f"per-example gradients: {v.op} of shape {format_shape(v.inputs[0].shape)} combines "
            f"parameters before they meet the batch; per-example gradients support "
            f"elementwise ops, reshapes, transposes, slices and gathers there")
    return lift(dv, T.Tensor(v), *args, batch=batch, **dict(v.attrs))


def _per_example_rule(v: Node, k: int, dv: T.Tensor, args, batch: str):
    rule = OPS[v.op].per_example
    grad = rule(dv, T.Tensor(v), *args, k=k, batch=batch, **dict(v.attrs)) if rule else None
    if grad is None:
        raise DifferentiationError(
            f"per-example gradients: a parameter enters {format_stmt(v, {})}; they are "
            f"supported where parameters meet the batch by broadcasting or as W in X @ W")
    return grad


def schedule(outputs, origin=None, adjoint_of=None, forward_uids=None, inputs=None,
             step=None, names=None) -> Program:
    """Order the nodes reachable from `outputs` into named statements (forward first).
    `names` gives the user's names of some forward values ({uid: name}).

    `origin` maps the uid of each adjoint-part node to the forward node it comes from, and
    `step` each forward uid to when the reverse walk handled it: adjoint statements are
    grouped by step, as they were made (each step reads only what earlier steps made).
    """
    step = step or {}
    origin, adjoint_of = origin or {}, adjoint_of or {}
    forward_uids = forward_uids if forward_uids is not None else set()
    nodes = topological([n for _, n in outputs])
    found = {n.attr("name"): n for n in nodes if n.op == "input"}
    if inputs is not None:
        inputs = [t.node for t in inputs]
    else:
        inputs = [found[k] for k in sorted(found)]
    given = names or {}
    names: dict[int, str] = {n.uid: n.attr("name") for n in inputs}
    taken = set(names.values())
    stmts, counter = [], 0
    body_nodes = [n for n in nodes if n.op != "input"]
    # forward statements first in graph order, then adjoint statements step by step
    late = len(step)

    def when(n):
        if n.uid in forward_uids:
            return -1
        v = origin.get(n.uid)
        return step.get(v.uid, late) if v is not None else late
    body_nodes.sort(key=when)
    for node in body_nodes:
        forward = node.uid in forward_uids
        if node.uid in given and (forward or not forward_uids):
            name = fresh(given[node.uid], taken)
        elif node.uid in adjoint_of and not forward and adjoint_of[node.uid].uid in names:
            name = fresh("d" + names[adjoint_of[node.uid].uid], taken)
        elif node.op == "broadcast" and node.inputs[0].uid in names:
            name = fresh(names[node.inputs[0].uid] + "_bc", taken)  # a broadcast copy of it
        else:
            counter += 1
            name = fresh(f"{_hint(node)}{counter}", taken)
        names[node.uid] = name
        taken.add(name)
        stmts.append(Stmt(name, node, None if forward else origin.get(node.uid)))
    return Program(tuple(inputs), tuple(stmts), tuple(outputs))


def _hint(node: Node) -> str:
    hint = OPS[node.op].hint
    return (hint(node) if callable(hint) else hint) or node.op

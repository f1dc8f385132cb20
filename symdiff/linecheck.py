"""The line-by-line gradient check: a Trace -> each adjoint line against central differences.

An adjoint statement holds either the adjoint of an intermediate v (dL/dv) or what one
statement v sends back to one of its inputs (dL/dv · dv/dinput). Each is checked against
central differences of the forward Program: move v (or the input, inside v alone) by ±h, run
the rest of the forward Program again from there, and difference the loss. Lines are checked
in the Program's order, so the first that disagrees is where a wrong rule first shows, and is
reported with its `# from:` statement and both numbers. Temporaries that are neither (a mask,
a transposed copy) have no derivative to compare and are counted as not checked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numpy_eval import evaluate_nodes
from .ir import Node
from .printing import format_origin, format_stmt
from .trace_values import Trace

ENTRIES = 8  # up to this many entries, each is moved; above, DIRECTIONS random directions
DIRECTIONS = 3


@dataclass
class Line:
    """One adjoint line compared with central differences (the worst entry or direction)."""

    statement: str
    origin: str  # the `# from:` statement it sits under
    adjoint: float  # the line's value at that entry, or its product with the direction
    numeric: float  # the same from central differences
    where: str  # "entry (0, 2)", "direction 1" or "" for a scalar

    @property
    def error(self) -> float:
        return abs(self.adjoint - self.numeric) / max(1.0, abs(self.adjoint), abs(self.numeric))


@dataclass
class LineCheck:
    """The result of `check_grad(..., by_line=True)`: every checked line, in Program order."""

    title: str
    lines: list[Line]
    unchecked: list[str]  # adjoint statements that are neither an adjoint nor a sent value
    tolerance: float

    @property
    def failures(self) -> list[Line]:
        return [line for line in self.lines if line.error > self.tolerance]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first(self) -> Line | None:
        """The first adjoint line that disagrees with central differences, or None."""
        return next(iter(self.failures), None)

    def __str__(self):
        if self.ok:
            worst = max((line.error for line in self.lines), default=0.0)
            return (f"{self.title}: all {len(self.lines)} adjoint lines agree with central "
                    f"differences (largest relative error {worst:.1e}; "
                    f"{len(self.unchecked)} temporaries not checked)")
        f = self.first
        at = f" at {f.where}" if f.where else ""
        return (f"{self.title}: the first adjoint line that disagrees with central "
                f"differences is\n    {f.statement}\n  under\n    # from: {f.origin}\n"
                f"  it gives {f.adjoint:.10g}{at}, central differences give {f.numeric:.10g} "
                f"({len(self.failures)} of {len(self.lines)} lines disagree)")


def check_lines(t: Trace, eps: float = 1e-6, tolerance: float = 1e-5) -> LineCheck:
    """Compare each adjoint line of the traced Program with central differences."""
    forward = {n.uid for n in t.forward}
    adjoints = {}
    for step in t.steps:
        adjoints.setdefault(step.adjoint.uid, step.node)
    sent = {e.grad.uid: e for s in t.steps for e in s.edges}
    lines, unchecked, seen = [], [], set()
    for s in t.program.stmts:
        if s.node.uid in forward:
            continue
        origin = format_origin(s.origin, t.names) if s.origin is not None else "the outputs"
        statement = format_stmt(s.node, t.names)
        seen.add(s.node.uid)
        if s.node.uid in adjoints:
            v = adjoints[s.node.uid]
            lines.append(_compare(t, statement, origin, s.node, v, None, eps))
        elif s.node.uid in sent:
            e = sent[s.node.uid]
            lines.append(_compare(t, statement, origin, s.node, e.source, e.node, eps))
        else:
            unchecked.append(statement)
    inputs = {n.attr("name"): n for n in t.program.inputs}
    for (label, node), w in zip(t.program.outputs[1:], t.wrt):
        if node.uid not in seen:  # a gradient that is no statement of its own: dx = z
            lines.append(_compare(t, f"return {label} = {t.text(node)}", "the outputs", node,
                                  inputs[w], None, eps))
    return LineCheck(t.title, lines, unchecked, tolerance)


def _compare(t: Trace, statement: str, origin: str, line: Node, v: Node, only_in: Node | None,
             eps: float) -> Line:
    """The line's value against dL/dv by central differences; with `only_in`, v moves only
    as an input of that statement (what the statement sends back to v)."""
    adjoint = np.asarray(t.value(line), dtype=np.float64)
    base = np.asarray(t.value(v), dtype=np.float64)
    if adjoint.ndim > base.ndim:  # a per-example adjoint: the loss sums the examples
        adjoint = adjoint.reshape((-1,) + base.shape).sum(axis=0)
    adjoint = np.broadcast_to(adjoint, base.shape)
    worst = None
    for where, direction in _directions(base):
        h = eps * max(1.0, float(np.max(np.abs(base))))
        up, down = (_loss(t, v, base + sign * h * direction, only_in) for sign in (1, -1))
        candidate = Line(statement, origin, float(np.sum(adjoint * direction)),
                         float((up - down) / (2 * h)), where)
        if worst is None or candidate.error > worst.error:
            worst = candidate
    return worst


def _directions(base: np.ndarray):
    """(label, direction): each entry of a small value, else a few random unit directions."""
    if base.size <= ENTRIES:
        for index in np.ndindex(base.shape):
            direction = np.zeros(base.shape)
            direction[index] = 1.0
            yield (f"entry {index}" if index else ""), direction
        return
    rng = np.random.default_rng(0)
    for k in range(DIRECTIONS):
        direction = rng.normal(size=base.shape)
        yield f"direction {k}", direction / np.linalg.norm(direction)


def _loss(t: Trace, v: Node, moved: np.ndarray, only_in: Node | None) -> float:
    """The loss (summed over examples) with v's value replaced by `moved`, everywhere or only
    where statement `only_in` reads it; the forward statements after it run again."""
    changed = only_in if only_in is not None else v
    values = {uid: x for uid, x in t.values.items()}
    if only_in is not None:
        own = {i.uid: values[i.uid] for i in only_in.inputs}
        own[v.uid] = moved
        evaluate_nodes([only_in], own, t.dims)
        moved = own[only_in.uid]
    values[changed.uid] = moved
    later = _downstream(t, changed)
    for node in later:
        del values[node.uid]
    evaluate_nodes(later, values, t.dims)
    return float(np.sum(values[t.program.output("value").uid]))


def _downstream(t: Trace, node: Node) -> list[Node]:
    """The forward statements that read `node`, directly or not, in order."""
    reached, order = {node.uid}, []
    for n in t.forward:
        if n.uid not in reached and any(i.uid in reached for i in n.inputs):
            reached.add(n.uid)
            order.append(n)
    return order

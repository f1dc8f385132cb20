"""A differentiated Program, run on given inputs with every intermediate kept: the numbers
behind the explain table, the circuit picture and the line-by-line gradient check.

Input: the Program `differentiate` made (what `Compiled.program` holds), the names it
differentiates by and input values. Output: a Trace holding the value of every statement
(evaluated with NumPy from that same Program) and the reverse walk's steps: for each forward
node in the order the walk handled it, its adjoint and what it sends back to each input. The
walk is run again to get the steps; hash-consing makes it build the very nodes the Program
holds, which is checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import tensors as T
from .autodiff import _ReverseWalk, _seed
from .errors import ArgumentError
from .numpy_eval import evaluate, evaluate_nodes
from .ir import Node, topological
from .program import Program
from .printing import format_expr


@dataclass(frozen=True)
class Edge:
    """In the reverse walk, forward node `node` sends `grad` back to its input number `k`."""

    node: Node
    k: int
    grad: Node

    @property
    def source(self) -> Node:
        return self.node.inputs[self.k]


@dataclass(frozen=True)
class Step:
    """One step of the reverse walk: a forward node (or an input), its adjoint, its edges."""

    node: Node
    adjoint: Node
    edges: tuple[Edge, ...]


class _Recorder(_ReverseWalk):
    """The reverse walk of `differentiate`, remembering what each rule sent back."""

    def __init__(self, *args):
        super().__init__(*args)
        self.sent: dict[int, list] = {}

    def rule(self, v: Node, dv: T.Tensor) -> list:
        grads = super().rule(v, dv)
        self.sent[v.uid] = grads
        return grads


def backward_steps(program: Program, wrt) -> list[Step]:
    """The reverse walk that made `program` (from `differentiate`), step by step."""
    y = program.output("value")
    inputs = {n.attr("name"): n for n in program.inputs}
    per_example = y.shape[0] if y.shape else None
    walk = _Recorder(y, [inputs[w] for w in wrt], per_example)
    walk.run(_seed(y, None, per_example))
    for made, (_, grad) in zip(walk.gradients(), program.outputs[1:]):
        if made.node is not grad:
            raise ArgumentError("this Program was not made by sd.compile's reverse mode "
                                "(a Jacobian's, say): it has no backprop table")
    forward = {n.uid: n for n in walk.forward}
    steps = []
    for uid in sorted(walk.step, key=walk.step.get):
        v, sent = forward[uid], walk.sent.get(uid, ())
        edges = tuple(Edge(v, k, T.as_tensor(g).node) for k, g in enumerate(sent)
                      if g is not None and v.inputs[k].uid in walk.depends)
        steps.append(Step(v, walk.total[uid].node, edges))
    return steps


@dataclass
class Trace:
    """A Program's statements, its reverse walk and, given inputs, every value."""

    title: str
    program: Program
    wrt: tuple[str, ...]
    steps: list[Step]
    names: dict[int, str]  # uid -> name, for statements and inputs
    values: dict[int, np.ndarray] | None  # uid -> value; None for the structure alone
    node_by_uid: dict[int, Node] = field(default_factory=dict)  # every node shown
    dims: dict[str, int] = field(default_factory=dict)  # sizes of symbolic dimensions

    def step_of(self, node: Node) -> Step:
        return next(s for s in self.steps if s.node is node)

    def value(self, node: Node):
        return None if self.values is None else self.values[node.uid]

    def text(self, node: Node) -> str:
        """A node's name, or its expression when the Program does not name it."""
        if node.uid in self.names:
            return self.names[node.uid]
        if node.op == "const" and not node.shape:
            return f"{node.attr('value'):g}"
        return format_expr(node, _Inline(self))

    def expression(self, node: Node) -> str:
        """A node's right-hand side, the nodes the Program does not name printed in place."""
        if node.op in ("input", "const"):
            return self.text(node)
        return format_expr(node, _Inline(self))

    @property
    def forward(self) -> list[Node]:
        """The forward nodes, inputs first, then the statements computing the value."""
        return topological([self.program.output("value")])

    @property
    def outputs(self) -> dict:
        """{label: value} of the Program's outputs: value, then one gradient per wrt name."""
        return {label: self.value(node) for label, node in self.program.outputs}


class _Inline(dict):
    """Names for format_expr: a node the Program does not name is printed in place."""

    def __init__(self, trace: Trace):
        super().__init__()
        self._trace = trace

    def get(self, uid, default=None):
        node = self._trace.node_by_uid.get(uid)
        return self._trace.names.get(uid) or (f"({self._trace.text(node)})" if node else default)


def trace(program: Program, wrt, title: str, arguments: dict | None = None) -> Trace:
    """Run `program` on `arguments` (None: no values), keeping every intermediate."""
    steps = backward_steps(program, wrt)
    extra = [s.adjoint for s in steps] + [e.grad for s in steps for e in s.edges]
    shown = topological(extra + [n for _, n in program.outputs])
    result = Trace(title, program, tuple(wrt), steps, program.names(), None,
                   {n.uid: n for n in shown})
    if arguments is not None:
        missing = [n.attr("name") for n in program.inputs if n.attr("name") not in arguments]
        if missing:
            raise ArgumentError(f"missing argument {', '.join(missing)} "
                                f"(takes {', '.join(n.attr('name') for n in program.inputs)})")
        values, dims = evaluate(program, arguments)
        evaluate_nodes(topological(extra), values, dims)
        result.values, result.dims = values, dims
    return result


def trace_compiled(compiled, arguments: dict | None) -> Trace:
    """The Trace of a Compiled model; arguments are first checked by a call of its kernel, so
    a bad one gets the same error as `value_and_grad` would give."""
    if arguments:
        compiled.value_and_grad(**arguments)
    return trace(compiled.program, compiled.wrt, compiled.title, arguments or None)

"""The IR: a hash-consed tensor DAG (Node) and the straight-line Program made from it.

Every stage speaks it. A Node is one op on input nodes, with a shape (ints, and names such
as "n" for dimensions known only at call time) and a dtype; a scalar is a rank-0 node.
Building the same op on the same inputs twice returns the same node, so common
subexpressions are shared as they are built. A Program schedules the nodes reachable from
its outputs into SSA statements, forward part first, each adjoint statement tagged with the
forward statement it comes from.
"""
from __future__ import annotations

import itertools
import keyword
import threading
import weakref
from dataclasses import dataclass

Dim = int | str
Shape = tuple[Dim, ...]

_interned: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_intern_lock = threading.Lock()
_uids = itertools.count(1)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Node:
    """One op applied to input nodes. Identity is structure: see make_node."""

    op: str
    inputs: tuple[Node, ...]
    shape: Shape
    dtype: str
    attrs: tuple[tuple[str, object], ...]
    uid: int  # identity for hash-consing; every input has a smaller uid than its consumers

    def attr(self, key, default=None):
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __repr__(self):
        return f"Node({self.op}#{self.uid}, shape={self.shape})"


def make_node(op: str, inputs, shape, dtype: str, /, **attrs) -> Node:
    """Return the node for `op(inputs)`, reusing an identical one if it exists."""
    inputs, shape = tuple(inputs), tuple(shape)
    frozen = tuple(sorted(attrs.items()))
    key = (op, tuple(i.uid for i in inputs), shape, dtype, frozen)
    with _intern_lock:
        node = _interned.get(key)
        if node is None:
            node = Node(op, inputs, shape, dtype, frozen, next(_uids))
            _interned[key] = node
    return node


def topological(outputs) -> list[Node]:
    """All nodes reachable from `outputs`, inputs before consumers.

    A depth-first post-order over the graph's structure alone (outputs in order, inputs in
    order), never over creation order: nodes are shared between models, so the same model
    must get the same order, and so the same generated text, whatever was built before it.
    """
    order: list[Node] = []
    seen: set[int] = set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, finished = stack.pop()
            if finished:
                order.append(node)
            elif node.uid not in seen:
                seen.add(node.uid)
                stack.append((node, True))
                stack.extend((i, False) for i in reversed(node.inputs) if i.uid not in seen)
    return order


# Module-level and builtin names a generated module uses; a user symbol may not take them.
# (Loop and chunk variables are chosen per module to avoid the model's names.)
RESERVED = frozenset({"np", "math", "numba", "njit", "prange", "kernel", "abs", "max", "min",
                      "float", "range"}) | frozenset(keyword.kwlist)


@dataclass(frozen=True, slots=True)
class Stmt:
    """`name = node`; `origin` is the forward node an adjoint statement comes from."""

    name: str
    node: Node
    origin: Node | None = None


@dataclass(frozen=True, slots=True)
class Program:
    """Straight-line SSA: inputs, statements in execution order, named outputs."""

    inputs: tuple[Node, ...]
    stmts: tuple[Stmt, ...]
    outputs: tuple[tuple[str, Node], ...]

    def name(self, node: Node) -> str:
        return self.names()[node.uid]

    def names(self) -> dict[int, str]:
        table = {n.uid: n.attr("name") for n in self.inputs}
        table.update((s.node.uid, s.name) for s in self.stmts)
        return table

    def output(self, label: str) -> Node:
        return dict(self.outputs)[label]

    def __str__(self):
        from .printing import format_origin, format_stmt  # ir stays a leaf module
        names = self.names()
        lines, origin = [], None
        for s in self.stmts:
            if s.origin is not None and s.origin is not origin:
                lines.append(f"# from: {format_origin(s.origin, names)}")
            origin = s.origin
            lines.append(format_stmt(s.node, names))
        outs = ", ".join(f"{label}={names[n.uid]}" for label, n in self.outputs)
        return "\n".join(lines + [f"return {outs}"])


def verify(program: Program) -> None:
    """Check the Program's invariants: SSA, defined-before-use, unique names."""
    defined = {n.uid for n in program.inputs}
    seen_names = {n.attr("name") for n in program.inputs}
    for s in program.stmts:
        assert s.name not in seen_names, f"name {s.name} defined twice"
        seen_names.add(s.name)
        for inp in s.node.inputs:
            assert inp.uid in defined, f"{s.name} uses an undefined value {inp!r}"
        assert s.node.uid not in defined, f"{s.name} assigned twice"
        defined.add(s.node.uid)
    for label, node in program.outputs:
        assert node.uid in defined, f"output {label} is not computed"

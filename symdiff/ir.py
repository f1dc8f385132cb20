"""The IR: a hash-consed tensor DAG of Nodes, and shapes (NumPy broadcasting, symbolic dims).

Every stage speaks it. A Node is one op on input nodes, with a shape (ints, and names such
as "n" for dimensions known only at call time) and a dtype; a scalar is a rank-0 node.
Building the same op on the same inputs twice returns the same node, so common
subexpressions are shared as they are built. The straight-line Program made from a graph is
in program.py.
"""
from __future__ import annotations

import itertools
import keyword
import threading
import weakref
from dataclasses import dataclass

from .errors import ShapeError

Dim = int | str
Shape = tuple[Dim, ...]


def format_shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def sizes(shape: Shape, dims: dict) -> tuple[int, ...]:
    """`shape` with its symbolic dimensions replaced by their run-time sizes in `dims`."""
    return tuple(dims[d] if isinstance(d, str) else d for d in shape)


def broadcast_shapes(*shapes: Shape, what: str = "operands") -> Shape:
    """NumPy broadcasting of shapes that may hold symbolic dimensions."""
    rank = max(len(s) for s in shapes)
    result = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            listed = " and ".join(map(format_shape, shapes))
            raise ShapeError(f"cannot broadcast the shapes {listed} "
                             f"of {what}: dimensions {sorted(map(str, dims))} differ")
        result.append(dims.pop() if dims else 1)
    return tuple(result)

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


def fresh(name: str, taken: set) -> str:
    """`name`, or `name_2`, `name_3`, ... if taken; the result is added to `taken`."""
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


# Module-level and builtin names a generated module uses; a user symbol may not take them.
# (Loop and chunk variables are chosen per module to avoid the model's names.)
RESERVED = frozenset({"np", "math", "numba", "njit", "prange", "kernel", "abs", "max", "min",
                      "float", "range"}) | frozenset(keyword.kwlist)

"""The straight-line Program: SSA statements made from a graph, forward part first.

Input: the nodes reachable from some outputs, ordered by autodiff.schedule. Each adjoint
statement is tagged with the forward node it comes from (the `# from:` comments of generated
code). `str(program)` prints one statement per line; `verify` checks the invariants every pass
must keep.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Node
from .printing import format_origin, format_stmt


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

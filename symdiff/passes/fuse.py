"""Fusion: a Program -> a list of units, each a loop nest or a single structural statement.

A loop unit holds elementwise statements over one iteration space and the reductions that
consume them (accumulators). Broadcasts and index ramps are not statements at all but index
maps, read in place by every loop that uses them. A statement joins the earliest loop over its
space that runs after everything it reads is ready, so a mean loss's forward, its adjoint and
the parameter-gradient sums share one loop: per sample, forward values, then adjoints, then
accumulation, in registers. Then statements whose only readers sit in one later loop over the
same space sink into it. A value is stored to an array only when another unit reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import ops  # noqa: F401  (the records these sets are read from)
from ..ir import Node
from ..optable import OPS
from ..program import Program, Stmt

LOOP_OPS = frozenset(op for op, record in OPS.items() if record.fusable)
INDEX_MAPS = frozenset(op for op, record in OPS.items() if record.index_map)
REDUCTIONS = frozenset(op for op, record in OPS.items() if record.kind == "reduce")


@dataclass
class Unit:
    """A loop nest over `space` (loop=True) or one structural statement."""

    loop: bool
    space: tuple
    stmts: list[Stmt] = field(default_factory=list)


def iteration_space(node: Node) -> tuple:
    return node.inputs[0].shape if node.op in REDUCTIONS else node.shape


def fuse(program: Program) -> list[Unit]:
    """Partition the statements of `program` into units, in an order that respects data flow.

    Index maps (broadcast, iota) read only by loops belong to no unit: see `virtual`.
    """
    virtual = virtual_nodes(program)
    units: list[Unit] = []
    placed: dict[int, tuple[int, bool]] = {}  # uid -> (unit index, readable inside that loop)
    for stmt in program.stmts:
        node = stmt.node
        if node.uid in virtual:
            continue
        if node.op not in LOOP_OPS:
            # a structural statement, as early as its inputs allow
            target = max((placed[i.uid][0] + 1 for i in sources(node, virtual)
                          if i.uid in placed), default=0)
            units.insert(target, Unit(False, node.shape, [stmt]))
            placed = {uid: (k + (k >= target), inside) for uid, (k, inside) in placed.items()}
            placed[node.uid] = (target, False)
            continue
        space = iteration_space(node)
        earliest = 0
        for inp in sources(node, virtual):
            if inp.uid not in placed:  # a kernel argument
                continue
            where, in_loop = placed[inp.uid]
            shares = in_loop and units[where].space == space and inp in node.inputs \
                and node.op not in INDEX_MAPS  # an index map reads other entries than its own
            earliest = max(earliest, where if shares else where + 1)
        target = next((k for k in range(earliest, len(units))
                       if units[k].loop and units[k].space == space), None)
        if target is None:  # scalar code as early as its inputs allow; a new loop nest last
            target = earliest if not space else len(units)
            units.insert(target, Unit(True, space))
            placed = {uid: (k + (k >= target), inside) for uid, (k, inside) in placed.items()}
        units[target].stmts.append(stmt)
        placed[node.uid] = (target, node.op not in REDUCTIONS)
    _sink(units, program, virtual)
    return [u for u in units if u.stmts]


def virtual_nodes(program: Program) -> set[int]:
    """uids of broadcasts and index ramps read only inside loops (never stored, never returned)."""
    outputs = {n.uid for _, n in program.outputs}
    structural_reads = {i.uid for s in program.stmts  # and scalar code, which has no loop
                        if s.node.op not in LOOP_OPS or not iteration_space(s.node)
                        for i in s.node.inputs}
    return {s.node.uid for s in program.stmts if s.node.op in INDEX_MAPS and s.node.shape
            and s.node.uid not in outputs and s.node.uid not in structural_reads}


def sources(node: Node, virtual: set[int]):
    """The inputs of `node`, looking through virtual index maps to what they read."""
    for inp in node.inputs:
        if inp.uid in virtual:
            yield from sources(inp, virtual)
        else:
            yield inp


def _sink(units: list[Unit], program: Program, virtual: set[int]) -> None:
    """Move loop statements whose readers all sit in one later loop of the same space into it."""
    outputs = {n.uid for _, n in program.outputs}
    readers: dict[int, set[int]] = {}
    unit_of = {s.node.uid: k for k, u in enumerate(units) for s in u.stmts}

    def note_reads(node, k, mapped=False):
        for inp in node.inputs:
            if inp.uid in virtual:
                note_reads(inp, k, True)
            else:  # read through an index map, at other entries: never sunk into the reader
                readers.setdefault(inp.uid, set()).update((k, -1) if mapped else (k,))

    for k, unit in enumerate(units):
        for s in unit.stmts:
            note_reads(s.node, k)
    for k in reversed(range(len(units))):
        unit = units[k]
        if not unit.loop:
            continue
        for s in reversed(list(unit.stmts)):
            node = s.node
            users = readers.get(node.uid, set())
            if node.op in REDUCTIONS or node.uid in outputs or len(users) != 1:
                continue
            (target,) = users
            if target > k and units[target].loop and units[target].space == unit.space:
                unit.stmts.remove(s)
                units[target].stmts.insert(0, s)
                unit_of[node.uid] = target
                for inp in sources(node, virtual):
                    users_of_input = readers.setdefault(inp.uid, set())
                    if not _reads_in(unit, inp, virtual):
                        users_of_input.discard(k)
                    users_of_input.add(target)


def _reads_in(unit: Unit, node: Node, virtual: set[int]) -> bool:
    return any(node in sources(s.node, virtual) for s in unit.stmts)

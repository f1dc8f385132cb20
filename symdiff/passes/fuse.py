"""Fusion: a Program -> a list of units, each a loop nest or a single structural statement.

A loop unit holds elementwise statements over one iteration space and the reductions that
consume them (accumulators). Broadcasts and index ramps are not statements at all but index
maps, read in place by every loop that uses them. A statement joins the earliest loop over its
space that runs after everything it reads is ready, so a mean loss's forward, its adjoint and
the parameter-gradient sums share one loop: per sample, forward values, then adjoints, then
accumulation, in registers. Then statements whose only readers sit in one later loop over the
same space sink into it. Last, consecutive loops over the rows of one batch axis become the
stages of one loop over rows when each reads the others' values only at its own row: a softmax
cross-entropy is then one pass over each row's logits. A value is stored to an array only when
another unit (or, for a value with axes beyond the row, another stage) reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import ops  # noqa: F401  (the records these sets are read from)
from ..batching import keeps_rows
from ..ir import Node
from ..optable import OPS
from ..program import Program, Stmt

LOOP_OPS = frozenset(op for op, record in OPS.items() if record.fusable)
INDEX_MAPS = frozenset(op for op, record in OPS.items() if record.index_map)
REDUCTIONS = frozenset(op for op, record in OPS.items() if record.kind == "reduce")


@dataclass
class Unit:
    """A loop nest over `space` (loop=True) or one structural statement. A loop over rows
    has `stages`, loop nests over spaces that share `space`, its one axis: each row runs
    them in order."""

    loop: bool
    space: tuple
    stmts: list[Stmt] = field(default_factory=list)
    stages: list["Unit"] = field(default_factory=list)
    rowwise: bool = False  # one structural statement, computed row by row (its `in_row`)

    def parts(self) -> list["Unit"]:
        """The loop nests this unit runs: its stages, or itself."""
        return self.stages or [self]


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
            # a structural statement, as early as its inputs allow; a row-local one loops over
            # the rows, to join other loops over them as a stage
            target = max((placed[i.uid][0] + 1 for i in sources(node, virtual)
                          if i.uid in placed), default=0)
            rowwise = row_local(node)
            units.insert(target, Unit(rowwise, node.shape, [stmt], rowwise=rowwise))
            placed = {uid: (k + (k >= target), inside) for uid, (k, inside) in placed.items()}
            placed[node.uid] = (target, False)
            continue
        space = iteration_space(node)
        earliest = 0
        for inp, mapped in reads(node, virtual):
            if inp.uid not in placed:  # a kernel argument
                continue
            where, in_loop = placed[inp.uid]
            shares = in_loop and units[where].space == space and not mapped \
                and node.op not in INDEX_MAPS  # an index map reads other entries than its own
            earliest = max(earliest, where if shares else where + 1)
        target = next((k for k in range(earliest, len(units)) if units[k].loop
                       and not units[k].rowwise and units[k].space == space), None)
        if target is None:  # scalar code as early as its inputs allow; a new loop nest last
            target = earliest if not space else len(units)
            units.insert(target, Unit(True, space))
            placed = {uid: (k + (k >= target), inside) for uid, (k, inside) in placed.items()}
        units[target].stmts.append(stmt)
        placed[node.uid] = (target, node.op not in REDUCTIONS)
    _sink(units, program, virtual)
    return _rows([u for u in units if u.stmts], virtual)


def row_local(node: Node) -> bool:
    """Has `node` a form computed row by row over a batch axis (`in_row`), and does its row i
    read row i of its input alone?"""
    return (OPS[node.op].in_row is not None and bool(node.shape)
            and isinstance(node.shape[0], str) and node.inputs[0].shape[:1] == node.shape[:1]
            and keeps_rows(node))


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


def reads(node: Node, virtual: set[int]):
    """(source, read through an index map?) for each source of `node`: a value read both
    directly and through a map (h[:, ::-1] * h) is read at other entries than its own."""
    for inp in node.inputs:
        if inp.uid in virtual:
            yield from ((source, True) for source in sources(inp, virtual))
        else:
            yield inp, False


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
        if not unit.loop or unit.rowwise:
            continue
        for s in reversed(list(unit.stmts)):
            node = s.node
            users = readers.get(node.uid, set())
            if node.op in REDUCTIONS or node.uid in outputs or len(users) != 1:
                continue
            (target,) = users
            if target > k and units[target].loop and not units[target].rowwise \
                    and units[target].space == unit.space:
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


def _rows(units: list[Unit], virtual: set[int]) -> list[Unit]:
    """Loops over the rows of one batch axis, each reading what the ones before it compute
    only at its own row, joined as the stages of one loop over rows. Units between two such
    loops that the second does not read wait until after it."""
    joined: list[Unit] = []
    for unit in units:
        k = len(joined)  # the last loop before `unit`, past the units `unit` does not read
        while k and not joined[k - 1].space and not _reads_from(unit, joined[k - 1], virtual):
            k -= 1
        last = joined[k - 1] if k else None
        if last is None or not _by_rows(last, unit, virtual):
            joined.append(unit)
            continue
        if not last.stages:
            last = joined[k - 1] = Unit(True, last.space[:1], list(last.stmts), [last])
        last.stages.append(unit)
        last.stmts += unit.stmts
    return joined


def _reads_from(unit: Unit, earlier: Unit, virtual: set[int]) -> bool:
    made = {s.node.uid for s in earlier.stmts}
    return any(inp.uid in made for s in unit.stmts for inp in sources(s.node, virtual))


def _by_rows(first: Unit, then: Unit, virtual: set[int]) -> bool:
    """Can row i of `then` run right after row i of `first`? Both loop over the rows of one
    batch axis, and `then` reads `first`'s values at its own row only, and no sum over the
    batch (complete only after the last row; of an (n, n) array it is read with shape (n,))."""
    if not (first.loop and then.loop and first.space and then.space
            and isinstance(first.space[0], str) and then.space[0] == first.space[0]):
        return False
    made = {s.node.uid for s in first.stmts}
    for s in then.stmts:
        for node, same_row in _row_reads(s.node, virtual):
            if node.uid in made and not (same_row and not _batch_sum(node)):
                return False
    return True


def _row_reads(node: Node, virtual: set[int], same_row: bool = True):
    """(source, read at the reader's row?) for each source of `node`, through the index maps
    read in place. A fused op reads its inputs at its own index; an index map keeps the row
    when its batching rule says so."""
    for inp in node.inputs:
        if inp.uid in virtual:
            yield from _row_reads(inp, virtual, same_row and keeps_rows(inp))
        else:
            yield inp, same_row


def _batch_sum(node: Node) -> bool:
    return node.op in REDUCTIONS and 0 in node.attr("axes")

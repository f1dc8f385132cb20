"""Buffer reuse: which array a loop's store may write over instead of a new one.

Input: the emitter of a Program (its units, what each statement reads, which values are
stored). Output, per loop unit: {uid of a store: the node whose array it writes over}. A store
may write over an array the kernel made (a product's result, or an earlier store) of its shape
and dtype when nothing reads that array after this loop and this loop reads it only directly,
by elementwise statements and sums at the store's own index, before the store: every entry is
then read before it is written over, as in `relu3 = matmul1` for a bias add and ReLU.
"""
from __future__ import annotations

import math

from symdiff.ir import Node
from symdiff.optable import OPS
from symdiff.passes.fuse import REDUCTIONS, Unit, sources


def written_over(e, k: int, unit: Unit) -> dict[int, Node]:
    """The arrays the stores of loop unit `k` write over (each array at most once)."""
    reused: dict[int, Node] = {}
    for stage in unit.parts():
        for position, s in enumerate(stage.stmts):
            node = s.node
            if node.op in REDUCTIONS or not e.stored(node):
                continue
            taken = {n.uid for n in reused.values()}
            for old in (i for t in stage.stmts[:position + 1] for i in t.node.inputs):
                if (old.uid not in taken and old.shape == node.shape
                        and old.dtype == node.dtype and old.uid not in e.outputs
                        and (OPS[old.op].fresh or e.stored(old)) and _last_read(e, old) <= k
                        and _read_before(e, unit, stage, position, old)):
                    reused[node.uid] = old
                    break
    return reused


def _last_read(e, node: Node) -> float:
    """The last unit that reads `node`'s array (a `.T` view passed to a product counts where
    the product is), or infinity if a reader may keep a view of it."""
    last = -1
    for reader in e.readers.get(node.uid, ()):
        if reader.uid in e.inline_transposes:
            last = max([last] + [e.unit_of[r.uid] for r in e.readers[reader.uid]])
        elif OPS[reader.op].fusable or OPS[reader.op].fresh:
            last = max(last, e.unit_of[reader.uid])
        else:
            return math.inf
    return last


def _read_before(e, unit: Unit, stage: Unit, position: int, old: Node) -> bool:
    """Does `unit` read `old` only directly, by elementwise statements and sums up to
    `position` in `stage` or in the stages before it (so at the same row, earlier)?"""
    stages = unit.parts()
    at = stages.index(stage)
    for j, other in enumerate(stages):
        for p, s in enumerate(other.stmts):
            direct = any(i is old for i in s.node.inputs)
            mapped = any(i.uid in e.virtual and old in sources(i, e.virtual)
                         for i in s.node.inputs)
            late = j > at or j == at and p > position
            if mapped or direct and (late or OPS[s.node.op].kind not in ("elementwise",
                                                                         "reduce")):
                return False
    return True

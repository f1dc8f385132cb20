"""Programs <-> plain data, so that a compiled model can travel to another process.

Input: a dict of Programs. Output: one flat table of nodes, inputs before consumers, each row
(op, input rows, shape, dtype, attrs), plus each Program's inputs, statements and outputs as
row numbers. Rebuilding goes through `make_node`, so the nodes are hash-consed in the new
process like any others, and a rebuilt Program prints the same generated text (hence the same
cache key) as the original. A flat table, not nested pickles, keeps deep graphs within
Python's recursion limit.
"""
from __future__ import annotations

from .ir import Node, make_node, topological
from .program import Program, Stmt


def programs_to_data(programs: dict[str, Program]) -> dict:
    """{"nodes": [(op, inputs, shape, dtype, attrs)], "programs": {kind: rows}}; the nodes
    shared between Programs are stored once.

    >>> from symdiff import tensors as T
    >>> from symdiff.autodiff import differentiate
    >>> x = T.scalar("x")
    >>> p = differentiate(T.function("sin", x) * x, [x])
    >>> str(programs_from_data(programs_to_data({"grad": p}))["grad"]) == str(p)
    True
    """
    roots = []
    for program in programs.values():
        roots += program.inputs
        roots += [s.node for s in program.stmts]
        roots += [s.origin for s in program.stmts if s.origin is not None]
        roots += [node for _, node in program.outputs]
    order = topological(roots)
    row = {node.uid: k for k, node in enumerate(order)}
    nodes = [(n.op, tuple(row[i.uid] for i in n.inputs), n.shape, n.dtype, n.attrs)
             for n in order]
    tables = {kind: {"inputs": [row[n.uid] for n in p.inputs],
                     "stmts": [(s.name, row[s.node.uid],
                                None if s.origin is None else row[s.origin.uid])
                               for s in p.stmts],
                     "outputs": [(label, row[n.uid]) for label, n in p.outputs]}
              for kind, p in programs.items()}
    return {"nodes": nodes, "programs": tables}


def programs_from_data(data: dict) -> dict[str, Program]:
    """The Programs that `programs_to_data` stored, their nodes made afresh by `make_node`."""
    built: list[Node] = []
    for op, inputs, shape, dtype, attrs in data["nodes"]:
        built.append(make_node(op, [built[i] for i in inputs], shape, dtype, **dict(attrs)))
    return {kind: Program(tuple(built[i] for i in t["inputs"]),
                          tuple(Stmt(name, built[i], None if o is None else built[o])
                                for name, i, o in t["stmts"]),
                          tuple((label, built[i]) for label, i in t["outputs"]))
            for kind, t in data["programs"].items()}

"""A NumPy interpreter of the IR: the slow, obviously-correct path that codegen is tested against.

Input: a Program and NumPy values. Output: the values of the Program's outputs (or of every
statement). Each statement runs through its op record's NumPy evaluation; nothing is generated
or executed as code.
"""
from __future__ import annotations

import numpy as np

from .optable import OPS
from .program import Program


def run(program: Program, inputs: dict, dims: dict | None = None) -> dict:
    """Evaluate every statement with NumPy and return {output label: value}."""
    values, _ = evaluate(program, inputs, dims)
    return {label: values[node.uid] for label, node in program.outputs}


def evaluate(program: Program, inputs: dict, dims: dict | None = None) -> tuple[dict, dict]:
    """({uid: value} of every input and statement, {dimension name: size})."""
    values: dict[int, np.ndarray] = {}
    dims = dict(dims or {})
    for node in program.inputs:
        values[node.uid] = np.asarray(inputs[node.attr("name")])
        for d, size in zip(node.shape, values[node.uid].shape):
            if isinstance(d, str):
                dims[d] = size
    evaluate_nodes([s.node for s in program.stmts], values, dims)
    return values, dims


def evaluate_nodes(nodes, values: dict, dims: dict) -> None:
    """Add to `values` ({uid: value}) the value of each node in `nodes`, inputs first; nodes
    whose inputs are neither in `values` nor in `nodes` are an error (KeyError)."""
    with np.errstate(all="ignore"):
        for node in nodes:
            if node.uid not in values:
                values[node.uid] = OPS[node.op].evaluate(node, [values[i.uid] for i in node.inputs],
                                                         dims)

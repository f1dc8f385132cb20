"""A NumPy interpreter of the IR: the slow, obviously-correct path that codegen is tested against.

Input: a Program (or a single elementwise body) and NumPy values. Output: the values of the
Program's outputs. It never generates or executes code: SymPy bodies are walked node by node
through a table of NumPy functions, so it also folds constants in formulas safely.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from . import ops
from .functions import evaluate_body
from .ir import Node, Program


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
                values[node.uid] = _run_node(node, [values[i.uid] for i in node.inputs], dims)


def _shape(shape, dims):
    return tuple(dims[d] if isinstance(d, str) else d for d in shape)


def _run_node(node: Node, args, dims):
    a = dict(node.attrs)
    op = node.op
    if op == "const":
        return np.full(_shape(node.shape, dims), a["value"])
    if op == "dim":
        return np.float64(dims[a["name"]])
    if op == "iota":
        shape = _shape(node.shape, dims)
        return np.broadcast_to(np.arange(shape[a["axis"]]).reshape(
            [-1 if k == a["axis"] else 1 for k in range(len(shape))]), shape)
    if op == "elementwise":
        env = {ops.placeholder(k).name: x for k, x in enumerate(args)}
        return np.broadcast_to(evaluate_body(a["body"], env), _shape(node.shape, dims))
    if op == "broadcast":
        shape = _shape(a["shape"], dims)
        expanded = args[0].reshape([args[0].shape[a["dims"].index(k)] if k in a["dims"] else 1
                                    for k in range(len(shape))])
        return np.broadcast_to(expanded, shape)
    if op == "sum":
        return np.sum(args[0], axis=a["axes"])
    if op == "max":
        return np.max(args[0], axis=a["axes"])
    if op == "stop_gradient":
        return args[0]
    if op == "reshape":
        return np.reshape(args[0], _shape(a["shape"], dims))
    if op == "transpose":
        return np.transpose(args[0], a["perm"])
    if op == "matmul":
        return np.matmul(*args)
    if op == "take_along":
        return np.take_along_axis(args[0], args[1][:, None], axis=1)[:, 0]
    if op == "concatenate":
        return np.concatenate(args, axis=a["axis"])
    if op == "slice":
        index = [slice(None)] * args[0].ndim
        index[a["axis"]] = slice(a["start"], a["stop"])
        return args[0][tuple(index)]
    raise NotImplementedError(f"the interpreter has no rule for {op}")

"""The op table: one record per op, holding every rule any stage needs, keyed by op name.

As JAX registers a primitive's JVP, transpose and lowering side by side, an op's record holds
its shape rule, adjoint (VJP), tangent (JVP) and per-example rules, its NumPy evaluation, its
Numba emission (a statement, or the text of one element inside a fused loop), whether the
tape runs it, and how it prints and names its statements. The records are written in
symdiff/ops/ (one module per family of ops); this module is only the table, so that the IR's
front end can check shapes without importing the rules that build adjoints.

Every field of a record must be set when the op is defined: to a rule, or to None for "does
not apply here" (a leaf has no adjoint; only matmul and broadcast have per-example rules).
`missing()` lists what an op lacks, and a test runs it over the whole table.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

MISSING = object()  # a field nobody set: an op defined without saying what a backend does


@dataclass
class OpDef:
    """Everything symdiff knows about one op. Rules take nodes or Tensors, attributes as
    keywords; see symdiff/ops/ for the signatures."""

    kind: str  # leaf | elementwise | reduce | structural
    shape: Callable | None = MISSING  # (*input nodes, **attrs) -> (shape, dtype)
    adjoint: Callable | None = MISSING  # (dy, y, *inputs, **attrs) -> an adjoint or None each
    tangent: Callable | None = MISSING  # (y, inputs, tangents, **attrs) -> tangent or None
    # (dy, y, *inputs, k, batch, **attrs) -> input k's adjoint, one row per example
    per_example: Callable | None = MISSING
    evaluate: Callable | None = MISSING  # (node, NumPy inputs, dims) -> NumPy value
    emit: Callable | None = MISSING  # (emitter, node) -> Numba statement lines
    in_loop: Callable | None = MISSING  # (emitter, loop, node, idx) -> one element's text
    tape: Callable | None = MISSING  # (tape, phase, node) -> the virtual register holding the
    # node's value in the tape's program (codegen/tape.py), or raises tape.Unsupported;
    # None: the tape does not run this op
    format: Callable | None = None  # (node, input names) -> text; None: op(args, attrs)
    hint: str | Callable = ""  # its statements' name stem, or (node) -> stem; default: op
    fusable: bool = False  # joins fused loops (its in_loop text, or a scalar beside them)
    index_map: bool = False  # read in place by the loops that use it, never stored
    # (node, the inputs' example axes, batch) -> the output's example axis, None (the same for
    # every example) or batching.MIXES: see symdiff/batching.py
    batching: Callable = MISSING
    identity: float | None = None  # a reduction's starting value
    accumulate: Callable | None = None  # a reduction's (target, value) -> update statement
    labels: Callable | None = None  # (node) -> (its integer labels, the size they stay below)
    # (dy, y, *inputs, batch, **attrs) -> input adjoints, for an op on parameters alone whose
    # adjoint dy carries a leading axis of one row per example (per-example gradients)
    lift: Callable | None = None


OPS: dict[str, OpDef] = {}


def define(name: str, kind: str, **rules) -> OpDef:
    """Add op `name` to the table with `rules` (more can be attached with `rule`)."""
    OPS[name] = OpDef(kind, **rules)
    return OPS[name]


def rule(field: str, *names: str):
    """A decorator attaching a function as `field` of the ops `names`: @rule("adjoint", "sum")."""
    def register(fn):
        for name in names:
            setattr(OPS[name], field, fn)
        return fn
    return register


def linear_tangent(build):
    """The tangent rule of an op linear in its one input: `build` (the op) applied to the
    tangent."""
    def tangent(y, inputs, tangents, **attrs):
        return None if tangents[0] is None else build(tangents[0], **attrs)
    return tangent


def output_type(op: str, inputs, attrs: dict):
    """Shape and dtype of `op(inputs)`; raises ShapeError naming both shapes on a mismatch."""
    return OPS[op].shape(*inputs, **attrs)


def missing(name: str) -> list[str]:
    """The fields of op `name` that were never set."""
    record = OPS[name]
    return [f.name for f in fields(record) if getattr(record, f.name) is MISSING]

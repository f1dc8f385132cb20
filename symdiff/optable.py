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
from typing import Callable, Protocol

MISSING = object()  # a field nobody set: an op defined without saying what a backend does


@dataclass
class OpDef:
    """Everything symdiff knows about one op. Rules take nodes or Tensors, attributes as
    keywords; see symdiff/ops/ for the signatures."""

    kind: str  # leaf | elementwise | reduce | structural
    shape: Callable | None = MISSING  # (*input nodes, **attrs) -> (shape, dtype)
    adjoint: Callable | None = MISSING  # (dy, y, *inputs, **attrs) -> an adjoint or None each
    # the adjoint rule also takes needed=(one bool per input: is its adjoint used?), so an op
    # whose adjoints cost work each (a loop's: one more stack per step) makes only those
    adjoint_needed: bool = False
    tangent: Callable | None = MISSING  # (y, inputs, tangents, **attrs) -> tangent or None
    # (dy, y, *inputs, k, batch, **attrs) -> input k's adjoint, one row per example
    per_example: Callable | None = MISSING
    evaluate: Callable | None = MISSING  # (node, NumPy inputs, dims) -> NumPy value
    emit: Callable | None = MISSING  # (EmitContext, node) -> Numba statement lines
    # (EmitContext, node, idx) -> the text of node's entry at the loop indices idx, inside a
    # fused loop
    in_loop: Callable | None = MISSING
    # (EmitContext, node, row) -> the lines computing node's row `row` inside a loop over the
    # rows of a batch, for an op whose row i reads row i of its input alone (its batching rule
    # says so): a stage of that loop instead of a statement of its own; None: no such form
    in_row: Callable | None = None
    tape: Callable | None = MISSING  # (tape, phase, node) -> the virtual register holding the
    # node's value in the tape's program (codegen/tape.py), or raises tape.Unsupported;
    # None: the tape does not run this op
    format: Callable | None = None  # (node, input names) -> text; None: op(args, attrs)
    # (node, input names) -> what a `# from:` comment above its adjoints quotes; None: its
    # statement
    origin: Callable | None = None
    # (node, input names) -> the name comments give an index map that loops read in place
    # (no variable holds it); None: its statement's name
    read_as: Callable | None = None
    hint: str | Callable = ""  # its statements' name stem, or (node) -> stem; default: op
    fusable: bool = False  # joins fused loops (its in_loop text, or a scalar beside them)
    index_map: bool = False  # read in place by the loops that use it, never stored
    # an entry is 0 where the input entries it reads are: a select's 0 read through it is
    # still one (ops/elementwise.py guards products with such zeros)
    passes_zeros: bool = False
    # reads a transpose operand without its statement: True, a 2-D one as a `.T` view (no
    # copy); or (node, operand) -> whether node reads that operand from the transpose's source
    transposed_view: bool | Callable = False
    # its statement binds a new array that no other variable refers to: a loop may write its
    # own results into that array once nothing reads it any more (codegen/emit.py's `donor`)
    fresh_array: bool = False
    # (node, the inputs' example axes, batch) -> the output's example axis, None (the same for
    # every example) or batching.MIXES: see symdiff/batching.py
    batching: Callable = MISSING
    identity: float | None = None  # a reduction's starting value
    accumulate: Callable | None = None  # a reduction's (target, value) -> update statement
    labels: Callable | None = None  # (node) -> (its integer labels, the size they stay below)
    # (dy, y, *inputs, batch, **attrs) -> input adjoints, for an op on parameters alone whose
    # adjoint dy carries a leading axis of one row per example (per-example gradients)
    lift: Callable | None = None


class EmitContext(Protocol):
    """All that an op's `emit`, `in_loop` and `in_row` rules may use to write Numba code
    (codegen/emit.py implements it). Generated names come only from here: `name` for values,
    `fresh` for an op's own locals (loop variables, accumulators), so no two collide and none
    takes a user's input name."""

    float_type: str  # "float64" or "float32": the module's one float type

    def name(self, node) -> str:
        """The variable holding node's value (a transpose read as a view: `A.T`)."""

    def fresh(self, stem: str) -> str:
        """A new local name from `stem` that no input, statement or other fresh name has."""

    def dim(self, d) -> str:
        """A dimension as code: an int as itself, a symbolic one by its run-time variable."""

    def shape(self, shape) -> str:
        """A shape tuple as code."""

    def number(self, value: float) -> str:
        """A float literal in the module's float type."""

    def body(self, body, operands: list[str]) -> str:
        """An elementwise SymPy body as scalar code over the operands' texts."""

    def read(self, node, idx) -> str:
        """Inside a fused loop: node's entry at the index texts idx (an index map is read in
        place, a value of another loop from its array)."""

    def nest(self, shape, inner) -> list[str]:
        """Scalar loops over every entry of `shape`: `inner(idx)` gives the lines run at each
        entry, idx the loop variables' names (one per axis). Numba compiles them faster than
        a slice assignment (`a[:, 1:5] = b`), for which it compiles a broadcast and its error
        message at each site: 0.1 s against 0.4 s for two sites in a small function, 2.7 s
        against 0.2 s for the first in a process, up to a second a site in a large kernel."""

    def table(self, values: tuple) -> str:
        """The name of a module-level integer array holding `values` (gather's indices), one
        per distinct table: Numba reads an array constant with one load, but a tuple literal
        indexed by a loop variable with a switch over its entries (a convolution's kernel:
        7.1 s of compile and 2.15 ms a call with tuples, 6.2 s and 1.80 ms with tables)."""

    def parts_read(self, node) -> set[int]:
        """The indices of the results of `node` (a loop's) that some statement reads."""

    def call(self, program, stem: str, args: list[str]) -> str:
        """The text of a call, on the argument texts `args` (one per input of `program`), of a
        module-level function named from `stem` that runs `program` and returns its outputs
        as a tuple (a loop's step)."""


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


def linear(name: str, kind: str, build: Callable, transpose: Callable, batched=None,
           **rules) -> OpDef:
    """Define op `name`, linear in its one input, from the op and its transpose, as JAX's
    deflinear does. `build(x, **attrs)` makes the op, so the tangent of y = L x is L dx;
    `transpose(dy, shape, **attrs)` is the adjoint Lᵀ dy for an input of `shape`. Given
    `batched(attrs)` (the attributes moved past a new leading axis), the per-example adjoint
    (`lift`) is the transpose of the op batched over that axis."""
    def adjoint(dy, y, x, **attrs):
        return [transpose(dy, x.shape, **attrs)]

    def lift(dy, y, x, *, batch, **attrs):
        return [transpose(dy, (batch,) + x.shape, **batched(attrs))]
    def tangent(y, inputs, tangents, **attrs):
        return None if tangents[0] is None else build(tangents[0], **attrs)
    return define(name, kind, tangent=tangent, adjoint=adjoint,
                  lift=lift if batched else None, **rules)


def missing(name: str) -> list[str]:
    """The fields of op `name` that were never set."""
    record = OPS[name]
    return [f.name for f in fields(record) if getattr(record, f.name) is MISSING]

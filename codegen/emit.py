"""A Program -> the Python source of one module that Numba compiles.

The module holds `kernel(<inputs>, chunks)`, which returns `(value, (gradients...))`, compiled
at import for exactly one signature (`SIGNATURE`, from the input specs: the dispatcher then
refuses other types with a TypeError), and one function per loop nest found by the fusion pass.
A loop over the batch axis runs over samples lo..hi of chunk c: the kernel splits the batch into
`chunks` (1, or a fixed 16 for large batches) and runs them in `prange`, which is a plain loop
in `kernel`; its threaded copy (compiled.py, only when a call can use threads) runs them on
threads. Each loop function has that one call site: Numba inlines it there, and every copy of
a loop costs compile time. Each chunk sums into its own row of a partial buffer and the rows
are added in order afterwards: no data race, and the same bits however many threads run the
chunks.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field

import numpy as np

from symdiff.errors import DtypeError
from symdiff.optable import OPS
from symdiff.ir import Node, format_shape, fresh
from symdiff.loops import parts_read
from symdiff.program import Program
from symdiff.passes.fuse import (INDEX_MAPS, REDUCTIONS, Unit, fuse, iteration_space, reads,
                                 sources, virtual_nodes)
from symdiff.printing import format_origin, format_stmt

from .entry import JIT, chunk_rows, emit_entry
from .inputs import REFUSED, numba_type, specs_of
from .runtime import runtime_import
from . import printer
from .printer import function_text, number, print_body, vecmath_import

INDEX = "ijklpqrstuvw"  # loop variables, in order, skipping names the model uses
HEADER = '''"""symdiff kernel for: {title}

Generated code: forward statements, then adjoint statements, each adjoint group under a
`# from:` comment quoting the forward statement it differentiates.
"""
import math

import numpy as np
from numba import njit, prange
from numba.types import Array, float32, float64, int64

_ValueError = ValueError  # a builtin under a name no input can take (inputs are parameters)
from symdiff.errors import LinAlgError as _LinAlgError  # a matrix no factorization takes
{runtime}
'''
MACHINERY = "# ---- The call machinery: the argument checks ----"


@dataclass
class _Loop:
    """What one loop function reads, writes and accumulates."""

    index: int
    unit: Unit
    reads: list[str] = field(default_factory=list)
    stores: list[Node] = field(default_factory=list)
    direct: list[Node] = field(default_factory=list)  # reductions that keep axis 0
    stored_once: set = field(default_factory=set)  # uids of those stored once per entry
    # lines around the loop at each depth: a register accumulator's start, then its store
    opening: dict = field(default_factory=dict)
    closing: dict = field(default_factory=dict)
    partial: list[Node] = field(default_factory=list)  # reductions over axis 0, per chunk
    lines: list[str] = field(default_factory=list)


def emit_source(program: Program, title: str = "model", rows: int | None = None) -> str:
    """The module text for `program`: its kernel and the kernel's entry point, which runs a
    batch of `rows` rows or more in chunks (by default, `chunk_rows` of the Program's
    statements). An optimizer step is a module of its own (codegen/steps.py). Same Program
    and rows, same text: the text is the cache key."""
    return _Emitter(program).module(title, rows or chunk_rows(len(program.stmts)))


class _Emitter:
    def __init__(self, program: Program, prefix: str = "", module_names: set | None = None):
        self.program = program
        self.prefix = prefix  # of its loop functions' names: a loop's step has its own
        # module-level names (a loop's step function and its loops) taken so far
        self.module_names = module_names if module_names is not None else set()
        self.functions: list[str] = []  # module-level texts: helpers, index tables, loop steps
        self.tables: dict[tuple, str] = {}  # integer tables (a gather's indices) -> their names
        self._parts_read = None  # {uid of a loop: the indices of its results read}
        self.specs = specs_of(program)
        self.names = program.names()
        self.units = fuse(program)
        self.unit_of = {s.node.uid: k for k, u in enumerate(self.units) for s in u.stmts}
        self.read_by: dict[int, set[int]] = {}
        self.place: dict[int, tuple] = {}  # uid -> (unit, stage, position in it) computing it
        self.stage_readers: dict[int, set[tuple]] = {}  # uid -> the (unit, stage)s reading it
        # uid -> (unit, stage, position, reader, read through an index map?) of each reader
        self.readers: dict[int, list[tuple]] = {}
        self.given: set[int] = set()  # uids of arrays a later loop writes its results into
        self.reused: set[int] = set()  # uids of those results (no array of their own)
        self.virtual = virtual_nodes(program)
        self.comment_names = comment_names(program)
        for k, unit in enumerate(self.units):
            for j, stage in enumerate(unit.parts()):
                for p, s in enumerate(stage.stmts):
                    self.place[s.node.uid] = (k, j, p)
                    for inp, mapped in reads(s.node, self.virtual):
                        self.read_by.setdefault(inp.uid, set()).add(k)
                        self.stage_readers.setdefault(inp.uid, set()).add((k, j))
                        self.readers.setdefault(inp.uid, []).append((k, j, p, s.node, mapped))
        self.outputs = {n.uid for _, n in program.outputs}
        self.rowwise = {s.node.uid for unit in self.units for stage in unit.parts()
                        if stage.rowwise for s in stage.stmts}  # stored row by row
        self.views = _transposed_views(program, self.outputs)
        self.taken = set(self.names.values())
        self.var = {role: fresh(role, self.taken) for role in ("chunks", "c", "lo", "hi")}
        self.index = [fresh(v, self.taken) for v in INDEX]
        # the row variable as a signed integer, for index arithmetic (`1 + i`, `i == j`)
        self.signed_row = fresh(f"{self.index[0]}_signed", self.taken)
        self.dims = {fresh(d, self.taken): src for d, src in _dims(program).items()}
        self.dim_var = dict(zip(_dims(program), self.dims))
        self.float_type = program_dtype(program)
        self.single = self.float_type == "float32"
        self.last_origin = None
        self.current: _Loop | None = None  # the loop being written, which `read` reads in
        # records' parts computed in the loop stage being written (None: not in one)
        self.shared: dict[str, str] | None = None
        self.pending: list[str] = []  # their lines, before the statement being written

    # ------------------------------------------------------------ the EmitContext (optable.py)

    def name(self, node: Node) -> str:
        if node.uid in self.views:  # (a stack's transposes are read from their source)
            assert node.rank == 2, format_stmt(node, self.names)
            return f"{self.names[node.inputs[0].uid]}.T"
        return self.names[node.uid]

    def fresh(self, stem: str) -> str:
        return fresh(stem, self.taken)

    def dim(self, d) -> str:
        return str(self.dim_var.get(d, d))

    def shape(self, shape) -> str:
        dims = [self.dim(d) for d in shape]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def number(self, value: float) -> str:
        return number(value, self.single)

    def body(self, body, operands: list[str]) -> str:
        sharing = self.shared is not None
        shared, pending = sharing and dict(self.shared), len(self.pending)
        text = print_body(body, operands, self.float_type, self._share if sharing else None)
        if len(text) < printer.HELPER_MIN_CHARS:
            return text
        if sharing:  # the helper computes its own parts
            self.shared, self.pending[pending:] = shared, []
        # a long body (a special function's derivatives): a function of the module, each
        # repeated part once (Numba's compile time grows with the names an expression makes)
        name = fresh("_body", self.module_names)
        self.functions.append(function_text(body, name, len(operands), self.float_type,
                                            "An elementwise body") + "\n\n")
        return f"{name}({', '.join(operands)})"

    def _share(self, part: str, operand: str) -> str:
        """The name of a record's part (sigmoid's exp(-|x|)) in the loop stage being written:
        computed by a line of `pending` before the statement that first writes it."""
        if part not in self.shared:
            stem = f"e_{operand}" if operand.isidentifier() else "e"
            self.shared[part] = self.fresh(stem)
            self.pending.append(f"{self.shared[part]} = {part}")
        return self.shared[part]

    def read(self, node: Node, idx) -> str:
        return self.operand(self.current, node, idx)

    def table(self, values: tuple) -> str:
        if values not in self.tables:
            name = self.tables[values] = fresh("_indices", self.module_names)
            entries = ", ".join(map(str, values))
            self.functions.append(f"{name} = np.array([{entries}], dtype=np.intp)\n\n")
        return self.tables[values]

    def nest(self, shape, inner) -> list[str]:
        idx = [self.fresh("m") for _ in shape]
        lines = list(inner(idx))
        for var, size in reversed(list(zip(idx, shape))):
            lines = [f"for {var} in range({self.dim(size)}):"] + ["    " + l for l in lines]
        return lines

    def parts_read(self, node: Node) -> set[int]:
        if self._parts_read is None:
            self._parts_read = parts_read(s.node for s in self.program.stmts)
        return self._parts_read.get(node.uid, set())

    def call(self, program: Program, stem: str, args: list[str]) -> str:
        step = fresh(f"_{stem}", self.module_names)
        inner = _Emitter(program, step, self.module_names)
        self.functions += inner.function(step)
        return f"{step}({', '.join(args + [self.var['chunks']])})"

    # ------------------------------------------------------------ what is stored where

    def stored(self, node: Node) -> bool:
        """Is this loop value written to an array (read by another unit, or returned, or, with
        axes beyond the row, read by another stage of its loop over rows)?"""
        k = self.unit_of.get(node.uid)
        if k is None or not self.units[k].loop or node.rank == 0 or node.op in REDUCTIONS:
            return False
        if node.uid in self.outputs or node.uid in self.rowwise \
                or self.read_by.get(node.uid, set()) - {k}:
            return True
        return node.rank > 1 and bool(self.stage_readers.get(node.uid, set())
                                      - {self.place[node.uid][:2]})

    def donor(self, loop: _Loop, node: Node) -> Node | None:
        """An array of the kernel's own that the loop may write `node` into instead of a new
        one: of node's shape, and read for the last time by this loop, entry by entry, at or
        before the statement that stores node. Each entry is then read before it is written
        over, in whichever chunk or thread runs its row, and the kernel touches fewer new
        pages: an array of more than 32 MiB is new memory from the system on every call,
        whose first writes fault page by page (a 30-128-10 MLP's gradient at 50,000 rows
        took 123 ms with four (n, 128) arrays, 81 ms with two)."""
        if node.uid in self.rowwise:
            return None
        k, *here = self.place[node.uid]
        for s in loop.unit.stmts:
            for d in sources(s.node, self.virtual):
                if d.uid not in self.given and d.shape == node.shape \
                        and self.owned(d, k, tuple(here)) \
                        and all(self.done_with(d, read, k, tuple(here))
                                for read in self.readers[d.uid]):
                    self.given.add(d.uid)
                    return d
        return None

    def done_with(self, node: Node, read: tuple, k: int, here: tuple) -> bool:
        """Is this read of `node` over by the time loop k writes its entry at `here` (stage,
        position)? A read by an earlier unit is, unless its result may share node's memory (a
        transpose, a reshape): an elementwise statement's, a sum's and a product's do not. In
        loop k, a read by an elementwise statement or a sum at its own entry, at or before
        `here`."""
        unit, stage, position, reader, mapped = read
        record = OPS[reader.op]
        if unit < k:
            return record.kind in ("elementwise", "reduce") or record.fresh_array
        return unit == k and not mapped and (stage, position) <= here \
            and record.kind in ("elementwise", "reduce") \
            and iteration_space(reader) == node.shape

    def owned(self, node: Node, k: int, here: tuple) -> bool:
        """Does the kernel alone hold `node`'s array, made before loop k writes at `here`
        (stage, position): stored by an earlier loop or an earlier stage of this one (a
        softmax's exponentials, which its adjoint reads last), or the new array of a
        statement (a product), and never returned?"""
        where = self.unit_of.get(node.uid)
        if where is None or where > k or node.uid in self.outputs:
            return False
        if where == k:
            return self.stored(node) and self.place[node.uid][1:] < here
        if self.units[where].loop and self.units[where].space:
            return self.stored(node)
        return OPS[node.op].fresh_array and node.dtype == self.float_type

    def row_local(self, node: Node) -> bool:
        """Is this reduction one number per row, read only inside its own loop over rows (by
        a later stage)? Then it is a local of the row, never an array."""
        k = self.unit_of.get(node.uid)
        return (node.op in REDUCTIONS and node.rank == 1 and 0 not in node.attr("axes")
                and node.uid not in self.outputs
                and not self.read_by.get(node.uid, set()) - {k})

    # ------------------------------------------------------------ module

    def statements(self) -> tuple[list[_Loop], list[str]]:
        """The loop functions, and the lines of the function that runs them in order."""
        loops, body = [], []
        for k, unit in enumerate(self.units):
            if unit.loop and unit.space:
                loop = self.loop(k, unit)
                loops.append(loop)
                body += self.call_loop(loop)
                self.last_origin = None
            else:
                body += self.straight(unit)
        return loops, body

    def function(self, name: str) -> list[str]:
        """The module-level texts of a loop's step: `name(<inputs>, chunks)` returning its
        outputs as a tuple, after its own loop functions and steps."""
        loops, body = self.statements()
        args = ", ".join([n.attr("name") for n in self.program.inputs] + [self.var["chunks"]])
        lines = [JIT, f"def {name}({args}):", '    """One step of a loop."""']
        lines += [f"    {d} = {src}" for d, src in self.dims.items()] + body
        returns = "".join(self.output_text(n) + ", " for _, n in self.program.outputs)
        lines.append(f"    return ({returns})")
        return self.functions + ["\n".join(loop.lines) + "\n\n" for loop in loops] + \
            ["\n".join(lines) + "\n\n"]

    def module(self, title: str, rows: int) -> str:
        loops, body = self.statements()
        returns = [self.output_text(n) for _, n in self.program.outputs]
        taken = set(self.names.values())
        aliases = [(label, r) for (label, _), r in zip(self.program.outputs[1:], returns[1:])
                   if label != r and label.isidentifier() and label not in taken]
        if aliases:
            body.append("    # gradients")
            body += [f"    {label} = {r}" for label, r in aliases]
            returns[1:] = [label if (label, r) in aliases else r
                           for (label, _), r in zip(self.program.outputs[1:], returns[1:])]
        args = ", ".join([n.attr("name") for n in self.program.inputs] + [self.var["chunks"]])
        jit = JIT.replace("@njit(", "@njit(SIGNATURE, nogil=True, ")  # other threads run meanwhile
        kernel = [f"SIGNATURE = {self.signature()}", "", "", jit, f"def kernel({args}):"]
        kernel += [f"    {d} = {src}" for d, src in self.dims.items()]
        kernel += self.argument_checks()
        kernel += body
        grads = "".join(f"{r}, " for r in returns[1:])
        kernel.append(f"    return {returns[0]}, ({grads})")
        code = self.functions + [("\n".join(loop.lines) + "\n\n") for loop in loops] + \
            ["\n".join(kernel) + "\n"]
        used = runtime_import(code)
        runtime = "\n" + used + "\n" if used else ""
        runtime += vecmath_import(code)
        parts = [HEADER.format(title=title, runtime=runtime)] + code
        parts.append("\n" + MACHINERY + "\n")
        parts.append(f"ROW_BYTES = {self.row_bytes(loops)}  # in the arrays kernel allocates, "
                     f"per row of the batch\n")
        parts.append(f"STEPS = {self.steps()!r}  # statements a call runs, per product of "
                     f"the symbolic dimensions named\n")
        parts.append(emit_entry(self.specs, rows))
        return "\n".join(parts)

    def row_bytes(self, loops: list[_Loop]) -> int:
        """Bytes per batch row of the arrays `kernel` allocates: the loops' stored arrays and
        the straight-line statements' results (views counted too) whose first axis is the
        batch."""
        allocated = [n for loop in loops for n in loop.stores + loop.direct
                     if n.uid not in self.reused] + \
            [s.node for unit in self.units if not (unit.loop and unit.space) for s in unit.stmts]
        return sum(row_bytes(n) for n in allocated)

    def steps(self) -> dict | None:
        """Statements a call runs, for the estimate of its time under CPython (uncompiled.py):
        {the symbolic dimensions of a space: statements per entry of their product} (() for
        those run once); a structural statement counts its result's entries, a matrix product
        one (BLAS computes it). None for a module with a loop of steps (sd.scan), whose
        iterations the text does not show."""
        steps: dict = {}
        for unit in self.units:
            if any(s.node.dtype == "tuple" for s in unit.stmts):
                return None
            counted = [(part.space, len(part.stmts)) for part in unit.parts()] \
                if unit.loop and unit.space else \
                [(() if s.node.op == "matmul" else s.node.shape, 1) for s in unit.stmts
                 if s.node.uid not in self.views]
            for space, count in counted:
                symbolic = tuple(d for d in space if isinstance(d, str))
                steps[symbolic] = steps.get(symbolic, 0) + \
                    math.prod(d for d in space if isinstance(d, int)) * count
        return steps

    def signature(self) -> str:
        """The Numba argument types of `kernel`: one array type per array input, as its input
        spec accepts it, then the chunk count."""
        return "(" + ", ".join([numba_type(spec) for spec in self.specs] + ["int64"]) + ",)"

    def argument_checks(self) -> list[str]:
        """Sizes and labels, checked before anything is read (the kernel has no bounds
        checks). `run` has checked types, ranks and layouts; on ValueError it hands the
        arguments to the runtime's slow path, which names what is wrong."""
        sizes = [c for spec in self.specs for c in spec.size_conditions(self.dim_var, self.dims)]
        lines = []
        if sizes:
            lines += ["    if not (" + "\n            and ".join(sizes) + "):",
                      f"        raise _ValueError({REFUSED!r})"]
        label = self.fresh("label")
        for spec in self.specs:
            if spec.label_bound is not None:
                lines += spec.label_lines(self.dim_var, label)
        return lines

    @property
    def typed(self) -> str:
        """The dtype argument of an allocation in the module's float type."""
        return f", dtype=np.{self.float_type}"

    def output_text(self, node: Node) -> str:
        name = self.name(node)
        if node.op == "input" and node.rank:
            return f"{name}.copy()"  # never hand back the caller's own array
        return name

    def chunked(self, unit: Unit) -> bool:
        return bool(unit.space) and isinstance(unit.space[0], str)

    # ------------------------------------------------------------ straight-line statements

    def straight(self, unit: Unit) -> list[str]:
        pairs = [(s.origin, line) for s in unit.stmts for line in self.structural(s.node)]
        lines = self.with_origins(pairs, self.last_origin)
        self.last_origin = pairs[-1][0] if pairs else self.last_origin
        return [f"    {line}" for line in lines]

    def with_origins(self, pairs, current=None) -> list[str]:
        """Lines, each group of adjoint lines under one `# from:` comment."""
        lines = []
        for origin, line in pairs:
            if origin is not None and origin is not current:
                lines.append(f"# from: {format_origin(origin, self.comment_names)}")
            current = origin
            lines.append(line)
        return lines

    def structural(self, node: Node) -> list[str]:
        """A statement outside loops, as its op record emits it."""
        if node.uid in self.views:
            return []  # its readers name it as a view
        emit = OPS[node.op].emit
        if emit is None:
            raise NotImplementedError(f"no Numba emission for {format_stmt(node, self.names)}")
        return emit(self, node)

    # ------------------------------------------------------------ loop nests

    def loop(self, k: int, unit: Unit) -> _Loop:
        loop = self.current = _Loop(k, unit)
        c, lo, hi = (self.var[r] for r in ("c", "lo", "hi"))
        accumulators, nests = [], []  # nests: each stage's lines inside the loop over axis 0
        for stage in unit.parts():
            self.shared = None
            space = stage.space
            idx = self.index[:len(space)]
            nest = [f"# stage over {format_shape(space)}"] if unit.stages else []
            if stage.rowwise:  # its record writes the row
                (s,) = stage.stmts
                loop.stores.append(s.node)
                lines = OPS[s.node.op].in_row(self, s.node, idx[0])
                nests += nest + self.with_origins([(s.origin, line) for line in lines])
                continue
            loop.opening, loop.closing = {}, {}
            body = []  # (origin, line) pairs
            self.shared = {}  # a stage's names: each stage is a loop nest of its own
            for s in stage.stmts:
                node = s.node
                self.pending = []
                if node.op in REDUCTIONS:
                    lines = self.accumulate(loop, node, idx, accumulators)
                    body += [(s.origin, line) for line in self.pending + lines]
                    continue
                if node.op in INDEX_MAPS and not self.stored(node):
                    continue
                text = self.value_text(loop, node, idx)
                body += [(s.origin, line) for line in self.pending]
                if self.stored(node):
                    loop.stores.append(node)
                    body.append((s.origin, f"{self.name(node)}[{', '.join(idx)}] = {text}"))
                else:
                    body.append((s.origin, f"{self.name(node)} = {text}"))
            nest += loop.opening.get(1, [])
            pad = ""
            for depth, (var, size) in enumerate(zip(idx[1:], space[1:]), 1):
                nest.append(f"{pad}for {var} in range({self.dim_var.get(size, size)}):")
                pad += "    "
                nest += [pad + line for line in loop.opening.get(depth + 1, ())]
            nest += [pad + line for line in self.with_origins(body)]
            for depth in range(len(space) - 1, 0, -1):
                nest += ["    " * (depth - 1) + line for line in loop.closing.get(depth, ())]
            nests += nest
        self.shared = None
        reads = sorted(set(loop.reads), key=loop.reads.index)
        outs = [self.name(n) for n in loop.stores + loop.direct] + self.parts(loop)
        dims = [self.dim_var[d] for d in dict.fromkeys(d for stage in unit.parts()
                                                       for d in stage.space[1:])
                if isinstance(d, str)]
        loop.reads = dims + reads + outs
        params = ", ".join([c, lo, hi] + loop.reads)
        # inlined into the kernel, it costs no compile of its own (~0.15 s each), unless
        # CPython passes its arguments as one tuple (more than 30), which Numba cannot inline
        jit = JIT.replace(")", ', inline="always")') if len(loop.reads) + 3 <= 30 else JIT
        lines = [jit, f"def {self.prefix}_loop{k}({params}):",
                 f'    """{_describe(unit)}"""']
        lines += [f"    {line}" for line in accumulators]
        # an unsigned row: Numba then reads arrays at it without its check for negative
        # indices, which a row from lo (a signed number) keeps and which stops LLVM from
        # vectorising the loop (the neuron's chunks ran 1.5x slower with it)
        row = self.index[0]
        lines.append(f"    for {row} in range(np.uint64({lo}), np.uint64({hi})):")
        if any(re.search(rf"\b{self.signed_row}\b", line) for line in nests):
            lines.append(f"        {self.signed_row} = np.int64({row})")
        lines += [f"        {line}" for line in nests]
        lines += [f"    part_{k}[{c}, {j}] = {self.name(n)}"
                  for j, n in enumerate(self.scalar_sums(loop))]
        loop.lines = lines
        return loop

    def scalar_sums(self, loop: _Loop) -> list[Node]:
        return [n for n in loop.partial if n.rank == 0]

    def parts(self, loop: _Loop) -> list[str]:
        """The arrays of a loop's results per chunk: `part_<loop>`, a column for each of its
        sums over axis 0 that is a number (one array: Numba compiles each allocation and each
        loop that combines the chunks), and `part_<name>` for each that is an array."""
        return [f"part_{loop.index}"] * bool(self.scalar_sums(loop)) + \
            [f"part_{self.name(n)}" for n in loop.partial if n.rank]

    def accumulate(self, loop: _Loop, node: Node, idx: str, accumulators: list) -> list[str]:
        axes = node.attr("axes")
        value = self.operand(loop, node.inputs[0], idx)
        kept = ", ".join(v for a, v in enumerate(idx) if a not in axes)
        name, record = self.name(node), OPS[node.op]
        if 0 not in axes:
            depth = len(idx) - len(axes)
            if self.row_local(node):  # one number per row, read by a later stage
                loop.opening.setdefault(1, []).append(f"{name} = {self.number(record.identity)}")
                return [record.accumulate(name, value)]
            loop.direct.append(node)
            if tuple(axes) != tuple(range(depth, len(idx))):
                return [record.accumulate(f"{name}[{kept}]", value)]
            # over trailing axes: in a register, stored once (an array entry updated in the
            # inner loop is a load and a store per step: the compiler cannot rule out aliases)
            acc = self.fresh(f"{name}_acc")
            loop.opening.setdefault(depth, []).append(
                f"{acc} = {self.number(record.identity)}")
            loop.closing.setdefault(depth, []).append(f"{name}[{kept}] = {acc}")
            loop.stored_once.add(node.uid)
            return [record.accumulate(acc, value)]
        loop.partial.append(node)
        if node.rank == 0:  # a local accumulator per chunk, stored once at the end
            accumulators.append(f"{name} = {number(record.identity)}")
            return [record.accumulate(name, value)]
        return [record.accumulate(f"part_{name}[{self.var['c']}, {kept}]", value)]

    def value_text(self, loop: _Loop, node: Node, idx: str) -> str:
        """The text that computes `node` inside a loop over `idx` (statement right-hand side).
        An op's in_loop rule gets the row as a signed integer, for arithmetic on it."""
        in_loop = OPS[node.op].in_loop
        if not in_loop:
            return self.operand(loop, node, idx)
        return in_loop(self, node, [self.signed_row if v == self.index[0] else v for v in idx])

    def operand(self, loop: _Loop, node: Node, idx: str) -> str:
        """How a statement in this loop reads `node`."""
        where = self.unit_of.get(node.uid)
        here = where == loop.index
        if node.op in INDEX_MAPS and (where is None or here and not self.stored(node)):
            return self.value_text(loop, node, idx)
        if here and not self.stored(node) and (node.op not in REDUCTIONS or node.rank == 0
                                               or self.row_local(node)):
            return self.name(node)
        if node.rank == 0:
            return self.loop_input(loop, node)
        idx = [self.index[0] if v == self.signed_row else v for v in idx]  # reads: unsigned
        return f"{self.loop_input(loop, node) if not here else self.name(node)}[{', '.join(idx)}]"

    def loop_input(self, loop: _Loop, node: Node) -> str:
        name = self.name(node)
        if self.unit_of.get(node.uid) != loop.index:
            loop.reads.append(name)
        return name

    def call_loop(self, loop: _Loop) -> list[str]:
        unit = loop.unit
        over = f"the rows of {unit.space[0]}, in {len(unit.stages)} stages" if unit.stages \
            else format_shape(unit.space)
        lines = [f"    # loop {loop.index} over {over}"]
        chunks, c = self.var["chunks"], self.var["c"]
        rows = chunks if self.chunked(unit) else "1"
        for n in loop.stores:
            donor = self.donor(loop, n)
            if donor is None:
                lines.append(f"    {self.name(n)} = np.empty({self.shape(n.shape)}{self.typed})")
                continue
            self.reused.add(n.uid)
            lines.append(f"    {self.name(n)} = {self.name(donor)}  # reuses {self.name(donor)}'s "
                         f"array (this loop is its last reader)")
        for n in loop.direct:  # accumulated along inner axes, in the program's float type
            fill = self.number(OPS[n.op].identity)
            lines.append(f"    {self.name(n)} = np.empty({self.shape(n.shape)}{self.typed})"
                         if n.uid in loop.stored_once else
                         f"    {self.name(n)} = np.full({self.shape(n.shape)}, {fill})")
        scalars = self.scalar_sums(loop)  # batch sums: float64 partials, rounded at the end
        if scalars:  # a number per chunk is stored by its chunk
            lines.append(f"    part_{loop.index} = np.empty({self.shape((rows, len(scalars)))})"
                         f"  # {', '.join(self.name(n) for n in scalars)}")
        for n in loop.partial:
            if n.rank:
                lines.append(f"    part_{self.name(n)} = np.full("
                             f"{self.shape((rows,) + n.shape)}, {number(OPS[n.op].identity)})")
        args = ", ".join(loop.reads)
        size = self.dim_var.get(unit.space[0], unit.space[0])
        if self.chunked(unit):  # a plain loop in `kernel`, threads in its threaded copy
            lines += [f"    for {c} in prange({chunks}):",
                      f"        {self.prefix}_loop{loop.index}({c}, {c} * {size} // {chunks}, "
                      f"({c} + 1) * {size} // {chunks}, {args})"]
        else:
            lines.append(f"    {self.prefix}_loop{loop.index}(0, 0, {size}, {args})")
        if scalars:  # the chunks' partial results, combined in chunk order
            part = f"part_{loop.index}"
            lines.append(f"    {', '.join(self.name(n) for n in scalars)} = "
                         f"{', '.join(f'{part}[0, {j}]' for j in range(len(scalars)))}")
            if rows != "1":
                lines.append(f"    for {c} in range(1, {rows}):")
                lines += [f"        {OPS[n.op].accumulate(self.name(n), f'{part}[{c}, {j}]')}"
                          for j, n in enumerate(scalars)]
        for n in loop.partial:
            name = self.name(n)
            if n.rank:
                part = f"part_{name}"
                lines.append(f"    {name} = {part}[0].copy()")
                if rows != "1":
                    lines += [f"    for {c} in range(1, {rows}):",
                              f"        {OPS[n.op].accumulate(name, f'{part}[{c}]')}"]
            total = name
            if self.single:
                total = f"np.float32({total})" if n.rank == 0 else f"{total}.astype(np.float32)"
            if total != name:
                lines.append(f"    {name} = {total}")
        return lines


def machinery_constant(source: str, name: str):
    """The value of a constant the call machinery of a module's text sets (ROW_BYTES, STEPS)."""
    for node in ast.parse(source.split(MACHINERY)[1]).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)


def row_bytes(node: Node) -> int:
    """Bytes per batch row of `node`'s array: 0 unless its first axis is the batch and the
    others are known."""
    if not (node.shape and isinstance(node.shape[0], str)
            and all(isinstance(d, int) for d in node.shape[1:])):
        return 0
    return math.prod(node.shape[1:]) * np.dtype(node.dtype).itemsize


def program_dtype(program: Program) -> str:
    """float32 if the float inputs are float32, else float64; one program, one float type."""
    floats = {n.dtype for n in program.inputs if n.dtype in ("float32", "float64")}
    if len(floats) > 1:
        single = sorted(n.attr("name") for n in program.inputs if n.dtype == "float32")
        raise DtypeError(f"inputs mix float32 ({', '.join(single)}) and float64: give every "
                         f"float input one dtype")
    return floats.pop() if floats else "float64"


def _transposed_views(program: Program, outputs: set) -> set[int]:
    """uids of transposes read only by ops that take them without a copy (np.dot takes
    either layout): a 2-D one as a `.T` view, a stack of matrices from its source; never a
    statement of their own."""
    readers: dict[int, list[Node]] = {}
    for stmt in program.stmts:
        for inp in stmt.node.inputs:
            readers.setdefault(inp.uid, []).append(stmt.node)

    def viewed(node: Node, reader: Node) -> bool:
        rule = OPS[reader.op].transposed_view
        return rule(reader, node) if callable(rule) else rule and node.rank == 2
    return {s.node.uid for s in program.stmts
            if s.node.op == "transpose" and s.node.uid not in outputs
            and all(viewed(s.node, r) for r in readers.get(s.node.uid, []))}


def comment_names(program: Program) -> dict[int, str]:
    """Names for `# from:` comments: an index map read in place as its record's `read_as`
    says (a broadcast by its source's name, as the loops read it)."""
    names = program.names()
    virtual = virtual_nodes(program)
    for s in program.stmts:  # in order: a source's name is settled before its readers'
        read_as = OPS[s.node.op].read_as
        if s.node.uid in virtual and read_as is not None:
            names[s.node.uid] = read_as(s.node, [names[i.uid] for i in s.node.inputs])
    return names


def _dims(program: Program) -> dict[str, str]:
    """Symbolic dimension -> the expression that reads it off the first input that has it."""
    found: dict[str, str] = {}
    for node in program.inputs:
        for axis, d in enumerate(node.shape):
            if isinstance(d, str) and d not in found:
                found[d] = f"{node.attr('name')}.shape[{axis}]"
    return found


def _describe(unit: Unit) -> str:
    if unit.stages:
        spaces = ", then ".join(format_shape(stage.space) for stage in unit.stages)
        return f"Fused loop over rows: {spaces}; axis 0 from lo to hi (chunk c)."
    return f"Fused loop over {format_shape(unit.space)}, axis 0 from lo to hi (chunk c)."

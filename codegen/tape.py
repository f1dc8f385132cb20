"""The tape tier: a Program as instructions for the interpreter, so nothing compiles per model.

A generated Numba kernel compiles in time that grows with the square of its loop body (about
9 s at 1,000 statements, minutes at 5,000): a formula nested a hundred levels deep would take
minutes. A tape takes
milliseconds to build and runs on the interpreter (interpreter.py), compiled once per machine, at
nearly the kernel's speed on wide batches (each instruction runs over a block of samples).

A tape serves scalar-per-sample Programs: float64 inputs that are scalars or batch vectors
(n,), statements that are elementwise, broadcasts of scalars, sums over the batch, constants
and the batch size, and loops (`sd.scan`) over per-sample carries, with xs of shape
(length, n) and stacked results as outputs. Anything else raises `Unsupported`, and the
kernel tier serves it.
Statements split into two phases: the batch phase (everything per sample, and the batch sums)
and the epilogue (scalars computed from the sums, such as a mean loss and a scalar parameter's
gradient). Within a phase each SymPy body becomes a few instructions; equal instructions are
emitted once, `sin` and `cos` of one value become one `sincos`, and registers are reused as
soon as their last reader has run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import sympy as sp
from symdiff.functions import BY_CLASS
from symdiff.optable import OPS
from symdiff.printing import format_stmt
from symdiff.ir import Node, format_shape
from symdiff.loops import parts_read
from symdiff.program import Program

from . import interpreter
from .inputs import bind, specs_of
from .build import cache_hit
from .entry import NCHUNKS, chunk_rows

WIDTH = 256  # samples per block: a register is one row of this many float64 values

_COMPARE = {sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge", sp.StrictLessThan: "lt",
            sp.LessThan: "le", sp.Eq: "eq", sp.Ne: "ne"}


class Unsupported(Exception):
    """The Program needs the kernel tier; the message says why."""


@dataclass(frozen=True)
class Stacked:
    """A value with a row per step of a loop: stack `k` of the tape."""

    k: int


@dataclass(frozen=True)
class Looped:
    """A loop's results: registers holding its last carries, then its stacks (ys, kept
    carries)."""

    carries: tuple
    stacks: tuple


@dataclass
class _Instr:
    op: str
    outs: tuple[int, ...]  # virtual registers written
    ins: tuple[int, ...]  # virtual registers read
    k: int = 0  # scalar, column, sum, output, loop or stack index
    k2: int = 0  # a second index (store_stack: the output stack)


class _Phase:
    """Instructions over virtual registers, each equal instruction emitted once."""

    def __init__(self, tape: Tape):
        self.tape = tape
        self.instrs: list[_Instr] = []
        self.memo: dict[tuple, int] = {}
        self.vreg: dict[int, int] = {}  # node uid -> virtual register
        self.count = 0

    def emit(self, op: str, ins=(), k: int = 0) -> int:
        key = (op, tuple(ins), k)
        if key not in self.memo:
            self.memo[key] = self.count
            self.instrs.append(_Instr(op, (self.count,), tuple(ins), k))
            self.count += 1
        return self.memo[key]

    def sink(self, op: str, ins, k: int, k2: int = 0) -> None:
        self.instrs.append(_Instr(op, (), tuple(ins), k, k2))

    def fresh(self, op: str, ins=(), k: int = 0) -> int:
        """A new register from one instruction never shared with an equal one (a loop's carry,
        written again at the end of each step)."""
        self.instrs.append(_Instr(op, (self.count,), tuple(ins), k))
        self.count += 1
        return self.count - 1

    def write(self, register: int, op: str, ins) -> None:
        """`register` written again (a carry at the end of a loop's step)."""
        self.instrs.append(_Instr(op, (register,), tuple(ins)))

    def constant(self, value: float) -> int:
        return self.emit("fill", (), self.tape.constant(value))

    # ------------------------------------------------------------ SymPy bodies

    def body(self, e: sp.Expr, operands: list[int]) -> int:
        """Instructions computing body `e`, placeholder k read from operands[k]."""
        if e.is_Symbol:
            return operands[int(e.name[1:])]
        if e.is_Number or e in (sp.pi, sp.E):
            return self.constant(float(e))
        if isinstance(e, sp.Add):
            return self.add(e, operands)
        if isinstance(e, sp.Mul):
            return self.mul(e, operands)
        if isinstance(e, sp.Pow):
            return self.pow(e, operands)
        if type(e) in BY_CLASS and BY_CLASS[type(e)].definition is not None:
            return self.body(BY_CLASS[type(e)].expand(e.args), operands)  # sd.function
        if type(e) in BY_CLASS:  # a function record: its instruction, folded pairwise
            name = BY_CLASS[type(e)].name
            args = [self.body(a, operands) for a in e.args]
            result = self.emit(name, args[:2])
            for a in args[2:]:
                result = self.emit(name, (result, a))
            return result
        if type(e) in _COMPARE:
            a, b = (self.body(x, operands) for x in e.args)
            return self.emit(_COMPARE[type(e)], (a, b))
        if isinstance(e, sp.Piecewise):
            result = self.body(e.args[-1][0], operands)
            for value, cond in reversed(e.args[:-1]):
                result = self.emit("where", (self.body(cond, operands),
                                             self.body(value, operands), result))
            return result
        raise Unsupported(f"the tape has no instruction for {e.func.__name__}")

    def add(self, e: sp.Add, operands) -> int:
        constant, plus, minus = 0.0, [], []
        for term in e.args:
            if term.is_Number:
                constant += float(term)
            elif term.could_extract_minus_sign():
                minus.append(self.body(-term, operands))
            else:
                plus.append(self.body(term, operands))
        if plus:
            result = plus[0]
            for t in plus[1:]:
                result = self.emit("add", (result, t))
            for t in minus:
                result = self.emit("sub", (result, t))
            if constant:
                result = self.emit("addc", (result,), self.tape.constant(constant))
            return result
        negated = minus[0]
        for t in minus[1:]:
            negated = self.emit("add", (negated, t))
        return self.emit("csub", (negated,), self.tape.constant(constant))

    def mul(self, e: sp.Mul, operands) -> int:
        coefficient, top, bottom = 1.0, [], []
        for factor in e.args:
            if factor.is_Number:
                coefficient *= float(factor)
            elif isinstance(factor, sp.Pow) and factor.exp.is_Number and factor.exp < 0:
                bottom.append(self.body(sp.Pow(factor.base, -factor.exp), operands))
            else:
                top.append(self.body(factor, operands))
        denominator = self.product(bottom)
        if not top:
            return self.emit("cdiv", (denominator,), self.tape.constant(coefficient))
        result = self.product(top)
        if denominator is not None:
            result = self.emit("div", (result, denominator))
        if coefficient == -1.0:
            return self.emit("neg", (result,))
        if coefficient != 1.0:
            return self.emit("mulc", (result,), self.tape.constant(coefficient))
        return result

    def product(self, factors: list[int]) -> int | None:
        if not factors:
            return None
        result = factors[0]
        for f in factors[1:]:
            result = self.emit("mul", (result, f))
        return result

    def pow(self, e: sp.Pow, operands) -> int:
        base, exp = e.args
        if exp.is_Integer and 0 < exp <= 4:
            x = self.body(base, operands)
            result = x
            for _ in range(int(exp) - 1):
                result = self.emit("mul", (result, x))
            return result
        if exp.is_Number and exp < 0:
            return self.emit("cdiv", (self.body(base ** -exp, operands),), self.tape.constant(1.0))
        if exp == sp.S.Half:
            return self.emit("sqrt", (self.body(base, operands),))
        if exp.is_Number:
            return self.emit("powc", (self.body(base, operands),), self.tape.constant(float(exp)))
        return self.emit("pow", (self.body(base, operands), self.body(exp, operands)))


class Tape:
    """A Program as interpreter code: the batch phase, the epilogue and their tables."""

    def __init__(self, program: Program):
        self.program = program
        self.scalars: list[float] = []  # constants, then slots filled per call
        self._constants: dict[float, int] = {}
        self.slots: dict[tuple[str, str], int] = {}  # (op, name) of a scalar input or a
        # dimension -> its index in scalars (an input may share a dimension's name)
        self.columns: list[str] = []  # batch inputs, in column order
        # stacks (a row per step of a loop): ("input", its name, length), ("kept", None,
        # length) per block, ("output", its label, length); loops: (length, reverse)
        self.stacks: list[tuple[str, str | None, object]] = []
        self.loops: list[tuple[object, bool]] = []
        self._looping = False
        self.dim = _check(program)
        batch, epilogue = _Phase(self), _Phase(self)
        self.batch = batch  # the phase batch sums accumulate in
        self.sums: dict[int, int] = {}  # batch sum node uid -> index of its total
        vector_outs, scalar_outs = [], []
        after_sum = _after_sum(program)
        needed_batch, needed_epilogue = _needed(program)
        for s in program.stmts:
            node = s.node
            if node.uid in needed_batch:
                if not _is_sum(node) and node.uid in after_sum:
                    raise Unsupported(f"{s.name} is per sample but depends on a batch sum: "
                                      f"that takes two passes over the batch")
                self.value(batch, node)
            if node.uid in needed_epilogue:
                self.value(epilogue, node)
        for label, node in program.outputs:
            if node.rank == 2:  # a stack, row by row
                kept = self.value(batch, node)
                out = self.stack("output", label, node.shape[0])
                batch.sink("store_stack", (), kept.k, out)
            elif node.rank:
                batch.sink("store", (self.operand(batch, node),), len(vector_outs))
                vector_outs.append(label)
            else:
                epilogue.sink("store_scalar", (self.operand(epilogue, node),),
                              len(scalar_outs))
                scalar_outs.append(label)
        self.nsums = len(self.sums)
        self.vector_outs, self.scalar_outs = vector_outs, scalar_outs
        self.code, batch_registers = _allocate(_pair_sincos(_fuse_muladd(batch.instrs)))
        self.epilogue, epilogue_registers = _allocate(_pair_sincos(_fuse_muladd(epilogue.instrs)))
        self.registers = max(batch_registers, epilogue_registers, 1)

    def constant(self, value: float) -> int:
        if value not in self._constants:
            self._constants[value] = len(self.scalars)
            self.scalars.append(value)
        return self._constants[value]

    # The lowering API of the op records' tape rules (symdiff/ops/): each returns the virtual
    # register holding its node's value, or raises Unsupported.
    Unsupported = Unsupported

    def slot(self, key: tuple[str, str]) -> int:
        """The scalar slot of a scalar input or a dimension, (op, name), filled per call."""
        if key not in self.slots:
            self.slots[key] = len(self.scalars)
            self.scalars.append(0.0)
        return self.slots[key]

    def column(self, name: str) -> int:
        """The column of batch input `name`."""
        if name not in self.columns:
            self.columns.append(name)
        return self.columns.index(name)

    def operand(self, phase: _Phase, node: Node) -> int | None:
        """The virtual register holding `node` in `phase`, lowered on first use by its op
        record's tape rule."""
        value = self.value(phase, node)
        if isinstance(value, (Stacked, Looped)):
            raise Unsupported(f"{format_stmt(node, self.program.names())}: the tape reads a "
                              f"loop's stacked results only in another loop or as outputs")
        return value

    def value(self, phase: _Phase, node: Node):
        """What holds `node` in `phase`: a virtual register, or for a loop's results a
        `Looped`, for a stacked value a `Stacked`."""
        if node.uid not in phase.vreg:
            lower = OPS[node.op].tape
            if lower is None:
                raise Unsupported(f"{format_stmt(node, self.program.names())}: the tape has no "
                                  f"instruction for {node.op}")
            phase.vreg[node.uid] = lower(self, phase, node)
        return phase.vreg[node.uid]

    def stack(self, kind: str, key, length) -> int:
        """A new stack's index (its rows are placed per call, when the lengths are known)."""
        self.stacks.append((kind, key, length))
        return len(self.stacks) - 1

    def stacked(self, phase: _Phase, node: Node) -> "Stacked":
        """A value with a row per step: a stacked input (length, batch), or a loop's stack."""
        if node.op == "input":
            if node.rank != 2:
                raise Unsupported(f"input {node.attr('name')} of shape "
                                  f"{format_shape(node.shape)} as a loop's xs: the tape "
                                  f"takes xs of shape (length, batch)")
            if phase.vreg.get(node.uid) is None:
                phase.vreg[node.uid] = Stacked(self.stack("input", node.attr("name"),
                                                          node.shape[0]))
            return phase.vreg[node.uid]
        value = self.value(phase, node)
        if not isinstance(value, Stacked):
            raise Unsupported(f"{format_stmt(node, self.program.names())}: a loop's xs on the "
                              f"tape is a stacked input or another loop's stacked result")
        return value

    def loop(self, phase: _Phase, node: Node, step, length, reverse: bool) -> "Looped":
        """A loop (`sd.scan`): its step's instructions between a `loop` and an `end` row, run
        once per step on the block's samples; each step keeps the carries it starts from (and
        its ys) in stacks of the block."""
        where = format_stmt(node, self.program.names())
        if phase is not self.batch or self._looping:
            raise Unsupported(f"{where}: the tape runs loops over per-sample carries, one "
                              f"loop at a time")
        for n in step.params + tuple(s.node for s in step.program.stmts):
            if n.shape not in ((), (self.dim,)) or n.dtype not in ("float64", "bool") \
                    or _is_sum(n):
                raise Unsupported(f"{where}: its step computes {n.op} of shape "
                                  f"{format_shape(n.shape)}; the tape runs steps of scalar "
                                  f"and per-sample values, without sums over the batch")
        nc, nx, ny = len(step.carries), len(step.xs), len(step.ys)
        read = parts_read(s.node for s in self.program.stmts).get(node.uid, set())
        inits = [self.operand(phase, i) for i in node.inputs[:nc]]
        xs = [self.stacked(phase, i) for i in node.inputs[nc:nc + nx]]
        consts = [self.operand(phase, i) for i in node.inputs[nc + nx:]]
        carries = [phase.fresh("copy", (r,)) for r in inits]
        # stacks for the results some statement reads (None: not kept)
        ys = [self.stack("kept", None, length) if nc + i in read else None for i in range(ny)]
        kept = [self.stack("kept", None, length) if nc + ny + j in read else None
                for j in range(nc)]
        self.loops.append((length, reverse))
        k = len(self.loops) - 1
        memo, vreg = dict(phase.memo), dict(phase.vreg)
        self._looping = True
        phase.sink("loop", (), k)
        for c, stack in zip(carries, kept):
            if stack is not None:
                phase.sink("keep", (c,), stack)
        for p, x in zip(step.xs, xs):
            load = "load_step" if self.stacks[x.k][0] == "input" else "load_kept"
            phase.vreg[p.uid] = phase.fresh(load, (), x.k)
        phase.vreg.update((p.uid, r) for p, r in zip(step.carries + step.consts,
                                                      carries + consts))
        new = [self.operand(phase, n) for n in step.new_carries]
        for y, stack in zip(step.ys, ys):
            if stack is not None:
                phase.sink("keep", (self.operand(phase, y),), stack)
        if set(new) & set(carries):  # a carry that is another's old value: copy through
            new = [phase.fresh("copy", (v,)) for v in new]
        for c, v in zip(carries, new):
            if c != v:
                phase.write(c, "copy", (v,))
        phase.sink("end", (), k)
        phase.memo, phase.vreg = memo, vreg  # nothing computed in a step is reused after it
        self._looping = False
        return Looped(tuple(carries), tuple(None if stack is None else Stacked(stack)
                                            for stack in ys + kept))

    def batch_sum(self, phase: _Phase, node: Node) -> int | None:
        """A sum over the batch: accumulated in the batch phase, read as a total after it."""
        if node.inputs[0].rank != 1:
            raise Unsupported(f"{format_stmt(node, self.program.names())} is not a sum over "
                              f"the batch")
        if phase is self.batch:
            self.sums[node.uid] = len(self.sums)
            phase.sink("sum", (self.operand(phase, node.inputs[0]),), self.sums[node.uid])
            return None
        return phase.emit("load_sum", (), self.sums[node.uid])

    def layout(self, dims: dict, vector_outs: int) -> tuple[np.ndarray, dict]:
        """Each stack's first row and its number of rows (a loop's length) for a call: a stacked
        input's in the stacked inputs' array, a kept stack's in a block's, an output's after
        the per-sample outputs; and how many rows each array has."""
        rows = {"input": 0, "kept": 0, "output": vector_outs}
        bases = np.zeros((len(self.stacks), 2), dtype=np.int64)
        for k, (kind, _, length) in enumerate(self.stacks):
            size = _size(length, dims)
            bases[k] = rows[kind], size
            rows[kind] += size
        return bases, rows

    def listing(self, title: str) -> str:
        """What `Compiled.source` shows for a tape: the Program it runs, statement by statement."""
        count = len(self.code) + len(self.epilogue)
        return (f"# symdiff tape for: {title}\n"
                f"# Run by symdiff's precompiled interpreter (tier='tape'): {count} "
                f"instructions, {self.registers} registers of {WIDTH} samples.\n"
                f"# Forward statements, then adjoint statements under `# from:` comments.\n"
                + str(self.program) + "\n")


def _check(program: Program) -> str | None:
    """The batch dimension's name (None if there is none); Unsupported if not a tape Program.
    Besides scalars and per-sample values, a loop's xs may be stacked inputs (length, batch),
    and a loop's stacked results may be outputs."""
    dims = set()
    for node in program.inputs:
        if node.dtype != "float64":
            raise Unsupported(f"input {node.attr('name')} is {node.dtype}; the tape is float64")
        if node.rank > 2 or node.rank and not isinstance(node.shape[-1], str):
            raise Unsupported(f"input {node.attr('name')} has shape "
                              f"{format_shape(node.shape)}; the tape takes scalars, "
                              f"batch vectors and a loop's stacked batch vectors")
        dims.update(node.shape[-1:])
    if len(dims) > 1:
        raise Unsupported(f"inputs have several batch dimensions: {sorted(dims)}")
    batch = dims.pop() if dims else None
    for node in program.inputs:
        if node.rank == 2 and node.shape[0] == batch:
            raise Unsupported(f"input {node.attr('name')} has shape "
                              f"{format_shape(node.shape)}: the batch twice")
    for s in program.stmts:
        node = s.node
        looped = node.dtype == "tuple" or node.inputs and node.inputs[0].dtype == "tuple"
        if looped and (node.rank < 2 or node.shape[1] == batch and node.shape[0] != batch):
            continue  # a loop and its results (the stacked ones by steps, then samples)
        if node.rank > 1 or node.dtype not in ("float64", "bool"):
            raise Unsupported(f"{s.name} ({node.op}, shape {format_shape(node.shape)}) is "
                              f"not a scalar or per-sample statement")
    return batch


def _is_sum(node: Node) -> bool:
    return OPS[node.op].kind == "reduce"


def _after_sum(program: Program) -> set[int]:
    """Uids of statements that depend on a batch sum."""
    found: set[int] = set()
    for s in program.stmts:
        if _is_sum(s.node) or any(i.uid in found for i in s.node.inputs):
            found.add(s.node.uid)
    return found


def _needed(program: Program) -> tuple[set[int], set[int]]:
    """Uids each phase computes: per-sample outputs and sum operands in the batch phase,
    scalar outputs in the epilogue (which reads sums as totals). A loop runs in the batch
    phase."""
    batch, epilogue = set(), set()
    for _, node in program.outputs:
        (batch if _per_sample(node) else epilogue).add(node.uid)
    for s in reversed(program.stmts):
        node = s.node
        if node.uid in epilogue and not _is_sum(node):
            epilogue.update(i.uid for i in node.inputs)
            if _per_sample(node):
                raise Unsupported(f"{s.name}: a scalar result needs a per-sample value "
                                  f"without a sum over the batch")
        if node.uid in epilogue and _is_sum(node):
            batch.add(node.uid)
        if node.uid in batch:
            batch.update(i.uid for i in node.inputs)
    return batch, epilogue


def _per_sample(node: Node) -> bool:
    return bool(node.rank) or node.dtype == "tuple"  # a loop runs over the samples


def _fuse_muladd(instrs: list[_Instr]) -> list[_Instr]:
    """add(mul(x, y), z) as one `muladd` where the product has no other reader: one pass over
    the block instead of two, and the same bits (no fused multiply-add rounding)."""
    readers: dict[int, int] = {}
    for ins in instrs:
        for v in ins.ins:
            readers[v] = readers.get(v, 0) + 1
    products = {ins.outs[0]: t for t, ins in enumerate(instrs) if ins.op == "mul"}
    region = _regions(instrs)
    fused, dropped = {}, set()
    for t, ins in enumerate(instrs):
        if ins.op != "add":
            continue
        for a, b in (ins.ins, ins.ins[::-1]):
            u = products.get(a)
            if u is not None and u not in dropped and readers[a] == 1 \
                    and region[u] == region[t]:
                fused[t] = _Instr("muladd", ins.outs, instrs[u].ins + (b,))
                dropped.add(u)
                break
    return [fused.get(t, ins) for t, ins in enumerate(instrs) if t not in dropped]


def _pair_sincos(instrs: list[_Instr]) -> list[_Instr]:
    """sin(x) and cos(x) of one register as one `sincos` instruction, at the first of them
    (LLVM turns the two calls side by side into one)."""
    first: dict[tuple[str, int, int], int] = {}
    region = _regions(instrs)
    for t, ins in enumerate(instrs):
        if ins.op in ("sin", "cos"):
            first.setdefault((ins.op, ins.ins[0], region[t]), t)
    merged, dropped = {}, set()
    for (op, x, where), t in first.items():
        if op == "sin" and ("cos", x, where) in first:
            u = first[("cos", x, where)]
            merged[min(t, u)] = _Instr("sincos", instrs[t].outs + instrs[u].outs, (x,))
            dropped.add(max(t, u))
    return [merged.get(t, ins) for t, ins in enumerate(instrs) if t not in dropped]


def _regions(instrs: list[_Instr]) -> list[int]:
    """Per instruction, 0 outside loops, else the number of the loop's step it is in."""
    region, where = [], 0
    for ins in instrs:
        if ins.op == "loop":
            where = ins.k + 1
        region.append(where)
        if ins.op == "end":
            where = 0
    return region


def _allocate(instrs: list[_Instr]) -> tuple[np.ndarray, int]:
    """Interpreter rows for `instrs`, virtual registers mapped onto as few real ones as
    possible: a register is free again after its last reader. A register made before a loop
    and used in it lives to the loop's end (the next step reads it again), as does a carry,
    which the end of each step writes again."""
    last, first = {}, {}
    for t, ins in enumerate(instrs):
        for v in ins.outs:
            first.setdefault(v, t)
        for v in ins.ins:
            last[v] = t
    start = None
    for t, ins in enumerate(instrs):
        if ins.op == "loop":
            start = t
        elif ins.op == "end":
            for ins2 in instrs[start:t]:
                for v in ins2.ins + ins2.outs:
                    if first[v] < start:
                        last[v] = max(last.get(v, t), t)
    ends: dict[int, list[int]] = {}
    for v, t in last.items():
        ends.setdefault(t, []).append(v)
    free: list[int] = []
    real: dict[int, int] = {}
    count = 0
    code = np.zeros((len(instrs), 8), dtype=np.int64)
    for t, ins in enumerate(instrs):
        reads = [real[v] for v in ins.ins]
        free += [real[v] for v in ends.get(t, ())]
        writes = []
        for v in ins.outs:
            if v not in real:  # its first write (a carry's later ones keep its register)
                if free:
                    real[v] = free.pop()
                else:
                    real[v], count = count, count + 1
                if v not in last:  # never read: free at once
                    free.append(real[v])
            writes.append(real[v])
        code[t] = [interpreter.CODE[ins.op], *(writes + [0, 0])[:2], *(reads + [0, 0, 0])[:3],
                   ins.k, ins.k2]
    _jumps(code)
    return code, count


def _jumps(code: np.ndarray) -> None:
    """Each loop row's k2: its end row; each end row's: its loop row."""
    loop, end = interpreter.CODE["loop"], interpreter.CODE["end"]
    start = None
    for t in range(len(code)):
        if code[t, 0] == loop:
            start = t
        elif code[t, 0] == end:
            code[start, 7], code[t, 7] = t, start


class TapeKernel:
    """A Program run by the interpreter; the same interface as codegen.compiled.Kernel."""

    tier = "tape"

    def __init__(self, program: Program, title: str, parallel: bool | None = None,
                 tape: Tape | None = None, update=(), rows: int | None = None):
        self.program, self.title, self.update = program, title, tuple(update)
        self.inputs = tuple(n.attr("name") for n in program.inputs)
        self._specs = specs_of(program)
        self._parallel = parallel
        self.timings = {}
        start = time.perf_counter()
        self.tape = tape = tape or Tape(program)
        self.source = tape.listing(title)
        self.timings["tape"] = time.perf_counter() - start
        self._scalars = np.array(tape.scalars)
        self._slot_names = [(slot, name) for (op, name), slot in tape.slots.items()
                            if op == "input"]
        self._dim_slot = tape.slots.get(("dim", tape.dim))
        self._column_index = {name: j for j, name in enumerate(tape.columns)}
        self.chunk_rows = rows or chunk_rows(len(tape.code))  # a batch from here in chunks

    def __call__(self, arguments: dict):
        bind(self.title, self._specs, arguments)
        dims: dict[str, tuple[int, str]] = {}
        values = {spec.name: spec.convert(arguments[spec.name], dims) for spec in self._specs}
        tape = self.tape
        n = dims[tape.dim][0] if tape.dim else 1
        scalars = self._scalars.copy()
        for slot, name in self._slot_names:
            scalars[slot] = values[name]
        if self._dim_slot is not None:
            scalars[self._dim_slot] = n
        columns = np.empty((len(tape.columns), n))
        for name, j in self._column_index.items():
            columns[j] = values[name]
        bases, rows = tape.layout(dims, len(tape.vector_outs))
        stacked = np.empty((rows["input"], n))
        for k, (kind, name, _) in enumerate(tape.stacks):
            if kind == "input":
                stacked[bases[k, 0]:bases[k, 0] + bases[k, 1]] = values[name]
        loops = np.array([[_size(length, dims), reverse] for length, reverse in tape.loops],
                         dtype=np.int64).reshape(-1, 2)
        outs = np.empty((rows["output"], n))
        results = np.empty(len(tape.scalar_outs))
        big = n >= self.chunk_rows  # the chunks (and bits) by size; parallel=False: in turn
        from numba import get_num_threads  # loaded with the interpreter, not before
        module = interpreter.load()
        threads = big and self._parallel is not False and get_num_threads() > 1
        run = module.run_parallel if threads else module.run
        start = time.perf_counter()
        run(tape.code, tape.epilogue, scalars, columns, n, NCHUNKS if big else 1, WIDTH,
            tape.registers, max(tape.nsums, 1), outs, results, stacked, bases, loops,
            rows["kept"])
        self.timings.setdefault("first call", time.perf_counter() - start)
        self._used = run
        found = {label: float(results[j]) for j, label in enumerate(tape.scalar_outs)}
        found.update((label, outs[j]) for j, label in enumerate(tape.vector_outs))
        found.update((label, outs[bases[k, 0]:bases[k, 0] + bases[k, 1]])
                     for k, (kind, label, _) in enumerate(tape.stacks) if kind == "output")
        labels = [label for label, _ in self.program.outputs]
        return found[labels[0]], tuple(found[label] for label in labels[1:])


    @property
    def from_cache(self) -> bool | None:
        """Whether the interpreter's machine code came from Numba's on-disk cache (None
        before the first call)."""
        used = getattr(self, "_used", None)
        return None if used is None else cache_hit(used)


def _size(length, dims: dict) -> int:
    """A loop's length: an int, or a dimension's size in this call."""
    return dims[length][0] if isinstance(length, str) else length


def build_tape(program: Program) -> Tape:
    """The tape for `program`; Unsupported (saying why) if it needs the kernel tier."""
    return Tape(program)


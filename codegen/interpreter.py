"""The tape interpreter: one Numba function, compiled once per machine, that runs any tape.

A tape (codegen/tape.py) is a table of instructions, one row each:
`(opcode, out, out2, a, b, c, k, k2)`: registers written, registers read, and `k`, an index
into the scalar table (constants, scalar inputs, the batch size), the input columns, the batch
sums, the outputs, the loops or the stacks (`k2`: a second one, or a jump target).

A loop (`sd.scan`) is a `loop` row, its step's rows, and an `end` row that jumps back until
the loop has run `loops[k, 0]` steps (last to first if `loops[k, 1]`). A stack is K rows: of a
stacked input (`stacked`), of what a loop keeps per step for the samples of a block (`stack`),
or of the outputs; `bases[k]` is stack k's first row and its number of rows, set per call.

A register is one row of a (registers, width) block: an instruction applies
its operation to `width` samples at once, so the cost of decoding it is shared by all of them
and the inner loops are plain loops over contiguous rows that LLVM vectorises where it can.

`run` executes the batch phase over samples in blocks of `width`, within each of `groups`
contiguous groups that sum into their own row of partial sums (1 group for small batches, a
fixed 16 for large ones, run in order or by `prange` in `run_parallel`: the same bits at any
thread count), adds the rows in order, then executes the epilogue (statements after the batch
sums) once, on one sample's worth of registers.

The interpreter's source is made here: fixed instructions for arithmetic, data movement and
comparisons, then one instruction per function record (symdiff.functions), spelled as generated
kernels spell it (exp, log, log1p, expm1 and tanh from codegen/vecmath.py, as in kernels). It is
written to the kernel cache under the hash of its text, like a kernel, so Numba compiles it once
per machine (and again only when a function record or vecmath.py changes).
"""
from __future__ import annotations

from functools import cache

from symdiff.functions import BUILTINS, FUNCTIONS

from .build import load_module
from .printer import spell, vecmath_import

FIXED = (
    # arithmetic on registers; ..C forms take the constant scalars[k]
    "mul", "add", "sub", "div", "neg", "mulc", "addc", "csub", "cdiv", "pow", "powc",
    "muladd",  # a * b + c
    # data movement: constant or scalar input, batch column, batch sum, outputs
    "fill", "load", "load_sum", "sum", "store", "store_scalar",
    "sincos",  # sin and cos of one register
    # loops (one running at a time): its first and last rows, a register copied, the
    # running step's row of a stacked input or of a kept stack, a register kept in a stack,
    # a kept stack stored as rows of the outputs
    "loop", "end", "copy", "load_step", "load_kept", "keep", "store_stack",
    # comparisons give 1.0 or 0.0; where(a, b, c) picks b where a != 0
    "gt", "ge", "lt", "le", "eq", "ne", "where",
)
PRIMITIVES = tuple(name for name in BUILTINS if not FUNCTIONS[name].composite)
OPCODES = FIXED + PRIMITIVES  # then one instruction per built-in function record (composite
# ones, built-in or from sd.function, are lowered to these)
CODE = {name: k for k, name in enumerate(OPCODES)}


# `run` and `run_parallel`: one text, the groups' loop a range or a prange. Each calls _block
# itself: a function per group and one for the epilogue, each linking _block's machine code
# anew, cost Numba 2 of the 8 s of the interpreter's first compile.
RUN = """@njit({flags}**JIT)
def {name}(
        code, epilogue, scalars, columns, n, groups, width, registers, nsums, outs, results,
        stacked, bases, loops, kept):
    \"\"\"A tape over n samples: groups{how} of blocks of `width` samples, each group
    summing into its own row of partial sums; then the rows added in order, and the epilogue
    run on one sample.\"\"\"
    partial = np.zeros((groups, nsums))
    for g in {loop}(groups):
        lo, hi = g * n // groups, (g + 1) * n // groups
        regs = np.empty((registers, width))
        stack = np.empty((kept, width))  # what loops keep, per block
        for start in range(lo, hi, width):
            _block(code, scalars, columns, start, min(start + width, hi), regs, partial[g],
                   outs, results, stacked, bases, loops, stack)
    totals = np.zeros(nsums)
    for g in range(groups):
        for j in range(nsums):
            totals[j] += partial[g, j]
    # lo and hi as int64, not literals: literal 0 and 1 would compile _block a second time
    _block(epilogue, scalars, columns, np.int64(0), np.int64(1), np.empty((registers, 1)),
           totals, outs, results, stacked, bases, loops, np.empty((kept, 1)))
"""


def source() -> str:
    """The interpreter module's text."""
    branches = []
    for name in PRIMITIVES:
        record = FUNCTIONS[name]
        operands = ["v"] if record.arity == 1 else ["x[i]", "y[i]"]
        branches += [f"    {'if' if not branches else 'elif'} op == {CODE[name]}:  # {name}",
                     "        for i in range(m):"]
        if record.arity == 1:
            branches.append("            v = x[i]")
        branches.append(f"            r[i] = {spell(record, operands, False)}")
    constants = "".join(f"{op.upper()} = {k}\n" for k, op in enumerate(FIXED))
    return (_MODULE.replace("# VECMATH\n", vecmath_import(branches))
            .replace("# CONSTANTS\n", constants).replace("# FUNCTIONS", "\n".join(branches))
            .replace("# RUN", RUN.format(flags="", name="run", how="", loop="range") + "\n"
                     + RUN.format(flags="parallel=True, ", name="run_parallel",
                                  how=", shared among threads", loop="prange")))


@cache  # once per process: making and hashing its text costs ~100 us, more than a small call
def load():
    """The interpreter module, compiled once per machine (Numba's cache beside its file)."""
    return load_module(source())[0]


_MODULE = """\"\"\"symdiff's tape interpreter, generated by codegen/interpreter.py.\"\"\"
import math

import numpy as np
from numba import njit, prange
# VECMATH

JIT = dict(cache=True, error_model="numpy")  # strict IEEE, as in generated kernels
# CONSTANTS


@njit(**JIT)
def _block(code, scalars, columns, lo, hi, regs, sums, outs, results, stacked, bases, loops,
           stack):
    \"\"\"Run every instruction of `code` on samples lo..hi, registers in `regs`.\"\"\"
    m = hi - lo
    index = count = 0  # the running loop's step, and how many steps it has taken
    t = 0
    while t < code.shape[0]:
        op, k = code[t, 0], code[t, 6]
        r, x, y = regs[code[t, 1]], regs[code[t, 3]], regs[code[t, 4]]
        if op == MUL:
            for i in range(m):
                r[i] = x[i] * y[i]
        elif op == ADD:
            for i in range(m):
                r[i] = x[i] + y[i]
        elif op == MULADD:
            z = regs[code[t, 5]]
            for i in range(m):
                r[i] = x[i] * y[i] + z[i]
        elif op == SUB:
            for i in range(m):
                r[i] = x[i] - y[i]
        elif op == MULC:
            v = scalars[k]
            for i in range(m):
                r[i] = x[i] * v
        elif op == NEG:
            for i in range(m):
                r[i] = -x[i]
        elif op == LOAD:
            column = columns[k]
            for i in range(m):
                r[i] = column[lo + i]
        elif op == SINCOS:
            r2 = regs[code[t, 2]]
            for i in range(m):
                v = x[i]
                r[i] = math.sin(v)
                r2[i] = math.cos(v)
        elif op == DIV:
            for i in range(m):
                r[i] = x[i] / y[i]
        elif op == ADDC:
            v = scalars[k]
            for i in range(m):
                r[i] = x[i] + v
        elif op == CSUB:
            v = scalars[k]
            for i in range(m):
                r[i] = v - x[i]
        elif op == CDIV:
            v = scalars[k]
            for i in range(m):
                r[i] = v / x[i]
        elif op == FILL:
            v = scalars[k]
            for i in range(m):
                r[i] = v
        elif op == SUM:
            s = 0.0
            for i in range(m):
                s += x[i]
            sums[k] += s
        elif op == STORE:
            out = outs[k]
            for i in range(m):
                out[lo + i] = x[i]
        elif op == LOAD_SUM:
            for i in range(m):
                r[i] = sums[k]
        elif op == STORE_SCALAR:
            results[k] = x[0]
        elif op == POW:
            for i in range(m):
                r[i] = x[i] ** y[i]
        elif op == POWC:
            v = scalars[k]
            for i in range(m):
                r[i] = x[i] ** v
        elif op == GT:
            for i in range(m):
                r[i] = 1.0 if x[i] > y[i] else 0.0
        elif op == GE:
            for i in range(m):
                r[i] = 1.0 if x[i] >= y[i] else 0.0
        elif op == LT:
            for i in range(m):
                r[i] = 1.0 if x[i] < y[i] else 0.0
        elif op == LE:
            for i in range(m):
                r[i] = 1.0 if x[i] <= y[i] else 0.0
        elif op == EQ:
            for i in range(m):
                r[i] = 1.0 if x[i] == y[i] else 0.0
        elif op == NE:
            for i in range(m):
                r[i] = 1.0 if x[i] != y[i] else 0.0
        elif op == WHERE:
            z = regs[code[t, 5]]
            for i in range(m):
                r[i] = y[i] if x[i] != 0.0 else z[i]
        elif op == COPY:
            for i in range(m):
                r[i] = x[i]
        elif op == LOOP:
            count = 0
            if loops[k, 0] == 0:
                t = code[t, 7]  # its end row: no step to run
            else:
                index = loops[k, 0] - 1 if loops[k, 1] else 0
        elif op == END:
            count += 1
            if count < loops[k, 0]:
                index = loops[k, 0] - 1 - count if loops[k, 1] else count
                t = code[t, 7]  # its loop row; the step's first row is next
        elif op == LOAD_STEP:
            row = stacked[bases[k, 0] + index]
            for i in range(m):
                r[i] = row[lo + i]
        elif op == LOAD_KEPT:
            row = stack[bases[k, 0] + index]
            for i in range(m):
                r[i] = row[i]
        elif op == KEEP:
            row = stack[bases[k, 0] + index]
            for i in range(m):
                row[i] = x[i]
        elif op == STORE_STACK:
            for j in range(bases[k, 1]):
                row, out = stack[bases[k, 0] + j], outs[bases[code[t, 7], 0] + j]
                for i in range(m):
                    out[lo + i] = row[i]
        else:
            _function(op, r, x, y, m)
        t += 1


# the function records' instructions, a function of their own: Numba's compile time grows
# with the square of a function's size, and this half of _block's branches in _block itself
# cost it several seconds (one call per instruction and block costs nothing measurable)
@njit(**JIT)
def _function(op, r, x, y, m):
    \"\"\"r = f(x) or f(x, y) on m samples, for the function record numbered op.\"\"\"
# FUNCTIONS


# RUN
"""

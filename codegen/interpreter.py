"""The tape interpreter: one Numba function, compiled once per machine, that runs any tape.

A tape (codegen/tape.py) is a table of instructions, one row each:
`(opcode, out, out2, a, b, c, k)`: registers written, registers read, and `k`, an index into
the scalar table (constants, scalar inputs, the batch size), the input columns, the batch sums
or the outputs. A register is one row of a (registers, width) block: an instruction applies
its operation to `width` samples at once, so the cost of decoding it is shared by all of them
and the inner loops are plain loops over contiguous rows that LLVM vectorises where it can.

`run` executes the batch phase over samples in blocks of `width`, within each of `groups`
contiguous groups that sum into their own row of partial sums (1 group for small batches, a
fixed 16 for large ones, run in order or by `prange` in `run_parallel`: the same bits at any
thread count), adds the rows in order, then executes the epilogue (statements after the batch
sums) once, on one sample's worth of registers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OPCODES = (
    # arithmetic on registers; ..C forms take the constant scalars[k]
    "mul", "add", "sub", "div", "neg", "mulc", "addc", "csub", "cdiv", "pow", "powc",
    "muladd",  # a * b + c
    # data movement: constant or scalar input, batch column, batch sum, outputs
    "fill", "load", "load_sum", "sum", "store", "store_scalar",
    # elementary functions
    "exp", "log", "sqrt", "sin", "cos", "sincos", "tan", "sinh", "cosh", "tanh", "asin",
    "acos", "atan", "atan2", "abs", "erf", "log1p", "expm1",
    "sigmoid", "softplus", "relu", "max", "min",
    # comparisons give 1.0 or 0.0; where(a, b, c) picks b where a != 0
    "gt", "ge", "lt", "le", "eq", "ne", "where",
)
CODE = {name: k for k, name in enumerate(OPCODES)}
(MUL, ADD, SUB, DIV, NEG, MULC, ADDC, CSUB, CDIV, POW, POWC, MULADD,
 FILL, LOAD, LOAD_SUM, SUM, STORE, STORE_SCALAR,
 EXP, LOG, SQRT, SIN, COS, SINCOS, TAN, SINH, COSH, TANH, ASIN,
 ACOS, ATAN, ATAN2, ABS, ERF, LOG1P, EXPM1,
 SIGMOID, SOFTPLUS, RELU, MAX, MIN,
 GT, GE, LT, LE, EQ, NE, WHERE) = range(len(OPCODES))

JIT = dict(cache=True, error_model="numpy")  # strict IEEE, as in generated kernels


@njit(**JIT)
def _block(code, scalars, columns, lo, hi, regs, sums, outs, results):
    """Run every instruction of `code` on samples lo..hi, registers in `regs`."""
    m = hi - lo
    for t in range(code.shape[0]):
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
        elif op == SIN:
            for i in range(m):
                r[i] = math.sin(x[i])
        elif op == COS:
            for i in range(m):
                r[i] = math.cos(x[i])
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
        elif op == EXP:
            for i in range(m):
                r[i] = math.exp(x[i])
        elif op == LOG:
            for i in range(m):
                r[i] = math.log(x[i])
        elif op == SQRT:
            for i in range(m):
                r[i] = math.sqrt(x[i])
        elif op == POW:
            for i in range(m):
                r[i] = x[i] ** y[i]
        elif op == POWC:
            v = scalars[k]
            for i in range(m):
                r[i] = x[i] ** v
        elif op == TAN:
            for i in range(m):
                r[i] = math.tan(x[i])
        elif op == SINH:
            for i in range(m):
                r[i] = math.sinh(x[i])
        elif op == COSH:
            for i in range(m):
                r[i] = math.cosh(x[i])
        elif op == TANH:
            for i in range(m):
                r[i] = math.tanh(x[i])
        elif op == ASIN:
            for i in range(m):
                r[i] = math.asin(x[i])
        elif op == ACOS:
            for i in range(m):
                r[i] = math.acos(x[i])
        elif op == ATAN:
            for i in range(m):
                r[i] = math.atan(x[i])
        elif op == ATAN2:
            for i in range(m):
                r[i] = math.atan2(x[i], y[i])
        elif op == ABS:
            for i in range(m):
                r[i] = abs(x[i])
        elif op == ERF:
            for i in range(m):
                r[i] = math.erf(x[i])
        elif op == LOG1P:
            for i in range(m):
                r[i] = math.log1p(x[i])
        elif op == EXPM1:
            for i in range(m):
                r[i] = math.expm1(x[i])
        elif op == SIGMOID:  # through exp(-|x|): never overflows
            for i in range(m):
                v = x[i]
                e = math.exp(-abs(v))
                r[i] = (1.0 if v >= 0.0 else e) / (1.0 + e)
        elif op == SOFTPLUS:
            for i in range(m):
                v = x[i]
                r[i] = max(v, 0.0) + math.log1p(math.exp(-abs(v)))
        elif op == RELU:
            for i in range(m):
                r[i] = np.maximum(x[i], 0.0)
        elif op == MAX:
            for i in range(m):
                r[i] = np.maximum(x[i], y[i])
        elif op == MIN:
            for i in range(m):
                r[i] = np.minimum(x[i], y[i])
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


@njit(**JIT)
def _group(code, scalars, columns, lo, hi, width, registers, sums, outs, results):
    """The batch phase on samples lo..hi, in blocks of `width`."""
    regs = np.empty((registers, width))
    for start in range(lo, hi, width):
        _block(code, scalars, columns, start, min(start + width, hi), regs, sums, outs, results)


@njit(**JIT)
def _finish(epilogue, scalars, columns, partial, registers, outs, results):
    """Add the groups' partial sums in order, then run the epilogue on one sample."""
    totals = np.zeros(partial.shape[1])
    for g in range(partial.shape[0]):
        for j in range(partial.shape[1]):
            totals[j] += partial[g, j]
    regs = np.empty((registers, 1))
    _block(epilogue, scalars, columns, 0, 1, regs, totals, outs, results)


@njit(**JIT)
def run(code, epilogue, scalars, columns, n, groups, width, registers, nsums, outs, results):
    """Run a tape over n samples: the batch phase in `groups` groups, then the epilogue."""
    partial = np.zeros((groups, nsums))
    for g in range(groups):
        _group(code, scalars, columns, g * n // groups, (g + 1) * n // groups, width,
               registers, partial[g], outs, results)
    _finish(epilogue, scalars, columns, partial, registers, outs, results)


@njit(parallel=True, **JIT)
def run_parallel(code, epilogue, scalars, columns, n, groups, width, registers, nsums, outs,
                 results):
    """`run` with the groups shared among threads; the same bits as `run`."""
    partial = np.zeros((groups, nsums))
    for g in prange(groups):
        _group(code, scalars, columns, g * n // groups, (g + 1) * n // groups, width,
               registers, partial[g], outs, results)
    _finish(epilogue, scalars, columns, partial, registers, outs, results)

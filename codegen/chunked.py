"""Calls with Dask arrays: a compiled model run chunk by chunk on Dask's current scheduler.

Input: a `Compiled` and arguments whose batch inputs are Dask arrays chunked along the batch
axis (parameters NumPy). A scalar loss is split (`symdiff.split`) into the sum S over the batch
and an epilogue: each chunk's partial S and dS/dw are one task through a compiled kernel, the
partials come back to this process and are added pairwise in chunk order (a tree whose shape
depends only on the number of chunks), and the epilogue finishes the totals once. So the
result's bits depend on the chunking alone, not on the number of workers or the order tasks
finish in. Inside a task the kernel runs over blocks of rows (`block_rows`), their partials
added pairwise in order the same way, so that its intermediates stay small (see BLOCK_BYTES).
Output: what the local call returns. A per-example model (reduce=None) gives Dask arrays of
per-example values and gradients instead. Whatever scheduler Dask would use runs the tasks:
the threaded one by default, a `distributed.Client` when one is active.
"""
from __future__ import annotations

import math
import threading

import dask
import dask.array as da
import numba
import numpy as np

from symdiff.errors import ArgumentError, SymdiffError
from symdiff.interpret import run as interpret
from symdiff.split import split_loss

from .inputs import bind
from .compiled import _check_finite, make_kernel

_lock = threading.Lock()
# The largest intermediate of one kernel call in a task: a (rows, width) array under 64 KiB is
# served from glibc's heap and stays in the cache. Larger ones are fresh mmaps, zeroed page by
# page on every call: glibc's mmap threshold is 128 KiB and stays there once
# MALLOC_TRIM_THRESHOLD_ is set, as Dask's nanny sets it for every worker. A 30-32-10 MLP's
# gradient over 250,000 rows took 104 ms in blocks of 256 rows (64 KiB) either way, 265 ms in
# blocks of 512 to 2,048 with Dask's setting, 330 ms in one call.
BLOCK_BYTES = 64 * 1024


def value_and_grad(compiled, arguments: dict, gradients: bool = True):
    """(value, {w: gradient}) of `compiled` over Dask `arguments`; value only if not
    `gradients`. Dask arrays for a per-example model."""
    batched, params, chunks = _arguments(compiled, arguments)
    if compiled.program.output("value").shape != ():
        return _per_example(compiled, batched, params, chunks, gradients)
    split = _kernels(compiled)[0]
    shared, names = _shared(compiled, params), list(batched)
    parts = [dask.delayed(_partial)(*shared, gradients, k, start, stop, names, *blocks)
             for k, (start, stop, blocks) in enumerate(_blocks(batched, chunks))]
    total = _pairwise(list(dask.compute(*parts)))
    n = float(chunks[-1][1]) if chunks else 0.0
    finished = list(interpret(split.epilogue, {split.total: total[0], split.count: n,
                                               **params}).values())
    value = _scalar(finished[0])
    if not gradients:
        return value, None
    grads = {w: _scalar(d + finished[1] * g)
             for w, d, g in zip(compiled.wrt, finished[2:], total[1:])}
    if compiled.check_finite:
        _check_finite(compiled.title, [("value", value)] + [(f"the gradient by {w}", g)
                                                            for w, g in grads.items()])
    return value, grads


def _arguments(compiled, arguments: dict):
    """({batch input: Dask array of whole rows}, {other input: value}, [(start, stop)] per
    chunk), or a clear error."""
    bind(compiled.title, compiled._grad._specs, arguments)
    specs = {n.attr("name"): n for n in compiled.program.inputs}
    batch = {n.shape[0] for n in specs.values() if n.shape and isinstance(n.shape[0], str)}
    batched, params = {}, {}
    for name, value in arguments.items():
        lazy = isinstance(value, da.Array)
        if specs[name].shape[:1] and specs[name].shape[0] in batch:
            batched[name] = value if lazy else da.from_array(np.asarray(value))
        elif lazy:
            raise ArgumentError(f"{name} is a Dask array, but only batch inputs (axis 0 over "
                                f"{', '.join(sorted(batch)) or 'a batch'}) may be: pass "
                                f"{name} as a NumPy array")
        else:
            params[name] = value
    if not batched:
        raise ArgumentError(f"{compiled.title}: Dask arrays need a model with batch inputs")
    first = next(iter(batched.values()))
    lengths = {name: a.shape[0] for name, a in batched.items()}
    if len(set(lengths.values())) > 1:
        raise ArgumentError(f"the batch inputs have different lengths: "
                            f"{', '.join(f'{k} {v}' for k, v in lengths.items())}")
    rows = first.chunks[0]
    batched = {name: a.rechunk((rows,) + tuple((s,) for s in a.shape[1:]))
               for name, a in batched.items()}
    stops = np.cumsum(rows).tolist()
    return batched, params, [(stop - size, stop) for size, stop in zip(rows, stops)]


def _shared(compiled, params: dict):
    """The model and the parameters as one graph key each: sent to a worker once, not with
    every task (the model travels as its Programs; see codegen/pickling.py)."""
    return dask.delayed(compiled, traverse=False), dask.delayed(params, traverse=False)


def _blocks(batched: dict, chunks):
    """(start, stop, [one block per batch input]) per chunk, in order."""
    delayed = [a.to_delayed().ravel() for a in batched.values()]
    for k, (start, stop) in enumerate(chunks):
        yield start, stop, [d[k] for d in delayed]


def _pairwise(parts: list) -> tuple:
    """The sum of `parts` (tuples, added entry by entry), pairwise in order:
    ((p0 + p1) + (p2 + p3)) + p4."""
    while len(parts) > 1:
        pairs = [tuple(x + y for x, y in zip(a, b)) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + parts[len(pairs) * 2:]
    return parts[0]


def _kernels(compiled):
    """(Split, {gradients: kernel}, lock, rows per block) of `compiled`, made once per object."""
    with _lock:
        made = compiled.__dict__.get("_chunk_kernels")
        if made is None:
            split = split_loss(compiled.program, compiled.wrt)
            made = compiled._chunk_kernels = (split, {}, threading.Lock(),
                                              block_rows(split.grad))
    return made


def block_rows(program) -> int:
    """Rows per kernel call: a power of two that keeps every per-row intermediate of `program`
    (a node whose first axis is the batch, the others known) under BLOCK_BYTES, and at
    least 16."""
    widest = max([math.prod(s.node.shape[1:]) * np.dtype(s.node.dtype).itemsize
                  for s in program.stmts if s.node.shape and isinstance(s.node.shape[0], str)
                  and all(isinstance(d, int) for d in s.node.shape[1:])] + [1])
    return max(16, 1 << (BLOCK_BYTES // widest).bit_length() - 1)


def _kernel(compiled, gradients: bool):
    """The chunks' kernel, serial: Dask's workers are the parallelism."""
    split, kernels, lock, _ = _kernels(compiled)
    with lock:
        if gradients not in kernels:
            kernels[gradients] = make_kernel(split.grad if gradients else split.value,
                                             compiled.title, False, compiled._tier)
    return kernels[gradients]


def _partial(compiled, params: dict, gradients: bool, k: int, start: int, stop: int, names,
             *blocks):
    """One chunk's partial sums: (S, dS/dw for w in wrt), or (S,), over its blocks of rows
    (one block, empty, for an empty chunk: the kernel says what it says of that). With
    check_finite, a non-finite partial names its block's rows."""
    kernel, parts, size = _kernel(compiled, gradients), [], _kernels(compiled)[3]
    labels = ["value"] + [f"the gradient by {w}" for w in compiled.wrt]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # Dask's workers are the parallelism
    try:
        for lo in range(0, max(stop - start, 1), size):
            rows = slice(lo, lo + size)
            arguments = {**params, **{name: block[rows] for name, block in zip(names, blocks)}}
            part = _in_chunk(lambda: _block(compiled, kernel, arguments, labels),
                             k, start + lo, min(start + lo + size, stop))
            parts.append(part)
    finally:
        numba.set_num_threads(threads)
    return _pairwise(parts)


def _block(compiled, kernel, arguments: dict, labels: list) -> tuple:
    value, rest = kernel(arguments)
    part = (value,) + tuple(rest)
    if compiled.check_finite:
        _check_finite(compiled.title, list(zip(labels, part)))
    return part


def _in_chunk(call, k: int, start: int, stop: int):
    """call(), its SymdiffError naming the chunk (a local call's error, and where)."""
    try:
        return call()
    except SymdiffError as e:
        raise type(e)(f"{e} [in chunk {k}, rows {start}:{stop}]") from None


def _per_example(compiled, batched: dict, params: dict, chunks, gradients: bool):
    """Dask arrays of per-example values and gradients, one task per chunk."""
    values, grads = [], {w: [] for w in compiled.wrt}
    shapes = {w: np.shape(params[w]) for w in compiled.wrt}
    dtype = compiled.program.output("value").dtype
    shared, names = _shared(compiled, params), list(batched)
    for k, (start, stop, blocks) in enumerate(_blocks(batched, chunks)):
        out = dask.delayed(_per_example_chunk, nout=2)(*shared, gradients, k, start, stop,
                                                       names, *blocks)
        values.append(da.from_delayed(out[0], (stop - start,), dtype=dtype))
        if gradients:
            for w in compiled.wrt:
                grads[w].append(da.from_delayed(out[1][w], (stop - start,) + shapes[w],
                                                dtype=dtype))
    value = da.concatenate(values)
    return value, {w: da.concatenate(g) for w, g in grads.items()} if gradients else None


def _per_example_chunk(compiled, params: dict, gradients: bool, k: int, start: int, stop: int,
                       names, *blocks):
    arguments = {**params, **dict(zip(names, blocks))}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        if gradients:
            return _in_chunk(lambda: compiled.value_and_grad(**arguments), k, start, stop)
        return _in_chunk(lambda: compiled(**arguments), k, start, stop), None
    finally:
        numba.set_num_threads(threads)


def _scalar(value):
    return float(value) if np.ndim(value) == 0 else value

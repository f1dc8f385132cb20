"""Calls with Dask arrays: a compiled model run chunk by chunk on Dask's current scheduler.

Input: a `Compiled` and arguments whose batch inputs are Dask arrays chunked along the batch
axis (parameters NumPy). A scalar loss is split (`symdiff.split`) into the sum S over the batch
and an epilogue: each chunk's partial S and dS/dw come from a compiled kernel, in a task of
their own, or, for chunks persisted on a cluster, in one task per worker thread over the
chunks that worker holds. The partials come back to this process and are added pairwise in
chunk order (a tree whose shape depends only on the number of chunks), and the epilogue
finishes the totals once. So the result's bits depend on the chunking alone, not on the
number of workers, which worker computed a chunk, or the order tasks finish in. Inside a
task the kernel runs over blocks of rows (codegen/blocks.py), their partials added pairwise
in order too: with chunks of 2^k blocks each, the additions are those of a local call in
blocks, and so are the bits.
Output: what the local call returns. A per-example model (reduce=None) gives Dask arrays of
per-example values and gradients instead. Whatever scheduler Dask would use runs the tasks:
the threaded one by default, a `distributed.Client` when one is active.
"""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from symdiff.errors import ArgumentError, SymdiffError

from .blocks import (block_count, blocks_of, converted, finish, pairwise, plan, program,
                     run, tiles)
from .build import import_numba
from .compiled import _check_finite
from .inputs import bind


def value_and_grad(compiled, arguments: dict, gradients: bool = True):
    """(value, {w: gradient}) of `compiled` over Dask `arguments`; value only if not
    `gradients`. Dask arrays for a per-example model."""
    batched, params, chunks = _arguments(compiled, arguments)
    if compiled.program.output("value").shape != ():
        return _per_example(compiled, batched, params, chunks, gradients)
    split = plan(compiled, required=True).split
    client = _client()
    held = _held(client, batched) if client else None  # persisted chunks
    parts = _on_workers(client, compiled, params, gradients, chunks, batched, held) \
        if held else None
    if parts is None:  # one graph: the chunks' own tasks, then a task per chunk
        parts = _in_graph(compiled, params, gradients, chunks, batched)
    total = pairwise(list(parts))
    n = chunks[-1][1] if chunks else 0
    return finish(compiled, split, total, n, params, gradients)


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
    taken = {spec.name: spec for spec in compiled._grad._specs}
    dims: dict = {}  # the parameters as the kernels take them: the epilogue's too
    params = {name: taken[name].convert(value, dims) for name, value in params.items()}
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


def _in_graph(compiled, params: dict, gradients: bool, chunks, batched: dict) -> tuple:
    """Every chunk's partials, a delayed task per chunk, computed on Dask's scheduler."""
    shared, names = _shared(compiled, params), list(batched)
    return dask.compute(*[dask.delayed(_partial)(*shared, gradients, k, start, stop, names,
                                                 *blocks)
                          for k, (start, stop, blocks) in enumerate(_blocks(batched, chunks))])


def _client():
    """The distributed Client that Dask's compute would run on now, or None (the threaded or
    synchronous scheduler)."""
    client = getattr(dask.base.get_scheduler(), "__self__", None)  # a Client's bound `get`
    if client is None:
        return None
    from distributed import Client
    return client if isinstance(client, Client) else None


def _held(client, batched: dict):
    """[[the future of each batch input's chunk k] for each chunk k] when every chunk is
    persisted on `client`'s cluster (`client.persist`), else None."""
    from distributed import futures_of
    columns = []
    for array in batched.values():
        futures = {future.key: future for future in futures_of(array)
                   if future.client is client}
        keys = list(dask.core.flatten(array.__dask_keys__()))
        if not all(key in futures for key in keys):
            return None
        columns.append([futures[key] for key in keys])
    return [list(chunk) for chunk in zip(*columns)]


def _on_workers(client, compiled, params: dict, gradients: bool, chunks, batched: dict,
                held) -> list | None:
    """Every chunk's partials from persisted chunks: a task per worker thread over a run of
    the chunks that worker holds (of the batch input with the widest rows), their partials
    returned in chunk order; a chunk whose other inputs sit elsewhere goes into a second task
    of its worker, which fetches them while the first computes. Why not a task per chunk: on
    a 2-worker LocalCluster, 10 trivial tasks took Dask 30 ms and 2 took 12 ms, a cost per
    call that a second worker does not share. A task may run elsewhere if its worker is
    lost, and Dask recomputes lost chunks, as it does for a task per chunk. None if a chunk
    is held nowhere (it failed, or its worker was lost since)."""
    from distributed import wait
    names, arrays = list(batched), list(batched.values())
    widest = max(range(len(arrays)), key=lambda i: arrays[i].dtype.itemsize
                 * int(np.prod(arrays[i].shape[1:])))
    futures = [future for chunk in held for future in chunk]
    with client.as_current():  # `wait` asks the current client
        wait(futures)  # placed once computed
    holders = client.who_has(futures)
    if not all(holders.get(chunk[widest].key) for chunk in held):
        return None  # a chunk failed or was lost: the graph path raises or recomputes it
    threads = client.nthreads()
    runs: dict = {}  # (worker, whether it holds all the chunk's inputs) -> the chunks, in order
    for k, chunk in enumerate(held):
        worker = min(sorted(holders[chunk[widest].key]),
                     key=lambda w: len(runs.get((w, True), ())) + len(runs.get((w, False), ())))
        local = all(worker in holders.get(future.key, ()) for future in chunk)
        runs.setdefault((worker, local), []).append(k)
    tasks = []
    for (worker, _), ks in sorted(runs.items(), key=lambda run: not run[0][1]):
        count = min(threads.get(worker, 1), len(ks))
        for group in (ks[len(ks) * i // count:len(ks) * (i + 1) // count] for i in range(count)):
            task = client.submit(_partials, compiled, params, gradients,
                                 [(k, *chunks[k]) for k in group], names,
                                 *[future for k in group for future in held[k]],
                                 workers=[worker], allow_other_workers=True, pure=False)
            tasks.append((group, task))
    parts = [None] * len(chunks)
    for (group, _), results in zip(tasks, client.gather([task for _, task in tasks])):
        for k, part in zip(group, results):
            parts[k] = part
    return parts


def _blocks(batched: dict, chunks):
    """(start, stop, [one block per batch input]) per chunk, in order."""
    delayed = [a.to_delayed().ravel() for a in batched.values()]
    for k, (start, stop) in enumerate(chunks):
        yield start, stop, [d[k] for d in delayed]


def _partial(compiled, params: dict, gradients: bool, k: int, start: int, stop: int, names,
             *blocks) -> tuple:
    """One chunk's partial sums, (S, dS/dw for w in wrt) or (S,), added pairwise over its
    blocks of rows: in one call of the blocks' compiled driver once that is ready in this
    process. With check_finite, a non-finite partial names its block's rows: a non-finite
    block makes the chunk's sum non-finite too (NaN stays, inf only cancels into NaN), and
    then the blocks run again from Python, one by one, to find it."""
    p = plan(compiled, required=True)
    kernel = p.kernel(gradients)
    labels = ["value"] + [f"the gradient by {w}" for w in compiled.wrt]
    arguments = _in_chunk(lambda: converted(kernel, {**params, **dict(zip(names, blocks))}),
                          k, start, stop)
    drive = p.driver(kernel)
    if drive is not None:
        count = block_count(p.rows, stop - start)
        try:
            (total,) = drive(arguments, p.rows, stop - start,
                             program(tuple(tiles(0, count, count)), count), 1)
        except Exception:  # a block the kernel refuses: the Python path says why
            total = None
        if total is not None and (not compiled.check_finite
                                  or all(np.all(np.isfinite(x)) for x in total)):
            return total
    parts = []
    for lo, hi, block in blocks_of(arguments, names, p.rows, stop - start):
        part = _in_chunk(lambda: run(kernel, block), k, start + lo, start + hi)
        if compiled.check_finite:
            _in_chunk(lambda: _check_finite(compiled.title, list(zip(labels, part))),
                      k, start + lo, start + hi)
        parts.append(part)
    return pairwise(parts)


def _partials(compiled, params: dict, gradients: bool, spans, names, *blocks) -> list:
    """[_partial of each chunk] for spans [(k, start, stop)], `blocks` holding each chunk's
    block of every batch input in turn."""
    m = len(names)
    return [_partial(compiled, params, gradients, k, start, stop, names, *blocks[i * m:i * m + m])
            for i, (k, start, stop) in enumerate(spans)]


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
    numba = import_numba()
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        if gradients:
            return _in_chunk(lambda: compiled.value_and_grad(**arguments), k, start, stop)
        return _in_chunk(lambda: compiled(**arguments), k, start, stop), None
    finally:
        numba.set_num_threads(threads)

"""Large batches in blocks of rows: a scalar loss's batch sum computed block by block.

Input: a `Compiled` whose value is one sum (or mean) over the batch of per-sample terms plus
anything of the parameters (`symdiff.split`), and the arguments of one call. The kernel of
the sum S and its gradients runs over blocks of `block_rows` rows; the blocks' partials are
added pairwise in block order, and the epilogue (the 1/n, a penalty, the chain rule through
them) finishes the totals once. Output: what `value_and_grad` returns. A private step's blocks
(`private`) sum each example's gradient clipped to norm C instead, `jvp`'s the derivative
of S along the tangents, and `hvp`'s the gradients' derivatives along them too.

Why: one kernel call over the whole batch writes every intermediate as an (n, width) array,
which for large n streams through memory and is paged in anew on each call; a block's stay in
the cache, as do the rows of the batch inputs, which the kernel's passes read again (X in
X @ w, then in X.T @ d). A local call runs in blocks once the arrays its one-call kernel
allocates would pass LARGE_BYTES (the module's ROW_BYTES times n), or those and its batch
inputs would pass STREAM_BYTES, its blocks on Numba's number of threads; a Dask chunk runs in
blocks always (codegen/chunked.py). Blocks depend on the number of rows alone, and the partials
are added in block order whichever thread computed them, so the bits do not depend on the
threads.
"""
from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from symdiff import tensors as T
from symdiff.autodiff import gradients, schedule
from symdiff.errors import DifferentiationError
from symdiff.forward import jvp as forward
from symdiff.ir import fresh
from symdiff.program import Program
from symdiff.numpy_eval import run as interpret
from symdiff.split import split_loss

from .build import import_numba
from .compiled import _check_finite, forward_tier, make_kernel
from .driver import MERGE, TILE, Driver
from .kernel import _LOADING, Kernel
from .emit import row_bytes
from .inputs import bind

# The largest intermediate of one kernel call: a (rows, width) array under 64 KiB is served
# from glibc's heap and stays in the cache. Larger ones are fresh mmaps, zeroed page by page
# on every call: glibc's mmap threshold is 128 KiB and stays there once MALLOC_TRIM_THRESHOLD_
# is set, as Dask's nanny sets it for every worker. A 30-32-10 MLP's gradient over 250,000
# rows took 104 ms in blocks of 256 rows (64 KiB) either way, 265 ms in blocks of 512 to
# 2,048 with Dask's setting, 330 ms in one call.
BLOCK_BYTES = 64 * 1024
LARGE_BYTES = 16 * 2**20  # a local call runs in blocks from here (beyond a core's caches)
# Allocated arrays and batch inputs together: blocks from here, past a large last-level cache
# (32 MiB on the machine measured). Logistic regression over 30 features (264 bytes a row),
# one call's time over blocks': 60,000 rows 0.58, 130,000 0.92, 300,000 1.17, 10^6 1.13 at one
# thread; 130,000 1.12, 300,000 1.39, 10^6 1.93 at two (with OPENBLAS_NUM_THREADS=1).
STREAM_BYTES = 32 * 2**20

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}  # threads -> the pool kept for the process
if hasattr(os, "register_at_fork"):  # a forked child has none of the pools' threads
    os.register_at_fork(after_in_child=_pools.clear)


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of `threads` threads, started once (starting threads per call cost ~0.3 ms)."""
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="symdiff blocks")
        return _pools[threads]


class Plan:
    """How `compiled` runs in blocks: its split, its kernels, the rows per block, and the
    batch inputs' names."""

    def __init__(self, compiled):
        self.split = split_loss(compiled.program, compiled.wrt)
        self.rows = block_rows(self.split.grad)
        inputs = compiled.program.inputs
        self.batch = [n.attr("name") for n in inputs if n.shape and isinstance(n.shape[0], str)]
        self.dims = {n.shape[0] for n in inputs if n.shape and isinstance(n.shape[0], str)}
        self.kernels = {}  # what runs the blocks: by gradients (True/False), "jvp", "hvp", ...
        self.drivers = {}  # kernel -> its compiled driver, None until it is ready (or if none)
        self.driver_errors = {}  # kernel -> what its driver's compile raised
        self._driver_threads = []
        self._programs = {}  # the epilogue's Programs (`epilogue_hvp`)
        self._lock, self._locks = threading.Lock(), {}  # a lock per thing built once
        self._compiled = compiled

    def _once(self, built: dict, key, make):
        """built[key], made by make() on first use; a thread making one thing does not wait
        for another's compile of another."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in built:
                built[key] = make()
        return built[key]

    def kernel(self, gradients: bool):
        """The kernel of S and its gradients (or of S alone), serial and each block in one
        chunk (chunks from one row more than a block has): blocks are the parallelism."""
        c = self._compiled
        return self._once(self.kernels, gradients, lambda: make_kernel(
            self.split.grad if gradients else self.split.value, c.title, False, c._tier,
            rows=self.rows + 1))

    def jvp_kernel(self):
        """The kernel of S and of its derivative along the tangents of the parameters (forward
        mode; the tangents' inputs named as in the model's own `jvp`)."""
        return self._once(self.kernels, "jvp", lambda: self._forward_kernel(self.split.value))

    def hvp_kernel(self):
        """The kernel of S, its derivative along the tangents, its gradients and theirs
        (forward over reverse): per block S, Ṡ, dS/dw..., then (d²S/dw²) v...."""
        return self._once(self.kernels, "hvp",
                          lambda: self._forward_kernel(self.split.grad, second_order=True))

    def _forward_kernel(self, program, second_order: bool = False):
        """The kernel of `program`'s S and Ṡ, and with `second_order` of its gradients and
        theirs."""
        c = self._compiled
        inputs = {n.attr("name"): T.Tensor(n) for n in program.inputs}
        tangents = {w: T.tensor(name, inputs[w].shape, inputs[w].dtype)
                    for w, name in c._tangents.items()}
        directions = {inputs[w]: t for w, t in tangents.items()}
        S = T.Tensor(program.output("value"))
        outputs = [("value", S), ("jvp", forward(S, directions))]
        if second_order:
            grads = list(zip(c.wrt, gradients(program)))
            outputs += [(f"grad:{w}", g) for w, g in grads]
            outputs += [(f"hvp:{w}", forward(g, directions)) for w, g in grads]
        forward_program = schedule([(label, t.node) for label, t in outputs],
                                   inputs=list(inputs.values()) + list(tangents.values()))
        return make_kernel(forward_program, c.title, False,
                           forward_tier(forward_program, c._tier), rows=self.rows + 1)

    def epilogue_hvp(self) -> tuple[Program, str]:
        """(the Program of the epilogue's dL/dS and of the derivatives of dL/dS and dL/dw
        along Ṡ and the tangents, the name of Ṡ's input), built once."""
        def make():
            c, e = self._compiled, self.split.epilogue
            inputs = {n.attr("name"): T.Tensor(n) for n in e.inputs}
            taken = {n.attr("name") for n in c.program.inputs} | set(inputs)
            S_dot = T.scalar(fresh(f"{self.split.total}_dot", taken | set(c._tangents.values())))
            directions = {inputs[self.split.total]: S_dot}
            directions.update({inputs[w]: T.tensor(name, inputs[w].shape, inputs[w].dtype)
                               for w, name in c._tangents.items()})
            dL = gradients(e)  # dL/dS, then dL/dw in wrt order
            program = schedule(
                [("dL/dS", dL[0].node)]
                + [(f"d:{k}", forward(g, directions).node) for k, g in enumerate(dL)],
                inputs=list(inputs.values()) + list(directions.values()))
            return program, S_dot.node.attr("name")
        return self._once(self._programs, "epilogue hvp", make)

    def driver(self, kernel):
        """The compiled driver of `kernel`'s blocks (codegen/driver.py), or None: its compile
        starts on a thread at the first ask, and the blocks run from Python meanwhile, with the
        same bits. A kernel of the tape tier, or whose outputs the driver cannot hold, has
        none."""
        with self._lock:
            if kernel in self.drivers:
                return self.drivers[kernel]
            self.drivers[kernel] = None
        if isinstance(kernel, Kernel) and Driver.possible(kernel):
            driver = Driver(kernel, self.batch)

            def compile_driver():
                try:
                    kernel.wait()  # the driver's module imports the kernel's
                    driver.load()
                    self.drivers[kernel] = driver
                except Exception as e:  # kept for a look; the blocks run from Python
                    self.driver_errors[kernel] = e
                finally:
                    _LOADING.discard(threading.current_thread())
            # not a daemon, and waited for before a fork, as a kernel's background load is
            thread = threading.Thread(target=compile_driver, name="symdiff blocks driver")
            _LOADING.add(thread)
            self._driver_threads.append(thread)
            thread.start()
        return None

    def wait_drivers(self) -> None:
        """Block until the drivers compiling are in place (or have failed)."""
        for thread in list(self._driver_threads):
            thread.join()

    def private_kernel(self):
        """The kernel of S and of the sums of each example's gradient clipped to norm C
        (symdiff.clipping, every example weighing 1), in the blocks of S's own kernel, so
        that the loss adds up as value_and_grad's does."""
        c = self._compiled
        return self._once(self.kernels, "private", lambda: Kernel(
            c._programs["dp blocks"](), c.title, False, rows=self.rows + 1))


def plan(compiled, required: bool = False) -> Plan | None:
    """The Plan of `compiled`, made once per object; None if its loss does not split (or,
    if `required`, the DifferentiationError that says why)."""
    with _lock:
        if "_blocks" not in compiled.__dict__:
            try:
                compiled._blocks = Plan(compiled)
            except DifferentiationError as e:
                compiled._blocks = e
    if isinstance(compiled._blocks, DifferentiationError):
        if required:
            raise compiled._blocks
        return None
    return compiled._blocks


def block_rows(program) -> int:
    """Rows per kernel call: a power of two that keeps every per-row intermediate of
    `program` (a node whose first axis is the batch, the others known) under BLOCK_BYTES, and
    at least 16."""
    widest = max([row_bytes(s.node) for s in program.stmts] + [1])
    return max(16, 1 << (BLOCK_BYTES // widest).bit_length() - 1)


def pairwise(parts: list) -> tuple:
    """The sum of `parts` (tuples, added entry by entry), pairwise in order:
    ((p0 + p1) + (p2 + p3)) + p4."""
    return node(len(parts), {(k, k + 1): part for k, part in enumerate(parts)})


def node(count: int, known: dict, first: int = 0, size: int = 0) -> tuple:
    """The sum of parts first..first + size (a power of two, the whole tree by default) in
    the pairwise tree over `count` parts, from `known` ({(first, end): the sum of parts
    first..end}), which holds single parts or larger nodes (`tiles`) that tile the span.
    The tree halves aligned powers of two, so a node's sum depends on its span alone, and
    a thread can add up the parts of its own run before the runs meet."""
    size = size or 1 << (count - 1).bit_length()
    end = min(first + size, count)
    if (first, end) in known:
        return known[first, end]
    half = size // 2
    left = node(count, known, first, half)
    if first + half >= count:  # a last odd node is carried up as it is
        return left
    return tuple(x + y for x, y in zip(left, node(count, known, first + half, half)))


def additions(count: int, first: int, size: int, program: list) -> None:
    """Append to `program` the driver's operations (codegen/driver.py) that compute
    node(count, {single parts}, first, size): its blocks in order, and a MERGE wherever `node`
    adds a node's halves."""
    if size == 1:
        program.append(first)
        return
    half = size // 2
    additions(count, first, half, program)
    if first + half < count:  # else a last odd node is carried up as it is
        additions(count, first + half, half, program)
        program.append(MERGE)


@functools.lru_cache(maxsize=256)  # a thread's spans repeat at every call of one size
def program(spans: tuple[tuple[int, int], ...], count: int) -> np.ndarray:
    """The driver's program that computes the nodes (first, size) of `spans` in turn."""
    operations = []
    for first, size in spans:
        additions(count, first, size, operations)
        operations.append(TILE)
    return np.array(operations, dtype=np.int64)  # shared by the calls: never written


def tiles(first: int, end: int, count: int) -> list[tuple[int, int]]:
    """The largest nodes of the pairwise tree over `count` parts that tile parts first..end,
    as (first, size)."""
    spans = []
    while first < end:
        size = first & -first or 1 << (count - 1).bit_length()
        while min(first + size, count) > end:
            size //= 2
        spans.append((first, size))
        first = min(first + size, count)
    return spans


def blocks_of(arguments: dict, batch, rows: int, n: int) -> list[tuple[int, int, dict]]:
    """[(lo, hi, the arguments with rows lo..hi of the `batch` inputs)] over n rows, in order
    (one empty block if n is 0)."""
    return [block(arguments, batch, rows, n, k) for k in range(block_count(rows, n))]


def block_count(rows: int, n: int) -> int:
    """The blocks of `rows` rows over n rows (one, empty, if n is 0)."""
    return max(-(-n // rows), 1)


def block(arguments: dict, batch, rows: int, n: int, k: int) -> tuple[int, int, dict]:
    """Block k of `blocks_of`."""
    lo, hi = k * rows, min(k * rows + rows, n)
    return lo, hi, {**arguments, **{name: arguments[name][lo:hi] for name in batch}}


def converted(kernel, arguments: dict) -> dict:
    """Every argument as `kernel` takes it (its dtype, C order), or the error that names what
    is wrong: converted once for all the blocks of a call. Block by block, a batch that the
    generated fast path refuses (float32, a list) took the slow path for each block (a
    30-128-10 MLP's float32 batch of 50,000 rows, three times as long as a float64 one), and
    the epilogue computed in the parameters' own dtype."""
    bind(kernel.title, kernel._specs, arguments)
    dims: dict = {}
    return {spec.name: spec.convert(arguments[spec.name], dims) for spec in kernel._specs}


def run(kernel, arguments: dict) -> tuple:
    """(S, dS/dw...) of one block."""
    value, rest = kernel(arguments)
    return (value,) + tuple(rest)


def epilogue(split, S, n: int, arguments: dict) -> list:
    """The epilogue's outputs, L, dL/dS, then dL/dw by each parameter's own terms (a
    penalty's), for the batch sum S of n rows; the parameters taken from `arguments`."""
    params = {node.attr("name"): arguments[node.attr("name")]
              for node in split.epilogue.inputs[2:]}
    return list(interpret(split.epilogue, {split.total: S, split.count: float(n),
                                           **params}).values())


def finish(compiled, split, total: tuple, n: int, params: dict, gradients: bool):
    """(value, {w: gradient} or None) from the batch sums `total`, through the epilogue."""
    finished = epilogue(split, total[0], n, params)
    value = _scalar(finished[0])
    grads = None
    if gradients:
        grads = {w: _scalar(d + finished[1] * g)
                 for w, d, g in zip(compiled.wrt, finished[2:], total[1:])}
    if compiled.check_finite:
        _check_finite(compiled.title, [("value", value)] + [
            (f"the gradient by {w}", g) for w, g in (grads or {}).items()])
    return value, grads


def in_blocks(compiled, arguments: dict, n: int) -> bool:
    """Whether this local call of n rows runs in blocks: a float64 scalar loss without aux
    outputs that splits, every batch input an array of n rows, and the arrays its one-call
    gradient kernel would allocate over LARGE_BYTES, or those and the batch inputs over
    STREAM_BYTES (which decides for a value alone too, so that the value's kernel is not built
    just to ask). A kernel that fuses all its work into one pass allocates none and never runs
    in blocks; nor does the tape tier."""
    if compiled.aux or compiled.program.output("value").shape != ():
        return False
    kernel = compiled._grad
    made = getattr(kernel, "row_bytes", None)
    if not made or kernel.dtype != "float64":
        return False
    read = sum(row_bytes(node) for node in compiled.program.inputs)
    if n * made < LARGE_BYTES and n * (made + read) < STREAM_BYTES:
        return False
    p = plan(compiled)
    return (p is not None and len(p.dims) == 1
            and all(np.shape(arguments.get(name))[:1] == (n,) for name in p.batch))


def value_and_grad(compiled, arguments: dict, gradients: bool = True):
    """A local call in blocks, on Numba's number of threads (one if parallel=False)."""
    p = plan(compiled)
    kernel = p.kernel(gradients)
    arguments = converted(kernel, arguments)
    n = len(arguments[p.batch[0]])
    params = {k: v for k, v in arguments.items() if k not in p.batch}
    return finish(compiled, p.split, _sums(compiled, kernel, arguments, n), n, params,
                  gradients)


def private(compiled, arguments: dict, opt, noise: tuple):
    """(loss, {w: gradient}) of a private step (per-example clipping, `opt`) over a batch in
    blocks: the blocks' sums of the loss's terms and of the clipped gradients added pairwise,
    the loss finished as value_and_grad finishes it, and the clipped sums times the loss's
    weight of one example (1/n for a mean; the one-call Program weighs each example before it
    adds, so the last bits may differ from its), plus the step's Gaussian noise, drawn into
    `noise` (one array per parameter) last, after everything that can raise."""
    p = plan(compiled, required=True)
    kernel = p.private_kernel()
    arguments = converted(kernel, arguments)
    n = len(arguments[p.batch[0]])
    total = _sums(compiled, kernel, arguments, n)
    finished = epilogue(p.split, total[0], n, arguments)
    value, weight = _scalar(finished[0]), finished[1]  # weight: dL/dS
    grads = {w: _scalar(weight * g) for w, g in zip(compiled.wrt, total[1:])}
    if compiled.check_finite:
        _check_finite(compiled.title, [("value", value)] + [  # as the compiled step says
            (f"the clipped gradient by {w}", g) for w, g in grads.items()])
    sigma = opt.noise_scale()
    if sigma:  # as the compiled step adds it: g + (sigma * weight) * z
        for w, z in zip(compiled.wrt, noise):
            opt.rng.standard_normal(dtype=z.dtype, out=z.reshape(-1))
            grads[w] = _scalar(grads[w] + (sigma * weight) * (z if z.ndim else z[()]))
    return value, grads


def jvp(compiled, arguments: dict) -> tuple | None:
    """(loss, its derivative along the tangents) of a call in blocks: the blocks' sums of S
    and of its derivative, then the epilogue's chain rule, dL/dS times the latter plus each
    parameter's own term dL/dw (a penalty's) against its tangent. The loss has the bits of
    value_and_grad's. None where the split reads an input the call does not give (the
    cotangent of `sd.jacobian`'s gradient Program, which its jvp does not read)."""
    p = plan(compiled)
    if not _given(p.split.value, arguments):
        return None
    kernel = p.jvp_kernel()
    arguments = converted(kernel, arguments)
    n = len(arguments[p.batch[0]])
    total, derivative = _sums(compiled, kernel, arguments, n)
    finished = epilogue(p.split, total, n, arguments)
    derivative = finished[1] * derivative
    for w, direct in zip(compiled.wrt, finished[2:]):
        tangent = arguments[compiled._tangents[w]]
        with np.errstate(invalid="ignore"):  # a tangent's 0 leaves its entry out, as the
            # one-call jvp does: an infinite slope times 0 would be NaN
            derivative += float(np.sum(np.where(tangent == 0.0, 0.0, direct * tangent)))
    return _scalar(finished[0]), float(derivative)


def hvp(compiled, arguments: dict) -> dict | None:
    """{w: (H v)_w} of a call in blocks, H the loss's Hessian and v the tangents: with
    L = E(S, w), H v = d(dL/dS) dS/dw + dL/dS (d²S/dw²) v + d(dL/dw), d(...) the derivative
    along Ṡ = (dS/dw) v and v. The blocks' sums of S, Ṡ, dS/dw and (d²S/dw²) v are added
    pairwise; the epilogue's terms are evaluated once. None where the split reads an input
    the call does not give (as for `jvp`)."""
    p = plan(compiled)
    if not _given(p.split.grad, arguments):
        return None
    kernel = p.hvp_kernel()
    arguments = converted(kernel, arguments)
    n, m = len(arguments[p.batch[0]]), len(compiled.wrt)
    total = _sums(compiled, kernel, arguments, n)
    S, S_dot, grads, products = total[0], total[1], total[2:2 + m], total[2 + m:]
    program, S_dot_name = p.epilogue_hvp()
    inputs = {node.attr("name") for node in program.inputs}
    finished = list(interpret(program, {
        **{k: v for k, v in arguments.items() if k in inputs},
        p.split.total: S, p.split.count: float(n), S_dot_name: S_dot}).values())
    weight, d_weight, d_direct = finished[0], finished[1], finished[2:]
    # a mean's or a sum's dL/dS is constant: its derivative 0 leaves out dS/dw, even an
    # infinite one, as the one-call product leaves out a direction's 0 (0 * inf is NaN)
    return {w: _scalar((d_weight * g if d_weight != 0.0 else 0.0) + weight * h + d)
            for w, g, h, d in zip(compiled.wrt, grads, products, d_direct)}


def _given(program, arguments: dict) -> bool:
    """Whether `arguments` gives every input of `program`: the split reads inputs the call
    may not give (the cotangent of `sd.jacobian`'s gradient Program, which its jvp and hvp
    do not read), and then the call runs as one kernel call."""
    return all(n.attr("name") in arguments for n in program.inputs)


def _sums(compiled, kernel, arguments: dict, n: int) -> tuple:
    """The sums of `kernel`'s outputs over the blocks of n rows, added pairwise in block
    order, the blocks on Numba's number of threads (one if parallel=False): each thread a run
    of consecutive blocks, which it cuts from the batch, runs and adds up to the largest
    nodes of the tree in its run, so that only a few additions wait for both; in one call of
    the compiled driver once that is ready."""
    p = compiled._blocks
    count = block_count(p.rows, n)
    drive = p.driver(kernel)

    def nodes(span: tuple[int, int]) -> dict:
        first, end = span
        spans = tiles(first, end, count)
        if drive is not None:
            try:
                sums = drive(arguments, p.rows, n, program(tuple(spans), count),
                             len(spans))
            except Exception:  # a block the kernel refuses: the Python path says why
                pass
            else:
                return {(a, min(a + size, count)): part
                        for (a, size), part in zip(spans, sums)}
        parts = {(k, k + 1): run(kernel, block(arguments, p.batch, p.rows, n, k)[2])
                 for k in range(first, end)}
        return {(a, min(a + size, count)): node(count, parts, a, size)
                for a, size in spans}

    threads = 1 if compiled._parallel is False else min(import_numba().get_num_threads(), count)
    spans = [(count * t // threads, count * (t + 1) // threads) for t in range(threads)]
    known = {}
    for found in (map(nodes, spans) if threads == 1 else _pool(threads).map(nodes, spans)):
        known.update(found)
    return node(count, known)


def _scalar(value):
    return float(value) if np.ndim(value) == 0 else value

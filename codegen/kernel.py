"""`Kernel`: one Program's generated module, loaded now, in the background or at its first
call, and its calls.

Input: a Program. The module text (emit.py) is imported from the on-disk cache (build.py); Numba
compiles `kernel` at import for its one signature, or loads the machine code Numba cached for it
(Numba itself is imported only then). The optimizer steps (`steps()`, codegen/steps.py: a
module per rule, importing `kernel` from this one) and the kernel's threaded copy are compiled
only when first needed; a call in chunks then runs on whichever of the two has lately been
faster at its size (`Choice`). With `wait=False` the import runs on
a background thread, and until it is done calls run the Program through NumPy
(symdiff.numpy_eval): the same math, but NumPy's exp, log and sums round differently, so the last
bits may differ from the kernel's; `tier` says which ran. With `wait="auto"` the import runs on a
background thread too, and until it is done a call runs the module's own text under CPython
(uncompiled.py: the kernel's bits) where that is estimated to be quick, else waits for it. With
`wait=None` the import waits for the first call that needs it (a private step's one-call
kernel, which a step over a batch in blocks never calls). Output: (value, (other outputs...))
per call.
"""
from __future__ import annotations

import math
import os
import threading
import time
import types

import numpy as np

from symdiff.numpy_eval import evaluate
from symdiff.program import Program

from .build import cache_hit, compiling, load_module
from .emit import emit_source, machinery_constant, program_dtype
from .entry import NCHUNKS, chunk_rows
from .inputs import MISSING, bind, specs_of
from .runtime import blas_threads, calls_blas, load_runtime
from .uncompiled import load as load_uncompiled

# Numba's `parallel` for prange loops only: array expressions and allocations stay serial
PRANGE_ONLY = dict(prange=True, comprehension=False, reduction=False, inplace_binop=False,
                   setitem=False, numpy=False, stencil=False, fusion=False)


_LOADING: set[threading.Thread] = set()  # the background loads under way


def _finish_loads() -> None:
    """Before a fork, wait for the background loads under way. A forked child has none of its
    parent's threads and all of its locks: a load under way would never arrive there, and
    Numba's compiler lock could stay held by a thread it does not have."""
    for thread in list(_LOADING):
        thread.join()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_finish_loads)


class Kernel:
    """One generated module: binds arguments by name, checks them, runs, returns its outputs.
    `wait`: True loads it now; False on a background thread (NumPy answers meanwhile); "auto"
    on a background thread (CPython runs the module meanwhile where that is quick, else
    calls wait); None at the first call that needs it (`wait()` or a call): a private step
    over a batch in blocks runs another kernel, and never compiles this one."""

    def __init__(self, program: Program, title: str, parallel: bool | None = None, update=(),
                 wait: bool | str | None = True, rows: int | None = None):
        self.program, self.title, self.update = program, title, tuple(update)
        # a batch of chunk_rows or more runs in chunks (`emit_source`)
        self.chunk_rows = rows or chunk_rows(len(program.stmts))
        self.inputs = tuple(n.attr("name") for n in program.inputs)
        self.dtype = program_dtype(program)
        self._specs = specs_of(program)
        self._parallel = parallel
        self._module = self._threads = self._choice = self._error = None
        self.step_dispatchers = []  # the optimizer steps compiled so far (codegen/steps.py)
        self.step_sources = []  # and their modules' text
        self._threads_started, self._threads_done = False, threading.Event()  # threaded copy
        self._lazy, self._loading = wait is None, threading.Lock()  # (held by a lazy load)
        self._auto = wait == "auto"
        self._uncompiled = None  # the module run by CPython (wait="auto"), made at first use
        self._call = self._load_then_call if self._lazy else \
            self._before_kernel if self._auto else self._numpy
        self.timings = {}
        self._started = time.perf_counter()
        self.source = emit_source(program, title, self.chunk_rows)
        self._calls_blas = calls_blas(self.source)
        self._row_bytes = machinery_constant(self.source, "ROW_BYTES")
        self.timings["emit"] = time.perf_counter() - self._started
        if wait is True:
            self._load()
        elif not self._lazy:  # not a daemon: the process waits for it at exit, so a short
            # script's compile still reaches Numba's on-disk cache for the next process
            thread = threading.Thread(target=self._load_in_background,
                                      name=f"symdiff kernel: {title}")
            _LOADING.add(thread)
            thread.start()

    @property
    def tier(self) -> str:
        """"kernel" once the machine code is in place, or if it loads at its first call;
        while it is being prepared, "python" (wait="auto") or "numpy" (wait=False)."""
        if self._module is not None or self._lazy:
            return "kernel"
        return "python" if self._auto else "numpy"

    def wait(self) -> None:
        """Block until the kernel is in place (raises what its compile raised); load it now if
        it loads when first needed."""
        if self._lazy and self._module is None and self._error is None:
            with self._loading:  # a second caller meanwhile waits for this load
                if self._module is None and self._error is None:
                    try:
                        self._load()
                    except BaseException as e:  # raised again by every later call
                        self._error = e
        while self._module is None and self._error is None:
            time.sleep(0.005)
        if self._error is not None:
            raise self._error

    def _load(self) -> None:
        start = time.perf_counter()
        load_runtime(self.source)  # the modules the kernel imports from
        module, _ = load_module(self.source)  # Numba compiles kernel here, or loads it
        self.timings["compile"] = time.perf_counter() - start
        self._rerun = module.entry(module.kernel, self._threaded, _unreachable, self._parallel,
                                   MISSING)
        run = module.entry(module.kernel, self._threaded, self._slow, self._parallel, MISSING)
        self._call = run if self.dtype != "float32" else self._float32(run)
        self.timings["kernel ready"] = time.perf_counter() - self._started
        self._module = module  # last: a call that waited for it finds `_call` in place

    def _load_in_background(self) -> None:
        try:
            self._load()
        except BaseException as e:  # raised by the next call, or by wait()
            self._error = e
        finally:
            _LOADING.discard(threading.current_thread())

    @property
    def from_cache(self) -> bool | None:
        """Whether the machine code came from Numba's on-disk cache rather than a compile
        (None before the kernel is in place)."""
        if self._module is None:
            return None
        used = [self._module.kernel, self._threads, *self.step_dispatchers]
        return all(cache_hit(d) for d in used if d is not None)

    @property
    def row_bytes(self) -> int | None:
        """Bytes per batch row of the arrays the kernel allocates (its text's ROW_BYTES;
        None while NumPy answers for it, which allocates otherwise)."""
        return None if self.tier == "numpy" else self._row_bytes

    def __call__(self, arguments: dict):
        """(value, (other outputs...)) for `arguments`, a dict of every input by name."""
        return self._call(**arguments)

    def _float32(self, run):
        def run_float32(**arguments):
            return _single(*run(**arguments))
        return run_float32

    def _threaded(self):
        """The dispatcher for a batch in 16 chunks: where there are threads to share them,
        the `Choice` between the kernel's threaded copy and the kernel (the copy itself with
        parallel=True), else the kernel. The copy compiles on a background thread from the
        first call that could use it; until it is ready the kernel runs the 16 chunks in
        order, which gives the same bits, so the switch is invisible. By default a kernel
        that calls a threaded BLAS keeps to itself and never compiles the copy: Numba's idle
        threads spin between its parallel loops on the cores the BLAS's threads need for the
        products. The copy lost by 3 to 16 times (a 30-32-10 MLP over 5,000 and 20,000 rows,
        logistic regression over 50,000 and 100,000) and won by 12% at best (logistic
        regression over 10,000), so each try of it cost the time of several calls."""
        from numba import get_num_threads
        if get_num_threads() > 1:
            if self._choice is not None:
                return self._threads if self._parallel else self._choice
            if self._parallel is None and self._calls_blas and blas_threads() > 1:
                return self._module.kernel
            if not self._threads_started:
                self._threads_started = True
                threading.Thread(target=self._compile_threads, daemon=True,
                                 name=f"symdiff threads: {self.title}").start()
        return self._module.kernel

    def _compile_threads(self) -> None:
        start = time.perf_counter()
        try:
            self._threads = threaded_copy(self._module.kernel, self._module.SIGNATURE)
            self.timings["threaded compile"] = time.perf_counter() - start
            self._choice = Choice(self._module.kernel, self._threads, rows_of(self._specs))
        finally:
            self._threads_done.set()

    def _load_then_call(self, /, **arguments):
        self.wait()
        return self._call(**arguments)

    def _before_kernel(self, /, **arguments):
        """wait="auto", before the kernel is in place: its module run by CPython if the call
        is estimated to be quick there (the kernel's bits), else the kernel once in place."""
        if self._error is not None:
            raise self._error
        converted, dims = self._converted(arguments)
        if self._uncompiled is None:
            self._uncompiled = load_uncompiled(self.source, self.dtype) or False
        python = self._uncompiled
        if python and self._module is None and python.quick(
                {d: size for d, (size, _) in dims.items()}):
            args = [converted[name] for name in self.inputs]
            batch = any(isinstance(d, str) for spec in self._specs for _, d in spec.axes)
            chunks = NCHUNKS if batch and rows_of(self._specs)(args) >= self.chunk_rows else 1
            result = python.run(args, chunks)  # the chunks the entry point would choose
            if result is not None:
                return result if self.dtype != "float32" else _single(*result)
        self.wait()
        return self._call(**arguments)

    def _numpy(self, /, **arguments):
        """Before the kernel is in place: the Program run by NumPy, statement by statement."""
        if self._error is not None:
            raise self._error
        converted, dims = self._converted(arguments)
        values, _ = evaluate(self.program, converted, {d: size for d, (size, _) in dims.items()})
        results = [_result(values[node.uid], self.dtype) for _, node in self.program.outputs]
        return results[0], tuple(results[1:])

    def _slow(self, /, **arguments):
        """Arguments the generated fast path did not accept: each converted (lists, other
        dtypes, strided arrays) or refused with a clear error, then run through again."""
        return self._rerun(**self._converted(arguments)[0])

    def _converted(self, arguments: dict, in_place=()) -> tuple[dict, dict]:
        """Every argument as the kernel takes it, or a clear error; parameters in `in_place`
        must already be what the kernel updates (they are checked, never copied). Also the
        sizes of symbolic dimensions: {name: (size, the input that set it)}."""
        bind(self.title, self._specs, arguments)
        dims: dict[str, tuple[int, str]] = {}
        converted = {}
        for spec in self._specs:
            value = arguments[spec.name]
            if spec.name in in_place:
                spec.check_in_place(value)
                if not spec.shape:  # a 0-d array, not a scalar to convert
                    converted[spec.name] = value
                    continue
            converted[spec.name] = spec.convert(value, dims)
        for spec in self._specs:
            if spec.label_bound is not None:
                spec.check_labels(converted[spec.name], dims)
        return converted, dims

    def steps(self, check_finite=None, bound=None, compiled=None):
        """The optimizer steps of the parameters `update`: codegen/steps.py's `Steps`, whose
        modules import this one's kernel (loaded when the first of them compiles)."""
        from .steps import Steps
        return Steps(self, check_finite, bound, compiled)


class Choice:
    """A call in chunks on the kernel's threaded copy or on the kernel itself (the same bits),
    whichever has lately been faster per row at this batch size (sizes grouped by powers of
    two).

    Threads do not always pay: at a few thousand rows their start costs more than they save;
    where BLAS runs on one thread, a kernel's products leave the other cores idle; and while
    other processes keep the cores busy, a parallel loop waits for its slowest thread. (A
    kernel that calls a threaded BLAS has no Choice by default: `Kernel._threaded`.) Which
    way wins depends on the model, the machine and its load, so it is measured on the calls
    themselves. Every call is timed, and each way runs twice before either is trusted. The
    way in use is judged by the median of its last `KEPT` calls. The other is tried again at
    once when that median is above the other's last time; else after an interval that
    doubles (from `FIRST` to `LAST` seconds) each time a try loses, and once the way in use
    has run `SHARE` times as long as that try took: so a far slower way costs a small share
    of the time, however rarely the calls come.
    """

    FIRST, LAST = 0.05, 2.0  # seconds between tries of the way not in use
    KEPT, SHARE = 5, 50
    # a way's first WARM runs are retried FIRST seconds after they lose, whatever they took:
    # a threaded copy's first calls took 5-8 ms where later ones took 0.6 (the neuron over
    # 10^5 rows, in one process in three, while another pool's idle threads still spun), and
    # judged by them the kernel would have been kept for 50 times as long
    WARM = 4

    def __init__(self, serial, threaded, rows, clock=time.perf_counter):
        self.ways, self.rows, self.clock = (serial, threaded), rows, clock
        self.sizes: dict[int, _Size] = {}  # by rows.bit_length()

    def __call__(self, *args):
        rows = max(self.rows(args), 1)
        size = self.sizes.get(rows.bit_length())
        if size is None:
            size = self.sizes[rows.bit_length()] = _Size(self.FIRST)
        in_use, start = size.in_use, self.clock()
        way = in_use if start < size.due or size.spent < size.budget else 1 - in_use
        result = self.ways[way](*args)
        now = self.clock()
        times = size.times[way]
        times.append((now - start) / rows)
        del times[:-self.KEPT]
        if way == in_use:
            size.spent += now - start
            if size.times[1 - way] and size.typical(way) > size.times[1 - way][-1]:
                size.due, size.budget = now, 0.0
            return result
        if times[-1] < size.typical(in_use):  # a try of the other way: it won
            size.in_use, size.interval = way, self.FIRST
        else:
            size.interval = min(2 * size.interval, self.LAST)
        other = size.times[1 - size.in_use]  # (a first call on threads also starts them)
        size.spent = 0.0
        if len(other) < 2:  # each way runs twice before either is trusted
            size.due, size.budget = now, 0.0
        elif len(other) < self.WARM:  # and its first runs may be slow: tried again soon
            size.due, size.budget = now + self.FIRST, 0.0
        else:
            size.due, size.budget = now + size.interval, self.SHARE * other[-1] * rows
        return result


class _Size:
    """A Choice's record for one size class: the way in use (0 the kernel, 1 its threaded
    copy), the seconds per row of each one's last calls, when the other is due (a time, and
    seconds the way in use must have run since the last try), the interval."""
    __slots__ = ("in_use", "times", "due", "budget", "spent", "interval")

    def __init__(self, interval: float):
        # threads "in use" and the kernel due: the first call tries the kernel, which wins
        # against no time at all, and the second the threaded copy
        self.in_use, self.times, self.interval = 1, ([], []), interval
        self.due, self.budget, self.spent = -math.inf, 0.0, 0.0

    def typical(self, way: int) -> float:
        times = self.times[way]
        return sorted(times)[len(times) // 2] if times else math.inf


def rows_of(specs):
    """A function of a kernel's positional arguments giving its batch size (the first input
    with a symbolic axis, as the entry point's test of a large batch reads it)."""
    for position, spec in enumerate(specs):
        for axis, d in spec.axes:
            if isinstance(d, str):
                return lambda args: args[position].shape[axis]
    return lambda args: 1


def threaded_copy(kernel, signature):
    """The kernel's Python function under the name kernel_threaded, compiled with its prange
    loops on threads. Its own name gives it its own entries in Numba's on-disk cache, whose
    index does not key on compile flags."""
    from numba import njit
    f = kernel.py_func
    copy = types.FunctionType(f.__code__, f.__globals__, "kernel_threaded", f.__defaults__,
                              f.__closure__)
    copy.__qualname__ = "kernel_threaded"
    with compiling():
        return njit(signature, cache=True, error_model="numpy", nogil=True,
                    parallel=dict(PRANGE_ONLY))(copy)


def _single(value, rest) -> tuple:
    """A float32 kernel's results, whose scalars Numba returns as floats, with np.float32
    scalars."""
    value = np.float32(value) if isinstance(value, float) else value
    return value, tuple(np.float32(r) if isinstance(r, float) else r for r in rest)


def _result(value, dtype: str):
    """A NumPy result as the kernel returns it: a fresh array, or a float (np.float32)."""
    if np.ndim(value) == 0:
        return np.float32(value) if dtype == "float32" else float(value)
    return np.array(value, dtype=dtype)


def _unreachable(*args, **arguments):
    raise AssertionError("converted arguments failed the generated check")

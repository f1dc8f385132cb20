"""`Compiled`: the runtime object a user calls. Checks arguments, runs the kernel, returns values.

Arguments are bound by name to kernel positions worked out once; each call checks each array's
dtype, rank and dimensions (symbolic ones must agree across inputs) and each label array's
range before the kernel runs, because Numba kernels run without bounds checks.
"""
from __future__ import annotations

import numbers
import time

import numba
import numpy as np

from symdiff.errors import ArgumentError, DomainError, ShapeError
from symdiff.ir import Program

from .build import load_module
from .emit import emit_source

NCHUNKS = 16  # fixed, so a result has the same bits at any thread count
PARALLEL_MIN_WORK = 40_000  # batch size x statements below which threads cost more than they save


class _Input:
    __slots__ = ("name", "shape", "dtype", "label_bound")

    def __init__(self, node, label_bound=None):
        self.name, self.shape, self.dtype = node.attr("name"), node.shape, node.dtype
        self.label_bound = label_bound


class Compiled:
    """A model compiled to Numba kernels.

    Call it for the value; `grad` and `value_and_grad` add the gradients, a dict keyed by the
    names in `wrt`. Arguments are passed by name. `source` is the exact text compiled.
    """

    def __init__(self, program: Program, value_program: Program, wrt: list[str], title: str,
                 parallel: bool | None = None, timings: dict | None = None):
        self.program, self._value_program = program, value_program
        self.wrt, self.title = tuple(wrt), title
        self.inputs = tuple(n.attr("name") for n in program.inputs)
        self._specs = [_Input(n, _label_bound(program, n)) for n in program.inputs]
        self._parallel = parallel
        self._work = len(program.stmts)
        self.timings = dict(timings or {})
        start = time.perf_counter()
        self.source = emit_source(program, title)
        self.timings["emit"] = time.perf_counter() - start
        start = time.perf_counter()
        module, self.reused_file = load_module(self.source)
        self.timings["load"] = time.perf_counter() - start
        self._kernel = module.kernel
        self._value_kernel = None

    def __repr__(self):
        return f"<symdiff.Compiled {self.title!r} wrt={list(self.wrt)} inputs={list(self.inputs)}>"

    def __call__(self, **arguments):
        """The model's value: a float, or an array for per-sample values."""
        if self._value_kernel is None:
            self._value_kernel = load_module(emit_source(self._value_program, self.title))[0].kernel
        args, nchunks = self._bind(arguments)
        return self._value_kernel(*args, nchunks)[0]

    def grad(self, **arguments) -> dict:
        """The gradients, {name in wrt: value}."""
        return self.value_and_grad(**arguments)[1]

    def value_and_grad(self, **arguments):
        """(value, {name in wrt: gradient}) from one kernel call."""
        args, nchunks = self._bind(arguments)
        if "compile" not in self.timings:
            start = time.perf_counter()
            value, grads = self._kernel(*args, nchunks)
            self.timings["compile"] = time.perf_counter() - start
        else:
            value, grads = self._kernel(*args, nchunks)
        return value, dict(zip(self.wrt, grads))

    def _bind(self, arguments: dict):
        unknown = [k for k in arguments if k not in self.inputs]
        if unknown:
            raise ArgumentError(f"unknown argument{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                                f"{self.title} takes {', '.join(self.inputs)}")
        dims: dict[str, tuple[int, str]] = {}
        args = []
        for spec in self._specs:
            if spec.name not in arguments:
                missing = [s.name for s in self._specs if s.name not in arguments]
                raise ArgumentError(f"missing argument{'s' * (len(missing) > 1)} "
                                    f"{', '.join(missing)} (takes {', '.join(self.inputs)})")
            args.append(_convert(spec, arguments[spec.name], dims))
        for spec, value in zip(self._specs, args):
            if spec.label_bound is not None:
                _check_labels(spec, value, dims)
        return args, self._chunks(dims)

    def _chunks(self, dims):
        """NCHUNKS for the parallel path, None for the serial one."""
        if self._parallel is not None:
            return NCHUNKS if self._parallel and dims else None
        if not dims or numba.get_num_threads() < 2:
            return None
        batch = max(size for size, _ in dims.values())
        return NCHUNKS if batch * self._work >= PARALLEL_MIN_WORK else None


def _label_bound(program: Program, node):
    """For an integer input used as labels, the dimension its values must stay below."""
    for s in program.stmts:
        if s.node.op == "take_along" and s.node.inputs[1] is node:
            return s.node.inputs[0].shape[1]
    return None


def _convert(spec: _Input, value, dims: dict):
    """`value` as the kernel wants it, or a clear error naming `spec.name`."""
    if not spec.shape:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ArgumentError(f"{spec.name} must be a real number, not "
                                f"{type(value).__name__}")
        return float(value) if spec.dtype != "int64" else int(value)
    try:
        array = np.asarray(value)
    except Exception as e:
        raise ArgumentError(f"{spec.name} must be an array, not {type(value).__name__}") from e
    want = "iu" if spec.dtype == "int64" else "fiu"
    if array.dtype.kind not in want:
        what = "integer labels" if spec.dtype == "int64" else "real numbers"
        raise ArgumentError(f"{spec.name} must hold {what}, not dtype {array.dtype}")
    if array.ndim != len(spec.shape):
        raise ShapeError(f"{spec.name} must have shape {_format(spec.shape)}, but has shape "
                         f"{array.shape} (rank {array.ndim} instead of {len(spec.shape)})")
    for axis, (want_dim, got) in enumerate(zip(spec.shape, array.shape)):
        if isinstance(want_dim, str):
            if got == 0:
                raise ShapeError(f"{spec.name} has an empty dimension {want_dim} (axis {axis})")
            seen = dims.setdefault(want_dim, (got, spec.name))
            if seen[0] != got:
                raise ShapeError(f"{spec.name} has {want_dim} = {got} on axis {axis}, but "
                                 f"{seen[1]} has {want_dim} = {seen[0]}")
        elif want_dim != got:
            raise ShapeError(f"{spec.name} must have shape {_format(spec.shape)}, but has shape "
                             f"{array.shape}: axis {axis} is {got}, not {want_dim}")
    dtype = np.int64 if spec.dtype == "int64" else np.float64
    return np.ascontiguousarray(array, dtype=dtype)


def _check_labels(spec: _Input, labels: np.ndarray, dims: dict) -> None:
    bound = spec.label_bound
    bound = dims[bound][0] if isinstance(bound, str) else bound
    if labels.size and (labels.min() < 0 or labels.max() >= bound):
        bad = labels[(labels < 0) | (labels >= bound)][0]
        raise DomainError(f"{spec.name} holds the label {bad}, outside [0, {bound})")


def _format(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

"""`Compiled`: the runtime object a user calls. Checks arguments, runs the kernel, returns values.

Arguments are bound by name to kernel positions worked out once; each call checks each array's
dtype, rank and dimensions (symbolic ones must agree across inputs) and each label array's
range before the kernel runs, because Numba kernels run without bounds checks.
"""
from __future__ import annotations

import numbers
import time

import numpy as np

from symdiff.errors import ArgumentError, DomainError, NonFiniteError, ShapeError
from symdiff.ir import Program
from symdiff.ops import format_shape

from .build import load_module
from .emit import emit_source, program_dtype
from .entry import label_bound



class _Input:
    """What one kernel argument must be, worked out once."""

    __slots__ = ("name", "shape", "dtype", "label_bound", "numpy_dtype", "axes")

    def __init__(self, node, label_bound=None):
        self.name, self.shape, self.dtype = node.attr("name"), node.shape, node.dtype
        self.label_bound = label_bound
        self.numpy_dtype = np.dtype(_SCALAR[node.dtype])
        self.axes = tuple(enumerate(node.shape))


class Kernel:
    """One generated module: binds arguments by name, checks them, runs, returns its outputs."""

    def __init__(self, program: Program, title: str, parallel: bool | None = None):
        self.program, self.title = program, title
        self.inputs = tuple(n.attr("name") for n in program.inputs)
        self._specs = [_Input(n, label_bound(program, n)) for n in program.inputs]
        self._parallel = parallel
        self.timings = {}
        start = time.perf_counter()
        self.source = emit_source(program, title)
        self.timings["emit"] = time.perf_counter() - start
        start = time.perf_counter()
        module, self.reused_file = load_module(self.source)
        self.timings["load"] = time.perf_counter() - start
        self._function, self._run = module.kernel, module.run
        self.dtype = program_dtype(program)

    def __call__(self, arguments: dict):
        """(value, (other outputs...)) for `arguments`, a dict of every input by name."""
        try:
            if "compile" in self.timings:
                value, rest = self._run(self._slow, self._parallel, **arguments)
            else:
                start = time.perf_counter()
                value, rest = self._run(self._slow, self._parallel, **arguments)
                self.timings["compile"] = time.perf_counter() - start
        except TypeError:
            if sorted(arguments) != sorted(self.inputs):
                self._wrong_names(arguments)
            raise
        if self.dtype == "float32":  # Numba returns float32 scalars as Python floats
            value = np.float32(value) if isinstance(value, float) else value
            rest = tuple(np.float32(r) if isinstance(r, float) else r for r in rest)
        return value, rest

    def _slow(self, **arguments):
        """Arguments the generated fast check did not accept: each converted (lists, other
        dtypes, strided arrays) or refused with a clear error, then run through again."""
        dims: dict[str, tuple[int, str]] = {}
        converted = {spec.name: _convert(spec, arguments[spec.name], dims)
                     for spec in self._specs}
        for spec in self._specs:
            if spec.label_bound is not None:
                _check_labels(spec, converted[spec.name], dims)
        return self._run(_unreachable, self._parallel, **converted)

    def _wrong_names(self, arguments: dict):
        unknown = [k for k in arguments if k not in self.inputs]
        if unknown:
            raise ArgumentError(f"unknown argument{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                                f"{self.title} takes {', '.join(self.inputs)}")
        missing = [s.name for s in self._specs if s.name not in arguments]
        raise ArgumentError(f"missing argument{'s' * (len(missing) > 1)} "
                            f"{', '.join(missing)} (takes {', '.join(self.inputs)})")


def _unreachable(**arguments):
    raise AssertionError("converted arguments failed the generated check")


class Compiled:
    """A model compiled to Numba kernels.

    Call it for the value; `grad` and `value_and_grad` add the gradients, a dict keyed by the
    names in `wrt`; `jvp`, `hvp` and `hessian` give forward-mode and second-order derivatives.
    Arguments are passed by name. `source` is the exact text of the gradient kernel.
    """

    def __init__(self, programs: dict, wrt: list[str], title: str, tangents: dict | None = None,
                 parallel: bool | None = None, timings: dict | None = None,
                 check_finite: bool = False):
        self.wrt, self.title = tuple(wrt), title
        self.check_finite = check_finite
        self._programs, self._kernels = programs, {}
        self._tangents = tangents or {}  # wrt name -> the input name of its tangent
        self._parallel = parallel
        gradient = self._kernel("grad")
        self.program, self.source, self.inputs = gradient.program, gradient.source, gradient.inputs
        self.timings = {**(timings or {}), **gradient.timings}

    def __repr__(self):
        return f"<symdiff.Compiled {self.title!r} wrt={list(self.wrt)} inputs={list(self.inputs)}>"

    def source_of(self, kind: str) -> str:
        """The exact text of the `kind` kernel: "grad" (= .source), "value", "jvp" or "hvp"."""
        return self._kernel(kind).source

    def _kernel(self, kind: str) -> Kernel:
        """The kernel for `kind` (grad, value, jvp, hvp), generated on first use."""
        if kind not in self._kernels:
            if kind not in self._programs:
                raise ArgumentError(f"{self.title}: {kind} is not available for this model")
            self._kernels[kind] = Kernel(self._programs[kind](), self.title, self._parallel)
        return self._kernels[kind]

    def __call__(self, **arguments):
        """The model's value: a float, or an array for per-example values."""
        value = self._kernel("value")(arguments)[0]
        if self.check_finite:
            _check_finite(self.title, [("value", value)])
        return value

    def grad(self, **arguments) -> dict:
        """The gradients, {name in wrt: value}."""
        return self.value_and_grad(**arguments)[1]

    def value_and_grad(self, **arguments):
        """(value, {name in wrt: gradient}) from one kernel call."""
        kernel = self._kernel("grad")
        value, grads = kernel(arguments)
        if "compile" in kernel.timings:
            self.timings.setdefault("compile", kernel.timings["compile"])
        grads = dict(zip(self.wrt, grads))
        if self.check_finite:
            _check_finite(self.title, [("value", value)] + [(f"the gradient by {w}", g)
                                                            for w, g in grads.items()])
        return value, grads

    def jvp(self, tangents: dict, **arguments):
        """(value, directional derivative along `tangents`), by forward mode.

        `tangents` maps names in `wrt` to arrays of their shapes; a missing one is zero.
        """
        value, (derivative,) = self._kernel("jvp")(self._with_tangents(tangents, arguments))
        return value, derivative

    def hvp(self, v: dict, **arguments) -> dict:
        """The Hessian-vector product H v, {name in wrt: array}, by forward over reverse."""
        _, products = self._kernel("hvp")(self._with_tangents(v, arguments))
        return dict(zip(self.wrt, products))

    def hessian(self, **arguments) -> np.ndarray:
        """The dense Hessian over the parameters in `wrt`, flattened and concatenated in order."""
        shapes = [np.shape(arguments[w]) if w in arguments else None for w in self.wrt]
        if any(s is None for s in shapes):
            missing = [w for w, s in zip(self.wrt, shapes) if s is None]
            raise ArgumentError(f"missing argument {', '.join(missing)}")
        sizes = [int(np.prod(s)) for s in shapes]
        columns = []
        for k in range(sum(sizes)):
            basis = np.zeros(sum(sizes))
            basis[k] = 1.0
            parts = np.split(basis, np.cumsum(sizes)[:-1])
            v = {w: part.reshape(s) for w, part, s in zip(self.wrt, parts, shapes)}
            product = self.hvp(v, **arguments)
            columns.append(np.concatenate([np.ravel(product[w]) for w in self.wrt]))
        return np.array(columns).T

    def _with_tangents(self, tangents: dict, arguments: dict) -> dict:
        unknown = [k for k in tangents if k not in self._tangents]
        if unknown:
            raise ArgumentError(f"tangents for {', '.join(unknown)}, which are not in wrt "
                                f"({', '.join(self.wrt)})")
        full = dict(arguments)
        for w, name in self._tangents.items():
            if w not in tangents and w not in arguments:
                raise ArgumentError(f"missing argument {w}")
            full[name] = tangents.get(w, np.zeros(np.shape(arguments[w])))
        return full


class Jacobian:
    """The Jacobian of a vector-valued model, from its VJP (rows) or JVP (columns) kernel."""

    def __init__(self, compiled: Compiled, cotangent: str):
        self.compiled, self._cotangent = compiled, cotangent
        self.wrt, self.title = compiled.wrt, compiled.title

    def __repr__(self):
        return f"<symdiff.Jacobian {self.title!r} wrt={list(self.wrt)}>"

    def __call__(self, **arguments) -> np.ndarray:
        """d output / d parameters: shape (output entries, parameter entries), flattened."""
        c = self.compiled
        shapes = [np.shape(arguments.get(w, 0.0)) for w in self.wrt]
        sizes = [int(np.prod(s)) for s in shapes]
        value, _ = c.jvp({}, **arguments)
        out_shape = np.shape(value)
        m, p = int(np.prod(out_shape)), sum(sizes)
        if m <= p:  # reverse mode, one row per output entry
            rows = []
            for i in range(m):
                seed = np.zeros(m)
                seed[i] = 1.0
                grads = c.grad(**arguments, **{self._cotangent: seed.reshape(out_shape)})
                rows.append(np.concatenate([np.ravel(grads[w]) for w in self.wrt]))
            return np.array(rows).reshape(m, p)
        columns = []  # forward mode, one column per parameter entry
        for k in range(p):
            basis = np.zeros(p)
            basis[k] = 1.0
            parts = np.split(basis, np.cumsum(sizes)[:-1])
            _, column = c.jvp({w: part.reshape(s) for w, part, s in zip(self.wrt, parts, shapes)},
                              **arguments)
            columns.append(np.ravel(column))
        return np.array(columns).T.reshape(m, p)


def _check_finite(title: str, outputs) -> None:
    """Raise NonFiniteError naming the first output with a NaN or an infinity."""
    for what, value in outputs:
        finite = np.isfinite(value)
        if not np.all(finite):
            where = "" if np.ndim(value) == 0 else \
                f" at index {tuple(int(i) for i in np.argwhere(~finite)[0])}"
            raise NonFiniteError(f"{title}: {what} is {np.ravel(value)[~np.ravel(finite)][0]}"
                                 f"{where} (check_finite=True)")


def _convert(spec: _Input, value, dims: dict):
    """`value` as the kernel wants it, or a clear error naming `spec.name`."""
    if not spec.shape:
        return _scalar(spec, value)
    if not (type(value) is np.ndarray and value.dtype is spec.numpy_dtype
            and value.flags.c_contiguous):
        value = _array(spec, value)
    shape = value.shape
    if len(shape) != len(spec.shape):
        raise ShapeError(f"{spec.name} must have shape {format_shape(spec.shape)}, but has shape "
                         f"{shape} (rank {len(shape)} instead of {len(spec.shape)})")
    for axis, want in spec.axes:
        got = shape[axis]
        if want.__class__ is str:
            seen = dims.get(want)
            if seen is None:
                if got == 0:
                    raise ShapeError(f"{spec.name} has an empty dimension {want} (axis {axis})")
                dims[want] = (got, spec.name)
            elif seen[0] != got:
                raise ShapeError(f"{spec.name} has {want} = {got} on axis {axis}, but "
                                 f"{seen[1]} has {want} = {seen[0]}")
        elif want != got:
            raise ShapeError(f"{spec.name} must have shape {format_shape(spec.shape)}, but has "
                             f"shape {shape}: axis {axis} is {got}, not {want}")
    return value


def _scalar(spec: _Input, value):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{spec.name} must be a real number, not {type(value).__name__}")
    return {"float64": float, "float32": np.float32, "int64": int}[spec.dtype](value)


def _array(spec: _Input, value) -> np.ndarray:
    """`value` as a C-contiguous array of the spec's dtype (a copy only when needed)."""
    try:
        array = np.asarray(value)
    except Exception as e:
        raise ArgumentError(f"{spec.name} must be an array, not {type(value).__name__}") from e
    want = "iu" if spec.dtype == "int64" else "fiu"
    if array.dtype.kind not in want:
        what = "integer labels" if spec.dtype == "int64" else "real numbers"
        raise ArgumentError(f"{spec.name} must hold {what}, not dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=spec.numpy_dtype)


_SCALAR = {"float64": np.float64, "float32": np.float32, "int64": np.int64}


def _check_labels(spec: _Input, labels: np.ndarray, dims: dict) -> None:
    bound = spec.label_bound
    bound = dims[bound][0] if isinstance(bound, str) else bound
    if labels.size and (labels.min() < 0 or labels.max() >= bound):
        bad = labels[(labels < 0) | (labels >= bound)][0]
        raise DomainError(f"{spec.name} holds the label {bad}, outside [0, {bound})")

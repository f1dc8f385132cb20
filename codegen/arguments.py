"""Arguments by name -> what a kernel takes, or a clear error naming the argument.

The general path of every call that the generated fast check did not accept, and the only path
of the tape tier: lists and other dtypes are converted, strided arrays made contiguous, sizes
of symbolic dimensions checked across inputs, labels checked against their range.
"""
from __future__ import annotations

import numbers

import numpy as np

from symdiff.errors import ArgumentError, DomainError, ShapeError
from symdiff.ops import format_shape


class LazyInput(ArgumentError):
    """An argument that is a Dask array: `Compiled` runs such calls chunk by chunk
    (codegen/chunked.py); calls that cannot say so."""


class InputSpec:
    """What one kernel argument must be, worked out once."""

    __slots__ = ("name", "shape", "dtype", "label_bound", "numpy_dtype", "axes")

    def __init__(self, node, label_bound=None):
        self.name, self.shape, self.dtype = node.attr("name"), node.shape, node.dtype
        self.label_bound = label_bound
        self.numpy_dtype = np.dtype(_SCALAR[node.dtype])
        self.axes = tuple(enumerate(node.shape))


def check_in_place(spec: InputSpec, value) -> None:
    """A parameter that `sgd_step` updates in place must be a writable, C-contiguous array
    of the model's dtype (0-d for a scalar); anything else is refused, never copied."""
    if type(value) is not np.ndarray:
        what = f"a {type(value).__name__}"
    elif value.dtype != spec.numpy_dtype:
        what = f"an array of dtype {value.dtype}"
    elif value.ndim != len(spec.shape):
        what = f"an array of shape {value.shape}"
    elif not value.flags.writeable:
        what = "a read-only array"
    elif not value.flags.c_contiguous:
        what = "a non-contiguous array"
    elif not value.flags.aligned:
        what = "an unaligned array"
    else:
        return
    scalar = f" (a 0-d array for a scalar: np.array({spec.name}, dtype=float))" \
        if not spec.shape else ""
    raise ArgumentError(f"sgd_step updates {spec.name} in place: pass a writable, "
                        f"C-contiguous {spec.dtype} NumPy array{scalar}, not {what}")


def check_rate(lr) -> float:
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise ArgumentError(f"the learning rate lr must be a real number, not "
                            f"{type(lr).__name__}")
    return float(lr)


def wrong_names(title: str, inputs, arguments: dict):
    """Raise ArgumentError naming the unknown or missing arguments."""
    unknown = [k for k in arguments if k not in inputs]
    if unknown:
        raise ArgumentError(f"unknown argument{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                            f"{title} takes {', '.join(inputs)}")
    missing = [name for name in inputs if name not in arguments]
    raise ArgumentError(f"missing argument{'s' * (len(missing) > 1)} "
                        f"{', '.join(missing)} (takes {', '.join(inputs)})")


def convert(spec: InputSpec, value, dims: dict):
    """`value` as the kernel wants it, or a clear error naming `spec.name`."""
    if not spec.shape:
        return _scalar(spec, value)
    if not (type(value) is np.ndarray and value.dtype is spec.numpy_dtype
            and value.flags.carray):
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


def _scalar(spec: InputSpec, value):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{spec.name} must be a real number, not {type(value).__name__}")
    return {"float64": float, "float32": np.float32, "int64": int}[spec.dtype](value)


def _array(spec: InputSpec, value) -> np.ndarray:
    """`value` as a C-contiguous, aligned, writable array of the spec's dtype, the one array
    type a kernel is compiled for (a copy only when needed; kernels never write inputs)."""
    if hasattr(type(value), "__dask_graph__"):  # np.asarray would compute it here, whole
        raise LazyInput(f"{spec.name} is a Dask array: value_and_grad, grad and calling the "
                        f"model take Dask arrays; this call takes NumPy arrays")
    try:
        array = np.asarray(value)
    except Exception as e:
        raise ArgumentError(f"{spec.name} must be an array, not {type(value).__name__}") from e
    want = "iu" if spec.dtype == "int64" else "fiu"
    if array.dtype.kind not in want:
        what = "integer labels" if spec.dtype == "int64" else "real numbers"
        raise ArgumentError(f"{spec.name} must hold {what}, not dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=spec.numpy_dtype)
    if array.dtype is not spec.numpy_dtype:  # an equal copy, as unpickling makes: the
        array = array.view(spec.numpy_dtype)  # generated check compares dtypes by identity
    return array if array.flags.carray else array.copy()


_SCALAR = {"float64": np.float64, "float32": np.float32, "int64": np.int64}


def check_labels(spec: InputSpec, labels: np.ndarray, dims: dict) -> None:
    bound = spec.label_bound
    bound = dims[bound][0] if isinstance(bound, str) else bound
    if labels.size and (labels.min() < 0 or labels.max() >= bound):
        bad = labels[(labels < 0) | (labels >= bound)][0]
        raise DomainError(f"{spec.name} holds the label {bad}, outside [0, {bound})")

"""Input specs: what each argument of a compiled model must be, and every check of it.

One InputSpec per input owns all that is known about it: the attribute test the generated
entry point runs on the fast path, the size and label checks the kernel's prologue runs before
it reads anything (Numba kernels have no bounds checks), the slow path's conversion of
anything else (lists, other dtypes, strided arrays) and the error that names what is wrong.
The kernel and the tape tier both use these specs. The generated fast path refuses missing
and unknown names (a missing one's marker default, which the kernel's dispatcher does not
take; any name in its `**_unknown`); `bind` names them, for the slow paths of every call.
"""
from __future__ import annotations

import numbers

import numpy as np

from symdiff.errors import ArgumentError, DomainError, ShapeError
from symdiff.ir import format_shape
from symdiff.optable import OPS

NUMPY = {"float64": np.float64, "float32": np.float32, "int64": np.int64}
REFUSED = "symdiff: sizes or labels refused"  # the kernel's ValueError; run() goes the slow way


class LazyInput(ArgumentError):
    """An argument that is a Dask array: `Compiled` runs such calls chunk by chunk
    (codegen/chunked.py); calls that cannot say so."""


class Missing:
    """The default of every generated entry point's parameters: a name not passed."""

    def __repr__(self):
        return "<missing>"


MISSING = Missing()


class InputSpec:
    """What one kernel argument must be, worked out once from its input node."""

    __slots__ = ("name", "shape", "dtype", "label_bound", "numpy_dtype", "axes")

    def __init__(self, node, label_bound=None):
        self.name, self.shape, self.dtype = node.attr("name"), node.shape, node.dtype
        self.label_bound = label_bound  # labels must lie in [0, this dimension)
        self.numpy_dtype = np.dtype(NUMPY[node.dtype])
        self.axes = tuple(enumerate(node.shape))

    # ------------------------------------------------------------ generated fast path

    def fast_test(self) -> str:
        """Python text that is true when a scalar argument is of the exact class the kernel
        was compiled for (Numba would silently convert an int or a bool). Arrays need no test
        of their own: the kernel's dispatcher, compiled for one array type, refuses others."""
        name = self.name
        kinds = {"float64": ("float", "_float64"), "float32": ("_float32",),
                 "int64": ("_int",)}[self.dtype]  # Numba types float and np.float64 alike
        test = " or ".join(f"{name}.__class__ is {k}" for k in kinds)
        return f"({test})" if len(kinds) > 1 else test

    def size_conditions(self, dim_var: dict, defined: dict) -> list[str]:
        """Numba conditions on the argument's sizes: each symbolic dimension equal to the
        variable that holds it (nonzero where this argument defines it), each fixed one equal
        to its size."""
        conditions = []
        for axis, d in self.axes:
            read, want = f"{self.name}.shape[{axis}]", dim_var.get(d, d)
            conditions.append(f"{want} > 0" if defined.get(want) == read else f"{read} == {want}")
        return conditions

    def label_lines(self, dim_var: dict, variable: str) -> list[str]:
        """Numba lines raising ValueError when a label lies outside [0, label_bound)."""
        bound = dim_var.get(self.label_bound, self.label_bound)
        return [f"    for {variable} in {self.name}.ravel():",
                f"        if {variable} < 0 or {variable} >= {bound}:",
                f"            raise _ValueError({REFUSED!r})"]

    # ------------------------------------------------------------ slow path

    def convert(self, value, dims: dict):
        """`value` as the kernel wants it, or a clear error naming this input. `dims` collects
        the sizes of symbolic dimensions: (size, the input that set it)."""
        if not self.shape:
            return self._scalar(value)
        if not (type(value) is np.ndarray and value.dtype is self.numpy_dtype
                and value.flags.carray):
            value = self._array(value)
        shape = value.shape
        if len(shape) != len(self.shape):
            raise ShapeError(f"{self.name} must have shape {format_shape(self.shape)}, but has "
                             f"shape {shape} (rank {len(shape)} instead of {len(self.shape)})")
        for axis, want in self.axes:
            got = shape[axis]
            if want.__class__ is str:
                seen = dims.get(want)
                if seen is None:
                    if got == 0:
                        raise ShapeError(f"{self.name} has an empty dimension {want} "
                                         f"(axis {axis})")
                    dims[want] = (got, self.name)
                elif seen[0] != got:
                    raise ShapeError(f"{self.name} has {want} = {got} on axis {axis}, but "
                                     f"{seen[1]} has {want} = {seen[0]}")
            elif want != got:
                raise ShapeError(f"{self.name} must have shape {format_shape(self.shape)}, but "
                                 f"has shape {shape}: axis {axis} is {got}, not {want}")
        return value

    def _scalar(self, value):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ArgumentError(f"{self.name} must be a real number, not {type(value).__name__}")
        return {"float64": float, "float32": np.float32, "int64": int}[self.dtype](value)

    def _array(self, value) -> np.ndarray:
        """`value` as a C-contiguous, aligned, writable array of this dtype (a copy only when
        needed; kernels never write their inputs)."""
        if hasattr(type(value), "__dask_graph__"):  # np.asarray would compute it here, whole
            raise LazyInput(f"{self.name} is a Dask array: value_and_grad, grad and calling "
                            f"the model take Dask arrays; this call takes NumPy arrays")
        try:
            array = np.asarray(value)
        except Exception as e:
            raise ArgumentError(f"{self.name} must be an array, not "
                                f"{type(value).__name__}") from e
        want = "iu" if self.dtype == "int64" else "fiu"
        if array.dtype.kind not in want:
            what = "integer labels" if self.dtype == "int64" else "real numbers"
            raise ArgumentError(f"{self.name} must hold {what}, not dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=self.numpy_dtype)
        if array.dtype is not self.numpy_dtype:  # an equal copy, as unpickling makes: the
            array = array.view(self.numpy_dtype)  # generated check compares dtypes by identity
        return array if array.flags.carray else array.copy()

    def check_labels(self, labels: np.ndarray, dims: dict) -> None:
        bound = self.label_bound
        bound = dims[bound][0] if isinstance(bound, str) else bound
        if labels.size and (labels.min() < 0 or labels.max() >= bound):
            bad = labels[(labels < 0) | (labels >= bound)][0]
            raise DomainError(f"{self.name} holds the label {bad}, outside [0, {bound})")

    def check_in_place(self, value, what: str | None = None, shape=None) -> None:
        """A parameter that a step updates in place must be a writable, C-contiguous array of
        the model's dtype (0-d for a scalar); anything else is refused, never copied. `what`
        says which array and why ("step updates W1 in place"); `shape`, when given, is the
        shape it must have (an optimizer's state array, shaped like its parameter)."""
        what = what or f"step updates {self.name} in place"
        if type(value) is not np.ndarray:
            came = f"a {type(value).__name__}"
        elif value.dtype != self.numpy_dtype:
            came = f"an array of dtype {value.dtype}"
        elif value.ndim != len(self.shape):
            came = f"an array of shape {value.shape}"
        elif not value.flags.writeable:
            came = "a read-only array"
        elif not value.flags.c_contiguous:
            came = "a non-contiguous array"
        elif not value.flags.aligned:
            came = "an unaligned array"
        elif shape is not None and value.shape != tuple(shape):
            raise ShapeError(f"{what}: it must have shape {format_shape(shape)}, as "
                             f"{self.name} has, not {value.shape}")
        else:
            return
        scalar = f" (a 0-d array for a scalar: np.array({self.name}, dtype=float))" \
            if not self.shape else ""
        raise ArgumentError(f"{what}: pass a writable, C-contiguous {self.dtype} NumPy "
                            f"array{scalar}, not {came}")


def numba_type(spec: InputSpec, in_place: bool = False) -> str:
    """The Numba type, as generated code spells it, of what `fast_test` accepts: a
    C-contiguous writable array of the dtype and rank (0-d for a scalar updated in place), or
    a scalar of the dtype."""
    if spec.shape or in_place:
        return f"Array({spec.dtype}, {len(spec.shape)}, 'C')"
    return spec.dtype


def specs_of(program) -> list[InputSpec]:
    """The spec of each input of `program`, in argument order, label bounds found."""
    bounds = {}
    for s in program.stmts:
        labels = OPS[s.node.op].labels
        if labels is not None:
            node, bound = labels(s.node)
            bounds[node.uid] = bound
    return [InputSpec(n, bounds.get(n.uid)) for n in program.inputs]


def bind(title: str, specs, arguments: dict) -> None:
    """Raise ArgumentError naming the unknown or missing arguments, if any (a parameter left
    at the generated entry point's default counts as missing)."""
    names = [spec.name for spec in specs]
    unknown = [k for k in arguments if k not in names]
    if unknown:
        raise ArgumentError(f"unknown argument{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                            f"{title} takes {', '.join(names)}")
    missing = [n for n in names if arguments.get(n, MISSING) is MISSING]
    if missing:
        raise ArgumentError(f"missing argument{'s' * (len(missing) > 1)} "
                            f"{', '.join(missing)} (takes {', '.join(names)})")


def option(arguments: dict, name: str, inputs, call: str, default=MISSING):
    """An option of a call that takes the model's inputs by keyword (`f.hvp`'s v,
    `check_grad`'s by_line), had it come by keyword: taken out of `arguments`, unless the model
    has an input of that name, whose keyword it is (the option then comes first, by position).
    Else `default`, or an error naming it if there is none."""
    if name in arguments and name not in inputs:
        return arguments.pop(name)
    if default is MISSING:
        shared = f"; {name}= is the model's input {name}: pass the option first, by position" \
            if name in inputs else ""
        raise ArgumentError(f"{call} is missing its argument {name}{shared}")
    return default


def check_rate(lr) -> float:
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise ArgumentError(f"the learning rate lr must be a real number, not "
                            f"{type(lr).__name__}")
    return float(lr)

"""NumPy habits on Tensors: NumPy arrays as constants, and NumPy's functions on Tensors.

Input: what a model ported from NumPy, autograd or JAX writes — `x @ V` with `V` a NumPy
array, `np.exp(x)`, `np.sum(h, axis=1)`, `h.astype(float)`. Output: the same Tensor the
`sd.*` call builds. An array becomes an `array` leaf holding a frozen copy (equal and hashed
by its content, so hash-consing shares it), written into the generated function as a literal.
NumPy's functions reach us through `__array_ufunc__` and `__array_function__`; `NUMPY` below
is the one table that says which `sd.*` function each one is. A NumPy function it does not
list is refused with a message naming it.
"""
from __future__ import annotations

import hashlib
import inspect
import operator

import numpy as np

from . import tensors as T
from .errors import ArgumentError
from .ir import format_shape, make_node

# Numba refuses an array literal of 1,000 entries or more, and a long literal buries the code
PRINTED = 256


class ConstantArray:
    """A float64 NumPy array frozen as an IR attribute: equal and hashed by its content."""

    __slots__ = ("array", "digest")

    def __init__(self, array: np.ndarray):
        array = np.array(array, dtype=np.float64)  # a copy: the caller's later edits stay out
        array.setflags(write=False)
        self.array = array
        data = repr(array.shape).encode() + array.tobytes()
        self.digest = hashlib.sha256(data).hexdigest()[:12]

    def __eq__(self, other):
        return isinstance(other, ConstantArray) and other.digest == self.digest

    def __hash__(self):
        return hash(self.digest)

    def __getstate__(self):
        return self.array

    def __setstate__(self, array):
        self.__init__(array)

    def __repr__(self):  # the Program's text: the values when they fit on a line
        if self.array.size <= 6:
            return repr(self.array.tolist())
        return f"{format_shape(self.array.shape)}, sha={self.digest}"


def constant(value, what="operand") -> T.Tensor:
    """A NumPy array or nested list of numbers as a constant Tensor (float64; bools are 0/1).

    >>> constant([[1.0, 2.0], [3.0, 4.0]])
    Tensor(shape=(2, 2), dtype=float64)
    """
    try:
        array = np.asarray(value)
    except ValueError as error:  # a ragged list
        raise ArgumentError(f"{what}: {error}") from None
    if array.dtype.kind not in "biuf":
        raise ArgumentError(f"{what} must be a number, an array of numbers or a symdiff "
                            f"Tensor, not {type(value).__name__} of {array.dtype}")
    if array.ndim == 0:
        return T.full((), float(array))
    if array.size == 0 or array.size > PRINTED:
        raise ArgumentError(
            f"{what}: a constant array of shape {format_shape(array.shape)} is written into the "
            f"generated code, which takes 1 to {PRINTED} entries: make it an input, "
            f"sd.tensor('V', {format_shape(array.shape)}), and pass its values at each call")
    node = make_node("array", (), array.shape, "float64", value=ConstantArray(array))
    return T.Tensor(node)


def astype(x: T.Tensor, dtype) -> T.Tensor:
    """`x.astype(dtype)`: a bool Tensor to 0/1 floats; a float Tensor to its own type."""
    try:
        target = np.dtype(dtype).name
    except TypeError:
        target = repr(dtype)
    if target not in ("float32", "float64"):
        raise ArgumentError(f"astype({target}): symdiff computes in float32 or float64")
    if x.dtype == "bool":
        return T.where(x, 1.0, 0.0)
    if x.dtype == target:
        return x
    raise ArgumentError(f"astype({target}) of a {x.dtype} Tensor: a model computes in one float "
                        f"type, taken from its inputs; declare them with "
                        f"sd.tensor(name, shape, dtype={target!r})")


def _operator(fn):
    """A NumPy operator ufunc on Tensors and arrays: the left operand made a Tensor first, so
    that NumPy scalars and arrays never dispatch back to NumPy."""
    return lambda a, *rest: fn(T.as_tensor(a), *rest)


def _transpose(a, axes=None):  # NumPy's keyword for the permutation
    return T.transpose(a, axes)


# NumPy's function -> symdiff's: a name of symdiff.tensors (looked up when called, so a
# function added there is found) or a callable. An elementwise ufunc not listed here is
# looked up by its own NumPy name among the function records (np.exp -> sd.exp).
NUMPY = {
    np.add: _operator(operator.add), np.subtract: _operator(operator.sub),
    np.multiply: _operator(operator.mul), np.divide: _operator(operator.truediv),
    np.power: _operator(operator.pow), np.negative: _operator(operator.neg),
    np.positive: _operator(operator.pos), np.absolute: "abs",
    np.greater: _operator(operator.gt), np.greater_equal: _operator(operator.ge),
    np.less: _operator(operator.lt), np.less_equal: _operator(operator.le),
    np.equal: _operator(operator.eq), np.not_equal: _operator(operator.ne),
    np.matmul: "matmul", np.dot: "matmul",
    np.sum: "sum", np.mean: "mean", np.max: "max", np.amax: "max",
    np.min: "min", np.amin: "min", np.prod: "prod", np.var: "var", np.std: "std",
    np.cumsum: "cumsum", np.where: "where", np.concatenate: "concatenate", np.stack: "stack",
    np.transpose: _transpose, np.reshape: "reshape",
}


def _name(fn) -> str:
    module = getattr(fn, "__module__", None) or "numpy"
    module = "np" if module == "numpy" or module.startswith("numpy._") else \
        module.replace("numpy", "np", 1)
    return f"{module}.{getattr(fn, '__name__', fn)}"


def _symdiff(fn):
    """The symdiff function standing for NumPy's `fn`, or None."""
    entry = NUMPY.get(fn)
    if entry is None:
        return T.ELEMENTWISE.get(fn.__name__) if isinstance(fn, np.ufunc) else None
    if isinstance(entry, str):
        return getattr(T, entry, None) or T.ELEMENTWISE.get(entry)
    return entry


def _call(fn, args, kwargs):
    target = _symdiff(fn)
    if target is None:
        raise ArgumentError(f"{_name(fn)} has no symdiff counterpart for Tensors: write this "
                            f"step with the sd.* functions (see dir(symdiff)), or give its "
                            f"result as an input")
    signature = inspect.signature(target).replace(return_annotation=inspect.Signature.empty)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        name = target.__name__.lstrip("_")
        runs_as = "" if name == "<lambda>" else f" (symdiff runs it as sd.{name}{signature})"
        raise ArgumentError(f"{_name(fn)} on a Tensor: {error}{runs_as}") from None
    return target(*args, **kwargs)


def array_ufunc(ufunc, method: str, args, kwargs):
    """`Tensor.__array_ufunc__`: `np.exp(x)`, `V @ x`, `arr + x`."""
    if method != "__call__":
        raise ArgumentError(f"{_name(ufunc)}.{method} on a Tensor: write it with sd.* "
                            f"functions (np.add.reduce is sd.sum)")
    return _call(ufunc, args, kwargs)


def array_function(func, args, kwargs):
    """`Tensor.__array_function__`: `np.sum(x, axis=0)`, `np.concatenate([B, x])`."""
    return _call(func, args, kwargs)

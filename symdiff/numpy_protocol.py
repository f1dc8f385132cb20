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

from . import linalg as L
from .einsum import einsum
from . import structure as S
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


def _linalg(name):  # NumPy's function of that name, without its rarely used options
    return lambda *args: getattr(L, name)(*args)


def _diag(v):  # a matrix's diagonal, or a vector's diagonal matrix
    v = T.as_tensor(v)
    if v.ndim == 1:
        return L.eye(v.shape[0]) * v
    return L.diagonal(v)


def _take(a, indices, axis=None):  # NumPy's take without an axis reads the flattened array
    if axis is None and a.ndim != 1:
        raise ArgumentError(f"np.take of shape {format_shape(a.shape)} without an axis reads "
                            f"the flattened array: give axis=0 for rows")
    return T.take(a, indices, 0 if axis is None else axis)


def _transpose(a, axes=None):  # NumPy's keyword for the permutation
    return T.transpose(a, axes)


def _clip(a, a_min=None, a_max=None, *, min=None, max=None):  # noqa: A002 (NumPy's names)
    """np.clip: sd.clip, a bound left out (None) being infinite."""
    lo, hi = min if a_min is None else a_min, max if a_max is None else a_max
    if lo is None and hi is None:
        raise ArgumentError("np.clip on a Tensor: give a lower bound, an upper bound or both")
    return T.function("clip", a, -np.inf if lo is None else lo, np.inf if hi is None else hi)


def _norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 (NumPy's name)
    """np.linalg.norm: the 2-norm of vectors (ord None or 2) and the Frobenius norm of
    matrices (ord None or 'fro'); other orders are refused."""
    x = T.as_tensor(x)
    axes = tuple(range(x.ndim)) if axis is None else \
        (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    matrix = len(axes) == 2 and x.ndim >= 2 and (axis is not None or x.ndim == 2)
    if ord is None or ord == ("fro" if matrix else 2) and len(axes) <= 2:
        return T.norm(x, None if axis is None else axes, keepdims)
    raise ArgumentError(f"np.linalg.norm(ord={ord!r}) of a Tensor over {len(axes)} "
                        f"ax{'is' if len(axes) == 1 else 'es'}: "
                        f"symdiff computes the 2-norm of vectors (ord None or 2) and the "
                        f"Frobenius norm of matrices (ord None or 'fro'); write other norms "
                        f"with sd.* functions (ord=1 of a vector is sd.sum(abs(x)))")


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
    np.cumsum: "cumsum", np.roll: "roll", np.where: "where", np.concatenate: "concatenate",
    np.stack: "stack", np.take: _take,
    np.linalg.cholesky: _linalg("cholesky"), np.linalg.solve: _linalg("solve"),
    np.linalg.inv: _linalg("inv"), np.linalg.det: _linalg("det"),
    np.linalg.slogdet: _linalg("slogdet"), np.trace: _linalg("trace"),
    np.diagonal: _linalg("diagonal"), np.diag: _diag,
    np.transpose: _transpose, np.reshape: "reshape",
    np.clip: _clip, np.mod: "mod", np.remainder: "mod", np.linalg.norm: _norm,
    np.flip: S.flip, np.diff: S.diff, np.triu: S.triu, np.tril: S.tril, np.tile: S.tile,
    np.repeat: S.repeat, np.pad: S.pad, np.outer: S.outer, np.kron: S.kron,
    np.cumprod: S.cumprod, np.einsum: einsum,
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

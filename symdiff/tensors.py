"""The array front end: `Tensor`, a symbolic array with NumPy's operators, and `sd.*` functions.

Every front end ends here: formulas are parsed into these calls, SymPy expressions are walked
into them, and Python functions are traced by calling them on Tensors. Each call checks
shapes (NumPy broadcasting, with symbolic dimensions such as the batch size "n"), makes the
broadcasts explicit and builds one IR node.
"""
from __future__ import annotations

import inspect
import math
import numbers
import re

import numpy as np
import sympy as sp

from .errors import ArgumentError, ShapeError
from .functions import ALIASES, BY_CLASS, FUNCTIONS, evaluate_body, placeholder
from .ir import RESERVED, Node, broadcast_shapes, format_shape, make_node
from .optable import OPS

_DTYPES = {float: "float64", "float": "float64", "float64": "float64", np.float64: "float64",
           "float32": "float32", np.float32: "float32",
           int: "int64", "int": "int64", "int64": "int64", np.int64: "int64"}


class Tensor:
    """A symbolic array: shape, dtype, NumPy operators; every operation builds IR."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node

    shape = property(lambda self: self.node.shape)
    dtype = property(lambda self: self.node.dtype)
    ndim = property(lambda self: len(self.node.shape))
    T = property(lambda self: transpose(self))
    __hash__ = object.__hash__

    def __repr__(self):
        name = self.node.attr("name")
        label = f"'{name}', " if name else ""
        return f"Tensor({label}shape={format_shape(self.shape)}, dtype={self.dtype})"

    def __bool__(self):
        raise TypeError("a symbolic Tensor has no truth value: use sd.where(cond, a, b) "
                        "instead of if/else on it")

    def __add__(self, o): return _binary(sp.Add, self, o)
    def __radd__(self, o): return _binary(sp.Add, o, self)
    def __sub__(self, o): return _binary(lambda a, b: a - b, self, o)
    def __rsub__(self, o): return _binary(lambda a, b: a - b, o, self)
    def __mul__(self, o): return _binary(sp.Mul, self, o)
    def __rmul__(self, o): return _binary(sp.Mul, o, self)
    def __truediv__(self, o): return _binary(lambda a, b: a / b, self, o)
    def __rtruediv__(self, o): return _binary(lambda a, b: a / b, o, self)
    def __mod__(self, o): return function("mod", self, o)  # NumPy's %: the divisor's sign
    def __rmod__(self, o): return function("mod", o, self)
    def __pow__(self, o): return _binary(sp.Pow, self, o)
    def __rpow__(self, o): return _binary(sp.Pow, o, self)
    def __neg__(self): return _binary(lambda a, b: -a, self, 0)
    def __pos__(self): return self
    def __abs__(self): return function("abs", self)
    def __gt__(self, o): return _binary(sp.StrictGreaterThan, self, o)
    def __ge__(self, o): return _binary(sp.GreaterThan, self, o)
    def __lt__(self, o): return _binary(sp.StrictLessThan, self, o)
    def __le__(self, o): return _binary(sp.LessThan, self, o)
    def __eq__(self, o): return _binary(sp.Eq, self, o)
    def __ne__(self, o): return _binary(sp.Ne, self, o)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)

    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def reshape(self, *shape): return reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *perm): return transpose(self, perm or None)

    def __getitem__(self, key):  # NumPy indexing: symdiff/indexing.py
        from .indexing import getitem
        return getitem(self, key)

    # NumPy habits (np.exp(x), np.sum(x, axis=0), V @ x, astype): symdiff/numpy_protocol.py
    def __array_ufunc__(self, ufunc, method, *args, **kwargs):
        from .numpy_protocol import array_ufunc
        return array_ufunc(ufunc, method, args, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .numpy_protocol import array_function
        return array_function(func, args, kwargs)

    def astype(self, dtype):
        from .numpy_protocol import astype
        return astype(self, dtype)


# ---------------------------------------------------------------- leaves


def tensor(name: str, shape=(), dtype=float) -> Tensor:
    """A named input. `shape` holds ints and names of dimensions known at call time.

    >>> tensor("X", ("n", 3))
    Tensor('X', shape=(n, 3), dtype=float64)
    """
    check_name(name)
    if dtype not in _DTYPES:
        raise ArgumentError(f"{name}: dtype must be float, 'float32' or int, not {dtype!r}")
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    for d in shape:
        if isinstance(d, str):
            check_name(d, what="dimension name")
        elif not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise ShapeError(f"{name}: a dimension must be a non-negative int or a name, not {d!r}")
    shape = tuple(d if isinstance(d, str) else int(d) for d in shape)
    return Tensor(make_node("input", (), shape, _DTYPES[dtype], name=name))


def scalar(name: str) -> Tensor:
    """A named float64 scalar input (a rank-0 tensor)."""
    return tensor(name, ())


def check_name(name, what="name") -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ArgumentError(f"{what} {name!r} is not an identifier")
    if name in RESERVED or name.startswith(("_", "part_")):
        raise ArgumentError(f"{what} {name!r} is reserved by symdiff's generated code; "
                            f"choose another")


def full(shape, value: float) -> Tensor:
    return Tensor(make_node("const", (), tuple(shape), "float64", value=float(value)))


def zeros(shape) -> Tensor:
    return full(shape, 0.0)


def dim(name: str) -> Tensor:
    """The run-time size of a symbolic dimension, as a float64 scalar."""
    return Tensor(make_node("dim", (), (), "float64", name=name))


def iota(shape, axis: int) -> Tensor:
    """An array whose entries are their own index along `axis`."""
    return Tensor(make_node("iota", (), tuple(shape), "int64", axis=axis))


def apply_op(op: str, inputs, **attrs) -> Tensor:
    """`op` of the Tensors or nodes `inputs`: the one place a non-leaf node is made, its shape
    and dtype from its record's shape rule (which raises ShapeError on a mismatch)."""
    nodes = tuple(x.node if isinstance(x, Tensor) else x for x in inputs)
    shape, dtype = OPS[op].shape(*nodes, **attrs)
    return Tensor(make_node(op, nodes, shape, dtype, **attrs))


# ---------------------------------------------------------------- elementwise


def _number(value):
    """A finite real number as a SymPy constant for a body; None if it is not one."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) <= 10**6:
        return sp.Integer(int(value))
    return sp.Float(value)


def as_tensor(value, what="operand") -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return full((), float(value))
    if isinstance(value, (np.ndarray, list, tuple)):  # a constant array
        from .numpy_protocol import constant
        return constant(value, what)
    raise ArgumentError(f"{what} must be a number or a symdiff Tensor, not {type(value).__name__}")


def fold(fn, *values) -> float:
    """Apply `fn` to numbers in float64 arithmetic: overflow gives inf, never a huge integer."""
    with np.errstate(all="ignore"):
        return float(fn(*(np.float64(v) for v in values)))


def apply_body(body: sp.Expr, env: dict) -> Tensor:
    """Build the elementwise node `body`, its free symbols bound by `env` to Tensors or numbers.

    Operands are broadcast to a common shape. Constants fold here, in one place: a body with
    no Tensor operand left is evaluated in float64 (IEEE: 1/0 is inf), and finite constants
    are written into the body unless SymPy would then drop an operand or make the body
    undefined (0*x becomes 0, x/0 becomes zoo*x, both wrong where x is inf or 0): then they
    stay operands and the kernel's IEEE arithmetic decides. Each operand gets a placeholder
    of its own, so that SymPy cannot simplify x/x to 1 or x - x to 0 (NaN at 0 or inf).
    """
    env = {s: as_tensor(v) for s, v in env.items() if s in body.free_symbols}
    shape = broadcast_shapes((), *(v.shape for v in env.values()))
    values = {s: v.node.attr("value") for s, v in env.items() if _is_const(v)}
    if len(values) == len(env):
        return full(shape, evaluate_body(body, {s.name: np.float64(v) for s, v in values.items()}))
    if shape and all(_is_const(v) or _scalar_source(v) is not None for v in env.values()):
        # the same number everywhere: computed once, then broadcast (a loop never stores it)
        scalars = {s: values[s] if s in values else _scalar_source(v) for s, v in env.items()}
        return broadcast_to(apply_body(body, scalars), shape)
    constants = {s: _number(v) for s, v in values.items() if _number(v) is not None}
    folded = body.xreplace(constants)
    operands = [s for s in env if s not in constants]
    dropped = any(s not in folded.free_symbols for s in operands if s in body.free_symbols)
    if _undefined(folded) or dropped and not body.has(sp.Piecewise):
        folded, constants = body, {}  # 0*x or x/0: folding would change IEEE's answer
        # (a select whose condition is constant drops its other branch, as it should)
    used = [s for s in env if s not in constants and s in folded.free_symbols]
    inputs, rename = [], {}
    for s in used:  # one placeholder per operand, even for one node twice: x/x stays x/x
        inputs.append(broadcast_to(env[s], shape).node)
        rename[s] = placeholder(len(inputs) - 1)
    body = folded.xreplace(rename)
    if body.is_Number or body in (sp.true, sp.false):
        return full(shape, float(bool(body)) if body in (sp.true, sp.false) else float(body))
    if body.is_Symbol:
        return Tensor(inputs[int(body.name[1:])])
    return apply_op("elementwise", inputs, body=body)


def _undefined(body: sp.Expr) -> bool:
    """Whether SymPy made `body` undefined (zoo, nan, infinities, imaginary numbers), or will
    when a composite function's definition is expanded with a constant argument: xlogy(x, 0)
    holds log(0) = zoo, and xlogy(x, 1) drops x (x*log(1) is 0, NaN for an infinite x)."""
    if body.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I):
        return True
    for e in body.atoms(sp.Function):
        record = BY_CLASS.get(type(e))
        if record is not None and record.definition is not None:
            expanded = record.expand(e.args)
            if _undefined(expanded) or e.free_symbols - expanded.free_symbols:
                return True
    return False


def _is_const(v) -> bool:
    return isinstance(v, Tensor) and v.node.op == "const"


def _scalar_source(v: Tensor) -> Tensor | None:
    """The 0-d Tensor that `v` is or broadcasts, else None."""
    if v.node.rank == 0:
        return v
    if v.node.op == "broadcast" and v.node.inputs[0].rank == 0:
        return Tensor(v.node.inputs[0])
    return None


def _binary(fn, a, b):
    x, y = placeholder(0), placeholder(1)
    return apply_body(fn(x, y), {x: a, y: b})


def function(name: str, *args, **keywords) -> Tensor:
    """Apply the elementwise function `name` (a record of functions.FUNCTIONS) to tensors or
    numbers; a record's parameters with defaults (elu's alpha) may be left out or given by
    name, and True and False are 1 and 0 (gelu's approximate)."""
    record = FUNCTIONS[ALIASES.get(name, name)]
    args = _bind(name, record, args, keywords)
    symbols = [sp.Symbol(f"_x{k}", real=True) for k in range(len(args))]
    return apply_body(record.sympy(*symbols), dict(zip(symbols, args)))


def _bind(name: str, record, args: tuple, keywords: dict) -> list:
    """The arguments of a call in parameter order, defaults filled in, booleans as 0 and 1."""
    arity = record.arity
    if arity is None and (len(args) < 2 or keywords):
        raise ArgumentError(f"{name} takes at least 2 arguments, given by position; got "
                            f"{len(args)}{f' and {sorted(keywords)}' * bool(keywords)}")
    if arity is not None and not record.defaults and not keywords:
        if len(args) != arity:
            raise ArgumentError(f"{name} takes {arity} argument{'s' * (arity > 1)}, "
                                f"got {len(args)}")
    elif arity is not None:
        try:
            bound = signature(record).bind(*args, **keywords)
        except TypeError as error:
            raise ArgumentError(f"{name}{signature(record)}: {error}") from None
        bound.apply_defaults()
        args = tuple(bound.arguments.values())
    for value, param in zip(args, record.params or range(len(args))):
        if isinstance(value, str):
            raise ArgumentError(f"{name}: {getattr(param, 'name', 'an argument')} must be a "
                                f"number or a Tensor, not the string {value!r}")
    return [float(a) if isinstance(a, (bool, np.bool_)) else a for a in args]


def signature(record) -> inspect.Signature:
    """A record's call signature: its parameters' names, the last ones with their defaults
    (`elu(x, alpha=1.0)`); a built-in record without named parameters takes `x` or `x, y`."""
    names = [p.name for p in record.params] or ["x", "y", "z"][:record.arity or 2]
    first = len(names) - len(record.defaults)
    return inspect.Signature([inspect.Parameter(
        n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=record.defaults[k - first] if k >= first else inspect.Parameter.empty)
        for k, n in enumerate(names)])


def _api_function(record):
    def fn(*args, **keywords):
        return function(record.name, *args, **keywords)
    fn.__name__ = fn.__qualname__ = record.api or record.name
    fn.__doc__ = f"Elementwise {record.name}, on Tensors or numbers."
    if record.arity is not None:  # NumPy's calls are checked against it (np.exp(x, out=))
        fn.__signature__ = signature(record)
    return fn


# sd.exp, sd.maximum, ...: one per function record (symdiff/__init__.py exports them all)
ELEMENTWISE = {f.api or f.name: _api_function(f) for f in FUNCTIONS.values() if not f.internal}
ELEMENTWISE.update({a: ELEMENTWISE[FUNCTIONS[n].api or n] for a, n in ALIASES.items()})


def where(cond, a, b) -> Tensor:
    """`a` where `cond` is true, else `b`, elementwise."""
    c, x, y = (placeholder(k) for k in range(3))
    return apply_body(sp.Piecewise((x, sp.Ne(c, 0)), (y, True)), {c: cond, x: a, y: b})


# ---------------------------------------------------------------- shapes


def broadcast_in_dim(x: Tensor, shape, dims) -> Tensor:
    """Broadcast `x` to `shape`, its axis k becoming axis dims[k] of the result."""
    shape, dims = tuple(shape), tuple(dims)
    if x.shape == shape and dims == tuple(range(len(shape))):
        return x
    if _is_const(x):
        OPS["broadcast"].shape(x.node, shape=shape, dims=dims)  # refuses a shape that won't fit
        return full(shape, x.node.attr("value"))
    if x.node.op == "broadcast" and all(  # compose: always broadcast from the source itself
            x.node.inputs[0].shape[a] == x.shape[d] for a, d in enumerate(x.node.attr("dims"))):
        inner = x.node.attr("dims")
        return broadcast_in_dim(Tensor(x.node.inputs[0]), shape, tuple(dims[d] for d in inner))
    return apply_op("broadcast", (x,), shape=shape, dims=dims)


def broadcast_to(x: Tensor, shape) -> Tensor:
    """NumPy-style broadcast: `x`'s axes align with the trailing axes of `shape`."""
    lead = len(shape) - x.ndim
    return broadcast_in_dim(x, shape, tuple(range(lead, len(shape))))


def _axes(axis, ndim: int, what="axis") -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"{what} {a} is out of range for a rank-{ndim} tensor")
    return tuple(sorted({int(a) % ndim for a in axes}))


def _reduce(op, x, axis, keepdims):
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    out = x
    if axes:
        out = apply_op(op, (x,), axes=axes)
    if keepdims:
        out = reshape(out, tuple(1 if a in axes else d for a, d in enumerate(x.shape)))
    return out


def sum(x, axis=None, keepdims=False) -> Tensor:
    """Sum over `axis` (all axes by default)."""
    return _reduce("sum", x, axis, keepdims)


def max(x, axis=None, keepdims=False) -> Tensor:
    """Maximum over `axis`; its adjoint is split evenly between tied maxima."""
    return _reduce("max", x, axis, keepdims)


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over `axis`; a symbolic dimension divides by its run-time size."""
    x = as_tensor(x)
    count: Tensor | int = 1
    for a in _axes(axis, x.ndim):
        d = x.shape[a]
        count = count * (dim(d) if isinstance(d, str) else d)
    return sum(x, axis, keepdims) / count


def min(x, axis=None, keepdims=False) -> Tensor:
    """Minimum over `axis`; its adjoint is split evenly between tied minima."""
    return _reduce("min", x, axis, keepdims)


def prod(x, axis=None, keepdims=False) -> Tensor:
    """Product over `axis`. Its gradient is the product of the other entries, zeros included
    (exact through second order: jvp, hvp)."""
    return _reduce("prod", x, axis, keepdims)


def var(x, axis=None, ddof=0, keepdims=False) -> Tensor:
    """Variance over `axis`: the squared deviations from the mean summed, divided by the
    count minus `ddof`, as NumPy's `var`."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    squares = sum((x - mean(x, axes, keepdims=True)) ** 2, axes, keepdims)
    return squares / (_count(x, axes) - ddof)


def std(x, axis=None, ddof=0, keepdims=False) -> Tensor:
    """Standard deviation over `axis`, as NumPy's `std`: the norm of the deviations from the
    mean over sqrt(count - ddof). It does not overflow, and a constant row takes the norm's
    convention at the zero vector: derivatives 0 at every order (a subgradient, as abs'(0))."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    spread = norm(x - mean(x, axes, keepdims=True), axes, keepdims)
    return spread / function("sqrt", _count(x, axes) - ddof)


def norm(x, axis=None, keepdims=False) -> Tensor:
    """The 2-norm over `axis` (all axes by default), scaled by the largest magnitude so that
    it neither overflows nor underflows. At the zero vector its derivatives are 0 at every
    order (gradient, jvp, hvp): a subgradient, as abs'(0) = 0."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    top = stop_gradient(max(function("abs", x), axes))
    scale = where(top > 0, where(top < math.inf, top, 1.0), 1.0)
    squares = sum((x / broadcast_in_dim(scale, x.shape, kept)) ** 2, axes)
    out = where(top == 0, 0.0, scale * function("sqrt", squares))  # NaN stays NaN
    return reshape(out, tuple(1 if a in axes else d for a, d in enumerate(x.shape))) \
        if keepdims else out


def cumsum(x, axis=None, *, reverse=False) -> Tensor:
    """Cumulative sum along `axis` (a vector's only axis by default); `reverse=True` sums
    from the far end."""
    x = as_tensor(x)
    if axis is None and x.ndim != 1:
        raise ShapeError(f"cumsum of shape {format_shape(x.shape)} needs an axis")
    (axis,) = _axes(0 if axis is None else axis, x.ndim)
    return apply_op("cumsum", (x,), axis=axis, reverse=bool(reverse))


def roll(x, shift, axis=None) -> Tensor:
    """`x` shifted by `shift` entries along `axis` (a vector's only axis by default), entries
    past the end coming back at the start, as np.roll; a tuple of shifts and axes rolls each."""
    x = as_tensor(x)
    if axis is None and x.ndim != 1:
        raise ShapeError(f"roll of shape {format_shape(x.shape)} needs an axis (NumPy's roll "
                         f"of the flattened array is reshape, roll, reshape)")
    shifts, axes = (shift, axis if axis is not None else 0)
    for s, a in zip(*(v if isinstance(v, tuple) else (v,) for v in (shifts, axes))):
        (a,) = _axes(a, x.ndim)
        if isinstance(x.shape[a], str):
            raise ShapeError(f"roll along axis {a} of size {x.shape[a]!r}: the size must be known")
        if int(s) % x.shape[a]:
            x = apply_op("roll", (x,), shift=int(s) % x.shape[a], axis=a)
    return x


def _count(x: Tensor, axes) -> Tensor | int:
    """The number of entries over `axes`; a symbolic dimension counts its run-time size."""
    count: Tensor | int = 1
    for a in axes:
        d = x.shape[a]
        count = count * (dim(d) if isinstance(d, str) else d)
    return count


def reshape(x, shape) -> Tensor:
    x = as_tensor(x)
    shape = (shape,) if isinstance(shape, (int, str)) else tuple(shape)
    if shape == x.shape:
        return x
    return apply_op("reshape", (x,), shape=shape)


def transpose(x, perm=None) -> Tensor:
    x = as_tensor(x)
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"{perm} is not a permutation of the axes of {format_shape(x.shape)}")
    if perm == tuple(range(x.ndim)):
        return x
    if x.node.op == "transpose":  # a transpose of a transpose is one transpose, or none
        inner = x.node.attr("perm")
        return transpose(Tensor(x.node.inputs[0]), tuple(inner[p] for p in perm))
    return apply_op("transpose", (x,), perm=perm)


def stop_gradient(x) -> Tensor:
    """`x` in the forward pass; no adjoint flows through it."""
    x = as_tensor(x)
    return apply_op("stop_gradient", (x,))


def matmul(a, b) -> Tensor:
    """`a @ b` with NumPy's matmul rules: vectors and matrices, and stacks of matrices (the
    leading axes broadcast; a vector is a matrix of one row or column, dropped after)."""
    a, b = as_tensor(a, "left operand of @"), as_tensor(b, "right operand of @")
    if a.ndim <= 2 and b.ndim <= 2:
        return apply_op("matmul", (a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"@ takes no scalars: shapes {format_shape(a.shape)} and "
                         f"{format_shape(b.shape)}")
    if a.ndim == 1:
        return reshape(matmul(reshape(a, (1,) + a.shape), b), b.shape[:-2] + b.shape[-1:])
    if b.ndim == 1:
        return reshape(matmul(a, reshape(b, b.shape + (1,))), a.shape[:-1])
    if a.ndim == 2:  # (A Bq) = (Bqᵀ Aᵀ)ᵀ: the stack on the left, the shared matrix right
        swap = tuple(range(b.ndim - 2)) + (b.ndim - 1, b.ndim - 2)
        return transpose(matmul(transpose(b, swap), transpose(a)), swap)
    if b.ndim > 2:  # the leading axes broadcast to one shape
        lead = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a, b = broadcast_to(a, lead + a.shape[-2:]), broadcast_to(b, lead + b.shape[-2:])
    return apply_op("bmm", (a, b))


def outer(a: Tensor, b: Tensor) -> Tensor:
    shape = (a.shape[0], b.shape[0])
    return broadcast_in_dim(a, shape, (0,)) * broadcast_in_dim(b, shape, (1,))


def concatenate(parts, axis=0) -> Tensor:
    parts = [as_tensor(p) for p in parts]
    if len(parts) == 1:
        return parts[0]
    axis = _axes(axis, parts[0].ndim)[0]
    return apply_op("concatenate", parts, axis=axis)


def stack(parts, axis=0) -> Tensor:
    parts = [as_tensor(p) for p in parts]
    axis = _axes(axis, parts[0].ndim + 1)[0]
    grown = [reshape(p, p.shape[:axis] + (1,) + p.shape[axis:]) for p in parts]
    return concatenate(grown, axis)


# ---------------------------------------------------------------- losses and friends


def logsumexp(x, axis=None, keepdims=False) -> Tensor:
    """log(sum(exp(x))) with the maximum subtracted first, so it never overflows."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    top = stop_gradient(max(x, axes))
    shifted = x - broadcast_in_dim(top, x.shape, kept)
    out = top + function("log", sum(function("exp", shifted), axes))
    return reshape(out, tuple(1 if a in axes else d for a, d in enumerate(x.shape))) \
        if keepdims else out


def log_softmax(x, axis=-1) -> Tensor:
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    return x - broadcast_in_dim(logsumexp(x, axes), x.shape, kept)


def softmax(x, axis=-1) -> Tensor:
    """exp(x) over its sum along `axis`, the maximum subtracted first so that it never
    overflows: one exp per entry (exp of log_softmax would take two)."""
    x = as_tensor(x)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    top = stop_gradient(max(x, axes))
    e = function("exp", x - broadcast_in_dim(top, x.shape, kept))
    return e / broadcast_in_dim(sum(e, axes), x.shape, kept)


def take(x, indices, axis=0) -> Tensor:
    """The entries of `x` at the integer `indices` along `axis`, as np.take and jnp.take: an
    embedding's rows, `E[idx]`, shape idx.shape + E.shape[1:] for axis 0. `indices` is an
    integer input (sd.tensor(..., dtype=int)), checked to lie in range before any kernel
    reads it; the adjoint adds each row's adjoint back at its index."""
    x, indices = as_tensor(x), as_tensor(indices, "indices")
    if indices.node.op != "input" or indices.dtype != "int64":
        raise ArgumentError(f"take: indices must be an integer input, sd.tensor(name, shape, "
                            f"dtype=int), not {indices!r}")
    (axis,) = _axes(axis, x.ndim)
    if axis == 0:
        return apply_op("take", (x, indices))
    moved = transpose(x, (axis,) + tuple(a for a in range(x.ndim) if a != axis))
    y = apply_op("take", (moved, indices))  # idx axes, then x's other axes: put them back
    k = indices.ndim
    return transpose(y, tuple(range(k, k + axis)) + tuple(range(k)) +
                     tuple(range(k + axis, y.ndim)))


def take_along(x, labels) -> Tensor:
    """`x[i, labels[i]]` for each row i: picks one entry per row by integer label."""
    x, labels = as_tensor(x), as_tensor(labels, "labels")
    return apply_op("take_along", (x, labels))


def softmax_cross_entropy(logits, labels) -> Tensor:
    """Per-row cross-entropy of softmax(logits) against integer labels, through logsumexp."""
    logits, labels = as_tensor(logits), as_tensor(labels, "labels")
    return logsumexp(logits, axis=-1) - take_along(logits, labels)


def binary_cross_entropy_with_logits(z, y) -> Tensor:
    """-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), computed as softplus(z) - y z."""
    return function("softplus", z) - y * z


def mse(prediction, target) -> Tensor:
    """Mean squared error over all entries."""
    return mean((prediction - target) ** 2)

"""A kernel's module run by CPython while Numba compiles it: the kernel's bits, no compile.

A new model's kernel takes Numba one to two seconds to compile, and the module it compiles
is Python. Numba compiles its floating-point statements as IEEE operations in the order
written (no reassociation, no fused multiply-adds; error_model="numpy"), so CPython running
the same statements on the same numbers gets the same bits, a few hundred times more slowly.
`load` prepares a module's text for CPython; `Uncompiled.run` runs one call with it.

Where the two would compute differently, the text's names are bound to Numba's behaviour:
- `x ** k` for an integer k: Numba multiplies by repeated squaring, where CPython calls the C
  library's pow. `_powi` does Numba's products (the printer writes x**-k as 1.0 / x**k). LLVM
  rewrites some powers of a constant (`visit_BinOp`); any other power is the C library's pow
  in Numba, and `_pow` here (through ctypes: math.pow raises where pow returns inf).
- np.maximum and np.minimum: Numba's selects (`_maximum`, `_minimum`), not NumPy's loops.
- `_dot`: Numba calls SciPy's BLAS (ddot, dgemv, dgemm) with arguments set by the operands'
  layouts; `_dot` here makes the same calls to the same functions through ctypes. NumPy's
  matmul would call another build of OpenBLAS.
- vecmath's functions (`_vm`): vecmath.py's own source, its two bit casts done by NumPy views.
- np.sign and np.cbrt: Numba's own code for them (`_sign`), and the C library's cbrt.
- a long function's helper module (erfinv, digamma; printer.HELPERS): run the same way, and
  the LAPACK module (runtime.py) too, its LAPACK and BLAS functions called through ctypes.
- a float32 model's numbers: its float literals are float64 in Numba, where NumPy 2 gives a
  Python float the other operand's type (`_Numbers` binds each as a NumPy scalar), and its
  functions take the C library's float forms on float32 operands (`_by_precision`).
numpy and math are reached through namespaces holding only what is known to agree (`_NP`,
`_MATH`, and `_NP32`, `_MATH32` for float32). A module that reads anything else or imports
any other compiled module is not loaded: `load` returns None. A call that raises
(CPython refuses 1.0/0.0 and math.sqrt(-1.0), where Numba gives inf and NaN) returns None:
the caller then waits for the kernel.
"""
from __future__ import annotations

import ast
import ctypes
import ctypes.util
import importlib
import math
import re
import time
import types
from functools import cache
from pathlib import Path

import numpy as np

from symdiff.errors import LinAlgError

from .blas import NAME as CYTHON_BLAS, load_blas_alone
from .build import module_name
from .emit import MACHINERY, machinery_constant
from .printer import HELPERS, VECMATH_IMPORT
from .runtime import LAPACK_SOURCE, RUNTIME_SOURCE

SECONDS_PER_STEP = 0.6e-6  # CPython's time for a statement of a loop (0.42 us measured: MLP;
# float32 10-20% slower)
# CPython runs a model's calls for at most this many seconds in all (estimated beforehand,
# measured after): its time is taken from the compile on the other thread, which needs the
# same interpreter lock
MAX_SECONDS = 0.5


class Uncompiled:
    """A kernel module's functions run by CPython (`load`), and the statements a call runs
    per entry of products of its symbolic dimensions (`STEPS`, written by the emitter)."""

    def __init__(self, namespace: dict, steps: dict):
        self.kernel, self.steps = namespace["kernel"], steps
        self.spent = 0.0  # seconds of calls run so far

    def quick(self, dims: dict) -> bool:
        """Whether a call with these dimension sizes ({name: size}) is estimated to fit in
        what is left of MAX_SECONDS."""
        steps = sum(count * math.prod(dims[d] for d in symbolic)
                    for symbolic, count in self.steps.items())
        return self.spent + steps * SECONDS_PER_STEP <= MAX_SECONDS

    def run(self, arguments: list, chunks: int):
        """kernel(*arguments, chunks) under CPython, or None if CPython raised."""
        start = time.perf_counter()
        try:
            with np.errstate(all="ignore"):
                value, rest = self.kernel(*arguments, chunks)
        except Exception:  # noqa: BLE001 (CPython's float errors, a name refused): the kernel
            return None
        finally:
            self.spent += time.perf_counter() - start
        return _number(value), tuple(_number(r) for r in rest)


def load(source: str, dtype: str) -> Uncompiled | None:
    """The module `source` (emit.py) made runnable by CPython, or None where it cannot be
    (see the module's docstring) or where its `STEPS` is None (no estimate of a call's time)."""
    steps = machinery_constant(source, "STEPS")
    if dtype not in ("float64", "float32") or steps is None:
        return None
    try:
        namespace = _runnable(source.split(MACHINERY)[0], dtype == "float32")
    except Exception:  # noqa: BLE001 (a C library or SciPy module not found, ...): this route
        return None  # only saves time, and the kernel answers instead
    return None if namespace is None else Uncompiled(namespace, steps)


def _runnable(text: str, single: bool) -> dict | None:
    """The namespace of module `text` run by CPython (`single`: a float32 model's), its
    helper modules' functions (long definitions of function records: printer.HELPERS) run
    the same way; None if it imports any other module of its own or reads what CPython
    would compute otherwise."""
    tree = ast.parse(text)
    helpers = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _import_text(node) not in _PROVIDED:
            found = _helper(getattr(node, "module", None) or "", single)
            if found is None:
                return None
            helpers.update({alias.name: found[alias.name] for alias in node.names})
    _undecorated(tree, lambda node: isinstance(node, (ast.Import, ast.ImportFrom)) or (
        isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SIGNATURE"))
    numbers = _Numbers()
    try:
        tree = _Check(single).visit(tree)
    except _Refused:
        return None
    if single:
        tree = numbers.visit(tree)
    namespace = {"__builtins__": __builtins__, **_names(single), **numbers.bound, **helpers}
    exec(compile(ast.fix_missing_locations(tree), "<symdiff kernel, run by CPython>", "exec"),
         namespace)
    return namespace


def _helper(module: str, single: bool) -> dict | None:
    """The namespace of the helper module named `module`, or of the LAPACK module for a
    float64 model, run by CPython (None if there is no such module, or if it cannot run):
    made once per process."""
    if module == module_name(LAPACK_SOURCE):
        return None if single else _lapack()
    if module not in _helpers:
        source = next((s for s in HELPERS if module_name(s) == module), None)
        _helpers[module] = None if source is None else _runnable(source, single)
    return _helpers[module]


_helpers: dict[str, dict | None] = {}


def _undecorated(tree: ast.Module, skip) -> None:
    """Drop the top-level statements `skip` is true of, and the decorators (Numba's) of the
    functions left."""
    tree.body = [node for node in tree.body if not skip(node)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.decorator_list = []


class _Refused(Exception):
    """A construct CPython would compute otherwise than Numba."""


class _Check(ast.NodeTransformer):
    """`x ** k` as `_powi(x, k)` for an integer literal k, else as `_pow(x, k)`; refused: a
    name of np, math or _vm that `_names` does not bind, and any method call on an array but
    those that move data or round to a float type (an array's `sum` would be NumPy's)."""

    METHODS = {"copy", "ravel", "reshape", "transpose"}
    ROUNDED = {"np.float32", "np.float64"}  # astype to a float: rounded as Numba rounds

    def __init__(self, single: bool):
        self.names = _names(single)

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id in ("np", "math", "_vm") \
                and not hasattr(self.names[node.value.id], node.attr):
            raise _Refused
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr not in self.METHODS and not (
                isinstance(f.value, ast.Name) and f.value.id in ("np", "math", "_vm")) and not (
                f.attr == "astype" and len(node.args) == 1
                and ast.unparse(node.args[0]) in self.ROUNDED):
            raise _Refused
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if not isinstance(node.op, ast.Pow):
            return node
        k = node.right  # (the printer writes x**-k as 1.0 / x**k)
        if isinstance(k, ast.Constant) and type(k.value) is int and k.value >= 0:
            return _call("_powi", node.left, k)
        # LLVM simplifies a power of a constant that Numba leaves to it (measured, float64
        # and float32): x**2.0 to x*x, x**-1.0 to 1/x, x**0.5 to a guarded sqrt, and
        # (2**n)**x to exp2(n*x); other powers call the C library's pow
        exponent, base = _literal(k), _literal(node.left)
        special = {2.0: "_square", -1.0: "_reciprocal", 0.5: "_sqrt_power"}
        if exponent in special:
            return _call(special[exponent], node.left, k)
        if base is not None and base > 0.0 and base != 1.0 and math.frexp(base)[0] == 0.5:
            n = ast.Constant(float(math.frexp(base)[1] - 1))  # base = 2**n
            if isinstance(node.left, ast.Call):  # np.float32(base): n as a float32 too
                n = ast.Call(node.left.func, [n], [])
            return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "exp2", ast.Load()),
                            [ast.BinOp(n, ast.Mult(), k)], [])
        return _call("_pow", node.left, k)

    def visit_AugAssign(self, node):
        if isinstance(node.op, ast.Pow):
            raise _Refused
        return self.generic_visit(node)


def _call(name: str, *operands) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(operands), [])


def _literal(node) -> float | None:
    """The value of a float literal (np.float32(...) of one included), else None."""
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.float32", "np.float64") \
            and len(node.args) == 1:
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None
    return float(value) if type(value) is float else None


class _Numbers(ast.NodeTransformer):
    """A float32 module's numbers typed as Numba types them, each bound once as a NumPy
    scalar (`bound`): np.float32(a literal) a float32, and any other float literal a
    float64. (NumPy 2 takes a Python float as having the other operand's type: the batch
    sums `total = 0.0`, float64 in Numba, would add in float32.)"""

    def __init__(self):
        self.bound = {}

    def _name(self, value) -> ast.Name:
        name = f"_number{len(self.bound)}"
        self.bound[name] = value
        return ast.Name(name, ast.Load())

    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "float32" and len(node.args) == 1 \
                and isinstance(f.value, ast.Name) and f.value.id == "np":
            try:
                with np.errstate(over="ignore"):  # to inf, as Numba rounds it
                    return self._name(np.float32(ast.literal_eval(node.args[0])))
            except (ValueError, TypeError):  # not a number's literal
                pass
        return self.generic_visit(node)

    def visit_Constant(self, node):
        return self._name(np.float64(node.value)) if type(node.value) is float else node


def _powi(x, k: int):
    """x ** k as Numba computes it for an integer k >= 0: products by repeated squaring,
    from 1.0 (numba/cpython/numbers.py, static_power_impl)."""
    result = 1.0
    while k:
        if k & 1:
            result = result * x
        k >>= 1
        x = x * x
    return result


def _maximum(a, b):
    """np.maximum as Numba's selects compute it: a NaN first if there is one, else a where
    a >= b; entry by entry for arrays (a reduction's partial maxima in chunks)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(a != a, a, np.where(b != b, b, np.where(a >= b, a, b)))
    if a != a or b != b:
        return a if a != a else b
    return a if a >= b else b


def _minimum(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(a != a, a, np.where(b != b, b, np.where(a <= b, a, b)))
    if a != a or b != b:
        return a if a != a else b
    return a if a <= b else b


def _promoted(x, exponent):
    """x as Numba's pow(x, exponent) takes it: in float64 unless both are float32."""
    return np.float64(x) if type(x) is np.float32 and type(exponent) is not np.float32 else x


def _square(x, exponent):
    x = _promoted(x, exponent)
    return x * x


def _reciprocal(x, exponent):
    return 1.0 / _promoted(x, exponent)  # (NumPy 2 takes the 1.0 as x's type)


def _sqrt_power(x, exponent):
    """x**0.5 as LLVM rewrites pow(x, 0.5): +inf at -inf, else |sqrt(x)| (so -0 gives +0)."""
    x = _promoted(x, exponent)
    return abs(x) if x == -math.inf else abs(np.sqrt(x))


def _sign(x):
    """np.sign of a number as Numba computes it: 1.0 above 0, -1.0 below, else x itself (0,
    -0 or the NaN; numba/cpython/numbers.py, real_sign_impl)."""
    return 1.0 if x > 0.0 else -1.0 if x < 0.0 else x


def _number(value):
    """A result as the kernel returns it: a Python number for a NumPy one, arrays as they are."""
    if isinstance(value, np.floating):
        return float(value)
    return int(value) if isinstance(value, np.integer) else value


# numpy's and math's names a kernel module may read, each computing what Numba computes:
# allocation, moving data, exact operations, and the types of the argument checks
_NP = types.SimpleNamespace(
    maximum=_maximum, minimum=_minimum, empty=np.empty, full=np.full, zeros=np.zeros,
    array=np.array, arange=np.arange, ascontiguousarray=np.ascontiguousarray,
    reshape=np.reshape, transpose=np.transpose, concatenate=np.concatenate, flip=np.flip,
    roll=np.roll, moveaxis=np.moveaxis, broadcast_to=np.broadcast_to, take=np.take,
    where=np.where, abs=np.abs, isfinite=np.isfinite, floor=np.floor, ceil=np.ceil,
    trunc=np.trunc, rint=np.rint, fmod=np.fmod, intp=np.intp, uint8=np.uint8, bool_=np.bool_,
    int32=np.int32, uint64=np.uint64, int64=np.int64, float64=np.float64, inf=np.inf,
    nan=np.nan)
def _libm(name: str, arity: int = 1, kind=ctypes.c_double):
    """The C library's function `name` of doubles (or of `kind`), called as Numba's kernels
    call it (CPython's math module has its own hypot, and raises where the C library returns
    inf or NaN); found at its first call, so that a C library without it costs only this
    route's calls (they wait for the kernel)."""
    found = []

    def function(*operands):
        if not found:
            c = getattr(ctypes.CDLL(ctypes.util.find_library("m")), name)
            c.restype, c.argtypes = kind, [kind] * arity
            found.append(c)
        return found[0](*operands)
    return function


_NP.exp2 = _libm("exp2")  # Numba: LLVM's exp2, the C library's
_NP.sign = _sign
_libm_cbrt = _libm("cbrt")


def _cbrt(x):
    """np.cbrt as Numba computes it: NaN for a NaN, else the C library's cbrt (Numba takes
    the power 1/3 of |x| with fast-math flags, which LLVM turns into a call of cbrt:
    numba/np/npyfuncs.py, np_real_cbrt_impl)."""
    return math.nan if x != x else _libm_cbrt(x)


_NP.cbrt = _cbrt
_MATH = types.SimpleNamespace(
    inf=math.inf, nan=math.nan, e=math.e, pi=math.pi, isfinite=math.isfinite,
    copysign=math.copysign, sqrt=math.sqrt, hypot=_libm("hypot", 2),
    **{name: _libm(name) for name in ("erf", "erfc", "lgamma")},
    # the C library's functions, which Numba calls too (by name or through LLVM's intrinsics)
    **{name: getattr(math, name) for name in (
        "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh",
        "atanh", "log2", "log10", "exp", "log", "log1p", "expm1", "tanh")})


def _by_precision(name: str, arity: int = 1, double=None):
    """The C library's function `name` as Numba calls it in a float32 model: on float32
    operands its float form (`sinf`), a float32; on any other, `double` (the double form by
    default), a float64. (Measured against Numba for every function bound so.)"""
    single, double = _libm(name + "f", arity, ctypes.c_float), double or _libm(name, arity)

    def function(*operands):
        if all(type(x) is np.float32 for x in operands):
            return np.float32(single(*operands))
        return np.float64(double(*operands))
    return function


def _sign_by_precision(x):
    return np.float32(_sign(x)) if type(x) is np.float32 else np.float64(_sign(x))


def _cbrt_by_precision(x):
    """Numba's np.cbrt of a float32 takes the power 1/3 in float64 (the literal's type),
    then rounds: the double cbrt, rounded."""
    return np.float32(_cbrt(x)) if type(x) is np.float32 else np.float64(_cbrt(x))


_C_NAMES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2",
            "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh"}
_TWO = {"arctan2", "hypot", "fmod", "atan2", "copysign"}
_NP32 = types.SimpleNamespace(**{
    **vars(_NP), "float32": np.float32, "sign": _sign_by_precision, "cbrt": _cbrt_by_precision,
    "inf": np.float64(np.inf), "nan": np.float64(np.nan),
    **{name: _by_precision(_C_NAMES.get(name, name), 1 + (name in _TWO)) for name in (
        "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
        "arcsinh", "arccosh", "arctanh", "exp", "exp2", "log", "log2", "log10", "log1p",
        "expm1", "sqrt", "hypot", "fmod")}})
_MATH32 = types.SimpleNamespace(
    inf=np.float64(math.inf), nan=np.float64(math.nan), e=np.float64(math.e),
    pi=np.float64(math.pi), isfinite=math.isfinite,
    **{name: _by_precision(name, 1 + (name in _TWO)) for name in vars(_MATH)
       if callable(getattr(_MATH, name)) and name != "isfinite"})


def _import_text(node) -> str:
    return ast.unparse(node).split("  #")[0]


_PROVIDED = {"import math", "import numpy as np", "from numba import njit, prange",
             "from numba import njit",
             "from numba.types import Array, float32, float64, int64",
             "from symdiff.errors import LinAlgError as _LinAlgError",
             VECMATH_IMPORT.split("  #")[0],
             f"from {module_name(RUNTIME_SOURCE)} import _dot",
             f"from {module_name(RUNTIME_SOURCE)} import _dot, _dot_into",
             f"from {module_name(RUNTIME_SOURCE)} import _dot_into"}


@cache
def _names(single: bool = False) -> dict:
    """The names a kernel module reads, bound for CPython (built once per process); for a
    float32 model (`single`), numpy's and math's functions by the operands' precision."""
    return {"np": _NP32 if single else _NP, "math": _MATH32 if single else _MATH,
            "prange": range, "_ValueError": ValueError, "_LinAlgError": LinAlgError,
            "_vm": _vecmath(), "_dot": _dot, "_dot_into": _dot_into, "_powi": _powi,
            "_pow": _by_precision("pow", 2) if single else _libm("pow", 2), "_square": _square,
            "_reciprocal": _reciprocal, "_sqrt_power": _sqrt_power}


def _vecmath():
    """vecmath.py's functions, run by CPython: its source without decorators and LLVM options,
    the bit casts `_bits` and `_float` as NumPy views (int64 arithmetic on them wraps, as
    Numba's does)."""
    tree = ast.parse((Path(__file__).parent / "vecmath.py").read_text(encoding="utf-8"))
    _undecorated(tree, lambda node: isinstance(node, (ast.Import, ast.ImportFrom)) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)) or (  # set_option
        isinstance(node, ast.FunctionDef) and node.name in ("_bits", "_float")))
    namespace = {"math": math, "np": np, "_bits": lambda x: np.float64(x).view(np.int64),
                 "_float": lambda i: np.int64(i).view(np.float64)}
    exec(compile(tree, "<vecmath, run by CPython>", "exec"), namespace)
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if callable(v)})


# ---- np.dot as Numba calls BLAS (numba/np/linalg.py: dot_2_mm, dot_2_mv, dot_2_vm,
# dot_2_vv, dot_3_*), through the functions of SciPy's cython_blas that Numba calls

_P = ctypes.c_void_p


@cache
def _blas(name: str):
    """SciPy's cython_blas function `name` (Fortran convention: every argument by pointer)."""
    load_blas_alone()
    restype = {"ddot": ctypes.c_double, "sdot": ctypes.c_float}.get(name)
    return _cython(CYTHON_BLAS, name, {"dot": 5, "gemv": 11, "gemm": 13}[name[1:]], restype)


def _cython(module: str, name: str, arity: int, restype=None):
    """The function `name` that SciPy's Cython module `module` exports, as a ctypes function
    of `arity` pointers."""
    capsule = importlib.import_module(module).__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = _P, [ctypes.py_object, ctypes.c_char_p]
    return ctypes.CFUNCTYPE(restype, *[_P] * arity)(get_pointer(capsule, get_name(capsule)))


@cache
def _lapack() -> dict:
    """The LAPACK runtime module's functions run by CPython: their own source, the LAPACK and
    BLAS functions they declare called through ctypes at the same addresses with the same
    pointers, and np.log of a number the C library's log, as Numba's."""
    tree = ast.parse(LAPACK_SOURCE)
    tree.body = [node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name != "_ptr"]
    _undecorated(tree, lambda node: False)
    namespace = {"np": types.SimpleNamespace(**{**vars(_NP), "log": _libm("log")}),
                 "_ptr": _ptr}
    declared = dict(re.findall(r'"symdiff_(\w+)", types\.void\(\*\[_P\] \* (\d+)', LAPACK_SOURCE))
    for module, name in re.findall(r'\("(lapack|blas)", "(\w+)"\)', LAPACK_SOURCE):
        namespace[f"_{name}"] = _cython(f"scipy.linalg.cython_{module}", name,
                                        int(declared[name]))
    exec(compile(tree, "<symdiff LAPACK module, run by CPython>", "exec"), namespace)
    return namespace


def _kind(array) -> tuple[str, type]:
    """The BLAS functions' letter for an array's dtype, and its scalars' ctypes type."""
    return ("s", ctypes.c_float) if array.dtype == np.float32 else ("d", ctypes.c_double)


def _c(kind, value):
    return ctypes.byref(kind(value))


def _ptr(array) -> int:
    return array.ctypes.data


def _layout(a) -> str:
    """Numba's layout of an array argument: C, F, or (a copy is made first) A."""
    return "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else "A"


def _contiguous(a):
    """Numba's copy of a non-contiguous operand (make_contiguous): C-ordered."""
    return a if _layout(a) != "A" else np.ascontiguousarray(a)


def _dot(a, b):
    dtype = np.float32 if a.dtype == b.dtype == np.float32 else np.float64
    a, b = _contiguous(np.asarray(a, dtype)), _contiguous(np.asarray(b, dtype))
    if a.ndim == 1 and b.ndim == 1:
        return _ddot(a, b)
    if a.ndim == 2 and b.ndim == 2:
        out = np.empty((a.shape[0], b.shape[1]), dtype)
    else:
        out = np.empty((a.shape[0] if a.ndim == 2 else b.shape[1],), dtype)
    if (a.shape[-1] if a.ndim == 2 else a.shape[0]) == 0:
        out[...] = 0.0
        return out
    _dot_into(a, b, out)
    return out


def _ddot(a, b):
    """ddot (sdot for float32 arrays, a float32)."""
    one, (kind, _) = ctypes.c_int(1), _kind(a)
    value = _blas(kind + "dot")(_c(ctypes.c_int, a.shape[0]), _ptr(a), ctypes.byref(one),
                                _ptr(b), ctypes.byref(one))
    return np.float32(value) if kind == "s" else value


def _dot_into(a, b, out) -> None:
    """np.dot(a, b, out) as Numba's dot_3_mm and dot_3_vm call BLAS."""
    a, b = _contiguous(a), _contiguous(b)
    if a.ndim == 2 and b.ndim == 2:
        (m, k), n = a.shape, b.shape[1]
        if k == 0 or m == 0 or n == 0:
            out[...] = 0.0
        elif n == 1 and m == 1:
            out[0, 0] = _ddot(a.reshape(-1), b.reshape(-1))
        elif n == 1:
            _gemv(a, b, out, _layout(a) == "C")
        elif m == 1:
            _gemv(b, a, out, _layout(b) != "C")
        else:
            _gemm(a, b, out)
    elif a.ndim == 1:  # vector x matrix: b.T x
        if a.shape[0] == 0 or b.shape[1] == 0:
            out[...] = 0.0
        else:
            _gemv(b, a, out, _layout(b) == "F")
    else:  # matrix x vector
        if b.shape[0] == 0 or a.shape[0] == 0:
            out[...] = 0.0
        else:
            _gemv(a, b, out, _layout(a) == "C")


def _gemv(matrix, vector, out, transpose: bool) -> None:
    """call_xxgemv: y = op(matrix) x in BLAS's column-major terms."""
    rows, cols = matrix.shape[:2] if matrix.ndim == 2 else (matrix.shape[0], 1)
    m, n, lda = (rows, cols, rows) if _layout(matrix) == "F" else (cols, rows, cols)
    kind, scalar = _kind(out)
    one, zero, inc = scalar(1.0), scalar(0.0), ctypes.c_int(1)
    trans = ctypes.c_char(b"t" if transpose else b"n")
    _blas(kind + "gemv")(ctypes.byref(trans), _c(ctypes.c_int, m), _c(ctypes.c_int, n),
                         ctypes.byref(one), _ptr(matrix), _c(ctypes.c_int, lda), _ptr(vector),
                         ctypes.byref(inc), ctypes.byref(zero), _ptr(out), ctypes.byref(inc))


def _gemm(x, y, out) -> None:
    """call_xxgemm: out (C-ordered) = x y, as BLAS's column-major outᵀ = yᵀ xᵀ."""
    (m, k), n = x.shape, y.shape[1]

    def param(a, shape):  # transposed if its layout is not the result's; its leading size
        return (b"n" if _layout(a) == "C" else b"t"), (shape[1] if _layout(a) == "C"
                                                        else shape[0])
    transa, lda = param(y, y.shape)
    transb, ldb = param(x, x.shape)
    kind, scalar = _kind(out)
    one, zero = scalar(1.0), scalar(0.0)
    _blas(kind + "gemm")(ctypes.byref(ctypes.c_char(transa)),
                         ctypes.byref(ctypes.c_char(transb)), _c(ctypes.c_int, n),
                         _c(ctypes.c_int, m), _c(ctypes.c_int, k), ctypes.byref(one), _ptr(y),
                         _c(ctypes.c_int, lda), _ptr(x), _c(ctypes.c_int, ldb),
                         ctypes.byref(zero), _ptr(out), _c(ctypes.c_int, n))

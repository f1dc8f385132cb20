"""`_dot` (np.dot) and the LAPACK/BLAS calls of generated kernels, in a module of its own:
compiled once per machine.

Numba compiles its implementation of np.dot afresh in every process that compiles a
function calling it (its cache keeps the user's functions, not NumPy's implementations), once
per layout of the operands: ~0.3-0.7 s each, 1.3 s of the 64-128-10 MLP's 3 s compile.
Kernels call this cached wrapper instead, so a new model's compile loads it from Numba's
cache once the machine has compiled it for those operand types. The first compile of each
costs ~0.25 s more than np.dot's inside the kernel would; np.empty and np.full, cheaper to
compile, stay in the kernels.

Loading a kernel also keeps the memory its arrays were in. A kernel allocates its
intermediates afresh on each call and frees them on return; glibc's malloc gives freed blocks
of more than 128 KiB back to the system (until its own threshold has grown past them), and
the next call takes every page of them again as a fresh page fault. A cached attention
layer's value and gradients took 1.9 ms so in a process that had done nothing else, 1.1 ms
with the thresholds fixed at the largest values glibc's own adaptation reaches (blocks to
32 MiB from the heap, 64 MiB kept free at its top). Left as they are where the user set
malloc's variables, and on other C libraries.
"""
from __future__ import annotations

import ctypes
import functools
import os

from .build import load_module, module_name
from .printer import HELPERS

RUNTIME_SOURCE = '''"""symdiff: np.dot for generated kernels, compiled once per machine."""
import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _dot(a, b):
    return np.dot(a, b)


@njit(cache=True, error_model="numpy")
def _dot_into(a, b, out):
    """a @ b written into out (a matrix of a stack): no new array, no copy."""
    np.dot(a, b, out)
'''
LAPACK_SOURCE = '''"""symdiff: LAPACK and BLAS calls for generated kernels, compiled once per
machine.

LAPACK's dpotrf, dgesv and dgetrf and BLAS's dtrsm come from SciPy's Cython exports. They
are called as external functions by a symbol registered with LLVM at import, not through
ctypes pointers, so the functions calling them stay in Numba's on-disk cache (Numba caches no
function holding a ctypes pointer). Arrays are C-ordered: LAPACK, column-major, sees each one
transposed.
"""
import llvmlite.binding as _llvm
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

for _module, _name in (("lapack", "dpotrf"), ("lapack", "dgesv"), ("lapack", "dgetrf"),
                       ("blas", "dtrsm")):
    _llvm.add_symbol(f"symdiff_{_name}",
                     get_cython_function_address(f"scipy.linalg.cython_{_module}", _name))
_P = types.voidptr
_dpotrf = types.ExternalFunction("symdiff_dpotrf", types.void(*[_P] * 5))
_dtrsm = types.ExternalFunction("symdiff_dtrsm", types.void(*[_P] * 11))
_dgesv = types.ExternalFunction("symdiff_dgesv", types.void(*[_P] * 8))
_dgetrf = types.ExternalFunction("symdiff_dgetrf", types.void(*[_P] * 6))


@intrinsic
def _ptr(typingctx, array):
    """The data pointer of an array, as LAPACK takes its arguments."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.bitcast(data, cgutils.voidptr_t)
    return types.voidptr(array), codegen


@njit(cache=True, error_model="numpy")
def _cholesky(a):
    """(L, info): a = L Lᵀ with L lower-triangular, and 0; or info > 0, the order of the
    first leading minor that is not positive (a is not positive definite)."""
    n = a.shape[0]
    factor = np.ascontiguousarray(a).copy()
    upper, size, info = np.array([85], np.uint8), np.array([n], np.int32), np.zeros(1, np.int32)
    _dpotrf(_ptr(upper), _ptr(size), _ptr(factor), _ptr(size), _ptr(info))  # LAPACK's upper
    for i in range(n):  # triangle is C's lower one; the other half is left as it was
        for j in range(i + 1, n):
            factor[i, j] = 0.0
    return factor, info[0]


@njit(cache=True, error_model="numpy")
def _solve_triangular(t, b, lower, transpose):
    """(x, info): op(t) x = b for t triangular (op: t or tᵀ), b of shape (n, m), and 0; or
    info > 0, the first zero on t's diagonal (then x is not computed)."""
    n, m = b.shape
    for i in range(n):
        if t[i, i] == 0.0:
            return np.empty((n, m)), i + 1
    x = np.ascontiguousarray(b).copy()
    right = np.array([82], np.uint8)  # C's op(t) x = b is LAPACK's xᵀ op(t)ᵀ = bᵀ
    triangle = np.array([85 if lower else 76], np.uint8)  # C's lower is LAPACK's upper
    op, unit = np.array([84 if transpose else 78], np.uint8), np.array([78], np.uint8)
    rows, cols, one = np.array([m], np.int32), np.array([n], np.int32), np.array([1.0])
    matrix = np.ascontiguousarray(t)
    _dtrsm(_ptr(right), _ptr(triangle), _ptr(op), _ptr(unit), _ptr(rows), _ptr(cols), _ptr(one),
           _ptr(matrix), _ptr(cols), _ptr(x), _ptr(rows))
    return x, 0


@njit(cache=True, error_model="numpy")
def _solve(a, b):
    """(x, info): a x = b for b of shape (n, m), by LU with partial pivoting, and 0; or
    info > 0 where a is singular (a zero pivot)."""
    n, m = b.shape
    lu, x = np.empty((n, n)), np.empty((m, n))  # copies LAPACK overwrites (never the caller's
    for i in range(n):  # array, nor a view of it): LAPACK sees a, and b, its columns these
        for j in range(n):  # rows (loops: slice assignments compiled for 1.8 s)
            lu[j, i] = a[i, j]
        for j in range(m):
            x[j, i] = b[i, j]
    size, rhs = np.array([n], np.int32), np.array([m], np.int32)
    pivots, info = np.empty(n, np.int32), np.zeros(1, np.int32)
    _dgesv(_ptr(size), _ptr(rhs), _ptr(lu), _ptr(size), _ptr(pivots), _ptr(x), _ptr(size),
           _ptr(info))
    return np.ascontiguousarray(x.T), info[0]


@njit(cache=True, error_model="numpy")
def _slogdet(a):
    """(sign, log|det a|) by LU, as np.linalg.slogdet: (0, -inf) for a singular matrix."""
    n = a.shape[0]
    lu = np.ascontiguousarray(a).copy()  # LAPACK sees aᵀ, of the same determinant
    size, pivots, info = np.array([n], np.int32), np.empty(n, np.int32), np.zeros(1, np.int32)
    _dgetrf(_ptr(size), _ptr(size), _ptr(lu), _ptr(size), _ptr(pivots), _ptr(info))
    sign, total = 1.0, 0.0
    for i in range(n):
        u = lu[i, i]
        if u == 0.0:
            return 0.0, -np.inf
        if u < 0.0:
            sign = -sign
        if pivots[i] != i + 1:  # a row swap
            sign = -sign
        total += np.log(abs(u))
    return sign, total
'''
# each module's functions a kernel may call: the LAPACK module, which loads SciPy's LAPACK,
# is imported only by the kernels that call it
RUNTIME = {RUNTIME_SOURCE: ("_dot", "_dot_into"),
           LAPACK_SOURCE: ("_cholesky", "_solve_triangular", "_solve", "_slogdet")}


def runtime_import(code: list[str]) -> str:
    """The imports of the runtime functions and the function records' helpers (printer.py)
    the code calls ("" if none)."""
    lines = []
    for source, names in {**RUNTIME, **HELPERS}.items():
        used = [name for name in names if any(f"{name}(" in c for c in code)]
        if used:
            lines.append(f"from {module_name(source)} import {', '.join(used)}  "
                         f"# compiled once per machine")
    return "\n".join(lines)


def calls_blas(kernel_source: str) -> bool:
    """Whether a kernel calls BLAS or LAPACK (SciPy's OpenBLAS): whether it imports from the
    runtime modules (by their names, which no title or comment can hold by chance)."""
    return any(module_name(source) in kernel_source for source in RUNTIME)


@functools.cache  # once per process, at its first call in chunks
def blas_threads() -> int:
    """The threads of the BLAS the kernels call: threadpoolctl's count where it is installed
    and finds a BLAS (the most any loaded one has), else what OpenBLAS reads when it loads:
    its variables (the first number of a list), at most a thread per CPU this process may
    run on, else that many."""
    try:
        from threadpoolctl import threadpool_info
        counts = [info["num_threads"] for info in threadpool_info()
                  if info.get("user_api") == "blas"]
        if counts:
            return max(counts)
    except ImportError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    for variable in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), cpus)
    return cpus


def load_runtime(kernel_source: str) -> None:
    """Import the runtime modules a kernel's source imports from (by their names)."""
    _keep_freed_memory()
    for source in {**RUNTIME, **HELPERS}:
        if module_name(source) in kernel_source:
            load_module(source)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)
_MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                     "GLIBC_TUNABLES")
_kept = []


def _keep_freed_memory() -> None:
    """Once per process: glibc's malloc keeps freed arrays of up to 32 MiB for the next call
    (see the module's docstring)."""
    if _kept or any(v in os.environ for v in _MALLOC_VARIABLES):
        return
    _kept.append(True)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)

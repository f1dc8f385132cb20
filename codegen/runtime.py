"""`_dot`, np.dot for generated kernels, in a module of its own: compiled once per machine.

Numba compiles its implementation of np.dot afresh in every process that compiles a
function calling it (its cache keeps the user's functions, not NumPy's implementations), once
per layout of the operands: ~0.3-0.7 s each, 1.3 s of the 64-128-10 MLP's 3 s compile.
Kernels call this cached wrapper instead, so a new model's compile loads it from Numba's
cache once the machine has compiled it for those operand types. The first compile of each
costs ~0.25 s more than np.dot's inside the kernel would; np.empty and np.full, cheaper to
compile, stay in the kernels.
"""
from __future__ import annotations

from .build import load_module, module_name

RUNTIME_SOURCE = '''"""symdiff: np.dot for generated kernels, compiled once per machine."""
import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _dot(a, b):
    return np.dot(a, b)
'''
RUNTIME_IMPORT = f"from {module_name(RUNTIME_SOURCE)} import _dot  # np.dot, compiled once per machine"


def runtime_module():
    """The module, imported (a kernel's module imports from it by name)."""
    return load_module(RUNTIME_SOURCE)[0]

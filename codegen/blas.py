"""Numba finds BLAS in `scipy.linalg.cython_blas`, and imports it when it first compiles or
loads any function (`numba.np.arraymath` checks for BLAS on import). Imported by its dotted
name, the extension module runs `scipy.linalg`'s `__init__` first, which imports most of
scipy.linalg: about 0.25 s of a second process's 0.5 s to its first cached gradient. Loaded
alone it takes about 5 ms and exports the same functions; Python's import finds it in
`sys.modules` from then on. `scipy.linalg` itself still imports normally when asked for.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

NAME = "scipy.linalg.cython_blas"


def load_blas_alone() -> None:
    """Put `scipy.linalg.cython_blas` in `sys.modules` without importing `scipy.linalg`,
    unless it is there already; on any surprise leave it to Numba's own import."""
    if NAME in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import scipy
        folder = str(Path(scipy.__file__).parent / "linalg")
        found = importlib.machinery.PathFinder.find_spec("cython_blas", [folder])
        if found is None or not isinstance(found.loader, importlib.machinery.ExtensionFileLoader):
            return
        spec = importlib.util.spec_from_file_location(NAME, found.origin)
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[NAME]
            raise
    except Exception:  # noqa: BLE001 (an optimisation only: Numba imports it the usual way)
        return

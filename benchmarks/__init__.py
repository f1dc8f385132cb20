"""Benchmarks of symdiff against hand-written kernels, JAX, PyTorch and SymPy.

Run `python -m benchmarks WORKLOAD [--threads 1|2] [--quick]` from the repository root; see
benchmarks/README.md. Importing this package imports nothing else, so that `__main__` can fix
the thread counts before NumPy, Numba, JAX or PyTorch is loaded.
"""

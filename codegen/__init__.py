"""symdiff.codegen: a Program -> a running kernel (generated Numba module or tape), and the
`Compiled` object users call. Installed as `symdiff.codegen` from this folder; symdiff's own
modules never import it at import time (only `sd.compile` does, on first use)."""
from .blas import load_blas_alone

load_blas_alone()  # before symdiff's first Numba compile or cache load

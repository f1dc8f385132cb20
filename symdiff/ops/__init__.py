"""The op records, one module per family: importing this package fills the op table.

Each module defines its ops with every rule side by side (see symdiff/optable.py for the
fields): leaves, elementwise, reductions, cumulative sums, layout (broadcast, reshape,
transpose, concatenate, stop_gradient, roll), indexing (slice, gather and their transposes),
matmul (and stacks of matrices), gathers by integer input (labels, rows), linear algebra,
structure (cumulative products and the linear recurrence of their derivatives), and loops
(`scan`: a step's graph run once per entry).
Rules that build adjoints and tangents use the same Tensor operations users write, so an
adjoint is IR that can be printed, optimised and differentiated again.
"""
from . import (cumulative, elementwise, gather, layout, leaves, linalg,  # noqa: F401
               loops, matmul, reductions, slicing, structure)

from ..optable import OPS, missing  # noqa: F401  (the table, filled)

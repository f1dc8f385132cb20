"""The op records, one module per family: importing this package fills the op table.

Each module defines its ops with every rule side by side (see symdiff/optable.py for the
fields): leaves, elementwise, reductions, cumulative sums, layout (broadcast, reshape, transpose,
concatenate, stop_gradient), indexing (slice, gather and their transposes), matmul, and
gathers by label. Rules that build adjoints and tangents use
the same Tensor operations users write, so an adjoint is IR that can be printed, optimised and
differentiated again.
"""
from . import (cumulative, elementwise, gather, indexing, layout, leaves, matmul,  # noqa: F401
               reductions)

from ..optable import OPS, missing, output_type  # noqa: F401  (the table, filled)

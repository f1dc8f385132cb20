"""symdiff: compile a model written as math into Numba kernels for its value and gradients.

>>> import symdiff as sd
>>> f = sd.compile("(x + y) * z", wrt=["x", "y", "z"])
>>> f(x=-2.0, y=5.0, z=-4.0)
-12.0
"""
from types import ModuleType as _ModuleType

from . import ops  # noqa: F401  (fills the op table before anything builds a graph)
from . import optim  # noqa: F401  (sd.optim.SGD, Adam, AdamW)
from .api import check_grad, compile, hessian, hvp, jacobian
from .autodiff import differentiate
from .bridge import scipy_objective, scipy_residuals
from .custom import function
from .forward import jvp
from .errors import (ArgumentError, DifferentiationError, DomainError, DtypeError,
                     LinAlgError, MissingToolError, NonFiniteError, ParseError, ShapeError,
                     SymdiffError)
from .conv import avg_pool2d, conv1d, conv2d, max_pool2d
from .einsum import einsum
from .loops import scan
from .linalg import (cholesky, det, diagonal, eye, inv, slogdet, solve, solve_triangular,
                     trace)
from .structure import cumprod, diff, flip, kron, outer, pad, repeat, tile, tril, triu
from .tensors import (ELEMENTWISE, Tensor, binary_cross_entropy_with_logits, concatenate,
                      cumsum, log_softmax, logsumexp, matmul, max, mean, min, mse, norm, prod,
                      reshape, roll, scalar, softmax, softmax_cross_entropy, stack, std,
                      stop_gradient, sum, take, take_along, tensor, transpose, var, where)

globals().update(ELEMENTWISE)  # sd.exp, sd.sigmoid, sd.maximum, ...: one per function record

# what is imported above is exported: the functions, classes and sd.optim (not the modules
# those imports load, nor the ELEMENTWISE table they came from)
__all__ = sorted(name for name, value in globals().items() if not name.startswith("_")
                 and (not isinstance(value, _ModuleType) or name == "optim")
                 and name != "ELEMENTWISE")

__version__ = "0.1.0"

"""symdiff: compile a model written as math into Numba kernels for its value and gradients.

>>> import symdiff as sd
>>> f = sd.compile("(x + y) * z", wrt=["x", "y", "z"])
>>> f(x=-2.0, y=5.0, z=-4.0)
-12.0
"""
from . import ops  # noqa: F401  (fills the op table before anything builds a graph)
from . import optim  # noqa: F401  (sd.optim.SGD, Adam, AdamW)
from .api import check_grad, compile, hessian, hvp, jacobian
from .autodiff import differentiate
from .bridge import scipy_objective, scipy_residuals
from .custom import function
from .forward import jvp
from .errors import (ArgumentError, DifferentiationError, DomainError, DtypeError,
                     MissingToolError, NonFiniteError, ParseError, ShapeError, SymdiffError)
from .tensors import (ELEMENTWISE, Tensor, binary_cross_entropy_with_logits, concatenate,
                      cumsum, log_softmax, logsumexp, matmul, max, mean, min, mse, norm, prod,
                      reshape, scalar, softmax, softmax_cross_entropy, stack, std, stop_gradient,
                      sum, take_along, tensor, transpose, var, where)

globals().update(ELEMENTWISE)  # sd.exp, sd.sigmoid, sd.maximum, ...: one per function record

__all__ = [
    "ArgumentError", "DifferentiationError", "DomainError", "DtypeError", "MissingToolError",
    "NonFiniteError", "ParseError",
    "ShapeError", "SymdiffError", "Tensor", "binary_cross_entropy_with_logits", "check_grad",
    "compile", "concatenate", "cumsum", "differentiate", "function", "hessian", "hvp",
    "jacobian", "jvp", "log_softmax", "logsumexp", "matmul", "max", "mean", "min", "mse", "norm",
    "optim", "prod", "reshape", "scalar",
    "scipy_objective", "scipy_residuals",
    "softmax", "softmax_cross_entropy", "stack", "std", "stop_gradient", "sum", "take_along",
    "tensor", "transpose", "var", "where", *sorted(ELEMENTWISE)]

__version__ = "0.1.0"

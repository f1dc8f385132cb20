"""symdiff: compile a model written as math into Numba kernels for its value and gradients.

>>> import symdiff as sd
>>> f = sd.compile("(x + y) * z", wrt=["x", "y", "z"])
>>> f(x=-2.0, y=5.0, z=-4.0)
-12.0
"""
from .api import check_grad, compile, hessian, hvp, jacobian
from .autodiff import differentiate
from .forward import jvp
from .errors import (ArgumentError, DifferentiationError, DomainError, MissingToolError,
                     NonFiniteError, ParseError, ShapeError, SymdiffError)
from .tensors import (Tensor, acos, asin, atan, atan2, binary_cross_entropy_with_logits,
                      concatenate, cos, cosh, erf, exp, expm1, log, log1p, log_softmax,
                      logsumexp, matmul, max, maximum, mean, minimum, mse, relu, reshape,
                      scalar, sigmoid, sin, sinh, softmax, softmax_cross_entropy, softplus,
                      sqrt, stack, stop_gradient, sum, take_along, tan, tanh, tensor,
                      transpose, where)
from .tensors import absolute as abs

__all__ = [
    "ArgumentError",
    "DifferentiationError",
    "DomainError",
    "MissingToolError",
    "NonFiniteError",
    "ParseError",
    "ShapeError",
    "SymdiffError",
    "Tensor",
    "abs",
    "acos",
    "asin",
    "atan",
    "atan2",
    "binary_cross_entropy_with_logits",
    "check_grad",
    "compile",
    "concatenate",
    "cos",
    "cosh",
    "differentiate",
    "erf",
    "exp",
    "expm1",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "maximum",
    "mean",
    "minimum",
    "mse",
    "relu",
    "reshape",
    "scalar",
    "sigmoid",
    "sin",
    "sinh",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "sqrt",
    "stack",
    "stop_gradient",
    "sum",
    "take_along",
    "tan",
    "tanh",
    "tensor",
    "transpose",
    "where",
]

__version__ = "0.1.0"

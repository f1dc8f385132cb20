"""Exceptions a user sees. Each refines a builtin, so `except ValueError` still works."""


class SymdiffError(Exception):
    """Base of every error symdiff raises on purpose."""


class ParseError(SymdiffError, SyntaxError):
    """A formula string that is not a formula symdiff accepts."""

    def __init__(self, message, text=None, col=None, line=None):
        where = f" [col {col + 1}]" if col is not None else ""
        if line is not None:  # a formula of several lines
            where = f" [line {line}" + (f", col {col + 1}]" if col is not None else "]")
        super().__init__(message + where)
        self.msg, self.text, self.offset, self.line = message + where, text, col, line


class ShapeError(SymdiffError, ValueError):
    """Shapes that do not fit an op, or arguments that do not fit a compiled model."""


class ArgumentError(SymdiffError, TypeError):
    """A missing, unknown or non-numeric argument."""


class DtypeError(SymdiffError, TypeError):
    """Inputs of float types one model cannot mix (float32 with float64), or a non-float array
    where floats are needed."""


class DomainError(SymdiffError, ValueError):
    """A value out of its allowed range, such as a label outside [0, classes)."""


class DifferentiationError(SymdiffError, ValueError):
    """A model or `wrt` list that cannot be differentiated as asked."""


class LinAlgError(SymdiffError, ArithmeticError):
    """A matrix a factorization or solve cannot take: not positive definite, or singular. (Not
    a ValueError: a kernel raises it about the values, never about the arguments' types.)"""


class NonFiniteError(SymdiffError, FloatingPointError):
    """A non-finite output, raised only when check_finite=True."""


class MissingToolError(SymdiffError, RuntimeError):
    """An optional program or package a call needs is not installed (Graphviz for pictures)."""

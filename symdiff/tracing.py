"""Python functions -> Tensors, by calling them once on symbolic arguments.

Each parameter becomes a named Tensor input; NumPy-style operators and `sd.*` functions on
them record the graph. Control flow that depends on values cannot be traced: a Tensor refuses
to be a truth value and says to use sd.where.
"""
from __future__ import annotations

import inspect

from . import tensors as T
from .errors import ArgumentError


def parameter_names(fn) -> list[str]:
    """The names of `fn`'s parameters; *args and **kwargs are refused."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"cannot read the parameters of {fn!r}: {e}") from None
    names = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ArgumentError(f"{fn.__name__}: *{p.name} cannot be traced; name each input")
        names.append(p.name)
    return names


def trace(fn, env: dict) -> T.Tensor | float:
    """Call `fn` with the Tensors of `env` (parameter name -> Tensor) and return its result."""
    return fn(**{name: env[name] for name in parameter_names(fn)})

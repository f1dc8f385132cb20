"""Auxiliary outputs: `sd.compile(..., aux={name: expression})` -> (label, Tensor) pairs.

Each expression is written as the model is (a Tensor, a formula string, a SymPy expression, a
function of the inputs, or a number) and is built over the model's inputs; a formula may
also read the model's named lines. The outputs are computed in the same kernel as the value
and gradients, never differentiated. A comparison comes back as 0.0 or 1.0.
"""
from __future__ import annotations

import numbers

import sympy as sp

from . import tensors as T
from .errors import ArgumentError, ShapeError
from .from_sympy import from_sympy
from .ir import format_shape, topological
from .parse import build, free_names, parse_formula
from .tracing import parameter_names, trace

PREFIX = "aux:"  # the Program's output label of an auxiliary output is PREFIX + its name


def auxiliary_outputs(aux, env: dict, steps: dict) -> list[tuple[str, T.Tensor]]:
    """[(label, Tensor)] for `aux`; inputs only an aux Tensor reads are added to `env`."""
    if aux is None:
        return []
    if not isinstance(aux, dict):
        raise ArgumentError(f"aux must be a dict {{name: expression}}, not "
                            f"{type(aux).__name__}")
    outputs = []
    for name, value in aux.items():
        T.check_name(name, what="aux name")
        tensor = T.as_tensor(_build(name, value, env, steps), f"aux {name!r}")
        if tensor.dtype == "bool":
            tensor = T.where(tensor, 1.0, 0.0)
        _add_inputs(name, tensor, env)
        outputs.append((PREFIX + name, tensor))
    return outputs


def _build(name: str, value, env: dict, steps: dict):
    if isinstance(value, (T.Tensor, numbers.Real)):
        return value
    scope = {**env, **{k: v for k, v in steps.items()}}
    if isinstance(value, str):
        tree = parse_formula(value)
        _known(name, free_names(tree), scope)
        return build(tree, scope, value)
    if isinstance(value, sp.Basic):
        _known(name, sorted(s.name for s in value.free_symbols), scope)
        return from_sympy(value, scope)
    if callable(value):
        names = parameter_names(value)
        _known(name, names, scope)
        return trace(value, {n: scope[n] for n in names})
    raise ArgumentError(f"aux {name!r}: give a Tensor, a formula, a SymPy expression, a "
                        f"function or a number, not {type(value).__name__}")


def _known(name: str, names, scope: dict) -> None:
    unknown = [n for n in names if n not in scope]
    if unknown:
        raise ArgumentError(f"aux {name!r} reads {', '.join(unknown)}, which the model does "
                            f"not have (its inputs and named lines: {', '.join(scope)})")


def _add_inputs(name: str, tensor: T.Tensor, env: dict) -> None:
    for node in topological([tensor.node]):
        if node.op != "input":
            continue
        other = env.setdefault(node.attr("name"), T.Tensor(node))
        if other.node is not node:
            raise ShapeError(f"aux {name!r} reads an input {node.attr('name')!r} of shape "
                             f"{format_shape(node.shape)} ({node.dtype}), but the model's has "
                             f"shape {format_shape(other.shape)} ({other.dtype})")

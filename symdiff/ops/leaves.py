"""Leaves: inputs, constants (one number, or a small NumPy array), the run-time size of a
dimension, and index ramps.

They have no inputs, so no adjoint, tangent or per-example rule; they differ in how each
backend materialises them.
"""
from __future__ import annotations

import numpy as np

from ..batching import no_axis
from ..ir import format_shape, sizes
from ..optable import define



def _tape_input(tape, phase, node):
    if node.rank:  # a batch column
        return phase.emit("load", (), tape.column(node.attr("name")))
    return phase.emit("fill", (), tape.slot(("input", node.attr("name"))))


def _const_text(e, node):
    value = e.number(node.attr("value"))
    return [f"{e.name(node)} = np.full({e.shape(node.shape)}, {value})" if node.rank
            else f"{e.name(node)} = {value}"]


def _array_text(e, node):
    # written into the function as a literal: Numba freezes module globals, and the generated
    # module stays one readable text (the size limit is in symdiff/numpy_protocol.py)
    values = node.attr("value").array

    def literal(a):
        items = [literal(row) for row in a] if a.ndim > 1 else [e.number(v) for v in a]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return [f"{e.name(node)} = np.array({literal(values)}, dtype=np.{e.float_type})"]


def _iota(node, args, dims):  # entries equal their own index along `axis`
    shape, axis = sizes(node.shape, dims), node.attr("axis")
    ramp = np.arange(shape[axis]).reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(ramp, shape)


# the same for every example (batching.example_axes places a batch input's examples)
LEAF = dict(shape=None, adjoint=None, tangent=None, per_example=None, batching=no_axis)

define("input", "leaf", **LEAF, evaluate=None, emit=None, in_loop=None, tape=_tape_input,
       format=lambda node, args: node.attr("name"),
       origin=lambda node, args: f"{node.attr('name')} (an input: the adjoints of its uses, "
                                 f"summed)")

define("const", "leaf", **LEAF,
       evaluate=lambda node, args, dims: np.full(sizes(node.shape, dims), node.attr("value")),
       emit=_const_text, in_loop=None,
       tape=lambda tape, phase, node: phase.constant(node.attr("value")),
       format=lambda node, args: f"full({format_shape(node.shape)}, {node.attr('value')!r})"
       if node.shape else repr(node.attr("value")), hint="c")

define("array", "leaf", **LEAF,
       evaluate=lambda node, args, dims: node.attr("value").array,
       emit=_array_text, in_loop=None, tape=None,
       format=lambda node, args: f"array({node.attr('value')})", hint="array")

define("dim", "leaf", **LEAF, fusable=True,
       evaluate=lambda node, args, dims: np.float64(dims[node.attr("name")]),
       emit=lambda e, node: [f"{e.name(node)} = np.{e.float_type}({e.dim(node.attr('name'))})"],
       in_loop=None,
       tape=lambda tape, phase, node: phase.emit("fill", (), tape.slot(("dim", node.attr("name")))),
       format=lambda node, args: node.attr("name"), hint="size")

define("iota", "leaf", **LEAF, fusable=True, index_map=True, evaluate=_iota, emit=None,
       in_loop=lambda e, node, idx: idx[node.attr("axis")], tape=None,
       format=lambda node, args: f"iota({format_shape(node.shape)}, axis={node.attr('axis')})")

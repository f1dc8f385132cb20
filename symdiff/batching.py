"""The example axis: a graph and the batch dimension -> where each value keeps its examples.

Per-example gradients, per-example clipping, row blocks and the Dask split all ask one
question: does example i read example i alone? `example_axes` answers it for a whole graph in
one pass over the ops' batching rules (the `batching` field of each record, as JAX gives each
primitive a rule for `vmap`). A value's example axis is the axis whose entry i belongs to
example i (computed from example i's rows alone); None means the value is the same for every
example (a parameter, or a function of parameters). A rule returns MIXES where its op makes
entry i read other examples' entries: a sum over the batch, `X @ X.T`, reversed or permuted
rows. That is refused where it matters, naming the op and its statement.

Batch inputs are the inputs with the batch dimension in their shape; with a static batch size
(an int) the inputs whose leading axis has that size.
"""
from __future__ import annotations

from .errors import DifferentiationError
from .ir import Dim, Node, format_shape
from .optable import OPS
from .printing import format_stmt

MIXES = "mixes"  # a rule's answer where entry i of the output reads other examples


def example_axes(nodes: list[Node], batch: Dim, checked: set[int] | None = None,
                 purpose: str = "per-example gradients (reduce=None)",
                 remedy: str = "use reduce='mean' or 'sum' for the gradient of the total",
                 given: dict | None = None) -> dict[int, int | None]:
    """{uid: example axis or None} for `nodes` (inputs before consumers).

    A node in `checked` (all nodes when None) whose op mixes examples raises a
    DifferentiationError saying so for `purpose`, with the `remedy`. Any other node that mixes them is data that
    no derivative flows through (a batch mean of the inputs, say): it is read as having its
    examples along the first axis of the batch's size, like a batch input.
    """
    axes: dict[int, int | None] = dict(given or {})  # `given`: inputs' axes, if not the batch's
    for node in nodes:
        if node.uid in axes:
            continue
        if node.op == "input":
            axis = _leading(node, batch)
        else:
            axis = OPS[node.op].batching(node, tuple(axes[i.uid] for i in node.inputs), batch)
        if axis == MIXES:
            if checked is None or node.uid in checked:
                raise DifferentiationError(_mixes_message(node, axes, batch, purpose) +
                                           f" ({remedy})")
            axis = _leading(node, batch)
        axes[node.uid] = axis
    return axes


def _leading(node: Node, batch: Dim) -> int | None:
    if isinstance(batch, str):
        return node.shape.index(batch) if batch in node.shape else None
    return 0 if node.shape and node.shape[0] == batch else None


def _mixes_message(node: Node, axes: dict, batch: Dim, purpose: str) -> str:
    from .autodiff import schedule  # the statement as the model's program names it
    statement = format_stmt(node, schedule([("value", node)]).names())
    shapes = ", ".join(format_shape(i.shape) + (
        "" if axes[i.uid] is None else f" (examples on axis {axes[i.uid]})") for i in node.inputs)
    return (f"{purpose}: examples interact in {statement} (of {shapes} -> "
            f"{format_shape(node.shape)}): each example's value must read its own row of the "
            f"batch {batch!r} alone, and here entry i reads other examples' rows")


# ---------------------------------------------------------------- rules the records share


def same_axis(node: Node, axes: tuple, batch: Dim):
    """Ops that work entry by entry (elementwise, stop_gradient): the inputs' example axis."""
    found = {a for a in axes if a is not None}
    return MIXES if len(found) > 1 else (found.pop() if found else None)


def along_other_axis(node: Node, axes: tuple, batch: Dim):
    """Ops that move entries along their `axis` attribute (gather, cumsum, roll): the example
    axis where it is another axis; along it, entries of other examples are read."""
    (a,) = axes
    return MIXES if a is not None and a == node.attr("axis") else a


def no_axis(node: Node, axes: tuple, batch: Dim):
    """Leaves other than inputs (constants, sizes, index ramps): the same for every example."""
    return None


def kept_axes(axis: int | None, dropped) -> int | None:
    """Where input axis `axis` lands when the axes in `dropped` are taken out, or MIXES if it
    is one of them."""
    if axis is None:
        return None
    return MIXES if axis in dropped else axis - sum(1 for d in dropped if d < axis)


def reduction(node: Node, axes: tuple, batch: Dim):
    """A reduction over `axes` combines examples if it runs over their axis."""
    return kept_axes(axes[0], node.attr("axes"))


def keeps_rows(node: Node) -> bool:
    """Whether row i of an index map's output reads row i of its source alone: its batching
    rule with the source's axis 0 as the example axis."""
    rows = node.inputs[0].shape[0] if node.inputs and node.inputs[0].shape else None
    if rows is None:
        return False
    axes = (0,) + (None,) * (len(node.inputs) - 1)
    return OPS[node.op].batching(node, axes, rows) == 0

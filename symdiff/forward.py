"""Forward mode: a Tensor and tangents of some inputs -> the Tensor's tangent (a JVP).

Tangents are pushed from the inputs in topological order, one tangent rule per op from the
op table (elementwise ops use their memoised local derivatives, linear ops apply themselves
to the tangent). The result is IR like any other, so applied to the gradient of a loss it gives
Hessian-vector products (forward over reverse) at about the cost of a few gradients.
"""
from __future__ import annotations

from . import tensors as T
from .errors import DifferentiationError
from .ir import topological
from .optable import OPS
from .printing import format_stmt


def jvp(output: T.Tensor, tangents: dict) -> T.Tensor:
    """The directional derivative of `output` along `tangents` ({input Tensor: tangent}).

    >>> x, y = T.scalar("x"), T.scalar("y")
    >>> dx = T.scalar("dx")
    >>> jvp(x * T.function("sin", y), {x: dx}).node.op
    'elementwise'
    """
    pushed = {t.node.uid: v for t, v in tangents.items()}
    for node in topological([output.node]):
        if node.uid in pushed or OPS[node.op].kind == "leaf":
            continue
        incoming = [pushed.get(i.uid) for i in node.inputs]
        if all(t is None for t in incoming):
            continue
        rule = OPS[node.op].tangent
        if rule is None:
            raise DifferentiationError(f"no tangent rule for '{node.op}' in "
                                       f"{format_stmt(node, {})}")
        result = rule(T.Tensor(node), [T.Tensor(i) for i in node.inputs], incoming,
                      **dict(node.attrs))
        if result is not None:  # a loop's tangent is made of parts (loops.Parts)
            pushed[node.uid] = result if isinstance(result, dict) else T.as_tensor(result)
    tangent = pushed.get(output.node.uid)
    if tangent is None:  # the output does not depend on any input with a tangent
        return T.zeros(output.shape)
    return tangent if tangent.shape == output.shape else T.broadcast_to(tangent, output.shape)

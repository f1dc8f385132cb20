"""Per-example clipping: a loss over a batch -> the Program of its clipped gradient sum.

Input: a scalar loss that is the mean or the sum of one term per example, the parameters,
and a scalar input C. Output: a Program returning the loss, then for each parameter
w * sum_i c_i g_i, where g_i is example i's gradient, c_i = min(1, C / |g_i|) with |g_i| the
norm over all parameters together, and w the weight of one example (1/n for a mean, 1 for a
sum); then w itself. Differentially private SGD adds noise to these sums (codegen/steps.py).

Example i's gradient is never built where the algebra gives its norm directly ("ghost
norms"): for W in X @ W it is the outer product of x_i and the adjoint d_i of row i of the
product, whose norm is |x_i| |d_i|; a bias's is its adjoint's row. A norm whose squares
overflow is taken again over scaled entries, so an example with a huge gradient is clipped to
norm C, not dropped. Because the
adjoint of sum_i c_i L_i is linear in the seed, its adjoints are the first pass's scaled by
c_i * w per example: the second pass takes them and runs only the rules where a parameter
enters (the matrix products of an ordinary gradient's parameter sums), not the reverse pass
again.
"""
from __future__ import annotations

from . import tensors as T
from .autodiff import Rescaled, differentiate, per_example_walk
from .errors import DifferentiationError
from .functions import placeholder
from .ir import format_shape
from .program import Program


def per_example_terms(loss: T.Tensor):
    """(the (n,) per-example terms, the weight of one example) of a mean or sum over axis 0."""
    node, count = loss.node, None
    if node.op == "elementwise" and len(node.inputs) == 2 and \
            node.attr("body") == placeholder(0) / placeholder(1) and \
            node.inputs[1].op == "dim" and node.inputs[0].op == "sum":
        node, count = node.inputs  # a mean: the sum over the batch / n
    terms = node.inputs[0] if node.op == "sum" and node.attr("axes") == (0,) else None
    if terms is None or terms.rank != 1 or not isinstance(terms.shape[0], str) or \
            count is not None and count.attr("name") != terms.shape[0]:
        raise DifferentiationError(
            "per-example clipping needs a loss that is the mean or sum of one term per "
            "example (sd.mean(per_example_losses) over the batch axis), with no other term")
    return T.Tensor(terms), T.full((), 1.0) if count is None else 1.0 / T.Tensor(count)


# Norms without overflow, as BLAS's nrm2 scales: where a sum of squares overflows, an entry
# past sqrt(largest float) dominates it, so the sum is taken again over the entries times a
# power of two (exact), and the entries that underflow there are too small to count.
_SCALE = {"float64": 2.0 ** -600, "float32": 2.0 ** -64}


def _norm(squares) -> T.Tensor:
    """sqrt(sum of squares) of the Tensors that `squares(scale)` sums after scaling."""
    plain, small = squares(1.0), _SCALE[squares(1.0).dtype]
    return T.where(plain < float("inf"), T.function("sqrt", plain),
                   (1.0 / small) * T.function("sqrt", squares(small)))


def _row_norms(g: T.Tensor) -> T.Tensor:
    """|g_i| for each row i of g (n, ...)."""
    if g.ndim == 1:
        return T.function("abs", g)
    axes = tuple(range(1, g.ndim))
    return _norm(lambda s: T.sum((g * s) * (g * s), axis=axes))


def norms(grad: T.Tensor) -> T.Tensor:
    """|g_i| for each example i of a per-example gradient (n, ...), from its factors when it
    is an outer product of two per-example rows (a matmul's weight: |x_i| |d_i|)."""
    node = grad.node
    if node.op == "elementwise" and len(node.inputs) == 2 and \
            node.attr("body") == placeholder(0) * placeholder(1) and node.rank == 3:
        factors = {n.attr("dims"): n.inputs[0] for n in node.inputs if n.op == "broadcast"}
        a, d = factors.get((0, 1)), factors.get((0, 2))
        if a is not None and d is not None and a.rank == d.rank == 2:
            return _row_norms(T.Tensor(a)) * _row_norms(T.Tensor(d))
    return _row_norms(grad)


def clipped_program(loss: T.Tensor, wrt: list, inputs: list, bound: T.Tensor,
                    summed: bool = False) -> Program:
    """The Program of the module docstring; `bound` (the scalar input C) is its last input.
    `summed`: every example weighs 1 and the value is the sum of the terms, for blocks of
    rows whose sums are added before the loss's own weight is applied (codegen/blocks.py)."""
    terms, weight = per_example_terms(loss)
    if summed:
        loss, weight = T.sum(terms), T.full((), 1.0)
    batch = terms.shape[0]
    walk = per_example_walk(terms, wrt, batch)
    per_example = walk.gradients()
    for w, g in zip(wrt, per_example):
        if g.shape != (batch,) + w.shape:
            raise DifferentiationError(f"per-example clipping: the gradient by "
                                       f"{w.node.attr('name')} has shape "
                                       f"{format_shape(g.shape)}, not one row per example")
    parts = [norms(g) for g in per_example]
    norm = parts[0] if len(parts) == 1 else _norm(
        lambda s: sum(((p * s) * (p * s) for p in parts[1:]), (parts[0] * s) * (parts[0] * s)))
    factor = T.where(norm > bound, bound / norm, 1.0)
    scale = factor * weight
    return differentiate(terms, wrt, seed=scale, inputs=inputs + [bound], value=loss,
                         extra=[("weight", weight)], rescaled=Rescaled(walk, scale))

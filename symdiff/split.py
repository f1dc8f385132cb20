"""A loss over a batch -> the Programs that let chunks of the batch be worked on apart.

Input: the gradient Program of a scalar loss L and the names in wrt. Output: a `Split`: the
Programs of S, the loss's one sum over the batch axis, and of S with its gradients (run per
chunk, on partial data: S is a sum, so partial sums add up to it), and the epilogue
E(S, n, parameters) = L with its gradients by S and by the parameters, which finishes the
totals once: dL/dw = dE/dw + dE/dS · dS/dw. A mean is S/n, a regularised loss S/n + R(w).
A loss that reads the batch other than through one such sum (a per-sample term scaled by
another batch sum, a sum over the batch inside a sample's term) is refused with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import tensors as T
from .autodiff import differentiate, schedule
from .batching import example_axes
from .errors import DifferentiationError
from .ir import Node, make_node, topological
from .program import Program
from .printing import format_stmt


@dataclass(frozen=True)
class Split:
    batch: str  # the symbolic dimension of the batch axis (axis 0 of the batch inputs)
    value: Program  # inputs -> S on the given rows
    grad: Program  # inputs -> S, dS/dw for w in wrt
    epilogue: Program  # (S, n, inputs) -> L, dL/dS, dL/dw for w in wrt
    total: str  # the epilogue's input names for S and n
    count: str


def split_loss(program: Program, wrt) -> Split:
    """Split the scalar loss of gradient Program `program` into per-chunk sums and an
    epilogue; `wrt` names the parameters, in the order of the Program's gradients."""
    y = program.output("value")
    batch = _batch_dim(program)
    sums, epilogue_nodes = _batch_sums(y, batch)
    _check_separable(program, wrt, batch, sums, epilogue_nodes)
    inputs = list(program.inputs)
    by_name = {n.attr("name"): T.Tensor(n) for n in inputs}
    params = [by_name[w] for w in wrt]
    S = T.Tensor(sums[0])
    taken = set(by_name)
    total, count = _fresh("S", taken), _fresh(batch, taken)
    epilogue = _epilogue(y, sums[0], batch, T.scalar(total), T.scalar(count), epilogue_nodes)
    tensors = [T.Tensor(n) for n in inputs]
    unbatched = [t for t in tensors if batch not in t.shape]
    return Split(batch,
                 schedule([("value", S.node)], inputs=tensors),
                 differentiate(S, params, inputs=tensors),
                 differentiate(epilogue, [T.scalar(total)] + params,
                               inputs=[T.scalar(total), T.scalar(count)] + unbatched),
                 total, count)


def _check_separable(program: Program, wrt, batch: str, sums, epilogue_nodes) -> None:
    """Refuse, with the reason, a loss whose chunks cannot be worked on apart."""
    batched = [n.attr("name") for n in program.inputs if batch in n.shape]
    if set(batched) & set(wrt):
        raise DifferentiationError(
            f"over Dask chunks, gradients are by parameters, not by batch inputs "
            f"({', '.join(w for w in wrt if w in batched)}); use reduce=None for those")
    if len(sums) != 1 or sums[0].shape != ():
        found = ", ".join(_where(s, program) for s in sums) or "none"
        raise DifferentiationError(
            f"a loss over Dask chunks must read the batch through one scalar sum (or mean) over "
            f"its axis {batch!r}; this one has {len(sums)} such sums: {found}")
    for node in epilogue_nodes:
        if batch in node.shape:
            raise DifferentiationError(
                f"a loss over Dask chunks must reduce each sample's term with one sum over "
                f"{batch!r} before anything else; {_where(node, program)} reads the batch")
    if any(n.op == "dim" and n.attr("name") == batch for n in topological([sums[0]])):
        raise DifferentiationError(
            f"a loss over Dask chunks must not use the batch size {batch!r} inside a sample's "
            f"term (a chunk knows only its own); it does in {_where(sums[0], program)}")
    # each sample's term reads its own rows alone (a chunk has only its own rows)
    example_axes(topological([sums[0].inputs[0]]), batch, purpose="a loss over Dask chunks or "
                 "row blocks", remedy="a chunk of the batch sees only its own rows")


def _batch_dim(program: Program) -> str:
    dims = {n.shape[0] for n in program.inputs if n.shape and isinstance(n.shape[0], str)}
    if len(dims) != 1:
        raise DifferentiationError(
            f"a loss over Dask chunks needs inputs with one symbolic batch dimension on axis 0; "
            f"this one has {', '.join(map(repr, sorted(dims))) or 'none'}")
    return dims.pop()


def _batch_sums(y: Node, batch: str) -> tuple[list[Node], list[Node]]:
    """(sums over the batch axis that y reads, the nodes between y and them), in graph order."""
    sums, above, stack, seen = [], [], [y], set()
    while stack:
        node = stack.pop()
        if node.uid in seen:
            continue
        seen.add(node.uid)
        if node.op == "sum" and node.inputs[0].shape[:1] == (batch,) and 0 in node.attr("axes"):
            sums.append(node)
        else:
            above.append(node)
            stack.extend(node.inputs)
    order = {n.uid: k for k, n in enumerate(topological([y]))}
    return sorted(sums, key=lambda n: order[n.uid]), sorted(above, key=lambda n: order[n.uid])


def _epilogue(y: Node, S: Node, batch: str, total: T.Tensor, count: T.Tensor, nodes) -> T.Tensor:
    """y rebuilt with S and the batch size as scalar inputs."""
    new = {S.uid: total.node}
    for node in nodes:  # inputs before consumers
        if node.op == "dim" and node.attr("name") == batch:
            new[node.uid] = count.node
        else:
            new[node.uid] = make_node(node.op, [new[i.uid] for i in node.inputs], node.shape,
                                      node.dtype, **dict(node.attrs))
    return T.Tensor(new[y.uid])


def _fresh(name: str, taken: set) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _where(node: Node, program: Program) -> str:
    names = program.names()
    return format_stmt(node, names) if node.uid in names else repr(node)

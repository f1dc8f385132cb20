"""Loops that stay loops: `scan`, JAX's `lax.scan` over Tensors.

`scan(step, init, xs)` runs `carry, y = step(carry, x)` once per entry of `xs` along its
leading axis and returns the last carry and the ys stacked. The step is traced once, on
placeholders, into a `Step`: its own small graph. The model's graph holds one `scan` node
whatever the number of steps (its results are read by `scan_part` nodes), so the program, the
generated code and the time to build them do not grow with the length. Values the step reads
from outside (weights, say) become the loop's constants: inputs of the scan node, so
gradients reach them.

The op's rules (symdiff/ops/loops.py) differentiate the step, not the unrolled loop: the
adjoint is a scan run backwards over the carries the forward loop kept, the tangent a scan
over carries and their tangents.
"""
from __future__ import annotations

import functools
import inspect
import itertools
from dataclasses import dataclass

from . import tensors as T
from .errors import ArgumentError, ShapeError
from .ir import RESERVED, Node, format_shape, fresh, make_node, topological

_scopes = itertools.count(1)  # keeps each step's placeholders apart from every other node


@dataclass(frozen=True, eq=False)
class Step:
    """One traced step: placeholder inputs and the outputs computed from them.

    `carries`, `xs`, `consts` are placeholder `input` nodes (a carry, an entry of each xs, a
    value read from outside); `new_carries` and `ys` are what the step returns. Equality is
    identity: two traces of one function are two steps (the node attribute's hash)."""

    carries: tuple[Node, ...]
    xs: tuple[Node, ...]
    consts: tuple[Node, ...]
    new_carries: tuple[Node, ...]
    ys: tuple[Node, ...]
    adjoint_of: object = None  # for a step that is another's adjoint: the reverse walk that
    # made it, whose tags put its statements under `# from:` comments
    forward: "Step | None" = None  # and that other step, whose names its statements keep
    residuals: int = 0  # the last ys are not the user's: values of the step its adjoint
    # reads (kept per step where it does, so the backward step does not compute them again)

    @property
    def params(self) -> tuple[Node, ...]:
        return self.carries + self.xs + self.consts

    @property
    def outputs(self) -> tuple[Node, ...]:
        return self.new_carries + self.ys

    @functools.cached_property
    def program(self):
        """The step as a Program (inputs: the placeholders; outputs: new carries, then ys)."""
        return self.program_of(tuple(range(len(self.ys))))

    def program_of(self, ys: tuple[int, ...]):
        """The step's Program returning the new carries and only the ys numbered `ys` (a loop
        whose other ys nobody reads does not compute them)."""
        made = self.__dict__.setdefault("_programs", {})  # (a frozen dataclass's cache)
        if ys not in made:
            from .autodiff import schedule
            outputs = [(f"carry{k}", c) for k, c in enumerate(self.new_carries)] + \
                      [(f"y{i}", self.ys[i]) for i in ys]
            walk, forward = self.adjoint_of, self.forward
            tags = (walk.origin, walk.adjoint_of, walk.forward_uids) if walk else ()
            made[ys] = schedule(outputs, *tags, inputs=[T.Tensor(p) for p in self.params],
                                step=walk.step if walk else None,
                                names=forward.program.names() if forward else None)
        return made[ys]

    def __repr__(self):
        return f"Step({', '.join(p.attr('name') for p in self.params)})"


def next_scope() -> int:
    """A new scope for a step's placeholders."""
    return next(_scopes)


def placeholder(name: str, shape, dtype: str, scope: int) -> Node:
    """An input node of one step only (`scope` keeps it from meeting a model's input)."""
    return make_node("input", (), tuple(shape), dtype, name=name, scope=scope)


def scan(step, init, xs=None, *, length=None, reverse: bool = False):
    """Run `carry, y = step(carry, x)` over the entries of `xs` along its leading axis (last
    to first with `reverse`), as `jax.lax.scan`: the last carry and the ys stacked.

    `init` is a Tensor or a tuple of them (so is the carry the step returns, with the same
    shapes and dtypes); `xs` a Tensor, a tuple of them, or None with `length=` (the step then
    gets x=None, as a `fori_loop`). The step returns `(carry, y)`, y a Tensor, a tuple, or None.

    >>> x = T.tensor("x", ("K",))
    >>> total, partial = scan(lambda c, xk: (c + xk, c), T.full((), 0.0), x)
    >>> total.shape, partial.shape
    ((), ('K',))
    """
    init_tuple = isinstance(init, (tuple, list))
    inits = [T.as_tensor(c, "the scan's init") for c in (init if init_tuple else (init,))]
    xs_tuple = isinstance(xs, (tuple, list))
    xs_list = [] if xs is None else [T.as_tensor(x, "the scan's xs")
                                     for x in (xs if xs_tuple else (xs,))]
    length = _length(xs_list, length)
    scope = next_scope()
    carry_name, x_name = _parameter_names(step)
    taken = set(RESERVED)
    carries = tuple(placeholder(fresh(f"{carry_name}{k}" if init_tuple else carry_name, taken),
                                c.shape, c.dtype, scope) for k, c in enumerate(inits))
    slices = tuple(placeholder(fresh(f"{x_name}{k}" if xs_tuple else x_name, taken),
                               x.shape[1:], x.dtype, scope) for k, x in enumerate(xs_list))
    carry_in = tuple(T.Tensor(c) for c in carries)
    x_in = tuple(T.Tensor(x) for x in slices)
    result = step(carry_in if init_tuple else carry_in[0],
                  (x_in if xs_tuple else x_in[0]) if xs_list else None)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ArgumentError(f"the scan's step must return (carry, y), not {_what(result)}")
    new, ys = result
    new = list(new) if isinstance(new, (tuple, list)) else [new]
    if len(new) != len(inits) or isinstance(result[0], (tuple, list)) != init_tuple:
        returned = f"{len(new)} carr{'y' if len(new) == 1 else 'ies'}"
        raise ShapeError(f"the scan's step returned {returned} for {len(inits)} in init: the "
                         f"carry must keep its structure")
    new = [T.as_tensor(c, "the step's carry") for c in new]
    for before, after in zip(carries, new):
        if before.shape != after.shape or before.dtype != after.dtype:
            raise ShapeError(f"the scan's carry {before.attr('name')} enters the step as "
                             f"{format_shape(before.shape)} {before.dtype} and leaves it as "
                             f"{format_shape(after.shape)} {after.dtype}: a carry keeps its "
                             f"shape and dtype")
    ys_tuple = isinstance(ys, (tuple, list))
    ys = [] if ys is None else [T.as_tensor(y, "the step's y")
                                for y in (ys if ys_tuple else (ys,))]
    body, outer = _close(carries, slices, [c.node for c in new], [y.node for y in ys], scope,
                         taken)
    node_inputs = [c.node for c in inits] + [x.node for x in xs_list] + outer
    part = parts(T.apply_op("scan", node_inputs, step=body, length=length,
                             reverse=bool(reverse)))
    final = part[:len(inits)]
    stacked = part[len(inits):len(inits) + len(ys)]
    return (tuple(final) if init_tuple else final[0],
            (tuple(stacked) if ys_tuple else (stacked[0] if stacked else None)))


def results(node: Node) -> list[tuple[tuple, str]]:
    """(shape, dtype) of each result of a scan node: the last carries, the ys stacked, then
    the carry before each step stacked (what the adjoint's backward loop reads)."""
    step, length = node.attr("step"), node.attr("length")
    return [(c.shape, c.dtype) for c in step.carries] + \
        [((length,) + v.shape, v.dtype) for v in step.ys + step.carries]


def parts_read(nodes) -> dict[int, set[int]]:
    """{uid of a loop: the indices of its results that some node of `nodes` reads}."""
    read: dict[int, set[int]] = {}
    for node in nodes:
        if node.inputs and node.inputs[0].dtype == "tuple":
            read.setdefault(node.inputs[0].uid, set()).add(node.attr("index"))
    return read


def parts(result: T.Tensor) -> list[T.Tensor]:
    """A scan node's results as Tensors (`results` gives their order)."""
    return [T.apply_op("scan_part", (result,), index=k) for k in range(len(results(result.node)))]


class Parts(dict):
    """The adjoints (or tangents) of a value made of parts, by part index; a part with none
    is absent. Autodiff sums them part by part."""

    def plus(self, other: "Parts") -> "Parts":
        total = Parts(self)
        for k, v in other.items():
            total[k] = total[k] + v if k in total else v
        return total


def _length(xs: list[T.Tensor], length):
    for x in xs:
        if not x.shape:
            raise ShapeError(f"the scan's xs {_name(x)} is a scalar: xs are sliced along their "
                             f"leading axis, so each needs one")
    sizes = {x.shape[0] for x in xs}
    if length is not None:
        if not isinstance(length, (int, str)) or isinstance(length, bool) or \
                isinstance(length, str) and not xs or isinstance(length, int) and length < 0:
            raise ArgumentError(f"the scan's length must be an int, or the name of its xs' "
                                f"leading dimension, not {length!r}")
        sizes.add(length)
    if len(sizes) != 1:
        listed = ", ".join(f"{_name(x)} {format_shape(x.shape)}" for x in xs)
        raise ShapeError(f"the scan's xs must share their leading axis"
                         f"{'' if length is None else f' (length={length!r})'}: {listed or 'no xs'}"
                         + ("" if xs or length is not None else "; pass xs or length="))
    return sizes.pop()


def _close(carries: tuple, slices: tuple, new_carries: list, ys: list, scope: int,
           taken: set) -> tuple[Step, list[Node]]:
    """The step, each value it reads from outside replaced by a placeholder of its own (the
    loop's constants: computed once, before the loop, and differentiated by), and those
    outside values in order."""
    from .passes.stable import stabilize  # stable forms inside the step, as outside
    outputs = [stabilize(T.Tensor(n)).node for n in new_carries + ys]
    params = carries + slices
    inner = {p.uid for p in params}  # values that depend on a placeholder
    reads_input = {}  # outside values: whether they read a model input (else a constant)
    order = topological(outputs)
    for node in order:
        if node.uid in inner:
            continue
        if any(i.uid in inner for i in node.inputs):
            inner.add(node.uid)
        else:
            reads_input[node.uid] = node.op == "input" or any(
                reads_input[i.uid] for i in node.inputs)
    outer: list[Node] = []
    new: dict[int, Node] = {p.uid: p for p in params}

    def inside(node: Node) -> Node:  # how the step reads `node`
        if node.uid not in new:
            if node.uid in inner:
                new[node.uid] = make_node(node.op, [inside(i) for i in node.inputs],
                                          node.shape, node.dtype, **dict(node.attrs))
            elif reads_input[node.uid]:  # a constant of the loop
                name = node.attr("name") if node.op == "input" else "const"
                new[node.uid] = placeholder(fresh(name, taken), node.shape, node.dtype, scope)
                outer.append(node)
            else:  # a constant of the model: the step computes it itself
                new[node.uid] = node
        return new[node.uid]
    for node in order:
        if node.uid in inner:
            inside(node)
    out = [inside(n) for n in outputs]
    consts = tuple(new[n.uid] for n in outer)
    step = Step(carries, slices, consts, tuple(out[:len(new_carries)]),
                tuple(out[len(new_carries):]))
    kept = _residuals(step)
    return Step(carries, slices, consts, step.new_carries, step.ys + kept,
                residuals=len(kept)), outer


def _residuals(step: Step) -> tuple[Node, ...]:
    """The values of the step an adjoint may read, as JAX's scan saves its residuals: every
    float or boolean value the step computes (a loop keeps only those its adjoint reads)."""
    params = {p.uid for p in step.params}
    return tuple(n for n in topological(list(step.outputs))
                 if n.uid not in params and n.inputs and n.dtype in ("float64", "float32",
                                                                         "bool"))


def _parameter_names(step) -> tuple[str, str]:
    """Names for the placeholders, from the step's parameters where it has two."""
    try:
        names = [p.name for p in inspect.signature(step).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    names = [n if n.isidentifier() and not n.startswith("_") else None for n in names[:2]]
    names += [None] * (2 - len(names))
    return names[0] or "carry", names[1] or "x"


def _name(x: T.Tensor) -> str:
    return x.node.attr("name") or "(an expression)"


def _what(value) -> str:
    return f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__

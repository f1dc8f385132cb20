"""Layout ops: broadcast, reshape, transpose, concatenate, and stop_gradient.

All are linear in their data input, so a tangent is the op applied to the tangent. A broadcast
is where adjoints are summed back (rules never un-broadcast), and where per-example gradients
of a parameter are read off before that sum.
"""
from __future__ import annotations

import numpy as np

from .. import tensors as T
from ..batching import MIXES, along_other_axis, same_axis
from ..indexing import slice_axis
from ..errors import ShapeError
from ..ir import format_shape, sizes
from ..optable import define, linear




# ---------------------------------------------------------------- broadcast


def _broadcast_shape(x, *, shape, dims):
    for axis, out_axis in enumerate(dims):
        if x.shape[axis] != 1 and x.shape[axis] != shape[out_axis]:
            raise ShapeError(f"cannot broadcast shape {format_shape(x.shape)} "
                             f"to {format_shape(shape)}")
    return shape, x.dtype


def _summed_axes(x_shape, shape, dims):
    """The axes of the broadcast result that were added or stretched from size 1."""
    return tuple(sorted(tuple(a for a in range(len(shape)) if a not in dims) + tuple(
        out for axis, out in enumerate(dims) if x_shape[axis] == 1 and shape[out] != 1)))


def _broadcast_transpose(dy, x_shape, *, shape, dims):  # dy summed over the broadcast axes
    return T.reshape(T.sum(dy, axis=_summed_axes(x_shape, shape, dims)), x_shape)


def _broadcast_per_example(dy, y, p, *, k, batch, shape, dims):  # sample i's share is dy[i]
    if batch not in shape:
        return None
    b = shape.index(batch)  # the batch axis, anywhere: summed over the others, moved first
    if b in dims and p.shape[dims.index(b)] != 1:
        return None  # p has a batch axis of its own: not a parameter
    summed = tuple(a for a in _summed_axes(p.shape, shape, dims) if a != b)
    share = T.sum(dy, axis=summed) if summed else dy
    kept = [a for a in range(len(shape)) if a not in summed]
    first = kept.index(b)
    if first:
        share = T.transpose(share, (first,) + tuple(a for a in range(len(kept)) if a != first))
    return T.reshape(share, (batch,) + p.shape)


def _broadcast_batching(node, axes, batch):
    (a,), x = axes, node.inputs[0]
    shape, dims = node.attr("shape"), node.attr("dims")
    if a is not None:  # kept in place; stretched from size 1, one row would serve all
        return dims[a] if x.shape[a] == shape[dims[a]] else MIXES
    # copies of a value the same for every example, along a new axis of the batch's size:
    # row i is example i's copy (where per-example gradients of a parameter are read off)
    made = [k for k, d in enumerate(shape) if d == batch and (k not in dims or
                                                              x.shape[dims.index(k)] != d)]
    return made[0] if made else None


def _broadcast_evaluate(node, args, dims):
    shape, where = sizes(node.attr("shape"), dims), node.attr("dims")
    expanded = args[0].reshape([args[0].shape[where.index(k)] if k in where else 1
                                for k in range(len(shape))])
    return np.broadcast_to(expanded, shape)


def _broadcast_in_loop(e, node, idx):  # read the source in place
    src = node.inputs[0]
    dims, shape = node.attr("dims"), node.attr("shape")
    picks = ["0" if src.shape[a] == 1 and shape[d] != 1 else idx[d] for a, d in enumerate(dims)]
    return e.read(src, picks)  # (the source may be an index map read in place too)


def _broadcast_tape(tape, phase, node):
    if node.inputs[0].rank:
        raise tape.Unsupported(f"broadcast of shape {format_shape(node.inputs[0].shape)}: the "
                               f"tape broadcasts scalars only")
    return tape.operand(phase, node.inputs[0])


linear("broadcast", "structural", T.broadcast_in_dim, _broadcast_transpose,
       shape=_broadcast_shape, passes_zeros=True, per_example=_broadcast_per_example,
       evaluate=_broadcast_evaluate, emit=None,
       in_loop=_broadcast_in_loop, tape=_broadcast_tape, fusable=True, index_map=True,
       batching=_broadcast_batching, read_as=lambda node, args: args[0],
       origin=lambda node, args: f"{args[0]} broadcast to {format_shape(node.shape)} "
                                 f"(adjoint summed back)",
       format=lambda node, args: f"broadcast({args[0]}, {format_shape(node.attr('shape'))})")


# ---------------------------------------------------------------- stop_gradient


define("stop_gradient", "structural", shape=lambda x: (x.shape, x.dtype),
       adjoint=lambda dy, y, x: [None], tangent=lambda y, inputs, tangents: None,
       per_example=None, evaluate=lambda node, args, dims: args[0],
       emit=lambda e, node: [f"{e.name(node)} = {e.name(node.inputs[0])}"],
       in_loop=lambda e, node, idx: e.read(node.inputs[0], idx), fusable=True,
       tape=lambda tape, phase, node: tape.operand(phase, node.inputs[0]), hint="sg",
       batching=same_axis)


# ---------------------------------------------------------------- reshape, transpose


def _size(shape):
    ints, names = 1, []
    for d in shape:
        if isinstance(d, int):
            ints *= d
        else:
            names.append(d)
    return ints, tuple(sorted(names))


def _reshape_shape(x, *, shape):
    if _size(x.shape) != _size(shape):
        raise ShapeError(f"cannot reshape {format_shape(x.shape)} to {format_shape(shape)}")
    return shape, x.dtype


def _reshape_batching(node, axes, batch):  # kept where the sizes before it stay the same
    (a,), x = axes, node.inputs[0]
    if a is None:
        return None
    before = _size(x.shape[:a])
    for b, d in enumerate(node.shape):
        if d == x.shape[a] and _size(node.shape[:b]) == before:
            return b
    return MIXES


def _reshape_emit(e, node):
    name, src, arg = e.name(node), node.inputs[0], e.name(node.inputs[0])
    if src.rank == 0:
        return [f"{name} = np.full({e.shape(node.shape)}, {arg})"]
    if node.rank == 0:
        return [f"{name} = np.ascontiguousarray({arg}).ravel()[0]"]
    return [f"{name} = np.ascontiguousarray({arg}).reshape({e.shape(node.shape)})"]


linear("reshape", "structural", T.reshape, lambda dy, x_shape, *, shape: T.reshape(dy, x_shape),
       lambda attrs: attrs, shape=_reshape_shape, passes_zeros=True, per_example=None,
       evaluate=lambda node, args, dims: np.reshape(args[0], sizes(node.attr("shape"), dims)),
       emit=_reshape_emit, in_loop=None, tape=None, batching=_reshape_batching)


def _transpose_transpose(dy, x_shape, *, perm):  # dx = transpose(dy, inverse perm)
    return T.transpose(dy, tuple(sorted(range(len(perm)), key=perm.__getitem__)))


def _transpose_emit(e, node):
    """A matrix's transpose is a `.T` view; one of more axes a copy in scalar loops (Numba
    compiles np.transpose with axes for about 2.5 s in each process)."""
    name, arg, perm = e.name(node), e.name(node.inputs[0]), node.attr("perm")
    if node.rank == 2:
        return [f"{name} = {arg}.T"]

    def copy(idx):
        source = [idx[perm.index(a)] for a in range(node.rank)]
        return [f"{name}[{', '.join(idx)}] = {arg}[{', '.join(source)}]"]
    dtype = e.float_type if node.dtype.startswith("float") else node.dtype  # (labels: int64)
    return [f"{name} = np.empty({e.shape(node.shape)}, dtype=np.{dtype})"] + \
        e.nest(node.shape, copy)


linear("transpose", "structural", T.transpose, _transpose_transpose,
       lambda attrs: dict(perm=(0,) + tuple(p + 1 for p in attrs["perm"])),  # batch axis first
       shape=lambda x, *, perm: (tuple(x.shape[p] for p in perm), x.dtype), passes_zeros=True,
       per_example=None, evaluate=lambda node, args, dims: np.transpose(args[0],
                                                                        node.attr("perm")),
       emit=_transpose_emit, in_loop=None, tape=None,
       batching=lambda node, axes, batch: None if axes[0] is None
       else node.attr("perm").index(axes[0]))


# ---------------------------------------------------------------- concatenate


def _concatenate_shape(*parts, axis):
    first = parts[0].shape
    for p in parts[1:]:
        if len(p.shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(first, p.shape)) if i != axis):
            raise ShapeError(f"cannot concatenate shapes {format_shape(first)} and "
                             f"{format_shape(p.shape)} along axis {axis}")
    sizes = [p.shape[axis] for p in parts]
    if not all(isinstance(s, int) for s in sizes):
        raise ShapeError(f"concatenate along a symbolic axis ({sizes}) is not supported")
    return first[:axis] + (sum(sizes),) + first[axis + 1:], parts[0].dtype


def _concatenate_adjoint(dy, y, *parts, axis):  # each part gets its slice of dy
    grads, start = [], 0
    for p in parts:
        grads.append(slice_axis(dy, axis, start, start + p.shape[axis]))
        start += p.shape[axis]
    return grads


def _concatenate_batching(node, axes, batch):  # parts side by side along another axis
    a = same_axis(node, axes, batch)
    return MIXES if a == node.attr("axis") else a


def _concatenate_tangent(y, inputs, tangents, *, axis):
    if all(t is None for t in tangents):
        return None
    return T.concatenate([T.zeros(x.shape) if t is None else t
                          for x, t in zip(inputs, tangents)], axis=axis)


define("concatenate", "structural", shape=_concatenate_shape, adjoint=_concatenate_adjoint,
       tangent=_concatenate_tangent, per_example=None,
       evaluate=lambda node, args, dims: np.concatenate(args, axis=node.attr("axis")),
       emit=lambda e, node: [f"{e.name(node)} = np.concatenate(("
                             f"{', '.join(e.name(i) for i in node.inputs)},), "
                             f"axis={node.attr('axis')})"],
       in_loop=None, tape=None, hint="cat", batching=_concatenate_batching)


# ---------------------------------------------------------------- roll


def _roll_in_loop(e, node, idx):  # read the source in place, shift entries back
    axis, size = node.attr("axis"), node.shape[node.attr("axis")]
    picks = list(idx)
    picks[axis] = f"({idx[axis]} + {size - node.attr('shift')}) % {size}"
    return e.read(node.inputs[0], picks)


def _roll_emit(e, node):  # the tail moved to the front
    axis, cut = node.attr("axis"), node.shape[node.attr("axis")] - node.attr("shift")
    lead, x = ":, " * axis, e.name(node.inputs[0])
    return [f"{e.name(node)} = np.concatenate(({x}[{lead}{cut}:], {x}[{lead}:{cut}]), "
            f"axis={axis})"]


linear("roll", "structural", lambda x, shift, axis: T.roll(x, shift, axis),
       lambda dy, x_shape, *, shift, axis: T.roll(dy, -shift, axis),
       lambda attrs: dict(attrs, axis=attrs["axis"] + 1),
       shape=lambda x, *, shift, axis: (x.shape, x.dtype), per_example=None,
       evaluate=lambda node, args, dims: np.roll(args[0], node.attr("shift"), node.attr("axis")),
       emit=_roll_emit, in_loop=_roll_in_loop, fusable=True, index_map=True, passes_zeros=True,
       tape=None, batching=along_other_axis,
       format=lambda node, args: f"roll({args[0]}, {node.attr('shift')}, "
                                 f"axis={node.attr('axis')})")

"""The loop op: `scan` (one node per loop, its step a small graph of its own; see
symdiff/loops.py) and `scan_part`, which reads one of its results.

The adjoint is the step's adjoint run as another scan, backwards over the carries the forward
loop kept: its carries are the carries' adjoints and a running sum per constant, its xs the
kept carries, the xs and the ys' adjoints. The tangent is a scan over the carries and their
tangents together. Both are scans again, so second derivatives (forward over reverse) go
through the same rules. Generated code: the step is a function of its own, called once per
entry inside one loop.
"""
from __future__ import annotations

from .. import tensors as T
from ..batching import MIXES, example_axes
from ..errors import DifferentiationError
from ..ir import format_shape, fresh, make_node, sizes, topological
from ..loops import Parts, Step, next_scope, parts, placeholder, results
from ..optable import define


def _scalar_sum(x: T.Tensor) -> T.Tensor:
    return T.sum(x) if x.shape else x


def _adjoint(dv: Parts, y, *inputs, step: Step, length, reverse, needed):
    return _backward(dv, y, inputs, step, length, reverse, needed=needed)


_last_per_example = [(None, None)]  # (key, adjoints): one backward loop serves every k


def _per_example(dv: Parts, y, *inputs, k, batch, step: Step, length, reverse):
    """Constant k's adjoint with a row per example: a backward loop whose running sums keep
    one row per example (the step's per-example adjoints, `autodiff.per_example_walk`)."""
    key = (y.node.uid, tuple(sorted((i, t.node.uid) for i, t in dv.items())), batch)
    last_key, adjoints = _last_per_example[0]  # one read: another thread may replace it
    if last_key != key:
        adjoints = _backward(dv, y, inputs, step, length, reverse, batch)
        _last_per_example[0] = key, adjoints
    return adjoints[k]


def _backward(dv: Parts, y, inputs, step: Step, length, reverse, batch=None, needed=None):
    """The adjoints of the loop's inputs (those `needed`), from a loop run backwards over the
    kept carries; with `batch`, each constant's has a row per example."""
    needed = needed or (True,) * len(inputs)
    nc, nx, ny = len(step.carries), len(step.xs), len(step.ys)
    scope, taken = next_scope(), {p.attr("name") for p in step.params}

    def cotangent(like, stem, shape=None):
        return placeholder(fresh("d" + stem, taken), like.shape if shape is None else shape,
                           like.dtype, scope)
    floats = [j for j, c in enumerate(step.carries) if c.dtype.startswith("float")]
    d_carry = {j: cotangent(step.carries[j], step.carries[j].attr("name")) for j in floats}
    d_ys = {i: cotangent(step.ys[i], f"y{i}") for i in range(ny) if nc + i in dv}
    d_kept = {j: cotangent(step.carries[j], step.carries[j].attr("name") + "_kept")
              for j in floats if nc + ny + j in dv}
    # the step's vector-Jacobian product, as the gradient of <cotangents, outputs>
    pairs = [(d_carry[j], step.new_carries[j]) for j in floats] + \
            [(d_ys[i], step.ys[i]) for i in d_ys] + \
            [(d_kept[j], step.carries[j]) for j in d_kept]
    total = None
    for d, out in pairs:
        term = _scalar_sum(T.Tensor(d) * T.Tensor(out))
        total = term if total is None else total + term
    from ..autodiff import per_example_walk, vjp_parts
    grads, walk = vjp_parts(total, step.params) if total is not None else \
        ([None] * len(step.params), None)
    g_carry, g_x, g_const = grads[:nc], grads[nc:nc + nx], grads[nc + nx:]
    rows = ()
    if batch is not None:  # <cotangents, outputs> example by example
        rows, per = (batch,), None
        for d, out in pairs:
            if not out.shape or out.shape[0] != batch:
                raise DifferentiationError(
                    f"per-example gradients through a loop: its carry or y of shape "
                    f"{format_shape(out.shape)} has no leading axis of examples ({batch!r})")
            term = T.Tensor(d) * T.Tensor(out)
            term = T.sum(term, axis=tuple(range(1, len(out.shape)))) if len(out.shape) > 1 \
                else term
            per = term if per is None else per + term
        walk = per_example_walk(per, [T.Tensor(c) for c in step.consts], batch)
        g_const = [g if g0 is not None else None
                   for g, g0 in zip(walk.gradients(), g_const)]
    acc = {k: cotangent(c, c.attr("name") + "_sum", rows + c.shape)
           for k, c in enumerate(step.consts) if g_const[k] is not None and needed[nc + nx + k]}
    new_carries = [(g_carry[j] if g_carry[j] is not None else T.zeros(step.carries[j].shape))
                   for j in floats]
    new_carries += [T.Tensor(acc[k]) + g_const[k] for k in acc]
    x_grads = [i for i in range(nx) if g_x[i] is not None and batch is None and needed[nc + i]]
    outputs, read = _reading_residuals(step, [t.node for t in new_carries] +
                                       [g_x[i].node for i in x_grads], scope, taken)
    backward = Step(tuple(d_carry[j] for j in floats) + tuple(acc.values()),
                    step.carries + step.xs + tuple(d_ys.values()) + tuple(d_kept.values())
                    + tuple(read.values()), step.consts, tuple(outputs[:len(new_carries)]),
                    tuple(outputs[len(new_carries):]), walk, step)
    init = [dv.get(j, T.zeros(step.carries[j].shape)) for j in floats]
    init += [T.zeros(rows + step.consts[k].shape) for k in acc]
    kept = parts(T.Tensor(y.node))[nc + ny:]
    stacked = parts(T.Tensor(y.node))[nc:nc + ny]
    xs = [kept[j] for j in range(nc)] + list(inputs[nc:nc + nx]) + \
         [dv[nc + i] for i in d_ys] + [dv[nc + ny + j] for j in d_kept] + \
         [stacked[i] for i in read]
    consts = list(inputs[nc + nx:])
    result = parts(T.apply_op("scan", [t.node for t in init + xs + consts], step=backward,
                              length=length, reverse=not reverse))
    last, stacked = result[:len(backward.carries)], result[len(backward.carries):]
    adjoints = [None] * len(inputs)
    for slot, j in enumerate(floats):
        adjoints[j] = last[slot]
    for slot, i in enumerate(x_grads):
        adjoints[nc + i] = stacked[slot]
    for slot, k in enumerate(acc):
        adjoints[nc + nx + k] = last[len(floats) + slot]
    return adjoints


def _reading_residuals(step: Step, outputs: list, scope: int, taken: set):
    """`outputs` (of the backward step) with each of the forward step's residuals they need
    read from its stack (a placeholder) instead of computed again, and {index of the
    residual among the ys: its placeholder}."""
    kept = {n.uid for n in step.ys[len(step.ys) - step.residuals:]}
    residual: dict[int, int] = {}  # uid -> the first of the ys holding it (a user's y, if one)
    for i, n in enumerate(step.ys):
        if n.uid in kept:
            residual.setdefault(n.uid, i)
    names = step.program.names()
    needed, stack = set(), list(outputs)
    while stack:  # what the outputs need, down to the residuals
        n = stack.pop()
        if n.uid not in needed:
            needed.add(n.uid)
            if n.uid not in residual:
                stack.extend(n.inputs)
    read, new = {}, {}
    for n in topological(outputs):
        if n.uid not in needed:
            continue
        if n.uid in residual:
            read[residual[n.uid]] = new[n.uid] = placeholder(
                fresh(names.get(n.uid, "kept"), taken), n.shape, n.dtype, scope)
        elif any(new[i.uid] is not i for i in n.inputs):
            new[n.uid] = make_node(n.op, [new[i.uid] for i in n.inputs], n.shape, n.dtype,
                                   **dict(n.attrs))
        else:
            new[n.uid] = n
    return [new[n.uid] for n in outputs], read


def _tangent(y, inputs, tangents, *, step: Step, length, reverse):
    from ..forward import jvp
    nc, nx, ny = len(step.carries), len(step.xs), len(step.ys)
    scope, taken = next_scope(), {p.attr("name") for p in step.params}

    def tangent(like):
        return placeholder(fresh("t" + like.attr("name"), taken), like.shape, like.dtype, scope)
    t_carry = [tangent(c) for c in step.carries]
    t_xs = {i: tangent(step.xs[i]) for i in range(nx) if tangents[nc + i] is not None}
    t_consts = {k: tangent(step.consts[k]) for k in range(len(step.consts))
                if tangents[nc + nx + k] is not None}
    given = {T.Tensor(c): T.Tensor(t) for c, t in zip(step.carries, t_carry)}
    given.update((T.Tensor(step.xs[i]), T.Tensor(t)) for i, t in t_xs.items())
    given.update((T.Tensor(step.consts[k]), T.Tensor(t)) for k, t in t_consts.items())
    pushed = [jvp(T.Tensor(out), given).node for out in step.new_carries + step.ys]
    both = Step(step.carries + tuple(t_carry), step.xs + tuple(t_xs.values()),
                step.consts + tuple(t_consts.values()), step.new_carries + tuple(pushed[:nc]),
                step.ys + tuple(pushed[nc:]))
    init = list(inputs[:nc]) + [t if t is not None else T.zeros(c.shape)
                                for t, c in zip(tangents[:nc], step.carries)]
    xs = list(inputs[nc:nc + nx]) + [tangents[nc + i] for i in t_xs]
    consts = list(inputs[nc + nx:]) + [tangents[nc + nx + k] for k in t_consts]
    result = parts(T.apply_op("scan", [T.as_tensor(t).node for t in init + xs + consts],
                              step=both, length=length, reverse=reverse))
    # both's results: carries and their tangents, ys and theirs, kept carries and theirs
    at = [nc + j for j in range(nc)] + [2 * nc + ny + i for i in range(ny)] + \
         [2 * nc + 2 * ny + nc + j for j in range(nc)]
    return Parts({k: result[index] for k, index in enumerate(at)})


def _evaluate(node, args, dims):
    from ..numpy_eval import run
    import numpy as np
    step, length = node.attr("step"), node.attr("length")
    nc, nx = len(step.carries), len(step.xs)
    count = dims[length] if isinstance(length, str) else length
    carries, xs, consts = list(args[:nc]), args[nc:nc + nx], args[nc + nx:]
    program = step.program
    named = {p.attr("name"): v for p, v in zip(step.consts, consts)}
    ys = [np.empty(sizes(shape, dims), dtype) for shape, dtype in results(node)[nc:]]
    for t in (range(count - 1, -1, -1) if node.attr("reverse") else range(count)):
        for j, c in enumerate(carries):
            ys[len(step.ys) + j][t] = c
        named.update((p.attr("name"), v) for p, v in zip(step.carries, carries))
        named.update((p.attr("name"), x[t]) for p, x in zip(step.xs, xs))
        out = list(run(program, named, dims).values())
        carries = [np.asarray(v, c.dtype) for v, c in zip(out[:nc], step.carries)]
        for i, v in enumerate(out[nc:]):
            ys[i][t] = v
    return tuple(carries) + tuple(ys)


def _emit(e, node):
    step, length = node.attr("step"), node.attr("length")
    nc, nx, ny = len(step.carries), len(step.xs), len(step.ys)
    read = e.parts_read(node)  # what nobody reads is neither computed nor kept
    ys = tuple(i for i in range(ny) if nc + i in read)
    kept = [j for j in range(nc) if nc + ny + j in read]
    inputs = [e.name(i) for i in node.inputs]
    name = e.name(node)
    carries = [e.fresh(f"{name}_{c.attr('name')}") for c in step.carries]
    named = step.program.names()  # a residual's stack by the step's name for it
    stacks = {nc + i: e.fresh(f"{name}_" + (named[step.ys[i].uid] if i >= ny - step.residuals
                                             else f"y{i}")) for i in ys}
    stacks.update((nc + ny + j, e.fresh(f"{name}_{step.carries[j].attr('name')}_kept"))
                  for j in kept)
    t, size = e.fresh("t"), e.dim(length)
    shapes = results(node)
    lines = [f"{v} = np.empty({e.shape(shapes[k][0])}, dtype=np.{shapes[k][1]})"
             for k, v in stacks.items()]
    lines += [f"{v} = {'np.ascontiguousarray(' + src + ')' if c.rank else src}"
              for v, src, c in zip(carries, inputs[:nc], step.carries)]
    order = f"range({size} - 1, -1, -1)" if node.attr("reverse") else f"range({size})"
    call = e.call(step.program_of(ys), "step",
                  carries + [f"{x}[{t}]" for x in inputs[nc:nc + nx]] + inputs[nc + nx:])
    now = [e.fresh(f"{stacks[nc + i]}_now") for i in ys]

    def store(k, value):  # stack k's entry t: a scalar, or an array entry by entry
        item = shapes[k][0][1:]
        return e.nest(item, lambda idx: [f"{stacks[k]}[{', '.join([t] + idx)}] = "
                                         f"{value}{'[' + ', '.join(idx) + ']' if idx else ''}"])
    body = [line for j in kept for line in store(nc + ny + j, carries[j])]
    body += [f"{', '.join(carries + now)}, = {call}"]
    body += [line for i, v in zip(ys, now) for line in store(nc + i, v)]
    lines += [f"for {t} in {order}:  # one step per entry"] + ["    " + l for l in body]
    results_ = carries + [stacks.get(k, "None") for k in range(nc, len(shapes))]
    note = "  # None: a result nobody reads" if "None" in results_ else ""
    lines += [f"{name} = ({', '.join(results_)},){note}"]
    return lines


def _batching(node, axes, batch):
    """Each result's example axis: a carry keeps its examples where the step keeps them apart
    (its axis the same on the way in and out); a loop along the examples mixes them."""
    step = node.attr("step")
    nc, nx = len(step.carries), len(step.xs)
    if any(a == 0 for a in axes[nc:nc + nx]):
        return MIXES
    carry = list(axes[:nc])
    slices = [None if a is None else a - 1 for a in axes[nc:nc + nx]]
    program = step.program
    for _ in range(nc + 1):  # a carry may take examples from an x in the first step
        given = dict(zip([p.uid for p in step.params], carry + slices + list(axes[nc + nx:])))
        try:
            found = example_axes([s.node for s in program.stmts], batch, given=given)
        except DifferentiationError:
            return MIXES
        found.update(given)
        out = [found[c.uid] for c in step.new_carries]
        if out == carry:
            ys = [found[v.uid] for v in step.ys]
            stacked = [None if a is None else a + 1 for a in ys + carry]
            return tuple(carry) + tuple(stacked)
        if any(a is not None and b is not None for a, b in zip(carry, out)):
            return MIXES
        carry = [a if a is not None else b for a, b in zip(carry, out)]
    return MIXES


def _tape(tape, phase, node):
    return tape.loop(phase, node, node.attr("step"), node.attr("length"), node.attr("reverse"))


def _tape_part(tape, phase, node):
    looped, index = tape.value(phase, node.inputs[0]), node.attr("index")
    nc = len(looped.carries)
    return looped.carries[index] if index < nc else looped.stacks[index - nc]


def _format(node, args):
    step = node.attr("step")
    nc, nx = len(step.carries), len(step.xs)
    names = ", ".join(p.attr("name") for p in step.params)
    return (f"scan(step({names}), init=({', '.join(args[:nc])}), xs=({', '.join(args[nc:nc + nx])})"
            f", consts=({', '.join(args[nc + nx:])}), length={node.attr('length')}"
            f"{', reverse' if node.attr('reverse') else ''})")


define("scan", "structural", shape=lambda *inputs, **attrs: ((), "tuple"),
       adjoint=_adjoint, adjoint_needed=True, tangent=_tangent, per_example=_per_example,
       lift=None,
       evaluate=_evaluate, emit=_emit, in_loop=None, tape=_tape, batching=_batching,
       format=_format, hint="scan")


def _part_shape(result, *, index):
    return results(result)[index]


def _part_hint(node):
    step, index = node.inputs[0].attr("step"), node.attr("index")
    nc, ny = len(step.carries), len(step.ys)
    if nc + ny - step.residuals <= index < nc + ny:  # a residual: the step's name for it
        return step.program.names()[step.ys[index - nc].uid] + "_kept"
    return "last" if index < nc else ("ys" if index < nc + ny else "kept")


define("scan_part", "structural", shape=_part_shape,
       adjoint=lambda dy, y, result, *, index: [Parts({index: dy})],
       tangent=lambda y, inputs, tangents, *, index: tangents[0].get(index),
       per_example=None, lift=None,
       evaluate=lambda node, args, dims: args[0][node.attr("index")],
       emit=lambda e, node: [f"{e.name(node)} = {e.name(node.inputs[0])}[{node.attr('index')}]"],
       in_loop=None, tape=_tape_part,
       batching=lambda node, axes, batch: axes[0] if axes[0] == MIXES
       else axes[0][node.attr("index")],
       format=lambda node, args: f"{args[0]}[{node.attr('index')}]", hint=_part_hint)

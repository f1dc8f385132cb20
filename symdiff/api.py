"""`sd.compile` and `sd.check_grad`: the one place where the stages are joined.

Front end (formula, SymPy expression, Python function or Tensor) -> Tensor -> reverse mode ->
Program -> codegen -> Compiled. The IR, the op table, autodiff and the passes never import
codegen; this facade does, so that users need one call.
"""
from __future__ import annotations

import numbers
import time

import numpy as np
import sympy as sp

from . import tensors as T
from .autodiff import differentiate, gradients, schedule
from .auxiliary import PREFIX, auxiliary_outputs
from .clipping import clipped_program
from .errors import ArgumentError, DifferentiationError, ShapeError
from .forward import jvp
from .from_sympy import from_sympy
from .ir import format_shape, fresh, topological
from .parse import build, formula_text, free_names, parse_formula
from .passes.stable import stabilize
from .tracing import parameter_names, trace

REDUCTIONS = {"mean": T.mean, "sum": T.sum, None: None}


def compile(model, wrt=None, *, batch=(), reduce="mean", shapes=None, dtypes=None,
            dtype=float, parallel=None, check_finite=False, tier="auto", wait="auto", name=None,
            allow_unused=False, aux=None):
    """Compile `model` into value and gradient kernels.

    Args:
        model: a formula string, a SymPy expression, a Python function of its inputs, or a
            Tensor built with `sd.tensor` and `sd.*` functions.
        wrt: the inputs to differentiate by (names, or Tensors/SymPy symbols). Every name must
            occur in the model; a misspelt one is an error, not a silent zero gradient.
        aux: {name: expression} of auxiliary outputs (an accuracy, the logits, per-sample
            losses), each written as the model is (a formula may read the model's named
            lines), computed in the same kernel and returned beside the value:
            `value, grads, aux = f.value_and_grad(...)`, `value, aux = f(...)`.
        allow_unused: True makes a name in `wrt` that the model does not use an input like
            the others (of its declared shape: `shapes`, `batch`, or the Tensor given),
            whose gradient is zeros.
        batch: names of inputs that are arrays over the batch axis "n" (formulas, SymPy
            expressions and functions); one compiled kernel serves every batch size.
        reduce: "mean" or "sum" reduces a per-sample model over the batch; None returns
            per-sample values and per-example gradients, each of shape (n, *parameter shape).
            A Tensor model must be a scalar loss, or per-example values with reduce=None.
        shapes: {name: shape} of inputs of formulas and functions (scalars by default;
            "n"-long vectors for `batch` names).
        dtypes: {name: dtype} of inputs of formulas and functions (`dtype` by default).
        dtype: float or "float32": the float type of formula and function inputs. A float32
            model computes in float32 end to end; only batch sums accumulate in float64.
        parallel: how a large batch's chunks run (the batch size alone decides the chunks,
            and so the bits): None on threads or in turn, whichever has lately been faster at
            its size (in turn for a kernel whose matrix products call a threaded BLAS, whose
            threads need the cores); True always on threads; False always in turn.
        check_finite: raise NonFiniteError naming the first NaN or infinite output (values
            are otherwise returned as IEEE arithmetic gives them, like NumPy).
        tier: "kernel" compiles a Numba kernel for the model (the fastest calls; compile time
            grows with the square of the loop body: seconds for hundreds of statements).
            "tape" runs it on the interpreter compiled once per machine (no compile per model;
            scalar-per-sample float64 models: formulas, SymPy expressions, scalar functions).
            "auto" takes the tape for such models from 100 statements on (a branch, such as
            the guard on each tangent product of forward mode, counting as three), else the
            kernel; it decides for each Program: value, gradient, `jvp`, `hvp`. On "kernel",
            a `jvp` or `hvp` Program whose size so counted is 500 or more runs on the tape
            when the tape can run the model: made from the gradient, its kernel would compile
            for seconds to minutes (a 50-step map's Hessian: 72 s). `f.tiers` says which tier
            runs each Program.
        wait: "auto" (the default) returns at once and compiles the kernel on a background
            thread. Until it is in place (`f.tier == "python"`), calls run the kernel's own
            module under CPython (the same operations in the same order: the kernel's bits) as
            long as their estimated times add up to half a second at most; any other call
            waits for the kernel. True prepares the kernel before returning. False returns at
            once too, and until the kernel is in place (`f.tier == "numpy"`) calls run the
            Program through NumPy: the same values up to rounding (NumPy's exp, log and sums
            differ in the last bits). With either, a private step runs its own kernel,
            `f.wait()` waits for the kernel and `f.timings["kernel ready"]` says when it
            arrived.

    >>> f = compile("(x + y) * z", wrt=["x", "y", "z"])
    >>> f.value_and_grad(x=-2.0, y=5.0, z=-4.0)
    (-12.0, {'x': -4.0, 'y': -4.0, 'z': 3.0})
    """
    if reduce not in REDUCTIONS:
        raise ArgumentError(f"reduce must be 'mean', 'sum' or None, not {reduce!r}")
    if not (isinstance(wait, bool) or wait == "auto"):
        raise ArgumentError(f"wait must be 'auto', True or False, not {wait!r}")
    timings = {}
    start = time.perf_counter()
    output, env, title, steps = _front_end(model, wrt, batch, reduce, shapes, dtypes, dtype)
    extra = auxiliary_outputs(aux, env, steps)
    wrt_names = _wrt_names(wrt, env, title, allow_unused and _declare(batch, shapes, dtype),
                           steps)
    per_sample = reduce is None and output.shape != ()
    if isinstance(model, T.Tensor) and output.shape != () and not per_sample:
        raise DifferentiationError(
            f"the loss must be a scalar, but it has shape {format_shape(output.shape)}: reduce it "
            f"with sd.mean or sd.sum, or pass reduce=None for per-example values and gradients")
    if output.shape != () and not per_sample:
        output = REDUCTIONS[reduce](output)
    output = stabilize(output)
    timings["front end"] = time.perf_counter() - start

    start = time.perf_counter()
    inputs = list(env.values())
    wrt_tensors = [env[w] for w in wrt_names]
    names = _line_names(steps)
    program = differentiate(output, wrt_tensors, inputs=inputs, names=names, extra=extra,
                            per_example=output.shape[0] if per_sample else None)
    timings["differentiate"] = time.perf_counter() - start

    def bound():  # the per-example clipping norm's input, the same name in both Programs
        if not wrt_tensors:
            raise DifferentiationError("per-example clipping needs a parameter in wrt")
        return _fresh_input("per_example_clip", wrt_tensors[0], env, ())
    programs = {"grad": lambda: program,
                "value": lambda: schedule([("value", output.node)] + [
                    (label, t.node) for label, t in extra], inputs=inputs, names=names),
                "dp": lambda: clipped_program(output, wrt_tensors, inputs, bound()),
                "dp blocks": lambda: clipped_program(output, wrt_tensors, inputs, bound(),
                                                     summed=True)}
    tangents = {}
    if not per_sample:  # forward mode and second order, built when first asked for
        tangents = _tangent_inputs(env, wrt_names)
        directions = {env[w]: tangents[w] for w in wrt_names}
        programs["jvp"] = lambda: schedule([("value", output.node),
                                            ("jvp", jvp(output, directions).node)],
                                           inputs=inputs + list(directions.values()),
                                           names=names)
        programs["hvp"] = lambda: schedule(
            [("value", output.node)] + [(f"hvp:{w}", jvp(g, directions).node)
                                        for w, g in zip(wrt_names, gradients(program))],
            inputs=inputs + list(directions.values()), names=names)
    from .codegen.compiled import Compiled  # here, so `import symdiff` does not load Numba
    return Compiled(programs, wrt_names, name or title, {w: t.node.attr("name")
                                                          for w, t in tangents.items()},
                    parallel, timings, check_finite, tier, wait,
                    aux=tuple(label[len(PREFIX):] for label, _ in extra))


def _line_names(steps: dict) -> dict[int, str]:
    """{uid: name} of the values a formula's lines name (the first name of a value)."""
    names: dict[int, str] = {}
    for name, value in steps.items():
        if isinstance(value, T.Tensor) and value.node.op not in ("input", "const"):
            names.setdefault(value.node.uid, name)
    return names


def hvp(compiled):
    """`compiled.hvp`: v, inputs -> the Hessian-vector product, by forward over reverse."""
    return compiled.hvp


def hessian(compiled):
    """`compiled.hessian`: inputs -> the dense Hessian over the flattened parameters."""
    return compiled.hessian


def jacobian(model, wrt=None, *, batch=(), shapes=None, dtypes=None, parallel=None, tier="auto",
             name=None):
    """Compile the Jacobian of a vector-valued model: a callable, inputs -> (outputs, parameters).

    Rows come from reverse mode (one VJP per output entry) or columns from forward mode (one
    JVP per parameter entry), whichever needs fewer kernel calls at the given sizes.

    >>> J = jacobian("x * y + sin(x)", wrt=["x", "y"])
    >>> J(x=0.0, y=2.0)
    array([[3., 0.]])
    """
    output, env, title, steps = _front_end(model, wrt, batch, None, shapes, dtypes)
    wrt_names = _wrt_names(wrt, env, title, None, steps)
    output = stabilize(output)
    inputs = list(env.values())
    cotangent = _fresh_input("u", output, env)
    tangents = _tangent_inputs(env, wrt_names)
    directions = {env[w]: tangents[w] for w in wrt_names}
    programs = {
        "grad": lambda: differentiate(output, [env[w] for w in wrt_names], seed=cotangent,
                                      inputs=inputs + [cotangent]),
        "jvp": lambda: schedule([("value", output.node), ("jvp", jvp(output, directions).node)],
                                inputs=inputs + list(directions.values())),
    }
    from .codegen.compiled import Compiled, Jacobian
    compiled = Compiled(programs, wrt_names, name or title,
                        {w: t.node.attr("name") for w, t in tangents.items()}, parallel,
                        tier=tier)
    return Jacobian(compiled, cotangent.node.attr("name"))


def _fresh_input(name: str, like: T.Tensor, env: dict, shape=None) -> T.Tensor:
    """A new input named after `name`, of `like`'s dtype (a float32 model stays float32) and
    shape unless `shape` is given."""
    return T.tensor(fresh(name, set(env)), like.shape if shape is None else shape, like.dtype)


def _tangent_inputs(env: dict, wrt_names) -> dict:
    """A tangent input `<w>_dot` of w's shape for each w in wrt (renamed if the name is taken)."""
    return {w: _fresh_input(f"{w}_dot", env[w], env) for w in wrt_names}



def _front_end(model, wrt, batch, reduce, shapes, dtypes, dtype=float):
    """(output Tensor, {input name: Tensor} in argument order, title, {name: value} of the
    lines of a formula)."""
    batch = [batch] if isinstance(batch, str) else list(batch)
    shapes, dtypes = dict(shapes or {}), dict(dtypes or {})

    def make_env(names):
        for b in batch:
            if b not in names:
                raise ArgumentError(f"batch input {b!r} does not occur in the model "
                                    f"(its inputs: {', '.join(names)})")
        env = {}
        for n in names:
            shape = shapes.get(n, ("n",) if n in batch else ())
            env[n] = T.tensor(n, shape, dtypes.get(n, dtype))
        return env

    steps: dict = {}
    if isinstance(model, str):
        tree = parse_formula(model)
        env = make_env(free_names(tree))
        output = build(tree, env, model, steps)
        title = formula_text(model)
    elif isinstance(model, sp.Basic):
        names = sorted((s.name for s in model.free_symbols), key=str)
        env = make_env(names)
        output = from_sympy(model, env)
        title = str(model)
    elif isinstance(model, T.Tensor):
        found: dict[str, T.Tensor] = {}
        for n in topological([model.node]):
            if n.op == "input":
                other = found.setdefault(n.attr("name"), T.Tensor(n))
                if other.node is not n:
                    raise ShapeError(f"two inputs are named {n.attr('name')!r}: one of shape "
                                     f"{format_shape(other.shape)} ({other.dtype}), one of shape "
                                     f"{format_shape(n.shape)} ({n.dtype}); give them one "
                                     f"shape and dtype, or different names")
        env = {k: found[k] for k in sorted(found)}
        output, title = model, "tensor model"
    elif callable(model):
        env = make_env(parameter_names(model))
        output = trace(model, env)
        title = getattr(model, "__name__", "model")
    else:
        raise ArgumentError(f"cannot compile a {type(model).__name__}: give a formula string, "
                            f"a SymPy expression, a function or a symdiff Tensor")
    if isinstance(output, numbers.Real) and not isinstance(output, bool):
        output = T.as_tensor(output)  # a constant model: its gradients are zeros
    if isinstance(output, T.Tensor) and output.dtype == "bool":
        raise DifferentiationError(
            f"the model {title!r} is a comparison, which has no derivative: use it as the "
            f"condition of a where (where(cond, a, b)), or write where(cond, 1.0, 0.0) for "
            f"its value as a number")
    if not isinstance(output, T.Tensor):
        raise ArgumentError(f"the model {title!r} returned a {type(output).__name__}, "
                            f"not a symdiff Tensor or a number")
    return output, env, title, steps


def _declare(batch, shapes, dtype):
    """name -> the input a formula or function would have declared for it."""
    batch = [batch] if isinstance(batch, str) else list(batch)
    return lambda n: T.tensor(n, dict(shapes or {}).get(n, ("n",) if n in batch else ()), dtype)


def _wrt_names(wrt, env, title, declare=None, steps=()) -> list[str]:
    """The names in `wrt`; with `declare` (allow_unused), one the model does not use is added
    to `env` as an input, a Tensor as given, a name as `declare` makes it."""
    if wrt is None:
        raise ArgumentError("say which inputs to differentiate by: wrt=[...]")
    if isinstance(wrt, (str, T.Tensor, sp.Symbol)):
        wrt = [wrt]
    names = []
    for w in wrt:
        name = w.node.attr("name") if isinstance(w, T.Tensor) else \
            w.name if isinstance(w, sp.Symbol) else w
        if name in steps:
            raise DifferentiationError(f"wrt {name!r} is a line of the formula, not an input: "
                                       f"differentiate by the inputs it is computed from")
        if name not in env and declare:
            T.check_name(name)
            env[name] = w if isinstance(w, T.Tensor) else declare(name)
        if name not in env:
            raise DifferentiationError(f"wrt {name!r} does not occur in {title!r}; "
                                       f"its inputs are {', '.join(env) or 'none'} "
                                       f"(allow_unused=True gives it a zero gradient)")
        if env[name].dtype == "int64":
            raise DifferentiationError(f"wrt {name!r} is an integer input; it has no gradient")
        names.append(name)
    return names


def check_grad(compiled, eps: float = 1e-6, by_line: bool = False, /, **arguments):
    """Largest relative error between the compiled gradient and central differences.

    With by_line=True, each adjoint statement of the Program is compared instead, in order,
    with central differences of the forward Program by the intermediate it differentiates;
    the result (a LineCheck) names the first line that disagrees, its `# from:` statement
    and both numbers.

    Each parameter entry w is moved by ±h (h = eps·max(1, |w|)) and the model value
    recomputed (through the value-and-gradient kernel, so nothing else is compiled); the
    error is |g - fd| / max(1, |g|, |fd|), the largest over all entries.

    `eps` and `by_line` may come by keyword, unless the model has an input of that name, whose
    keyword it then is: `check_grad(f, 1e-6, True, eps=0.5)` for a model with an input eps.
    """
    from .codegen.inputs import option  # here, as for Compiled: codegen loads on first use
    eps = option(arguments, "eps", compiled.inputs, "check_grad", eps)
    by_line = option(arguments, "by_line", compiled.inputs, "check_grad", by_line)
    if by_line:
        from .linecheck import check_lines
        from .trace_values import trace_compiled
        return check_lines(trace_compiled(compiled, arguments), eps)
    _, grads, *_ = compiled.value_and_grad(**arguments)
    worst = 0.0
    for name in compiled.wrt:
        base = np.array(arguments[name], dtype=np.float64)
        grad = np.asarray(grads[name], dtype=np.float64)
        for index in np.ndindex(base.shape):
            h = eps * max(1.0, abs(base[index]))
            values = []
            for sign in (1, -1):
                moved = base.copy()
                moved[index] += sign * h
                value = compiled.value_and_grad(**{**arguments, name: moved})[0]
                values.append(np.asarray(value, dtype=np.float64))
            numeric = (values[0] - values[1]) / (2 * h)
            # per-example gradients carry a leading batch axis: compare every example
            analytic = grad[(slice(None),) + index] if grad.ndim > base.ndim else grad[index]
            scale = np.maximum(1.0, np.maximum(np.abs(analytic), np.abs(numeric)))
            worst = max(worst, float(np.max(np.abs(analytic - numeric) / scale)))
    return worst

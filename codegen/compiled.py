"""`Compiled`: the runtime object a user calls. Runs a kernel (or tape) per kind of result.

Input: the Programs of a model (gradient, value, jvp, hvp), each built on first use. A call
goes to the generated entry point, which tests the arguments' types with their input specs
(codegen/inputs.py); the kernel checks sizes and labels before it reads anything (Numba runs
without bounds checks); whatever the fast path refuses goes to the kernel's slow path
(codegen/kernel.py), which converts it or raises a SymdiffError naming the argument. Output:
the value, and gradients by name.
"""
from __future__ import annotations

import numpy as np

from symdiff.errors import ArgumentError, NonFiniteError
from symdiff.optim import SGD, Optimizer
from symdiff.program import Program

from .emit import MACHINERY
from .inputs import MISSING, LazyInput, check_rate, option
from .kernel import Kernel
from .build import load_module
from .steps import Steps, TapeSteps, emit_front
from .printer import branches
from .tape import TapeKernel, Unsupported, build_tape

TIERS = ("auto", "kernel", "tape")
TAPE_MIN_STATEMENTS = 100  # from here on a kernel takes seconds to compile (Numba's compile
# time grows with the square of a function's statements: ~1 s at 137, ~9 s at 1,000)
BRANCH_STATEMENTS = 3  # a conditional expression costs Numba's compile about what three
# statements cost (its SSA pass walks the blocks of every branch for every name; measured:
# 546 statements with 888 of them compiled for 72 s, without them for 1.6 s)
LOOP_STATEMENTS = TAPE_MIN_STATEMENTS  # a loop (sd.scan): its step and the step's adjoint
# compile as functions of their own, seconds each, where the tape runs them at once
FORWARD = ("jvp", "hvp")  # made from the gradient: twice its size, a branch guarding each
FORWARD_KERNEL_MAX = 500  # tangent product; on tier="kernel" they run on the tape from this
# compile_size on (their kernel would compile for 3 s and more, growing with its square)


def compile_size(program: Program) -> int:
    """Statements, each conditional expression the kernel would write counting as
    BRANCH_STATEMENTS: the size that Numba's compile time grows with the square of."""
    return len(program.stmts) + BRANCH_STATEMENTS * sum(
        branches(s.node.attr("body")) for s in program.stmts if s.node.op == "elementwise") \
        + LOOP_STATEMENTS * sum(s.node.dtype == "tuple" for s in program.stmts)


def forward_tier(program: Program, tier: str) -> str:
    """The tier for a forward-mode Program (jvp, hvp): on "kernel", "auto" from a
    compile_size of FORWARD_KERNEL_MAX on (the tape if it can run the Program, else the
    kernel after all)."""
    if tier == "kernel" and compile_size(program) >= FORWARD_KERNEL_MAX:
        return "auto"
    return tier


def make_kernel(program: Program, title: str, parallel: bool | None, tier: str, update=(),
                wait: bool | str = True, rows: int | None = None):
    """The kernel tier (a generated Numba module) or the tape tier (the precompiled
    interpreter) for `program`, running a batch of `rows` rows or more in chunks (by default,
    as its own size says). "auto" takes the tape for scalar-per-sample Programs whose
    compile_size is TAPE_MIN_STATEMENTS or more, whose kernels would compile for seconds."""
    if tier == "kernel" or tier == "auto" and compile_size(program) < TAPE_MIN_STATEMENTS:
        return Kernel(program, title, parallel, update, wait, rows)
    try:
        tape = build_tape(program)
    except Unsupported as e:
        if tier == "tape":
            raise ArgumentError(f"{title}: tier='tape' cannot run this model: {e}; "
                                f"use tier='kernel' or 'auto'") from None
        return Kernel(program, title, parallel, update, wait, rows)
    return TapeKernel(program, title, parallel, tape, update, rows)


class GeneratedPerModel:
    """A function each model generates for itself (`Compiled.step`, `sgd_step`), given to the
    instance when it is made and never changed: a call finds it as it would a method, and it
    binds the inputs by name itself, where a method taking `**arguments` could only build a
    dict and read it back (a few hundred ns, a tenth of a small model's step). The class
    attribute documents it."""

    def __init__(self, doc: str):
        self.__doc__ = doc

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        raise AttributeError(f"{self.name} is given to each model when it is made")


class Compiled:
    """A model compiled to Numba kernels (or tapes for the precompiled interpreter).

    Call it for the value; `grad` and `value_and_grad` add the gradients, a dict keyed by the
    names in `wrt`; `jvp`, `hvp` and `hessian` give forward-mode and second-order derivatives.
    Arguments are passed by name, and an input may have any name: what a method takes besides
    the inputs comes first, by position (`f.step(opt, ...)`, `f.hvp(v, ...)`); `tangents`, `v`
    and `collapse` may also come by keyword, unless the model has an input of that name, whose
    keyword it is. A model compiled with auxiliary outputs (`aux`) returns them
    too, as a dict by name: `value, grads, aux = f.value_and_grad(...)`, `value, aux = f(...)`
    and `value, aux = f.sgd_step(...)`. `step(opt, ...)` takes a step of an optimizer
    (`sd.optim`); `sgd_step(lr, ...)` is `step` with plain gradient descent. `source` is the
    exact text of the gradient kernel's module, then of the optimizer steps' modules once a
    step is taken (for the tape tier, the Program the tape runs); `tier`
    says which tier runs it (`tiers`, which runs each Program: `jvp` and `hvp` may run on
    the tape), `from_cache` whether its machine code came from the on-disk cache, `timings`
    how long each stage took.

    With `wait="auto"` (the default of `sd.compile`) the kernels compile on a background
    thread; until the gradient kernel is in place `tier` is "python", and a call CPython runs
    quickly runs the kernel's module under CPython (the kernel's bits), another waits. With
    `wait=False`, `tier` is "numpy" meanwhile and calls run the Program through NumPy, whose
    last bits may differ from the kernel's. `wait()` blocks until the kernel is in place.
    """

    def __init__(self, programs: dict, wrt: list[str], title: str, tangents: dict | None = None,
                 parallel: bool | None = None, timings: dict | None = None,
                 check_finite: bool = False, tier: str = "auto", wait: bool | str = True,
                 aux: tuple = ()):
        if tier not in TIERS:
            raise ArgumentError(f"tier must be one of {', '.join(map(repr, TIERS))}, "
                                f"not {tier!r}")
        self.wrt, self.title, self.aux = tuple(wrt), title, tuple(aux)
        self.check_finite = check_finite
        self._programs, self._kernels = programs, {}
        self._tangents = tangents or {}  # wrt name -> the input name of its tangent
        self._parallel, self._tier, self._wait = parallel, tier, wait
        self._grad = gradient = self._kernel("grad")
        self._steps = {}  # private (per-example clipping) or not -> Steps
        self._compiled_steps = {}  # rule -> its compiled step, filled by the plain Steps
        self._sgd = SGD(0.0)  # what sgd_step steps with
        self._aux_sgd = self.aux and gradient.program.outputs[0][1].rank == 0  # (the
        # kernel's steps return no aux)
        self._front_source = ""
        self.step, self.sgd_step = self._make_front()  # for the object's life
        self.program, self.inputs = gradient.program, gradient.inputs
        self._timings = dict(timings or {})
        self._rows = next((n.attr("name") for n in self.program.inputs  # a batch input's name
                           if n.shape and isinstance(n.shape[0], str)), None)

    def __repr__(self):
        return f"<symdiff.Compiled {self.title!r} wrt={list(self.wrt)} inputs={list(self.inputs)}>"

    def __reduce__(self):
        """Pickles as its Programs and options; another process rebuilds it from its cache."""
        from .pickling import reduce_compiled
        return reduce_compiled(self)

    @property
    def source(self) -> str:
        """The exact text of the gradient kernel's module (for the tape tier, the Program it
        runs), then, once a step has been taken, the module of `step` and `sgd_step` and one
        module per optimizer rule used."""
        steps = getattr(self._grad, "step_sources", ())
        return self._grad.source + (self._front_source + "".join(steps) if steps else "")

    @property
    def kernel_source(self) -> str:
        """The math of `source`: forward and adjoint statements (the fused loops and the
        kernel), without the call machinery that follows them."""
        return self.source.split(MACHINERY)[0].rstrip() + "\n"

    @property
    def tier(self) -> str:
        """What runs the gradient now: "kernel", "tape", or while the kernel is being
        prepared "python" (wait="auto": its module under CPython, for quick calls) or "numpy"
        (wait=False)."""
        return self._grad.tier

    def wait(self) -> "Compiled":
        """Block until the kernels made so far are in place (a no-op after wait=True), and
        the optimizer steps compiling on threads (a model's first steps run meanwhile)."""
        for kind, kernel in list(self._kernels.items()):
            if kind != "dp":  # (a private step's kernel loads when first called)
                getattr(kernel, "wait", lambda: None)()
        for steps in list(self._steps.values()):
            getattr(steps, "wait", lambda: None)()
        return self

    @property
    def timings(self) -> dict:
        """Seconds per stage: front end, differentiate, then the gradient kernel's own: emit,
        compile (Numba's compile, or its load from the cache) and `kernel ready` (from the
        kernel's start to its arrival); or tape and first call."""
        return {**self._timings, **self._grad.timings}

    @property
    def tiers(self) -> dict:
        """What runs each Program prepared so far: {"grad": "kernel", "hvp": "tape", ...}.
        "grad" is `tier`. On tier="kernel", "jvp" and "hvp" (`jvp`, `hvp`, `hessian`) run on
        the tape when the tape can run them and their kernel would compile for 3 s or more
        (a `compile_size` of FORWARD_KERNEL_MAX or more)."""
        return {kind: kernel.tier for kind, kernel in self._kernels.items()}

    @property
    def from_cache(self) -> bool | None:
        """Whether the gradient kernel's machine code was loaded from Numba's on-disk cache
        instead of compiled (None until it is in place, or for a tape before its first
        call)."""
        return self._grad.from_cache

    def explain(self, /, **arguments):
        """The lectures' backprop table at `arguments`: each statement's value and, for each
        adjoint, the upstream adjoint, the local gradient and their product (text when
        printed, HTML in Jupyter)."""
        from symdiff.explain import explain
        from symdiff.trace_values import trace_compiled
        return explain(trace_compiled(self, arguments), arguments)

    def graph(self, collapse: bool = False, /, **arguments):
        """The circuit picture: values above each wire, adjoints below (the structure alone
        without arguments); `collapse` draws each fused loop as one node."""
        collapse = option(arguments, "collapse", self.inputs, "graph", collapse)
        from symdiff.circuit import Circuit
        from symdiff.trace_values import trace_compiled
        return Circuit(trace_compiled(self, arguments), collapse)

    def report(self, path, /, **arguments):
        """Write a self-contained HTML page about the model at `arguments` to `path`."""
        from symdiff.report import write_report
        return write_report(self, path, arguments)

    def source_of(self, kind: str) -> str:
        """The exact text of the `kind` kernel's module: "grad" (`.source` without the
        optimizer steps' modules), "value", "jvp" or "hvp"."""
        return self._kernel(kind).source

    def _kernel(self, kind: str) -> Kernel | TapeKernel:
        """The kernel for `kind` (grad, value, jvp, hvp), generated on first use."""
        if kind not in self._kernels:
            if kind not in self._programs:
                raise ArgumentError(f"{self.title}: {kind} is not available for this model")
            program = self._programs[kind]()
            # every Program chunks the batch where the gradient's does, so the loss has the
            # same bits from f(), value_and_grad, jvp and the steps
            rows = self._grad.chunk_rows if kind != "grad" else None
            if kind == "dp":  # the clipped sums, the noise added in the step; loaded when
                # first called (a private step over a batch in blocks never calls it)
                self._kernels[kind] = Kernel(program, self.title, self._parallel, self.wrt,
                                             wait=None, rows=rows)
                return self._kernels[kind]
            scalar_loss = kind == "grad" and program.outputs[0][1].rank == 0 and not self.aux
            tier = forward_tier(program, self._tier) if kind in FORWARD else self._tier
            self._kernels[kind] = make_kernel(program, self.title, self._parallel, tier,
                                              self.wrt if scalar_loss else (), self._wait, rows)
        return self._kernels[kind]

    def __call__(self, /, *positional, **arguments):
        """The model's value: a float, or an array for per-example values (and the aux
        outputs, if any: `value, aux`)."""
        if positional:
            raise self._by_keyword("f", positional)
        rows = arguments.get(self._rows)
        if rows.__class__ is np.ndarray and rows.shape[:1] >= (BLOCKS_FROM,):
            blocked = self._in_blocks(arguments, rows.shape[0], gradients=False)
            if blocked is not None:
                return blocked[0]
        try:
            result = self._kernel("value")(arguments)
        except LazyInput:
            result = None  # Dask arrays: run chunk by chunk, outside this handler
        if result is None:
            return _chunked(self, arguments, gradients=False)[0]
        if self.aux:
            return self._with_aux(*result)
        value = result[0]
        if self.check_finite:
            _check_finite(self.title, [("value", value)])
        return value

    def grad(self, /, *positional, **arguments) -> dict:
        """The gradients, {name in wrt: value}."""
        if positional:
            raise self._by_keyword("f.grad", positional)
        return self.value_and_grad(**arguments)[1]

    step = GeneratedPerModel("""`f.step(opt, **arguments)`: one step of the optimizer
        `opt` (`sd.optim.SGD`, `Adam`, `AdamW`) in one kernel call: the loss, its gradients,
        clipping and the update of every parameter in `wrt` and of `opt`'s state arrays, in
        place. Returns the loss before the step.

        Parameters must be writable float arrays (a scalar as a 0-d array, `np.array(0.5)`);
        the other inputs are passed as for `value_and_grad`. Every array is checked before
        anything changes; with check_finite=True a non-finite loss or gradient raises
        NonFiniteError before any update. With `per_example_clip`, the gradient is the
        differentially private one (see `sd.optim.Optimizer`).""")
    sgd_step = GeneratedPerModel("""`f.sgd_step(lr, **arguments)`: `step` with plain
        gradient descent: every parameter p in `wrt` becomes p - lr * dp, in place, in one
        kernel call; returns the loss before the step (and the aux outputs, for a model with
        some: `value, aux`).""")

    def _first_step(self, opt, arguments: dict):
        """`step` for every case: the optimizer's first with this model (its state is made),
        a rule not compiled yet, a private step, a large batch, arguments to convert, the tape
        tier, NumPy until the kernel is in place."""
        if not isinstance(opt, Optimizer):
            raise ArgumentError(f"step takes an optimizer (sd.optim.SGD, Adam, AdamW) first, "
                                f"not {type(opt).__name__}")
        private = opt.per_example_clip is not None
        if self._grad.tier in ("numpy", "python") and not private \
                and not self._blocked(arguments):  # the kernel not in place: its value and
            return self._make_steps(False, TapeSteps)(opt, arguments)  # gradients, the update
        # (a private step runs its own kernel, which clips and adds the noise)
        steps = self._steps.get(private) or self._make_steps(private)
        if isinstance(steps, Steps) and self._blocked(arguments):
            # the loss value_and_grad gives, and its speed: the compiled step runs the kernel
            # over the whole batch (a 30-32-10 MLP over 500,000 rows: 310 ms against 103 ms in
            # blocks, and other last bits; a private step over 100,000 rows, 63 ms)
            from . import blocks
            if steps.plain(opt):
                return steps.python_step(
                    opt, arguments, lambda converted: blocks.value_and_grad(self, converted))
            return steps.python_step(
                opt, {**arguments, steps.bound: opt.per_example_clip},
                lambda converted: blocks.private(self, converted, opt, steps.noise))
        return steps(opt, arguments)

    def _first_sgd_step(self, lr, arguments: dict):
        """`sgd_step` for every case (a model with aux outputs: `_aux_sgd_step`)."""
        if self._aux_sgd:
            return self._aux_sgd_step(lr, **arguments)
        self._sgd.lr = check_rate(lr)
        return self._first_step(self._sgd, arguments)

    def _make_front(self) -> tuple:
        """(step, sgd_step): generated for a kernel that updates parameters, else Python
        that takes every step the general way."""
        kernel = self._grad
        if not isinstance(kernel, Kernel) or not kernel.update:
            return (lambda opt, /, **arguments: self._first_step(opt, arguments),
                    lambda lr, /, **arguments: self._first_sgd_step(lr, arguments))
        self._front_source = emit_front(kernel)
        module, _ = load_module(self._front_source, numba=False)
        constants = self._sgd.hyper()[2]
        return module.front(self._first_step, self._first_sgd_step, self._compiled_steps,
                            constants, self.wrt, MISSING)

    def _make_steps(self, private: bool, make=None):
        kernel = self._grad
        if not self.wrt:
            raise ArgumentError(f"{self.title}: step has nothing to update: wrt is empty")
        if self.aux:
            raise ArgumentError(f"{self.title}: step returns no aux outputs; use sgd_step, or "
                                f"value_and_grad and an update, for a model with aux outputs")
        if not kernel.update:
            raise ArgumentError(f"{self.title}: step needs a scalar loss; this model's value "
                                f"has one entry per example (reduce=None) or per output")
        check = _check_finite_of(self.title) if self.check_finite else None
        if make is not None:
            return make(kernel, check)
        if private:
            kernel = self._kernel("dp")
            steps = kernel.steps(check, bound=kernel.inputs[-1])
        elif kernel.tier == "tape":
            steps = TapeSteps(kernel, check)
        else:
            steps = kernel.steps(check, compiled=self._compiled_steps)
        self._steps[private] = steps
        return steps

    def _aux_sgd_step(self, lr, /, **arguments):
        """sgd_step for a model with aux outputs: value_and_grad, then the update; returns
        (value, aux)."""
        lr = check_rate(lr)
        specs = {spec.name: spec for spec in self._grad._specs}  # checked before any change
        for w in self.wrt:
            if w in arguments:
                specs[w].check_in_place(arguments[w])
        value, grads, aux = self.value_and_grad(**arguments)
        for w in self.wrt:
            arguments[w] -= lr * grads[w]
        return value, aux

    def value_and_grad(self, /, *positional, **arguments):
        """(value, {name in wrt: gradient}) from one kernel call; with aux outputs,
        (value, gradients, {aux name: value}).

        Batch inputs may be Dask arrays chunked along the batch axis: each chunk then runs
        as a task on Dask's current scheduler (see codegen/chunked.py). A large batch runs
        in blocks of rows (see codegen/blocks.py)."""
        if positional:
            raise self._by_keyword("f.value_and_grad", positional)
        rows = arguments.get(self._rows)
        if rows.__class__ is np.ndarray and rows.shape[:1] >= (BLOCKS_FROM,):
            blocked = self._in_blocks(arguments, rows.shape[0])
            if blocked is not None:
                return blocked
        try:
            value, rest = self._grad(arguments)
        except LazyInput:
            rest = None  # Dask arrays: run chunk by chunk, outside this handler
        if rest is None:
            return _chunked(self, arguments)
        grads = dict(zip(self.wrt, rest))
        if self.check_finite:
            _check_finite(self.title, [("value", value)] + [(f"the gradient by {w}", g)
                                                            for w, g in grads.items()])
        if self.aux:
            _, aux = self._with_aux(value, rest[len(self.wrt):])
            return value, grads, aux
        return value, grads

    def _by_keyword(self, call: str, positional: tuple) -> ArgumentError:
        """The error for inputs given by position: inputs are named (their order in
        `f.inputs` is not the order a formula writes them in), so a positional call could
        silently swap two of them."""
        shown = ", ".join(f"{name}=..." for name in self.inputs)
        return ArgumentError(f"{call} takes the model's inputs by name, not by position "
                             f"({len(positional)} given): {call}({shown})")

    def _blocked(self, arguments: dict) -> bool:
        """Whether a local call with `arguments` runs in blocks of rows."""
        rows = arguments.get(self._rows)
        if rows.__class__ is not np.ndarray or rows.shape[:1] < (BLOCKS_FROM,):
            return False
        from . import blocks  # here: blocks imports this module
        return blocks.in_blocks(self, arguments, rows.shape[0])

    def _in_blocks(self, arguments: dict, n: int, gradients: bool = True):
        """(value, gradients) of a call of n rows run in blocks, or None if it does not."""
        from . import blocks  # here: blocks imports this module
        if blocks.in_blocks(self, arguments, n):
            return blocks.value_and_grad(self, arguments, gradients)
        return None

    def _with_aux(self, value, outputs) -> tuple:
        """(value, {aux name: value}) from a kernel's aux outputs, checked if asked."""
        aux = dict(zip(self.aux, outputs))
        if self.check_finite:
            _check_finite(self.title, [(f"aux {name}", v) for name, v in aux.items()])
        return value, aux

    def jvp(self, tangents: dict = MISSING, /, **arguments):
        """(value, directional derivative along `tangents`), by forward mode.

        `tangents` maps names in `wrt` to arrays of their shapes; a missing one is zero. A
        large batch runs in blocks of rows, as for `value_and_grad` (see codegen/blocks.py).
        """
        if tangents is MISSING:  # by keyword, unless an input has the name
            tangents = option(arguments, "tangents", self.inputs, "jvp")
        arguments = self._with_tangents(tangents, arguments, "jvp")
        if self._blocked(arguments):  # in blocks, as f(...) runs it: the same loss
            from . import blocks
            blocked = blocks.jvp(self, arguments)
            if blocked is not None:
                return blocked
        value, (derivative,) = self._kernel("jvp")(arguments)
        return value, derivative

    def hvp(self, v: dict = MISSING, /, **arguments) -> dict:
        """The Hessian-vector product H v, {name in wrt: array}, by forward over reverse. A
        large batch runs in blocks of rows, as for `value_and_grad` (see codegen/blocks.py).
        """
        if v is MISSING:  # by keyword, unless an input has the name
            v = option(arguments, "v", self.inputs, "hvp")
        arguments = self._with_tangents(v, arguments, "hvp")
        if self._blocked(arguments):  # in blocks, as value_and_grad runs it
            from . import blocks
            blocked = blocks.hvp(self, arguments)
            if blocked is not None:
                return blocked
        _, products = self._kernel("hvp")(arguments)
        return dict(zip(self.wrt, products))

    def hessian(self, /, **arguments) -> np.ndarray:
        """The dense Hessian over the parameters in `wrt`, flattened and concatenated in order."""
        shapes = [np.shape(arguments[w]) if w in arguments else None for w in self.wrt]
        if any(s is None for s in shapes):
            missing = [w for w, s in zip(self.wrt, shapes) if s is None]
            raise ArgumentError(f"missing argument {', '.join(missing)}")
        sizes = [int(np.prod(s)) for s in shapes]
        columns = []
        for k in range(sum(sizes)):
            basis = np.zeros(sum(sizes))
            basis[k] = 1.0
            parts = np.split(basis, np.cumsum(sizes)[:-1])
            v = {w: part.reshape(s) for w, part, s in zip(self.wrt, parts, shapes)}
            product = self.hvp(v, **arguments)
            columns.append(np.concatenate([np.ravel(product[w]) for w in self.wrt]))
        return np.array(columns).T

    def _with_tangents(self, tangents: dict, arguments: dict, kind: str) -> dict:
        """`arguments` and the tangents' inputs (zeros for a parameter without one)."""
        if self.wrt and not self._tangents:  # a per-example model has no forward mode
            raise ArgumentError(f"{self.title}: {kind} is not available for this model: its "
                                f"value has one entry per example (reduce=None)")
        unknown = [k for k in tangents if k not in self._tangents]
        if unknown:
            raise ArgumentError(f"tangents for {', '.join(unknown)}, which are not in wrt "
                                f"({', '.join(self.wrt)})")
        full = dict(arguments)
        for w, name in self._tangents.items():
            if w in tangents:  # (a missing w then raises as any missing argument does)
                full[name] = tangents[w]
            elif w in arguments:
                full[name] = np.zeros(np.shape(arguments[w]))
            else:
                raise ArgumentError(f"missing argument {w}")
        return full


class Jacobian:
    """The Jacobian of a vector-valued model, from its VJP (rows) or JVP (columns) kernel."""

    def __init__(self, compiled: Compiled, cotangent: str):
        self.compiled, self._cotangent = compiled, cotangent
        self.wrt, self.title = compiled.wrt, compiled.title

    def __repr__(self):
        return f"<symdiff.Jacobian {self.title!r} wrt={list(self.wrt)}>"

    def __call__(self, /, **arguments) -> np.ndarray:
        """d output / d parameters: shape (output entries, parameter entries), flattened."""
        c = self.compiled
        shapes = [np.shape(arguments.get(w, 0.0)) for w in self.wrt]
        sizes = [int(np.prod(s)) for s in shapes]
        value, _ = c.jvp({}, **arguments)
        out_shape = np.shape(value)
        m, p = int(np.prod(out_shape)), sum(sizes)
        if m <= p:  # reverse mode, one row per output entry
            rows = []
            for i in range(m):
                seed = np.zeros(m)
                seed[i] = 1.0
                grads = c.grad(**arguments, **{self._cotangent: seed.reshape(out_shape)})
                rows.append(np.concatenate([np.ravel(grads[w]) for w in self.wrt]))
            return np.array(rows).reshape(m, p)
        columns = []  # forward mode, one column per parameter entry
        for k in range(p):
            basis = np.zeros(p)
            basis[k] = 1.0
            parts = np.split(basis, np.cumsum(sizes)[:-1])
            _, column = c.jvp({w: part.reshape(s) for w, part, s in zip(self.wrt, parts, shapes)},
                              **arguments)
            columns.append(np.ravel(column))
        return np.array(columns).T.reshape(m, p)


BLOCKS_FROM = 4096  # rows: a smaller batch always runs in one kernel call


def _chunked(compiled, arguments: dict, gradients: bool = True):
    from .chunked import value_and_grad  # here, so that Dask loads only when it is used
    return value_and_grad(compiled, arguments, gradients)


def _check_finite_of(title: str):
    return lambda outputs: _check_finite(title, outputs)


def _check_finite(title: str, outputs) -> None:
    """Raise NonFiniteError naming the first output with a NaN or an infinity."""
    for what, value in outputs:
        finite = np.isfinite(value)
        if not np.all(finite):
            where = "" if np.ndim(value) == 0 else \
                f" at index {tuple(int(i) for i in np.argwhere(~finite)[0])}"
            raise NonFiniteError(f"{title}: {what} is {np.ravel(value)[~np.ravel(finite)][0]}"
                                 f"{where} (check_finite=True)")

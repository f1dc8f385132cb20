"""`Compiled`: the runtime object a user calls. Runs a kernel (or tape) per kind of result.

Input: the Programs of a model (gradient, value, jvp, hvp), each built on first use. A call
goes to the generated entry point, which tests the arguments' types with their input specs
(codegen/inputs.py); the kernel checks sizes and labels before it reads anything (Numba runs
without bounds checks); whatever the fast path refuses goes to the slow path here, which
converts it or raises a SymdiffError naming the argument. Output: the value, and gradients by
name.
"""
from __future__ import annotations

import time

import numpy as np

from symdiff.errors import ArgumentError, NonFiniteError
from symdiff.optim import SGD, Optimizer
from symdiff.program import Program

from .inputs import MISSING, bind, check_rate, specs_of
from .build import cache_hit, load_module
from .emit import MACHINERY, emit_source, program_dtype
from .optim import Steps, TapeSteps
from .tape import TapeKernel, Unsupported, build_tape

TIERS = ("auto", "kernel", "tape")
TAPE_MIN_STATEMENTS = 100  # from here on a kernel takes seconds to compile (Numba's compile
# time grows with the square of a function's statements: ~1 s at 137, ~9 s at 1,000)


def make_kernel(program: Program, title: str, parallel: bool | None, tier: str, update=()):
    """The kernel tier (a generated Numba module) or the tape tier (the precompiled
    interpreter) for `program`. "auto" takes the tape for scalar-per-sample Programs of
    TAPE_MIN_STATEMENTS statements or more, whose kernels would compile for seconds.
    `update` names the parameters an optimizer step updates (the outputs after the value)."""
    if tier == "kernel" or tier == "auto" and len(program.stmts) < TAPE_MIN_STATEMENTS:
        return Kernel(program, title, parallel, update)
    try:
        tape = build_tape(program)
    except Unsupported as e:
        if tier == "tape":
            raise ArgumentError(f"{title}: tier='tape' cannot run this model: {e}; "
                                f"use tier='kernel' or 'auto'") from None
        return Kernel(program, title, parallel, update)
    return TapeKernel(program, title, parallel, tape, update)


class Kernel:
    """One generated module: binds arguments by name, checks them, runs, returns its outputs."""

    tier = "kernel"

    def __init__(self, program: Program, title: str, parallel: bool | None = None, update=(),
                 noise: bool = False):
        self.program, self.title, self.update = program, title, tuple(update)
        self.inputs = tuple(n.attr("name") for n in program.inputs)
        self._specs = specs_of(program)
        self._parallel = parallel
        self.timings = {}
        start = time.perf_counter()
        self.source = emit_source(program, title, self.update, noise)
        self.timings["emit"] = time.perf_counter() - start
        start = time.perf_counter()
        module, _ = load_module(self.source)  # from_cache says whether Numba compiled
        self.timings["load"] = time.perf_counter() - start
        self._module = module
        self._function = module.kernel
        self._run, self._run_fast = module.entry(self._slow, parallel, MISSING)
        self._rerun, _ = module.entry(_unreachable, parallel, MISSING)
        self._gate = module.kernel_gate
        self._raw = self._run
        self._call = self._first_call
        self.dtype = program_dtype(program)

    def steps(self, check_finite=None, bound=None) -> Steps:
        """The optimizer steps of this module (it must have been made with `update`)."""
        return Steps(self, self._module, self._parallel, check_finite, bound)

    @property
    def from_cache(self) -> bool | None:
        """Whether the machine code came from Numba's on-disk cache rather than a compile
        (None before the first call)."""
        if "compile" not in self.timings:
            return None
        used = [d for d in (self._gate, self._function) if d.signatures]
        return bool(used) and all(cache_hit(d) for d in used)

    def __call__(self, arguments: dict):
        """(value, (other outputs...)) for `arguments`, a dict of every input by name."""
        return self._call(**arguments)

    def _first_call(self, **arguments):
        """Calls before the gate has compiled: checked in full, the first one timed (it
        compiles, or loads from the cache). Then the gate is closed to other types, and calls
        take the fast path."""
        start = time.perf_counter()
        run = self._run if self.dtype != "float32" else self._run_float32
        result = run(**arguments)
        self.timings.setdefault("compile", time.perf_counter() - start)
        if self._gate.signatures:
            self._gate.disable_compile()
            self._raw = self._run_fast
            self._call = self._raw if self.dtype != "float32" else self._run_float32
        return result

    def _run_float32(self, **arguments):
        value, rest = self._raw(**arguments)  # Numba returns float32 scalars as floats
        value = np.float32(value) if isinstance(value, float) else value
        return value, tuple(np.float32(r) if isinstance(r, float) else r for r in rest)

    def _slow(self, **arguments):
        """Arguments the generated fast check did not accept: each converted (lists, other
        dtypes, strided arrays) or refused with a clear error, then run through again."""
        bind(self.title, self._specs, arguments)
        return self._rerun(**self._converted(arguments))

    def _converted(self, arguments: dict, in_place=()) -> dict:
        """Every argument as the kernel takes it, or a clear error; parameters in `in_place`
        must already be what the kernel updates (they are checked, never copied)."""
        dims: dict[str, tuple[int, str]] = {}
        converted = {}
        for spec in self._specs:
            value = arguments[spec.name]
            if spec.name in in_place:
                spec.check_in_place(value)
                if not spec.shape:  # a 0-d array, not a scalar to convert
                    converted[spec.name] = value
                    continue
            converted[spec.name] = spec.convert(value, dims)
        for spec in self._specs:
            if spec.label_bound is not None:
                spec.check_labels(converted[spec.name], dims)
        return converted

def _unreachable(*args, **arguments):
    raise AssertionError("converted arguments failed the generated check")


class Compiled:
    """A model compiled to Numba kernels (or tapes for the precompiled interpreter).

    Call it for the value; `grad` and `value_and_grad` add the gradients, a dict keyed by the
    names in `wrt`; `jvp`, `hvp` and `hessian` give forward-mode and second-order derivatives.
    Arguments are passed by name. `source` is the exact text of the gradient kernel (for the
    tape tier, the Program the tape runs); `tier` says which tier runs it, `from_cache` whether
    its machine code came from the on-disk cache, `timings` how long each stage took.
    """

    def __init__(self, programs: dict, wrt: list[str], title: str, tangents: dict | None = None,
                 parallel: bool | None = None, timings: dict | None = None,
                 check_finite: bool = False, tier: str = "auto"):
        if tier not in TIERS:
            raise ArgumentError(f"tier must be one of {', '.join(map(repr, TIERS))}, "
                                f"not {tier!r}")
        self.wrt, self.title = tuple(wrt), title
        self.check_finite = check_finite
        self._programs, self._kernels = programs, {}
        self._tangents = tangents or {}  # wrt name -> the input name of its tangent
        self._parallel, self._tier = parallel, tier
        self._grad = gradient = self._kernel("grad")
        self.tier = gradient.tier
        self._steps = {}  # private (per-example clipping) or not -> Steps
        self._sgd = SGD(0.0)  # what sgd_step steps with
        self.program, self.source, self.inputs = gradient.program, gradient.source, gradient.inputs
        self._timings = dict(timings or {})

    def __repr__(self):
        return f"<symdiff.Compiled {self.title!r} wrt={list(self.wrt)} inputs={list(self.inputs)}>"

    @property
    def kernel_source(self) -> str:
        """The math of `source`: forward and adjoint statements (the fused loops and the
        kernel), without the call machinery that follows them."""
        return self.source.split(MACHINERY)[0].rstrip() + "\n"

    @property
    def timings(self) -> dict:
        """Seconds per stage: front end, differentiate, then the gradient kernel's own (emit,
        load and, after the first call, compile; or tape and first call)."""
        return {**self._timings, **self._grad.timings}

    @property
    def from_cache(self) -> bool | None:
        """Whether the gradient kernel's machine code was loaded from Numba's on-disk cache
        instead of compiled (None until the first gradient call)."""
        return self._grad.from_cache

    def explain(self, **arguments):
        """The lectures' backprop table at `arguments`: each statement's value and, for each
        adjoint, the upstream adjoint, the local gradient and their product (text when
        printed, HTML in Jupyter)."""
        from symdiff.explain import explain
        from symdiff.trace_values import trace_compiled
        return explain(trace_compiled(self, arguments), arguments)

    def graph(self, *, collapse: bool = False, **arguments):
        """The circuit picture: values above each wire, adjoints below (the structure alone
        without arguments); `collapse` draws each fused loop as one node."""
        from symdiff.circuit import Circuit
        from symdiff.trace_values import trace_compiled
        return Circuit(trace_compiled(self, arguments), collapse)

    def report(self, path, /, **arguments):
        """Write a self-contained HTML page about the model at `arguments` to `path`."""
        from symdiff.report import write_report
        return write_report(self, path, arguments)

    def source_of(self, kind: str) -> str:
        """The exact text of the `kind` kernel: "grad" (= .source), "value", "jvp" or "hvp"."""
        return self._kernel(kind).source

    def _kernel(self, kind: str) -> Kernel | TapeKernel:
        """The kernel for `kind` (grad, value, jvp, hvp), generated on first use."""
        if kind not in self._kernels:
            if kind not in self._programs:
                raise ArgumentError(f"{self.title}: {kind} is not available for this model")
            program = self._programs[kind]()
            if kind == "dp":  # the clipped sums, the noise added in the step
                self._kernels[kind] = Kernel(program, self.title, self._parallel, self.wrt,
                                             noise=True)
                return self._kernels[kind]
            scalar_loss = kind == "grad" and program.outputs[0][1].rank == 0
            self._kernels[kind] = make_kernel(program, self.title, self._parallel, self._tier,
                                              self.wrt if scalar_loss else ())
        return self._kernels[kind]

    def __call__(self, **arguments):
        """The model's value: a float, or an array for per-example values."""
        value = self._kernel("value")(arguments)[0]
        if self.check_finite:
            _check_finite(self.title, [("value", value)])
        return value

    def grad(self, **arguments) -> dict:
        """The gradients, {name in wrt: value}."""
        return self.value_and_grad(**arguments)[1]

    def step(self, opt: Optimizer, **arguments):
        """One step of the optimizer `opt` (`sd.optim.SGD`, `Adam`, `AdamW`) in one kernel
        call: the loss, its gradients, clipping and the update of every parameter in `wrt`
        and of `opt`'s state arrays, in place. Returns the loss before the step.

        Parameters must be writable float arrays (a scalar as a 0-d array, `np.array(0.5)`);
        the other inputs are passed as for `value_and_grad`. Every array is checked before
        anything changes; with check_finite=True a non-finite loss or gradient raises
        NonFiniteError before any update. With `per_example_clip`, the gradient is the
        differentially private one (see `sd.optim.Optimizer`).
        """
        return self._general_step(opt, arguments)

    def _general_step(self, opt, arguments: dict):
        """`step` for every case; a generated `step` takes the common one directly (once the
        plain steps exist, it replaces this method on the instance)."""
        if not isinstance(opt, Optimizer):
            raise ArgumentError(f"step takes an optimizer (sd.optim.SGD, Adam, AdamW) first, "
                                f"not {type(opt).__name__}")
        private = opt.per_example_clip is not None
        steps = self._steps.get(private) or self._make_steps(private)
        return steps(opt, arguments)

    def sgd_step(self, lr, **arguments):
        """`step` with plain gradient descent: every parameter p in `wrt` becomes p - lr * dp,
        in place, in one kernel call; returns the loss before the step."""
        self._sgd.lr = lr if lr.__class__ is float else check_rate(lr)
        return self.step(self._sgd, **arguments)

    def _make_steps(self, private: bool):
        kernel = self._grad
        if not kernel.update:
            raise ArgumentError(f"{self.title}: step needs a scalar loss; this model's value "
                                f"has one entry per example (reduce=None) or per output")
        check = _check_finite_of(self.title) if self.check_finite else None
        if private:
            kernel = self._kernel("dp")
            steps = kernel.steps(check, bound=kernel.inputs[-1])
        elif kernel.tier == "tape":
            steps = TapeSteps(kernel, check)
        else:
            steps = kernel.steps(check)
            direct = steps.direct(self._general_step)
            if direct is not None:
                self.step = direct
        self._steps[private] = steps
        return steps

    def value_and_grad(self, **arguments):
        """(value, {name in wrt: gradient}) from one kernel call."""
        value, grads = self._grad(arguments)
        grads = dict(zip(self.wrt, grads))
        if self.check_finite:
            _check_finite(self.title, [("value", value)] + [(f"the gradient by {w}", g)
                                                            for w, g in grads.items()])
        return value, grads

    def jvp(self, tangents: dict, **arguments):
        """(value, directional derivative along `tangents`), by forward mode.

        `tangents` maps names in `wrt` to arrays of their shapes; a missing one is zero.
        """
        value, (derivative,) = self._kernel("jvp")(self._with_tangents(tangents, arguments))
        return value, derivative

    def hvp(self, v: dict, **arguments) -> dict:
        """The Hessian-vector product H v, {name in wrt: array}, by forward over reverse."""
        _, products = self._kernel("hvp")(self._with_tangents(v, arguments))
        return dict(zip(self.wrt, products))

    def hessian(self, **arguments) -> np.ndarray:
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

    def _with_tangents(self, tangents: dict, arguments: dict) -> dict:
        unknown = [k for k in tangents if k not in self._tangents]
        if unknown:
            raise ArgumentError(f"tangents for {', '.join(unknown)}, which are not in wrt "
                                f"({', '.join(self.wrt)})")
        full = dict(arguments)
        for w, name in self._tangents.items():
            if w not in tangents and w not in arguments:
                raise ArgumentError(f"missing argument {w}")
            full[name] = tangents.get(w, np.zeros(np.shape(arguments[w])))
        return full


class Jacobian:
    """The Jacobian of a vector-valued model, from its VJP (rows) or JVP (columns) kernel."""

    def __init__(self, compiled: Compiled, cotangent: str):
        self.compiled, self._cotangent = compiled, cotangent
        self.wrt, self.title = compiled.wrt, compiled.title

    def __repr__(self):
        return f"<symdiff.Jacobian {self.title!r} wrt={list(self.wrt)}>"

    def __call__(self, **arguments) -> np.ndarray:
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

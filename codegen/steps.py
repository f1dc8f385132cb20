"""Optimizer steps: symdiff/optim.py's update rules -> Numba text, and the runtime calling it.

Input: a Kernel (its Program, the parameters it updates, its module) and the rule records.
Output: the update module, shared by every model (per rule, `_update_<rule>`, a loop applying
the rule's scalar statements to every entry), and its NumPy twin (the statements over whole
arrays, for a `wait=False` model's steps before its kernel arrives); per model and rule
actually used, a step module of its own (`step`, which runs the kernel, optionally checks that
the loss and gradients are finite, adds the private noise, clips to a global norm and updates
every parameter and state array in place, and `entry`, its entry point); and `Steps`, which
makes a rule's step module when the rule is first used and takes the steps the direct path in
`Compiled.step` does not: one kernel call per step. A rule's step module compiles on a thread;
until it is in place, plain steps run the kernel and the shared update loops from Python (the
same arithmetic, so the same bits), and a model's first step waits for its kernel alone. Sizes
of parameters and state arrays are checked before anything is written, so a refused step
changes nothing.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from symdiff.errors import ShapeError
from symdiff.ir import format_shape, fresh
from symdiff.optim import RULES, origin

from .build import load_module, module_name
from .entry import JIT, NCHUNKS, big_batch
from .inputs import REFUSED, bind, numba_type

HELPERS = f'''
{JIT}
def _sumsq(a, inv):
    """The sum of squares of a flat array's entries times inv, accumulated in float64."""
    total = 0.0
    for k in range(a.size):
        x = float(a[k]) * inv
        total += x * x
    return total


{JIT}
def _maxabs(a):
    """The largest absolute value among a flat array's entries."""
    big = 0.0
    for k in range(a.size):
        big = max(big, abs(float(a[k])))
    return big


{JIT}
def _finite(a):
    for k in range(a.size):
        if not np.isfinite(a[k]):
            return False
    return True
'''


def emit_updates() -> str:
    """The helpers; per rule, `_prepare_<rule>(lr, t, constants)`, its per-step scalars, and
    `_update_<rule>(P, G, <state arrays>, scale, <scalars>)`: for each entry,
    g = G[k] * scale, then the rule's statements."""
    parts = [HELPERS]
    for rule in RULES.values():
        parts += [_prepare_source(rule, JIT), _update_source(rule, compiled=True)]
        scalars = ["p", "g"] + list(rule.state)
        zero_d = ["P", "g"] + [s.upper() for s in rule.state]
        entries = ["P[()]", "g"] + [f"{s.upper()}[0]" for s in rule.state]
        lines = ["", "", JIT,
                 f"def _update0_{rule.name}({', '.join(zero_d + ['scale'] + list(rule.scalars))}):",
                 f'    """{rule.title} of a 0-d parameter P by the gradient g (a float); '
                 f'its state in 1-entry arrays."""',
                 f"    {', '.join(scalars)} = "
                 f"{', '.join(entries[:1] + ['g * scale'] + entries[2:])}"]
        lines += [f"    {statement}" for statement in rule.body]
        lines += [f"    {e} = {s}" for e, s in zip(entries, scalars) if e != "g"]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def emit_numpy_updates() -> str:
    """Per rule, `_prepare_<rule>` as in the update module, `_update_<rule>` with its
    arguments, the rule's statements over whole flat arrays in NumPy, and `_update32_<rule>`,
    the same in float32 as a float32 model's compiled step computes it (float32 arrays and
    scalars). Each statement is elementwise IEEE arithmetic done in the compiled loop's order,
    so the update has the loop's bits. For a model's steps while its kernel compiles: the
    compile holds Numba's lock, which even loading the compiled loops from the cache takes.
    `_sumsq` and `_maxabs` are the update module's, over whole arrays (`clip_scale`)."""
    helpers = ("\n\ndef as64(a):\n    return np.asarray(a, dtype=np.float64)\n"
               "\n\ndef _sumsq(a, inv):\n"
               "    x = as64(a) * inv  # summed in order, as the compiled loop sums\n"
               "    with np.errstate(over=\"ignore\"):  # inf, as the loop's: then scaled\n"
               "        return float(np.add.accumulate(x * x)[-1]) if x.size else 0.0\n"
               "\n\ndef _maxabs(a):  # fmax: a NaN is passed over, as the loop's max passes it\n"
               "    return float(np.fmax.reduce(np.abs(as64(a)), initial=0.0))\n")
    return helpers + "".join(_prepare_source(rule, "") + _update_source(rule, compiled=False)
                             + _update_source(rule, compiled=False, single=True)
                             for rule in RULES.values())


def _update_source(rule, compiled: bool, single: bool = False) -> str:
    """`_update_<rule>(P, G, <state arrays>, scale, <scalars>)`: g = G * scale, then the
    rule's statements, entry by entry in a Numba loop (`compiled`), else over whole arrays in
    NumPy, read as the loop reads them: as float64, whatever the arrays' type (NumPy would
    keep a float32 array's type against a Python float), or (`single`: `_update32_<rule>`)
    as they are, for float32 arrays and scalars."""
    arrays = ["P", "G"] + [s.upper() for s in rule.state]
    scalars = ["p", "g"] + list(rule.state)
    name = f"_update{'32' * single}_{rule.name}"
    signature = f"def {name}({', '.join(arrays + ['scale'] + list(rule.scalars))}):"
    if compiled:
        head = [JIT, signature,
                f'    """{rule.title}, entry by entry: {"; ".join(rule.body)}."""',
                "    for k in range(P.size):"]
        loads, store = ["P[k]", "G[k] * scale"] + [f"{a}[k]" for a in arrays[2:]], "[k]"
    else:  # the stores inside errstate too: a float32 array's cast may overflow to inf
        head = [signature, f'    """{rule.title}, over whole arrays: {"; ".join(rule.body)}."""',
                '    with np.errstate(all="ignore"):  # as the compiled loop: no warnings']
        loads = ["P", "G * scale", *arrays[2:]] if single else \
            ["as64(P)", "G * scale"] + [f"as64({a})" for a in arrays[2:]]
        store = "[:]"
    lines = ["", "", *head, f"        {', '.join(scalars)} = {', '.join(loads)}"]
    lines += [f"        {statement}" for statement in rule.body]
    lines += [f"        {a}{store} = {s}" for a, s in zip(arrays, scalars) if a != "G"]
    return "\n".join(lines) + "\n"


def _prepare_source(rule, decorator: str) -> str:
    """`_prepare_<rule>(lr, t, constants)`: the rule's scalars of step t."""
    lines = ["", "", *([decorator] if decorator else []),
             f"def _prepare_{rule.name}(lr, t, constants):",
             f'    """{rule.title}: the scalars of step t."""']
    lines += [f"    {c} = constants[{k}]" for k, c in enumerate(rule.constants)]
    lines += [f"    {statement}" for statement in rule.prepare]
    lines.append(f"    return {', '.join(rule.scalars)},")
    return "\n".join(lines) + "\n"


class _Names:
    """The names a step function uses, none equal to an input's."""

    def __init__(self, inputs, update, rule, noise: bool):
        taken = set(inputs)
        self.value = fresh("value", taken)
        self.grads = [fresh(f"d{p}", taken) for p in update]
        self.state = [fresh(f"{s}_{p}", taken) for p in update for s in rule.state]
        self.noise = [fresh(f"noise_{p}", taken) for p in update] if noise else []
        self.scalars = [fresh(s, taken) for s in rule.scalars]
        self.lr, self.t, self.constants, self.clip, self.scale, self.sigma, self.weight, \
            self.norm, self.big, self.chunks = (fresh(n, taken) for n in (
                "lr", "t", "constants", "clip_norm", "scale", "sigma", "weight", "norm",
                "largest", "chunks"))


def emit_step(kernel, rule, check: bool, noise: bool) -> str:
    """The module of one rule's step for the Kernel `kernel` (whose module it imports
    `kernel` from, by name): `step(lr, t, constants[, sigma], <state arrays>, <inputs>[,
    <noise arrays>], chunks)`, compiled at import for its one `SIGNATURE` (the kernel's input
    types, parameters as arrays updated in place, state and noise arrays typed as their
    parameter), and `entry`, its entry point.

    constants is the optimizer's constants array (the rule's, then the global clipping norm
    or 0). With `noise`, sigma times each noise array times the Program's last output (the
    weight of an example: 1/n for a mean loss) is added to the gradient. With `check`, a step
    whose output k (0: the loss) is not finite changes nothing and returns (loss, k); else
    (loss, -1)."""
    program, specs, update = kernel.program, kernel._specs, kernel.update
    single = kernel.dtype == "float32"
    inputs = {n.attr("name"): n for n in program.inputs}
    by_name = {spec.name: spec for spec in specs}
    state = [_state_type(by_name[p]) for p in update for _ in rule.state]
    types = ["float64", "int64", "Array(float64, 1, 'C')"] + ["float64"] * noise + state + \
        [numba_type(spec, spec.name in update) for spec in specs] + \
        [numba_type(by_name[p], True) for p in update] * noise + ["int64"]
    step = "\n".join(_step(rule, inputs, update, single, noise, check)) + "\n"
    helpers = [h for h in HELPER_NAMES if f"{h}(" in step]
    return "\n".join([
        f'"""symdiff optimizer step: {rule.title} for {kernel.title}."""',
        "import numpy as np", "from numba import njit",
        "from numba.types import Array, float32, float64, int64", "",
        f"from {module_name(kernel.source)} import kernel",
        f"from {UPDATES_NAME} import {', '.join(helpers)}", "",
        "_ValueError, _float64, _float32, _len = ValueError, np.float64, np.float32, len",
        "_refused = (KeyError, TypeError, ValueError, AttributeError, IndexError)", "",
        f"SIGNATURE = ({', '.join(types)},)", "", "",
        JIT.replace("@njit(", "@njit(SIGNATURE, "), step]) + \
        _entry(specs, kernel.chunk_rows, update, single, noise)


def _step(rule, inputs: dict, update: tuple, single: bool, noise: bool, check: bool):
    v = _Names(inputs, update, rule, noise)
    head = [v.lr, v.t, v.constants] + ([v.sigma] if noise else [])
    params = ", ".join([*head, *v.state, *inputs, *v.noise, v.chunks])
    groups = _groups(v.state, len(rule.state), len(update))
    sizes = [f"{s}.shape == {p}.shape" if inputs[p].rank else f"{s}.size == 1"
             for p, group in zip(update, groups) for s in group]
    sizes += [f"{z}.shape == {p}.shape" for p, z in zip(update, v.noise)]
    args = [f"{n}[()]" if n in update and not inputs[n].rank else n for n in inputs]
    outputs = v.grads + ([v.weight] if noise else [])
    lines = [f"def step({params}):",
             f'    """{rule.title}: the loss, the gradients and the update in place."""']
    if sizes:
        lines += ["    if not (" + "\n            and ".join(sizes) + "):",
                  f"        raise _ValueError({REFUSED!r})"]
    lines += [f"    {v.value}, ({''.join(g + ', ' for g in outputs)}) = "
              f"kernel({', '.join(args + [v.chunks])})",
              f"    {''.join(s + ', ' for s in v.scalars)}= _prepare_{rule.name}({v.lr}, {v.t}, "
              f"{v.constants})",
              f"    {v.clip} = {v.constants}[{len(rule.constants)}]"]
    if single:  # typed scalars keep Numba's arithmetic in float32
        lines += [f"    {s} = np.float32({s})" for s in v.scalars + [v.clip]
                  + ([v.sigma] if noise else [])]
    flat = {p: f"{g}.ravel()" for p, g in zip(update, v.grads)}  # a scalar's is a float
    if check:
        lines += [f"    if not np.isfinite({v.value}):", f"        return {v.value}, 0"]
        for k, (p, g) in enumerate(zip(update, v.grads), 1):
            finite = f"_finite({flat[p]})" if inputs[p].rank else f"np.isfinite({g})"
            lines += [f"    if not {finite}:", f"        return {v.value}, {k}"]
    for p, g, z in zip(update, v.grads, v.noise):
        noise = z if inputs[p].rank else f"{z}[()]"  # shaped as the gradient
        lines.append(f"    {g} = {g} + ({v.sigma} * {v.weight}) * {noise}")
        flat[p] = g if inputs[p].rank <= 1 else f"{g}.ravel()"

    def squares(inv: str) -> str:
        """The sum of the gradients' squares, each entry times inv."""
        return " + ".join(f"_sumsq({flat[p]}, {inv})" if inputs[p].rank else
                          f"{g} * {g}" if inv == "1.0" else f"({g} * {inv}) ** 2"
                          for p, g in zip(update, v.grads))

    largest = [f"_maxabs({flat[p]})" if inputs[p].rank else f"abs({g})"
               for p, g in zip(update, v.grads)]
    big = largest[0] if len(largest) == 1 else f"max({', '.join(largest)})"
    one = "np.float32(1.0)" if single else "1.0"
    lines += [f"    {v.scale} = {one}", f"    if {v.clip} > 0.0:"]
    lines += [f"        {v.norm} = np.sqrt({squares('1.0')})",
              f"        if {v.norm} == np.inf:  # the squares overflowed: scale by the largest",
              f"            {v.big} = {big}",
              f"            if {v.big} < np.inf:",
              f"                {v.norm} = {v.big} * np.sqrt({squares(f'(1.0 / {v.big})')})"] \
        if update else [f"        {v.norm} = 0.0"]
    lines += [f"        if {v.norm} > {v.clip}:",
              f"            {v.scale} = {v.clip} / {v.norm}" + (
                  f"\n            {v.scale} = np.float32({v.scale})" if single else "")]
    for p, g, group in zip(update, v.grads, groups):
        if inputs[p].rank:
            arrays = [f"{p}.ravel()", flat[p]] + [f"{s}.ravel()" for s in group]
            lines.append(f"    _update_{rule.name}({', '.join(arrays + [v.scale] + v.scalars)})")
        else:
            arguments = [p, g] + group + [v.scale] + v.scalars
            lines.append(f"    _update0_{rule.name}({', '.join(arguments)})")
    return lines + [f"    return {v.value}, -1"]


def _state_type(spec) -> str:
    """The Numba type of a state array of a parameter: its own, but 1-entry for a scalar's
    (`symdiff.optim.passed`)."""
    return numba_type(spec, True) if spec.shape else f"Array({spec.dtype}, 1, 'C')"


def _groups(state: list, size: int, count: int) -> list[list[str]]:
    """The flat list of state array names as `count` groups of `size`, one per parameter."""
    return [state[k * size:(k + 1) * size] for k in range(count)]


def _entry(specs, rows: int, update: tuple, single: bool, noise: bool) -> str:
    """`entry(_step, _slow)`: returns `run(_lr, _t, _constants, _state, _arguments[,
    _sigma, _noise])`, which takes the inputs from the dict `_arguments`, tests the classes of
    the scalar inputs that are not updated and calls `_step` (whose dispatcher refuses arrays
    of other types): in 16 chunks for a large batch (the same bits as one chunk at a time),
    else in one. Anything refused (an unknown or missing name too) goes to `_slow`, with the
    same arguments. The inputs arrive as a dict, not by keyword: the caller's `**arguments`
    already made one, and binding it again by keyword would cost more than reading it. Its
    own names start with an underscore, which no input's may."""
    names = [spec.name for spec in specs]
    lead = "_lr, _t, _constants, _state, _arguments" + ", _sigma, _noise" * noise
    call = f"_step(_lr, _t, _constants, {'_sigma, ' * noise}*_state, " + \
        "".join(f"{n}, " for n in names) + "*_noise, " * noise
    big = big_batch(specs, rows)
    done = ["_value, _status = {}", "return _float32(_value), _status"] if single else \
        ["return {}"]  # Numba returns a float32 loss as a float
    attempt = [f"if {big}:", *(f"    {d}" for d in done)] if big else []
    attempt = [line.format(f"{call}{NCHUNKS})") for line in attempt] + \
        [line.format(f"{call}1)") for line in done]
    tests = [spec.fast_test() for spec in specs if not spec.shape and spec.name not in update]
    if tests:
        attempt = ["if (" + "\n            and ".join(tests) + "):"] + \
            [f"    {line}" for line in attempt]
    # "w, = _arguments['w']," (the comma on the right too: one input is a 1-tuple there)
    unpack = ("".join(f"{n}, " for n in names) + "= " +
              "".join(f"_arguments[{n!r}], " for n in names)).rstrip()
    return "\n".join([
        "", "", "def entry(_step, _slow):",
        '    """`run`: the compiled step if it accepts the arguments; `_slow` takes what it',
        '    refuses."""', "", f"    def run({lead}):",
        '        """One step: the loss before it, and -1 or the first output not finite."""',
        f"        if _len(_arguments) == {len(names)}:", "            try:",
        f"                {unpack}", *(f"                {line}" for line in attempt),
        "            except _refused:  # _slow says what is wrong", "                pass",
        f"        return _slow({lead})", "", "    return run"]) + "\n"


def emit_front(kernel) -> str:
    """The module of a model's `step(opt, <inputs>)` and `sgd_step(lr, <inputs>)`, which
    `Compiled.step` and `Compiled.sgd_step` are: plain Python, made with the model, whatever
    rules it later uses.

    `front(_first, _first_sgd, _steps, _sgd_constants, _key, _missing)` returns
    them. They bind the inputs by name, then call the compiled step of the optimizer's rule
    (`_steps`: rule -> compiled step, filled as rules are used) with the optimizer's rate,
    step number, `constants` and `flat_state[_key]` (`_key`: the parameters' names; public
    attributes, read inline: a call from Python per step would cost ~100 ns), when it has
    its state for them (else KeyError), the optimizer is not private, the scalar inputs are
    of their exact classes and the batch is small. Anything else (a first step, a private
    one, a large batch, an argument the step refuses, a non-finite output) goes to
    `_first(opt, arguments)` or `_first_sgd(lr, arguments)`. Its own names start with an
    underscore, which no input's may."""
    specs, update = kernel._specs, kernel.update
    names = [spec.name for spec in specs]
    big = big_batch(specs, kernel.chunk_rows)
    tests = ["not _unknown"] + \
        [spec.fast_test() for spec in specs if not spec.shape and spec.name not in update] + \
        ([f"not ({big})"] if big else [])
    params = ", ".join([f"{n}=_missing" for n in names] + ["**_unknown"])
    keywords = ", ".join([f"{n!r}: {n}" for n in names] + ["**_unknown"])
    inputs = "".join(f"{n}, " for n in names)
    value = "_float32(_value)" if kernel.dtype == "float32" else "_value"  # Numba returns
    # a float32 loss as a float

    def condition(first: str) -> str:
        return "            if (" + "\n                    and ".join([first] + tests) + "):"

    return "\n".join([
        f'"""symdiff: the optimizer steps of {kernel.title}, called by name."""',
        "import numpy as np", "",
        "_float64, _float32, _len = np.float64, np.float32, len",
        "_to_first = (KeyError, TypeError, ValueError, AttributeError, IndexError)", "", "",
        "def front(_first, _first_sgd, _steps, _sgd_constants, _key, _missing):",
        '    """`step(opt, <inputs>)` and `sgd_step(lr, <inputs>)`."""', "",
        f"    def step(_opt, {params}):",
        '        """One step of the optimizer _opt (see `Compiled.step`)."""',
        "        try:", condition("_opt.per_example_clip is None"),
        "                _lr = _opt.lr",
        "                _value, _status = _steps[_opt.rule.name](",
        "                    _lr if _lr.__class__ is float and _lr >= 0.0 else _opt.rate(),",
        "                    _opt.count + 1,",
        f"                    _opt.constants, *_opt.flat_state[_key], {inputs}1)",
        "                if _status < 0:", "                    _opt.count += 1",
        f"                    return {value}",
        "        except _to_first:", "            pass",
        f"        return _first(_opt, {{{keywords}}})", "",
        f"    def sgd_step(_lr, {params}):",
        '        """One gradient descent step at rate _lr (see `Compiled.sgd_step`)."""',
        "        try:", condition("_lr.__class__ is float and _lr >= 0.0"),
        "                _value, _status = _steps['sgd'](",
        f"                    _lr, 1, _sgd_constants, {inputs}1)",
        "                if _status < 0:", f"                    return {value}",
        "        except _to_first:", "            pass",
        f"        return _first_sgd(_lr, {{{keywords}}})", "",
        "    return step, sgd_step"]) + "\n"


class Steps:
    """The optimizer steps of one Kernel: `steps(opt, arguments)` takes one step of `opt` in
    one kernel call and returns the loss, making the optimizer's state on its first step with
    this model and compiling a rule's step module (`emit_step`) when the rule is first used.
    `compiled` maps each rule compiled so far to its step, which a model's `emit_front`
    functions call directly once the optimizer has its state; `runs`, to its module's `run`,
    which takes every other step. Anything `run` refuses reaches `_slow`, which names what is
    wrong or converts the inputs that are not updated.

    `bound` is the name of the per-example clipping norm's input in a private (DP) Program,
    else None; `check_finite(outputs)` raises for a non-finite (label, value) in outputs.
    """

    def __init__(self, kernel, check_finite=None, bound=None, compiled=None):
        self.kernel, self.update, self.bound = kernel, kernel.update, bound
        self.compiled = {} if compiled is None else compiled  # rule -> its compiled step
        self.specs = {spec.name: spec for spec in kernel._specs}
        self._check_finite = check_finite
        self.runs, self._rerun = {}, {}  # rule -> run, and run without a slow path
        self.noise = _noise_arrays(self.update, self.specs) if bound else ()  # drawn per step
        self._compiling: dict[str, threading.Thread] = {}  # rule -> its module's compile

    def wait(self) -> None:
        """Block until the step modules compiling on threads are in place."""
        for thread in list(self._compiling.values()):
            thread.join()

    def _compile(self, rule: str) -> None:
        """The rule's step module: Numba compiles its step at import, or loads it from its
        cache."""
        kernel = self.kernel
        kernel.wait()  # the step's module imports the kernel's
        start = time.perf_counter()
        source = emit_step(kernel, RULES[rule], self._check_finite is not None,
                           self.bound is not None)
        update_module()  # which the step's module imports by name
        module, _ = load_module(source)
        kernel.timings[f"step {rule} compile"] = time.perf_counter() - start
        kernel.step_dispatchers.append(module.step)
        self.compiled[rule] = module.step
        kernel.step_sources.append(source)
        self._rerun[rule] = module.entry(module.step, _unreachable)
        self.runs[rule] = module.entry(module.step, lambda *a: self._slow(rule, *a))

    def __call__(self, opt, arguments: dict):
        rule = opt.rule.name
        if rule not in self.runs:
            if self._meanwhile(opt):
                value = self.python_step(opt, arguments)
                self._compile_later(rule)
                return value
            self.wait()
            if rule not in self.runs:
                self._compile(rule)
        flat, made = opt.arrays(self.update, self.specs, arguments)
        hyper, drawn = opt.hyper(), None
        if self.bound is not None:
            arguments[self.bound] = opt.per_example_clip
            sigma = opt.noise_scale()
            if sigma:
                drawn = opt.rng.bit_generator.state  # put back if the step is refused
                for z in self.noise:
                    opt.rng.standard_normal(dtype=z.dtype, out=z.reshape(-1))
            hyper += (flat, arguments, sigma, self.noise)
        else:
            hyper += (flat, arguments)
        try:
            value, status = self.runs[rule](*hyper)
            if status >= 0:
                self._non_finite(arguments)
        except BaseException:
            if drawn is not None:
                opt.rng.bit_generator.state = drawn
            raise
        if made is not None:
            opt.keep(self.update, flat, made)
        opt.count += 1
        return value

    def plain(self, opt) -> bool:
        """Whether a step of `opt` clips no example and adds no noise: the update functions
        shared by every model and `clip_scale` do all of its arithmetic (`python_step`)."""
        return self.bound is None

    def _meanwhile(self, opt) -> bool:
        """Whether this step is taken from Python until the rule's step module is in place:
        a plain float64 step without checks or clipping, so it has the compiled step's bits.
        A model's first step waits for one compile, its kernel's."""
        if not self.plain(opt) or self._check_finite is not None or \
                self.kernel.dtype != "float64" or opt.constants[len(opt.rule.constants)] > 0:
            return False
        return opt.rule.name not in self.runs

    def _compile_later(self, rule: str) -> None:
        """Start the rule's step module compiling on a thread, once, after a step from
        Python: that step's first calls of the update functions compile them or load them
        from the cache, and so does a compile, under one lock Numba holds for the whole
        process. Started before it, the module's compile made the first step wait for it
        (0.84 s for a new 64-100-10 MLP, on a machine that had compiled the update
        functions before)."""
        if rule not in self._compiling:
            self._compiling[rule] = threading.Thread(target=self._compile, args=(rule,),
                                                     name=f"symdiff step {rule}", daemon=True)
            self._compiling[rule].start()

    def python_step(self, opt, arguments: dict, gradients=None):
        """One plain step as the compiled `step` takes it (see `_step`): the kernel, or
        `gradients` (a function of the converted arguments returning the loss and
        {parameter: gradient}), then each parameter's update by the rule's compiled update
        function. Everything is checked before anything is written."""
        rule, kernel, updates = opt.rule, self.kernel, update_module()
        bind(kernel.title, kernel._specs, arguments)
        for p in self.update:
            self.specs[p].check_in_place(arguments[p], f"step updates {p} in place")
        converted, _ = kernel._converted(arguments, self.update)
        flat, made = opt.arrays(self.update, self.specs, converted)
        check_state(rule, self.update, self.specs, flat, converted)
        lr, t, constants = opt.hyper()
        if gradients is None:
            value, grads = kernel(dict(converted))
        else:
            value, by_name = gradients(converted)
            grads = [by_name[p] for p in self.update]
        scalars = getattr(updates, f"_prepare_{rule.name}")(lr, t, constants)
        scale = clip_scale(grads, constants[len(rule.constants)])
        k = len(rule.state)
        for j, (p, g) in enumerate(zip(self.update, grads)):
            state = flat[j * k:(j + 1) * k]
            if np.ndim(converted[p]):
                getattr(updates, f"_update_{rule.name}")(
                    converted[p].ravel(), np.ravel(g), *(s.ravel() for s in state), scale,
                    *scalars)
            else:
                getattr(updates, f"_update0_{rule.name}")(converted[p], g, *state, scale,
                                                          *scalars)
        if made is not None:
            opt.keep(self.update, flat, made)
        opt.count += 1
        return value

    def _slow(self, rule, lr, t, constants, state, arguments, *noise):
        """What `run` refused: a clear error, or the inputs converted and run again."""
        kernel = self.kernel
        bind(kernel.title, kernel._specs, arguments)
        for p in self.update:
            self.specs[p].check_in_place(arguments[p], f"step updates {p} in place")
        converted, _ = kernel._converted(arguments, self.update)  # the parameters' sizes too
        check_state(RULES[rule], self.update, self.specs, state, converted)
        return self._rerun[rule](lr, t, constants, state, converted, *noise)

    def _non_finite(self, arguments: dict):
        """Raise the check_finite error for the outputs the refused step computed."""
        value, outputs = self.kernel(dict(arguments))
        what = "the clipped gradient" if self.bound else "the gradient"
        self._check_finite([("value", value)] + [(f"{what} by {p}", g)
                                                 for p, g in zip(self.update, outputs)])
        raise AssertionError("a step found a non-finite output that check_finite did not")


def clip_scale(grads: list, clip: float, updates=None, single: bool = False):
    """The factor a step scales its gradients by, for a global norm of at most `clip` (none
    if clip is 0): the arithmetic of the compiled step's (`_step`), in the same order and
    with the same helpers (`updates`: the update module's compiled ones by default, or the
    NumPy updates' twins of them), so the two give the same bits; `single`: a float32 step's,
    whose clip and scale are float32."""
    if single:
        clip = np.float32(clip)
    if clip <= 0.0:
        return np.float32(1.0) if single else 1.0
    updates = updates or update_module()

    def squares(inv: float) -> float:
        total = np.float64(0.0)  # (0 + a is a: the sum's order is the compiled one's; a
        # float64, as the compiled sum is, when a float32 parameter's square comes first)
        for g in grads:
            if np.ndim(g):
                total += updates._sumsq(np.ravel(g), inv)
            else:
                x = g if inv == 1.0 else g * inv
                total += x * x
        return total

    norm = np.sqrt(squares(1.0))
    if norm == np.inf:  # the squares overflowed: scale by the largest
        big = max(updates._maxabs(np.ravel(g)) if np.ndim(g) else abs(g) for g in grads)
        if big < np.inf:
            norm = big * np.sqrt(squares(1.0 / big))
    scale = clip / norm if norm > clip else 1.0
    return np.float32(scale) if single else scale


def check_state(rule, update: tuple, specs: dict, state: tuple, arguments: dict) -> None:
    """Each state array must be a writable, C-contiguous array of its parameter's dtype and
    shape; else an error naming it (state arrays are updated in place, never copied)."""
    k = len(rule.state)
    for j, p in enumerate(update):
        for name, array in zip(rule.state, state[j * k:(j + 1) * k]):
            specs[p].check_in_place(origin(array), f"{rule.title} keeps its state {name!r} of "
                                    f"{p} in this array, updated in place",
                                    shape=np.shape(arguments[p]))


def _noise_arrays(update: tuple, specs: dict) -> tuple:
    """One array per parameter for the private noise, drawn afresh each step."""
    arrays = []
    for p in update:
        spec = specs[p]
        if any(isinstance(d, str) for d in spec.shape):
            raise ShapeError(f"per-example clipping: {p} has the symbolic shape "
                             f"{format_shape(spec.shape)}; parameters need fixed shapes")
        arrays.append(np.zeros(spec.shape, spec.numpy_dtype))
    return tuple(arrays)


def _unreachable(*args, **arguments):
    raise AssertionError("converted arguments failed the generated check")


class TapeSteps:
    """Optimizer steps for the tape tier: the tape's value and gradients, then the rule's
    update loop (compiled once per machine) on each parameter; for a kernel being prepared,
    the value and gradients its Kernel gives meanwhile (NumPy's, or with wait="auto" the
    kernel's own from CPython) and the rule's NumPy update. Every array is checked first."""

    def __init__(self, kernel, check_finite=None):
        self.kernel, self.update = kernel, kernel.update
        self.specs = {spec.name: spec for spec in kernel._specs}
        self._check_finite = check_finite
        self._updates = numpy_update_module if kernel.tier in ("numpy", "python") \
            else update_module
        self.dtype = getattr(kernel, "dtype", "float64")  # (the tape's is float64)

    def __call__(self, opt, arguments: dict):
        rule = opt.rule
        flat, made = opt.arrays(self.update, self.specs, arguments)
        bind(self.kernel.title, self.kernel._specs, arguments)
        for p in self.update:
            self.specs[p].check_in_place(arguments[p], f"step updates {p} in place")
        check_state(rule, self.update, self.specs, flat, arguments)
        value, grads = self.kernel(arguments)
        if self._check_finite:
            self._check_finite([("value", value)] + [(f"the gradient by {p}", g)
                                                     for p, g in zip(self.update, grads)])
        lr, t, constants = opt.hyper()
        module, single = self._updates(), self.dtype == "float32"
        scalars = getattr(module, f"_prepare_{rule.name}")(lr, t, constants)
        scale = clip_scale(grads, constants[len(rule.constants)], module, single)
        if single:  # as the compiled float32 step: its scalars in float32
            scalars = tuple(np.float32(x) for x in scalars)
        update = getattr(module, f"_update{'32' * single}_{rule.name}")
        grads = [np.ravel(np.asarray(g, dtype=self.dtype)) for g in grads]
        k = len(rule.state)
        for j, (p, g) in enumerate(zip(self.update, grads)):
            states = [s.reshape(-1) for s in flat[j * k:(j + 1) * k]]
            update(arguments[p].reshape(-1), g, *states, scale, *scalars)
        if made is not None:
            opt.keep(self.update, flat, made)
        opt.count += 1
        return value


# The update loops and helpers, a module of their own: compiled once per machine (Numba's
# cache), imported by every model's module rather than compiled again in each.
UPDATES_SOURCE = ('"""symdiff: the optimizers\' update loops."""\nimport numpy as np\n'
                  'from numba import njit\n' + emit_updates())
UPDATES_NAME = module_name(UPDATES_SOURCE)
HELPER_NAMES = ("_sumsq", "_maxabs", "_finite") + tuple(f"_{part}_{rule}" for rule in RULES
                                             for part in ("prepare", "update", "update0"))


NUMPY_UPDATES_SOURCE = ('"""symdiff: the optimizers\' updates over whole arrays, in NumPy."""\n'
                        'import numpy as np\n' + emit_numpy_updates())


def update_module():
    """The update module, imported (a model's module imports from it by name)."""
    return load_module(UPDATES_SOURCE)[0]


def numpy_update_module():
    """The NumPy updates' module (`emit_numpy_updates`), imported."""
    return load_module(NUMPY_UPDATES_SOURCE, numba=False)[0]

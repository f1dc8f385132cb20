"""A model's first optimizer steps do not wait for the step module's compile: they run from
Python through the same compiled update functions, with the compiled step's bits."""
import threading
import warnings

import numpy as np
import pytest

import symdiff as sd
import symdiff.codegen.steps as steps_module


def _model():
    X, y = sd.tensor("X", ("n", 3)), sd.tensor("y", ("n",))
    W, b, s = sd.tensor("W", (3, 2)), sd.tensor("b", (2,)), sd.scalar("s")
    out = sd.sum(sd.tanh(X @ W + b), axis=1) * s
    return sd.compile(sd.mean((out - y) ** 2), wrt=[W, b, s], wait=True)  # its steps' tests


def _data():
    rng = np.random.default_rng(30)
    return dict(X=rng.normal(size=(20, 3)), y=rng.normal(size=20))


def _params():
    rng = np.random.default_rng(31)
    return dict(W=rng.normal(size=(3, 2)), b=rng.normal(size=2), s=np.array(0.7))


@pytest.mark.parametrize("make", [lambda: sd.optim.Adam(0.05), lambda: sd.optim.SGD(0.1)],
                         ids=["adam", "sgd"])
def test_first_steps_run_while_the_step_compiles_with_the_compiled_steps_bits(make,
                                                                            monkeypatch):
    data = _data()
    compiled = _model()
    compiled.step(make(), **_params(), **data)
    compiled.wait()  # from here every step of this model runs its compiled step module
    reference, opt = _params(), make()
    expected = [compiled.step(opt, **reference, **data) for _ in range(4)]

    release = threading.Event()  # the next model's step module compiles only after this
    compile_module = steps_module.Steps._compile

    def held(self, rule):
        release.wait(120)
        compile_module(self, rule)
    monkeypatch.setattr(steps_module.Steps, "_compile", held)
    meanwhile = _model()
    params, opt = _params(), make()
    losses = [meanwhile.step(opt, **params, **data) for _ in range(2)]
    assert meanwhile._steps[False].runs == {}  # not compiled yet: these ran from Python
    release.set()
    meanwhile.wait()
    assert list(meanwhile._steps[False].runs) == [opt.rule.name]
    losses += [meanwhile.step(opt, **params, **data) for _ in range(2)]
    assert losses == expected and opt.count == 4
    for name in reference:
        np.testing.assert_array_equal(params[name], reference[name])


def test_a_refused_first_step_changes_nothing(monkeypatch):
    release = threading.Event()
    compile_module = steps_module.Steps._compile
    monkeypatch.setattr(steps_module.Steps, "_compile",
                        lambda self, rule: (release.wait(120), compile_module(self, rule)))
    model, params, opt = _model(), _params(), sd.optim.Adam(0.05)
    before = {k: v.copy() for k, v in params.items()}
    frozen = params["W"].copy()
    frozen.flags.writeable = False
    with pytest.raises(sd.SymdiffError, match="W"):
        model.step(opt, **{**params, "W": frozen}, **_data())
    release.set()
    model.wait()
    assert opt.count == 0 and not opt.flat_state
    for name in before:
        np.testing.assert_array_equal(params[name], before[name])


LOCKED = """
import threading
import numpy as np
import symdiff as sd
import symdiff.codegen.steps as steps
from numba.core.compiler_lock import global_compiler_lock
X, y = sd.tensor("X", ("n", 3)), sd.tensor("y", ("n",))  # _model()'s: its kernel is cached
W, b, s = sd.tensor("W", (3, 2)), sd.tensor("b", (2,)), sd.scalar("s")
f = sd.compile(sd.mean((sd.sum(sd.tanh(X @ W + b), axis=1) * s - y) ** 2), wrt=[W, b, s])
release, compile_module = threading.Event(), steps.Steps._compile

def held(self, rule):  # the step module's compile, holding Numba's lock as a compile does
    with global_compiler_lock:
        release.wait()
    compile_module(self, rule)

steps.Steps._compile = held
waited = []  # a step that waits for the lock is let go after 30 s, and says so
late = threading.Timer(30, lambda: (waited.append(True), release.set()))
late.start()
rng = np.random.default_rng(0)
params = dict(W=rng.normal(size=(3, 2)), b=rng.normal(size=2), s=np.array(0.7))
loss = f.step(sd.optim.Adam(0.05), X=rng.normal(size=(9, 3)), y=rng.normal(size=9), **params)
late.cancel()
release.set()
f.wait()
print("first step", "waited for the lock" if waited else "without waiting", loss)
"""


def test_the_first_step_needs_no_lock_the_step_modules_compile_holds():
    """In a new process, whose first calls of the update functions compile them or load them
    under Numba's process-wide lock: a step module's compile, started before the first step,
    held that lock and made the step wait for the whole compile (here, until the step
    returned, so here for the 30 s after which the script lets it go)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", LOCKED], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "first step without waiting" in done.stdout, done.stdout


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", sorted(steps_module.RULES))
def test_the_numpy_updates_give_the_compiled_loops_bits(rule, dtype):
    """A wait=False model's steps before its kernel arrives update through NumPy; five steps
    of each rule there and through the compiled loop agree bit for bit."""
    compiled, numpy_updates = steps_module.update_module(), steps_module.numpy_update_module()
    rng = np.random.default_rng(32)
    big = np.finfo(dtype).max  # its update overflows to inf in the cast back to float32
    special = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).tiny / 4, big],
                       dtype=dtype)
    start = np.concatenate([special, (rng.normal(size=50) * 10.0 ** rng.integers(-3, 3, 50))
                            .astype(dtype)])
    constants = np.array({"sgd": [], "momentum": [0.9], "nesterov": [0.8],
                          "adam": [0.9, 0.999, 1e-8], "adamw": [0.85, 0.99, 1e-6, 0.01]}[rule])
    ways = []
    for module in (compiled, numpy_updates):
        p = start.copy()
        state = [np.zeros_like(p) for _ in steps_module.RULES[rule].state]
        for t in range(1, 6):
            with np.errstate(all="ignore"):  # sin(inf): the gradient's own NaN
                g = np.sin(p.astype(np.float64) * t) + 0.25 * t
            g[:len(special)] = [1.0, -0.0, 2.0, np.nan, -1.0, 3e-320, -1e300][:len(special)]
            scalars = getattr(module, f"_prepare_{rule}")(0.05, t, constants)
            with np.errstate(all="raise"), warnings.catch_warnings():
                warnings.simplefilter("error")  # silent, as the compiled loop is
                getattr(module, f"_update_{rule}")(p, g, *state, 0.5 if t == 3 else 1.0,
                                                   *scalars)
        ways.append([p, *state])
    for a, b in zip(*ways):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


BEFORE_THE_KERNEL = """
import threading
import numpy as np
import symdiff as sd
from symdiff.codegen import kernel as kernel_module
from numba.core.compiler_lock import global_compiler_lock
release, load = threading.Event(), kernel_module.Kernel._load_in_background

def held(self):  # the kernel's compile, holding Numba's lock as a compile does
    with global_compiler_lock:
        release.wait()
    load(self)

kernel_module.Kernel._load_in_background = held
waited = []  # a step that waits for the lock is let go after 30 s, and says so
late = threading.Timer(30, lambda: (waited.append(True), release.set()))
late.start()
X, y = sd.tensor("X", ("n", 3)), sd.tensor("y", ("n",))
W, b = sd.tensor("W", (3, 2)), sd.tensor("b", (2,))
f = sd.compile(sd.mean((sd.sum(sd.tanh(X @ W + b), axis=1) - y) ** 2), wrt=[W, b],
               wait=False)
rng = np.random.default_rng(0)
data = dict(X=rng.normal(size=(9, 3)), y=rng.normal(size=9))
params = dict(W=rng.normal(size=(3, 2)), b=rng.normal(size=2))
before = {k: v.copy() for k, v in params.items()}
grads = f.grad(**data, **params)
f.sgd_step(0.5, **data, **params)
exact = all(np.array_equal(params[k], before[k] - 0.5 * grads[k]) for k in params)
f.step(sd.optim.Adam(0.05), **data, **params)
tier = f.tier
late.cancel()
release.set()
f.wait()
print("steps", "waited for the lock" if waited else "without waiting", tier, exact)
"""


def test_a_wait_false_models_first_steps_do_not_wait_for_its_kernel():
    """Regression: with wait=False, a step before the kernel arrived called the compiled
    update loops, whose first call in a process compiles them or loads them under Numba's
    process-wide lock, which the kernel's compile holds: the first training step waited for
    the whole compile (1.4 s of a 64-128-10 MLP's 2.1 s). It updates through NumPy."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", BEFORE_THE_KERNEL], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "steps without waiting numpy True" in done.stdout, done.stdout

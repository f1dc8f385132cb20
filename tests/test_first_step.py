"""A model's first optimizer steps do not wait for the step module's compile: they run from
Python through the same compiled update functions, with the compiled step's bits."""
import threading

import numpy as np
import pytest

import symdiff as sd
import symdiff.codegen.steps as steps_module


def _model():
    X, y = sd.tensor("X", ("n", 3)), sd.tensor("y", ("n",))
    W, b, s = sd.tensor("W", (3, 2)), sd.tensor("b", (2,)), sd.scalar("s")
    out = sd.sum(sd.tanh(X @ W + b), axis=1) * s
    return sd.compile(sd.mean((out - y) ** 2), wrt=[W, b, s])


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

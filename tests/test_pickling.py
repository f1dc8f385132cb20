"""A Compiled pickles as its Programs and rebuilds, in this process and in others."""
import multiprocessing
import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import symdiff as sd
from conftest import mlp_arguments
from symdiff.program import verify
from symdiff.serialize import programs_from_data, programs_to_data

ROOT = Path(__file__).resolve().parent.parent


def same_bits(a, b) -> bool:
    """Equal values of equal types, arrays compared bit for bit (NaN included)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_programs_survive_serialisation_with_the_same_text(mlp):
    programs = {kind: build() for kind, build in mlp._programs.items()}
    rebuilt = programs_from_data(pickle.loads(pickle.dumps(programs_to_data(programs))))
    for kind, program in programs.items():
        assert str(rebuilt[kind]) == str(program)
        verify(rebuilt[kind])
        # hash-consing holds: rebuilding gives the very nodes this process already has
        assert [s.node for s in rebuilt[kind].stmts] == [s.node for s in program.stmts]


def test_round_trip_in_process_gives_the_same_source_and_bits(mlp, logistic, logistic_data):
    arguments = mlp_arguments(50)
    copy = pickle.loads(pickle.dumps(mlp))
    assert copy is not mlp and copy.source == mlp.source_of("grad") and copy.wrt == mlp.wrt
    # (a copy has taken no optimizer step: its source is the kernel's module alone)
    assert same_bits(copy.value_and_grad(**arguments), mlp.value_and_grad(**arguments))
    assert same_bits(copy(**arguments), mlp(**arguments))
    v = {"W1": np.ones((6, 5)), "b2": np.arange(3.0)}
    assert same_bits(copy.hvp(v, **arguments), mlp.hvp(v, **arguments))
    reduce, model = logistic
    again = pickle.loads(pickle.dumps(model))
    assert same_bits(again.value_and_grad(**logistic_data), model.value_and_grad(**logistic_data))
    assert pickle.loads(pickle.dumps(model)) is again  # rebuilt once per process


def test_unpickled_arrays_are_taken_as_they_are_made(mlp):
    arguments = mlp_arguments(20)
    received = pickle.loads(pickle.dumps(arguments, protocol=5))  # dtypes equal, not identical
    assert received["X"].dtype is not np.dtype(np.float64)
    assert same_bits(mlp.value_and_grad(**received), mlp.value_and_grad(**arguments))


def test_jacobian_and_options_travel():
    J = sd.jacobian("x * y + sin(x)", wrt=["x", "y"])
    assert np.array_equal(pickle.loads(pickle.dumps(J))(x=0.0, y=2.0), J(x=0.0, y=2.0))
    f = sd.compile("log(x)", wrt=["x"], check_finite=True, tier="tape", name="logarithm")
    g = pickle.loads(pickle.dumps(f))
    assert (g.title, g.tier, g.check_finite) == ("logarithm", "tape", True)
    with pytest.raises(sd.NonFiniteError, match="logarithm"):
        g.value_and_grad(x=0.0)



def test_aux_outputs_travel():
    # the rebuilt model had no aux: value_and_grad returned two results instead of three
    x = sd.scalar("x")
    f = sd.compile(x * x, wrt=[x], aux={"cube": x * x * x})
    g = pickle.loads(pickle.dumps(f))
    assert g.aux == ("cube",)
    assert g.value_and_grad(x=2.0) == f.value_and_grad(x=2.0) == (4.0, {"x": 4.0}, {"cube": 8.0})


CHILD = """
import pickle, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    model, arguments = pickle.load(f)
value, grads = model.value_and_grad(**arguments)
with open(sys.argv[2], "wb") as f:
    pickle.dump((value, grads, model.from_cache, model.source), f)
"""


def test_a_fresh_process_loads_the_kernel_from_the_cache_and_gives_the_same_bits(mlp, tmp_path):
    arguments = mlp_arguments(40, seed=3)
    local = mlp.value_and_grad(**arguments)  # compiled here: the machine code is on disk
    (tmp_path / "in.pkl").write_bytes(pickle.dumps((mlp, arguments)))
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", CHILD, tmp_path / "in.pkl", tmp_path / "out.pkl"],
                   check=True, env={**os.environ, "PYTHONPATH": path})
    value, grads, from_cache, source = pickle.loads((tmp_path / "out.pkl").read_bytes())
    assert source == mlp.source_of("grad") and from_cache is True  # (no steps there)
    assert same_bits((value, grads), local)


def test_a_process_pool_runs_a_compiled_model(mlp):
    batches = [mlp_arguments(30, seed=s) for s in range(4)]
    context = multiprocessing.get_context("spawn")  # nothing inherited: each child unpickles
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(mlp.value_and_grad, **arguments) for arguments in batches]
        results = [future.result() for future in futures]
    for result, arguments in zip(results, batches):
        assert same_bits(result, mlp.value_and_grad(**arguments))


def test_a_model_without_parameters_pickles():
    """Regression: pickling built every Program, and the per-example clipping ones took the
    first parameter's dtype from an empty wrt: IndexError."""
    f = sd.compile("x * y + sin(x)", wrt=[])
    g = pickle.loads(pickle.dumps(f))
    assert g(x=0.5, y=2.0) == f(x=0.5, y=2.0)

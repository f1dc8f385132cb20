"""Generated source: it compiles, reads like a worked example, is deterministic, and the three
paths (NumPy interpreter, the source run as plain Python, the Numba kernel) agree."""
import re

import numba
import numpy as np
import pytest

import symdiff as sd
from symdiff.codegen.emit import comment_names, emit_source
from conftest import LOGISTIC, at_one_and_two_threads, mlp_arguments
from symdiff.numpy_eval import run
from symdiff.printing import format_origin


def run_without_jit(source: str, arguments: list):
    """Execute the generated module as plain Python: njit becomes the identity."""
    plain = source.replace("from numba import njit, prange",
                           "njit = lambda *a, **k: (lambda f: setattr(f, 'py_func', f) or f)\n"
                           "prange = range")
    namespace: dict = {}
    exec(compile(plain, "<generated>", "exec"), namespace)  # our own generated text
    return namespace["kernel"](*arguments, 1)


def three_paths(compiled, arguments):
    program = compiled.program
    ordered = [arguments[name] for name in compiled.inputs]
    ordered = [np.asarray(v, dtype=np.int64) if np.asarray(v).dtype.kind == "i" else
               (np.asarray(v, dtype=float) if np.ndim(v) else float(v)) for v in ordered]
    reference = run(program, arguments)
    compiled.wait()  # its load imports the runtime modules the plain run imports too
    plain_value, plain_grads = run_without_jit(compiled.source_of("grad"), ordered)
    jit_value, jit_grads = compiled.value_and_grad(**arguments)
    labels = [label for label, _ in program.outputs]
    expected = [reference[label] for label in labels]
    for got in ([plain_value, *plain_grads], [jit_value, *jit_grads.values()]):
        for label, e, g in zip(labels, expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15, err_msg=label)


def test_three_paths_agree_on_a_batch_formula(logistic, logistic_data):
    three_paths(logistic[1], logistic_data)


def test_three_paths_agree_on_an_mlp(mlp):
    three_paths(mlp, mlp_arguments(9))


def test_every_adjoint_line_sits_under_its_from_comment(mlp, neuron, logistic):
    for compiled in (mlp, neuron, logistic[1]):
        names = comment_names(compiled.program)
        lines = compiled.source.splitlines()
        for stmt in compiled.program.stmts:
            if stmt.origin is None:
                continue
            statement = rf"\s*{stmt.name}(\[.*\])? (\+)?= " \
                r"(?!np\.|part_|0\.0$|-np\.inf$|\w+  # reuses )"
            assigned = [k for k, line in enumerate(lines)  # not allocations (new arrays or
                        # reused ones) or chunk sums
                        if re.match(statement, line)]
            for k in assigned:
                comment = next(lines[j] for j in range(k, -1, -1) if "# from:" in lines[j]
                               or lines[j].lstrip().startswith(("def ", "# loop")))
                assert comment.strip() == f"# from: {format_origin(stmt.origin, names)}", \
                    f"{stmt.name} in {compiled.title}"


def test_source_is_the_text_that_was_compiled_and_is_deterministic():
    first = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], wait=True)
    second = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"])
    assert first.source == second.source
    assert emit_source(first.program, first.title) == first.source
    with open(first._kernel("grad")._module.kernel.py_func.__code__.co_filename,
              encoding="utf-8") as f:
        assert f.read() == first.source


def test_generated_code_keeps_user_names_and_adjoint_names():
    f = sd.compile("w*x + b", wrt=["w", "b"], batch=["x"])
    assert "dw" in f.source and "w*x[i]" in f.source
    assert "def kernel(w, x, b, chunks)" in f.source


def test_parallel_chunks_give_the_same_bits_at_one_and_two_threads(logistic_data):
    loss = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"], parallel=True,
                      wait=True)
    rng = np.random.default_rng(1)
    data = {**logistic_data, "x0": rng.normal(size=5001), "x1": rng.normal(size=5001),
            "y": rng.choice([-1.0, 1.0], 5001)}
    one, two = at_one_and_two_threads(lambda: loss.value_and_grad(**data))
    assert one[0] == two[0] and one[1] == two[1]
    if numba.config.NUMBA_NUM_THREADS > 1:  # now on the threaded copy, compiled meanwhile
        assert loss._grad._threads_done.wait(600) and loss._grad._threads.signatures
        _, threaded = at_one_and_two_threads(lambda: loss.value_and_grad(**data))
        assert threaded[0] == one[0] and threaded[1] == one[1]
    serial = sd.compile(LOGISTIC, wrt=["w0", "w1", "b"], batch=["x0", "x1", "y"],
                        parallel=False).value_and_grad(**data)
    assert serial[0] == one[0] and serial[1] == one[1]  # the same chunks, in turn


# the op-table cases compile in this many models: all in 8 took 41.5 s of CPU, in 16 36.8 s,
# in one twice the 8's (Numba's compile time grows faster than a kernel's length)
GROUPS = 16


def _op_cases(group: int):
    """The op-table cases numbered `group` modulo GROUPS: every case is in one group."""
    from test_autodiff import CASES
    return [(c, case) for c, case in enumerate(CASES) if c % GROUPS == group]


@pytest.mark.campaign  # each op's own tests, in the default run, compile it
@pytest.mark.parametrize("group", range(GROUPS))
def test_every_op_compiled_matches_the_interpreter_and_finite_differences(group):
    """The op-table cases in GROUPS compiled models, each the sum over its cases of
    sum(u_case * case)."""
    total, wrt, shapes, domains = 0.0, [], {}, {}
    for c, (name, fn, inputs) in _op_cases(group):
        tensors = {k: sd.tensor(f"c{c}_{k}", shape) for k, (shape, _) in inputs.items()}
        out = fn(**tensors)
        weight = sd.tensor(f"c{c}_u", out.shape)
        total = total + sd.sum(weight * out)
        wrt += list(tensors.values())
        for k, (shape, domain) in inputs.items():
            shapes[f"c{c}_{k}"], domains[f"c{c}_{k}"] = shape, domain
        shapes[f"c{c}_u"], domains[f"c{c}_u"] = out.shape, lambda rng, s: rng.normal(size=s)
    compiled = sd.compile(total, wrt=wrt)
    for n in (1, 4):
        rng = np.random.default_rng(n)
        arguments = {name: domains[name](rng, tuple(n if d == "n" else d for d in shape))
                     for name, shape in shapes.items()}
        if "labels" in compiled.inputs:
            arguments["labels"] = rng.integers(0, 4, n)
        three_paths(compiled, arguments)
        assert sd.check_grad(compiled, **arguments) < 1e-6


def test_text_does_not_depend_on_what_the_process_built_before(tmp_path):
    """Nodes are shared between models; the generated text must not notice."""
    import subprocess
    import sys
    script = """
import sys, symdiff as sd
if sys.argv[1] == "after":
    sd.compile("log(1 + exp(-y*(w*x + b))) + w*w", wrt=["w", "b"], batch=["x", "y"])
    sd.compile("sin(x) * w + b", wrt=["b", "w"], batch=["x"], reduce=None)
print(sd.compile("w*x + b*sin(w) + log(1 + exp(-y*(w*x + b)))", wrt=["w", "b"],
                 batch=["x", "y"]).source)
"""
    env = {**__import__("os").environ, "SYMDIFF_CACHE_DIR": str(tmp_path)}
    texts = [subprocess.run([sys.executable, "-c", script, order], env=env, text=True,
                            capture_output=True, check=True).stdout
             for order in ("alone", "after")]
    assert texts[0] == texts[1] and "def kernel" in texts[0]


def test_kernel_source_is_the_math_of_the_source(logistic):
    _, loss = logistic
    math_part = loss.kernel_source
    assert loss.source.startswith(math_part.rstrip())
    assert "def kernel(" in math_part and "# from:" in math_part
    assert "def entry(" not in math_part and "_gate" not in math_part


def test_a_product_runs_without_importing_scipy_linalg_and_scipy_linalg_still_imports(tmp_path):
    """Numba finds BLAS in scipy.linalg.cython_blas; symdiff loads that module alone, without
    scipy.linalg's package import. The product's value must still be BLAS's, and scipy.linalg
    must still import afterwards."""
    import subprocess
    import sys
    script = """
import sys
import numpy as np, symdiff as sd
A, B = sd.tensor("A", (3, 4)), sd.tensor("B", (4, 2))
f = sd.compile(sd.sum((A @ B) * (A @ B)), wrt=[A])
a, b = np.arange(12.0).reshape(3, 4) / 7, np.arange(8.0).reshape(4, 2) / 5
value, grads = f.value_and_grad(A=a, B=b)
assert "scipy.linalg" not in sys.modules, "scipy.linalg was imported"
np.testing.assert_allclose(value, np.sum((a @ b) ** 2), rtol=1e-14)
np.testing.assert_allclose(grads["A"], 2 * (a @ b) @ b.T, rtol=1e-14)
import scipy.linalg
from scipy.linalg import cython_blas
assert cython_blas is sys.modules["scipy.linalg.cython_blas"]
np.testing.assert_allclose(scipy.linalg.solve(np.eye(2) * 2, np.ones(2)), 0.5)
print("ok")
"""
    env = {**__import__("os").environ, "SYMDIFF_CACHE_DIR": str(tmp_path / "symdiff"),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run([sys.executable, "-c", script], env=env, text=True,
                         capture_output=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_long_function_record_is_a_function_of_its_own_each_repeated_part_once():
    """erfinv's definition prints as ~12,500 characters, its polynomials repeated a dozen
    times (6 s of Numba's compile in every kernel using it); kernels call it instead as a
    helper function whose body names each repeated part once."""
    from mpmath import mp
    from symdiff.codegen.printer import HELPERS
    f = sd.compile("erfinv(u + c)", wrt=["c"], batch=["u"], reduce=None, tier="kernel")
    assert "_record_erfinv(" in f.kernel_source
    assert len(f.kernel_source) < 4000  # was over 20,000 characters
    helper = next(text for text in HELPERS if "def _record_erfinv(a0):" in text)
    assert helper.count("math.sqrt(") == 1  # the tail's sqrt(-log(1 - x^2)), once
    x = np.array([-0.999999, -0.9, -0.5, -0.1, 0.0, 0.3, 0.49, 0.5, 0.75, 0.999])
    values, grads = f.value_and_grad(u=x, c=0.0)
    mp.dps = 40
    for p, v, g in zip(x, values, grads["c"]):
        exact = mp.erfinv(mp.mpf(p))
        assert abs(v - exact) <= 2e-16 * abs(exact), p
        # the slope exp(erfinv(x)^2) multiplies the value's relative error by 2 erfinv(x)^2
        assert abs(g - mp.sqrt(mp.pi) / 2 * mp.exp(exact**2)) <= 1e-14 * abs(g), p


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softplus_and_sigmoid_of_one_value_share_its_exp_in_each_loop_stage(dtype):
    """A logistic loss's loop takes one exp(-|z|) per sample for softplus(z) and its derivative
    sigmoid(z). Each stage of a loop over rows computes its own: a stage over (n, 4) is a loop
    nest of its own, after which a name from an earlier stage holds its last column's value."""
    X, t = sd.tensor("X", ("n", 3), dtype=dtype), sd.tensor("t", ("n",), dtype=dtype)
    w = sd.tensor("w", (3,), dtype=dtype)
    logistic = sd.compile(sd.mean(sd.binary_cross_entropy_with_logits(X @ w, t)), wrt=[w],
                          tier="kernel")
    exp = "_vm.exp(" if dtype == "float64" else "_vm.exp32("
    (loop,) = re.findall(r"def _loop\d+\(.*?\n\n\n", logistic.kernel_source, re.S)
    assert loop.count(exp) == 1 and "softplus" in loop and "# from: softplus" in loop

    X4, w4 = sd.tensor("X", ("n", 4), dtype=dtype), sd.tensor("w", (4,), dtype=dtype)
    s = sd.sum(sd.softplus(X4 * w4), axis=1)  # then its adjoint in a stage after the row sum
    staged = sd.compile(sd.mean(sd.log(s) * s), wrt=[w4], tier="kernel")
    assert "# stage over (n, 4)" in staged.kernel_source
    assert staged.kernel_source.count(exp) == 2
    rng = np.random.default_rng(5)
    x, w0 = rng.normal(size=(9, 4)), rng.normal(size=4)

    def forward(w):  # NumPy, written independently
        row = np.logaddexp(0.0, x * w).sum(axis=1)
        return np.mean(np.log(row) * row)

    value, grads = staged.value_and_grad(X=x.astype(dtype), w=w0.astype(dtype))
    h = 1e-6
    central = [(forward(w0 + h * e) - forward(w0 - h * e)) / (2 * h) for e in np.eye(4)]
    tolerance = 1e-8 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(value, forward(w0), rtol=tolerance)
    np.testing.assert_allclose(grads["w"], central, rtol=tolerance, atol=tolerance)


def test_a_helper_gives_the_bits_of_the_definition_printed_in_place(monkeypatch):
    """A user's function long enough for a helper, with a Piecewise inside a product: the
    helper, and the function of the module its long derivative becomes, compute the same
    operations on the same values as the expressions printed in place (the same bits), and
    agree with NumPy written by hand."""
    import sympy as sp
    from symdiff.codegen import printer
    x = sp.Symbol("x", real=True)
    p = sum(sp.Float(1 + k / 7) * x**k for k in range(5)) / 8
    sd.function("long_t", sp.exp(-p**2) * sp.Piecewise((p, x < 0), (sp.sin(p) + p, True)) + p)
    u = np.linspace(-0.9, 0.9, 37)

    def kernel(min_chars):  # (a printed body of 2,000 characters would compile for minutes)
        monkeypatch.setattr(printer, "HELPER_MIN_CHARS", min_chars)
        monkeypatch.setattr(printer, "_helpers", {})
        f = sd.compile("long_t(u + c)", wrt=["c"], batch=["u"], reduce=None, tier="kernel")
        return f.kernel_source, f.value_and_grad(u=u, c=0.0)

    source, (value, grads) = kernel(100)
    in_place, (value2, grads2) = kernel(10**9)
    assert "_record_long_t_" in source and "_record_long_t_" not in in_place
    assert "def _body(" in source and "def _body(" not in in_place  # its derivative's body
    np.testing.assert_array_equal(value, value2)
    np.testing.assert_array_equal(grads["c"], grads2["c"])
    q = sum((1 + k / 7) * u**k for k in range(5)) / 8
    np.testing.assert_allclose(value, np.exp(-q**2) * np.where(u < 0, q, np.sin(q) + q) + q,
                               rtol=1e-13)


def test_a_function_defined_again_leaves_earlier_models_their_helper(monkeypatch):
    """A name defined again gets a helper of its own: a model made before keeps the old
    definition in the kernels it makes afterwards (its value kernel is made on first use)."""
    import sympy as sp
    from symdiff.codegen import printer
    monkeypatch.setattr(printer, "HELPER_MIN_CHARS", 100)  # short bodies, helpers still
    monkeypatch.setattr(printer, "_helpers", {})
    x = sp.Symbol("x", real=True)
    p = sum(sp.Float(1 + k / 7) * x**k for k in range(5))
    sd.function("again_t", p**2 + sp.exp(-p))
    first = sd.compile("again_t(u + c)", wrt=["c"], batch=["u"], reduce=None, tier="kernel")
    sd.function("again_t", 3 * p**2 + sp.exp(-p))
    second = sd.compile("again_t(u + c)", wrt=["c"], batch=["u"], reduce=None, tier="kernel")
    u = np.linspace(-0.5, 0.5, 5)
    q = sum((1 + k / 7) * u**k for k in range(5))
    np.testing.assert_allclose(first(u=u, c=0.0), q**2 + np.exp(-q), rtol=1e-14)
    np.testing.assert_allclose(second(u=u, c=0.0), 3 * q**2 + np.exp(-q), rtol=1e-14)


def test_structural_statements_are_scalar_loops_that_agree_with_numpy():
    """A slice's adjoint (pad), a repeated gather's (scatter_add), a cumsum statement, a
    loop's stacked array carries and a transposed stack are scalar loops, never slice
    assignments (`a[:, 1:4] = b`, up to a second a site for Numba to compile) nor np.transpose
    with axes (2.5 s a process); a gather's indices are a module-level array, not a tuple
    literal (a switch over its entries); the module run as plain Python agrees with the NumPy
    interpreter's slice assignments, np.add.at and np.transpose."""
    x, w, s = sd.tensor("x", ("n", 6)), sd.tensor("w", (4,)), sd.tensor("s", (4, 3))
    bias = sd.cumsum(w, axis=0)[:3]
    last, hs = sd.scan(lambda h, sk: (sd.tanh(h * sk + bias), h * sk), x[:, 1:4], s)
    rows = sd.reshape(sd.transpose(hs, (1, 2, 0)), ("n", 12)) * np.linspace(-1.0, 1.0, 12)
    program = sd.differentiate(sd.sum(last) + sd.sum(sd.sin(rows))
                               + sd.sum(x[:, [0, 2, 2, 5]] ** 2), [x, w, s])
    source = emit_source(program)
    m = r"m_\d+"
    assert "\n_indices = np.array([0, 2, 2, 5], dtype=np.intp)\n" in source
    assert re.search(rf"scatter\d+\[{m}, _indices\[{m}\]\] \+= dgather\d+\[{m}, {m}\]", source)
    assert not re.search(r"\(\d+(, \d+)*,?\)\[", source)
    assert re.search(rf"transpose\d+\[{m}, {m}, {m}\] = ", source)
    assert "np.transpose(" not in source
    assert not [line for line in source.splitlines()
                if re.search(r"\[[^\]]*:[^\]]*\] \+?= ", line)]
    rng = np.random.default_rng(5)
    arguments = dict(x=rng.normal(size=(3, 6)), w=rng.normal(size=4), s=rng.normal(size=(4, 3)))
    value, grads = run_without_jit(source, [arguments[n.attr("name")] for n in program.inputs])
    reference = run(program, arguments)
    assert value == pytest.approx(reference["value"], rel=1e-14)
    for (label, _), grad in zip(program.outputs[1:], grads):
        np.testing.assert_allclose(grad, reference[label], rtol=1e-13, atol=1e-15, err_msg=label)

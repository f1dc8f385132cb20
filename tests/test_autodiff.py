"""Reverse mode on the IR, checked with the NumPy interpreter (no Numba): known values from the
lectures, and every op of the table against central finite differences."""
import zlib

import numpy as np
import pytest

import symdiff as sd
from symdiff import indexing as I, ops, tensors as T
from symdiff.autodiff import differentiate
from symdiff.functions import BUILTINS, FUNCTIONS
from symdiff.numpy_eval import run
from symdiff.ir import topological
from symdiff.program import verify


def grads_at(output, values):
    """(value, {name: gradient}) of a scalar Tensor `output` by reverse mode + the interpreter."""
    wrt = [T.scalar(name) for name in values]
    program = differentiate(output, wrt)
    verify(program)
    result = run(program, values)
    return float(result["value"]), {n: float(result["d" + n]) for n in values}


def lecture(*names):
    return [T.scalar(n) for n in names]


def test_add_distributes_and_mul_switches():
    x, y, z = lecture("x", "y", "z")
    value, g = grads_at((x + y) * z, dict(x=-2.0, y=5.0, z=-4.0))
    assert value == -12.0 and g == {"x": -4.0, "y": -4.0, "z": 3.0}


def test_sigmoid_neuron():
    w0, w1, w2, x0, x1 = lecture("w0", "w1", "w2", "x0", "x1")
    f = 1 / (1 + sd.exp(-(w0 * x0 + w1 * x1 + w2)))
    value, g = grads_at(f, dict(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0))
    assert value == pytest.approx(0.7310585786, abs=1e-10)
    expected = dict(w0=-0.1966119332, w1=-0.3932238665, w2=0.1966119332,
                    x0=0.3932238665, x1=-0.5898357997)
    assert g == pytest.approx(expected, abs=1e-10)


def test_log_plus_product_minus_sine():
    x1, x2 = lecture("x1", "x2")
    value, g = grads_at(sd.log(x1) + x1 * x2 - sd.sin(x2), dict(x1=2.0, x2=5.0))
    assert value == pytest.approx(11.6520714552, abs=1e-10)
    assert g == pytest.approx({"x1": 5.5, "x2": 1.7163378145}, abs=1e-10)


def test_fan_out_sums_the_adjoints_of_every_use():
    x1, x2 = lecture("x1", "x2")
    value, g = grads_at(x1 * x2 + sd.sin(x2), dict(x1=2.0, x2=5.0))
    assert value == pytest.approx(9.0410757253, abs=1e-10)
    assert g == pytest.approx({"x1": 5.0, "x2": 2.2836621855}, abs=1e-10)


def test_logistic_loss_sign():
    X, y, W = lecture("X", "y", "W")
    value, g = grads_at(-y * sd.log(1 / (1 + sd.exp(-W * X))), dict(X=3.0, y=1.0, W=3.0))
    assert value == pytest.approx(1.234021897e-4, rel=1e-9)
    assert g["W"] == pytest.approx(-3.701837280e-4, rel=1e-9)


def test_adjoint_statements_carry_their_forward_origin():
    x, y = lecture("x", "y")
    program = differentiate(sd.exp(x * y) + sd.sin(x), [x, y])
    forward = [s for s in program.stmts if s.origin is None]
    backward = [s for s in program.stmts if s.origin is not None]
    forward_nodes = [f.node for f in forward] + list(program.inputs)
    assert backward and all(any(s.origin is f for f in forward_nodes) for s in backward)
    assert program.stmts.index(backward[0]) == len(forward)  # forward first, then adjoint


def test_unused_wrt_gets_zero_gradient_and_constant_output():
    x, y = lecture("x", "y")
    value, g = grads_at(x * 3.0 + 0 * y, dict(x=1.5, y=2.0))
    assert value == 4.5 and g == {"x": 3.0, "y": 0.0}


# ---------------------------------------------------------------- the op table


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def away_from_zero(rng, shape):
    return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


ANY, POSITIVE = uniform(-2, 2), uniform(0.5, 2.0)


def well_conditioned(rng, shape):
    """A square matrix near 4 I: positive definite in its symmetric part, far from singular."""
    return rng.uniform(-0.5, 0.5, shape) + 4 * np.eye(shape[0])
KINKED = {name: away_from_zero for name in  # not differentiable at 0
          ("abs", "relu", "sign", "leaky_relu", "selu", "relu6", "cbrt")}


def _function_case(name):
    record = FUNCTIONS[name]
    arity = record.arity or 2
    domain = KINKED.get(name, uniform(*record.domain))
    inputs = {f"a{k}": ((4,), domain) for k in range(arity)}
    return name, lambda **args: T.function(name, *(args[f"a{k}"] for k in range(arity))), \
        inputs


# the built-in records (not sd.function's, which other tests and the README add at run time,
# nor symdiff's internal finite)
CASES = [_function_case(name) for name in sorted(BUILTINS) if not FUNCTIONS[name].internal] + [
    ("add-sub-mul-div", lambda x, y: (x + y) * (x - y) / (y * y + 1.0),
     {"x": ((2, 3), ANY), "y": ((2, 3), ANY)}),
    ("pow", lambda x, y: x ** y + x ** 3 + 2.0 ** y, {"x": ((3,), POSITIVE), "y": ((3,), ANY)}),
    ("where", lambda x, y: T.where(x > 0, x * y, y ** 2), {"x": ((5,), away_from_zero),
                                                             "y": ((5,), ANY)}),
    ("broadcast-rows", lambda x, y: x + y, {"x": ((3,), ANY), "y": ((2, 3), ANY)}),
    ("broadcast-ones", lambda x, y: x * y, {"x": ((2, 1), ANY), "y": ((1, 3), ANY)}),
    ("broadcast-scalar", lambda s, y: s * y, {"s": ((), ANY), "y": (("n", 3), ANY)}),
    ("sum-axes", lambda x: T.sum(x, 0) * T.sum(x, 1, keepdims=True) + T.sum(x),
     {"x": ((2, 3), ANY)}),
    ("mean", lambda x: T.mean(x, axis=0) + T.mean(x), {"x": (("n", 3), ANY)}),
    ("max", lambda x: T.max(x, axis=1) * 2.0, {"x": ((4, 3), ANY)}),
    ("min-prod", lambda x: T.min(x, axis=1) * 2.0 + T.prod(x, axis=0), {"x": ((3, 3), ANY)}),
    ("cumsum", lambda x: T.cumsum(x, axis=1) * T.cumsum(x, axis=0, reverse=True),
     {"x": (("n", 3), ANY)}),
    ("logsumexp-softmax", lambda x: T.logsumexp(x, axis=1) * T.sum(T.softmax(x) * x, axis=1)
     + T.sum(T.log_softmax(x, axis=0)), {"x": ((3, 4), ANY)}),
    ("reshape-transpose", lambda x: T.reshape(x, (3, 2)) @ x + x.T @ x.T.T,
     {"x": ((2, 3), ANY)}),
    ("matmul-mm", lambda a, b: a @ b, {"a": (("n", 3), ANY), "b": ((3, 2), ANY)}),
    ("matmul-vm", lambda a, b: a @ b, {"a": ((3,), ANY), "b": ((3, 2), ANY)}),
    ("matmul-mv", lambda a, b: a @ b, {"a": ((2, 3), ANY), "b": ((3,), ANY)}),
    ("matmul-vv", lambda a, b: a @ b, {"a": ((3,), ANY), "b": ((3,), ANY)}),
    ("softmax-cross-entropy", lambda z: T.softmax_cross_entropy(z, T.tensor("labels", ("n",),
                                                                             int)),
     {"z": (("n", 4), ANY)}),
    ("bce-mse", lambda z, t: T.binary_cross_entropy_with_logits(z, t) + T.mse(z, t),
     {"z": ((5,), ANY), "t": ((5,), uniform(0, 1))}),
    ("concatenate-stack-slice", lambda a, b: T.concatenate([a, b * a], axis=1)
     * T.stack([a, b], axis=1).reshape((2, 6)) + T.sum(a[:, 1:3] ** 2),
     {"a": ((2, 3), ANY), "b": ((2, 3), ANY)}),
    ("index-slice-gather-newaxis", lambda x: T.sum(x[1:, ::-2] ** 2) + x[-1]
     + T.sum(x[[2, 0, 2]] * x[..., None, 1], axis=0), {"x": ((3, 4), ANY)}),
    ("pad-scatter-add", lambda y: T.sum(I.pad(y, (3, 5), ((1, 1, 2), (4, -2, 3))) ** 2)
     + I.scatter_add(y, (2, 4), 1, (3, 0, 3)) ** 3, {"y": ((2, 3), ANY)}),
    ("roll", lambda x: T.roll(x, 1, axis=1) * T.roll(x, (2, -1), axis=(1, 0)),
     {"x": ((3, 4), ANY)}),
    ("take-rows", lambda e: T.take(e, T.tensor("labels", ("n",), int)) ** 2,
     {"e": ((4, 3), ANY)}),
    ("scatter-rows", lambda y: T.apply_op("scatter_rows", (y, T.tensor("labels", ("n",), int)),
                                          rows=4) ** 2, {"y": (("n", 3), ANY)}),
    ("contract-rows", lambda a, c: T.apply_op("contract_rows", (a, c)) ** 2,
     {"a": ((2, 3, 4), ANY), "c": ((2, 3, 2), ANY)}),
    ("stacked-matmul", lambda a, b, w: (a @ b) @ w, {"a": ((2, 3, 4), ANY),
                                                    "b": ((2, 4, 3), ANY), "w": ((3, 2), ANY)}),
    ("cholesky-solves", lambda a, t, b: sd.cholesky(a) @ sd.solve_triangular(t, b)
     + sd.solve_triangular(t, b, lower=False, transpose=True),
     {"a": ((3, 3), well_conditioned), "t": ((3, 3), well_conditioned), "b": ((3,), ANY)}),
    ("solve-slogdet", lambda a, b: sd.solve(a, b) * sd.det(a),
     {"a": ((3, 3), well_conditioned), "b": ((3, 2), ANY)}),
    ("cumprod", lambda x: sd.cumprod(x, axis=1) * sd.cumprod(x, axis=0), {"x": ((3, 4), ANY)}),
    ("scan", lambda x, h: _scanned(x, h), {"x": ((4, 3), ANY), "h": ((3,), ANY)}),
    ("recurrence", lambda a, b: T.apply_op("recurrence", (a, b), axis=1, reverse=False)
     * T.apply_op("recurrence", (a, b), axis=0, reverse=True),
     {"a": ((3, 4), ANY), "b": ((3, 4), ANY)}),
]


def _scanned(x, h):
    """A loop with h as its init and also read inside the step (one of its constants)."""
    last, ys = sd.scan(lambda c, xk: (T.function("sin", c * xk) + h, c * xk), h, x)
    return last + T.sum(ys, axis=0)


def build_case(name, fn, inputs, n):
    """(rng seeded by the case's name, input Tensors, output, input values, label values)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # hash() differs per process
    tensors = {k: T.tensor(k, shape) for k, (shape, _) in inputs.items()}
    out = T.as_tensor(fn(**tensors))
    values = {k: domain(rng, tuple(n if d == "n" else d for d in s))
              for k, (s, domain) in inputs.items()}
    return rng, tensors, out, values, {"labels": rng.integers(0, 4, n)}


@pytest.mark.parametrize("name, fn, inputs", CASES, ids=[c[0] for c in CASES])
def test_adjoint_matches_central_differences(name, fn, inputs):
    """u . (J v) from central differences equals (J^T u) . v from reverse mode."""
    n = 5
    rng, tensors, out, values, extra = build_case(name, fn, inputs, n)
    shape = tuple(n if d == "n" else d for d in out.shape)
    u = T.tensor("u", out.shape)
    program = differentiate(out, list(tensors.values()), seed=u)
    verify(program)
    u_value = rng.normal(size=shape)
    vjp = run(program, {**values, **extra, "u": u_value})
    v = {k: rng.normal(size=np.shape(x)) for k, x in values.items()}
    h = 1e-6

    def value_at(step):
        moved = {k: x + step * v[k] for k, x in values.items()}
        return run(program, {**moved, **extra, "u": u_value})["value"]

    numeric = np.sum(u_value * (value_at(h) - value_at(-h)) / (2 * h))
    reverse = sum(np.sum(vjp["d" + k] * v[k]) for k in values)
    assert reverse == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def test_every_differentiable_op_has_a_finite_difference_case():
    covered = set()
    for _, fn, inputs in CASES:
        out = T.as_tensor(fn(**{k: T.tensor(k, s) for k, (s, _) in inputs.items()}))
        covered |= {n.op for n in topological([out.node])}
    differentiable = {op for op, d in ops.OPS.items() if d.kind != "leaf"} - {"stop_gradient"}
    assert differentiable <= covered, f"no finite-difference case for {differentiable - covered}"


def test_stop_gradient_passes_no_adjoint():
    x = T.scalar("x")
    value, g = grads_at(x * T.stop_gradient(x), {"x": 3.0})
    assert value == 9.0 and g == {"x": 3.0}

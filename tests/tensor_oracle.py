"""Random tensor models and their oracle: a NumPy forward pass and central differences.

A model is a description (act, middle, head, reduction, shapes) turned into one function of
an `ops` namespace; it runs once on `sd` (building the symdiff model) and once on `NumpyOps`,
which implements every op from its definition in float64 and shares no code with symdiff.
Gradients are central differences of the NumPy forward pass, with step h and h/2 combined by
Richardson extrapolation; their disagreement estimates the difference error, and an entry
where it is large (a kink within h) is not judged. The judge's tolerance is relative to the
magnitude of the model value and the gradient, which are O(1) by construction (inputs and
weights drawn from N(0, 1) at sizes of 1-3), so the conditioning is mild.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import symdiff as sd


class NumpyOps:
    """The ops a tensor model uses, written from their definitions in float64 NumPy."""

    exp, log, sin, tanh, abs, sqrt, maximum = (np.exp, np.log, np.sin, np.tanh, np.abs, np.sqrt,
                                               np.maximum)
    where, concatenate, stack, transpose = np.where, np.concatenate, np.stack, np.transpose

    @staticmethod
    def relu(x):
        return np.maximum(x, 0.0)

    @staticmethod
    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return np.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        return np.mean(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return np.max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        top = np.max(x, axis=axis, keepdims=True)
        out = top + np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True))
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def log_softmax(x, axis=-1):
        return x - NumpyOps.logsumexp(x, axis=axis, keepdims=True)

    @staticmethod
    def softmax(x, axis=-1):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    @staticmethod
    def take_along(x, labels):
        return x[np.arange(len(labels)), labels]

    @staticmethod
    def softmax_cross_entropy(logits, labels):
        return NumpyOps.logsumexp(logits, axis=-1) - NumpyOps.take_along(logits, labels)

    @staticmethod
    def binary_cross_entropy_with_logits(z, t):
        return NumpyOps.softplus(z) - t * z

    @staticmethod
    def reshape(x, shape):
        return np.reshape(x, tuple(-1 if d == "n" else d for d in shape))


ACTS = {
    "identity": lambda o, h: h, "relu": lambda o, h: o.relu(h), "tanh": lambda o, h: o.tanh(h),
    "sigmoid": lambda o, h: o.sigmoid(h), "softplus": lambda o, h: o.softplus(h),
    "sin": lambda o, h: o.sin(h), "abs": lambda o, h: o.abs(h),
    "gauss": lambda o, h: o.exp(-h * h), "leaky": lambda o, h: o.where(h > 0, h, 0.1 * h),
    "maximum": lambda o, h: o.maximum(h, 0.5 * h), "smooth": lambda o, h: o.sqrt(h * h + 1),
}
# middle: (name, width of the result given width b, function of (ops, H, inputs))
MIDDLES = {
    "none": (lambda b: b, lambda o, H, I: H),
    "centre": (lambda b: b, lambda o, H, I: H - o.max(H, axis=1, keepdims=True)),
    "softmax": (lambda b: b, lambda o, H, I: o.softmax(H, axis=-1)),
    "log_softmax": (lambda b: b, lambda o, H, I: o.log_softmax(H)),
    "batch_mean": (lambda b: b, lambda o, H, I: H * o.mean(H, axis=0, keepdims=True)),
    "lse_shift": (lambda b: b, lambda o, H, I: o.logsumexp(H, axis=1, keepdims=True) + H),
    "concat": (lambda b: 2 * b, lambda o, H, I: o.concatenate([H, 2.0 * H], axis=1)),
    "stack_sum": (lambda b: b, lambda o, H, I: o.sum(o.stack([H, H * H], axis=1), axis=1)),
    "transpose": (lambda b: b,
                  lambda o, H, I: o.transpose(o.transpose(H) * o.reshape(I["c"], (H.shape[1], 1)))),
    # examples that interact: a Gram matrix of the rows, rows reversed, rows permuted (the last
    # two need a static batch size)
    "gram": (lambda b: b, lambda o, H, I: H + 0.25 * ((H @ o.transpose(H)) @ H)),
    "reverse": (lambda b: b, lambda o, H, I: H[::-1]),
    "permute": (lambda b: b, lambda o, H, I: H[[(i + 1) % H.shape[0] for i in range(H.shape[0])]]),
    "outer": (lambda b: b * b, lambda o, H, I: o.reshape(
        o.reshape(H, (H.shape[0], H.shape[1], 1)) * o.reshape(I["c"], (1, 1, H.shape[1])),
        (H.shape[0], H.shape[1] * H.shape[1]))),
}
HEADS = ("cross_entropy", "squares", "logsumexp", "max", "take_log_softmax", "mse_rows",
         "bce")


def _head(name, o, G, I):
    if name == "cross_entropy":
        return o.softmax_cross_entropy(G @ I["V"], I["y"])
    if name == "squares":
        return o.sum(G * G, axis=1)
    if name == "logsumexp":
        return o.logsumexp(G, axis=1)
    if name == "max":
        return o.max(G, axis=1)
    if name == "take_log_softmax":
        return -o.take_along(o.log_softmax(G), I["y"])
    if name == "mse_rows":
        return o.mean((G - I["Y"]) ** 2, axis=1)
    return o.binary_cross_entropy_with_logits(o.sum(G, axis=1), I["t"])


@dataclass
class TensorCase:
    act: str
    middle: str
    head: str
    reduce: str | None   # "mean"/"sum" inside the model, or None: per-example values
    a: int
    b: int
    k: int
    n: int
    seed: int
    dtype: str = "float64"
    second_order: bool = False
    static: bool = False  # the batch size is a number in the shapes, not "n"
    by_input: bool = False  # per-example gradients by the batch input X too

    @property
    def batch(self):
        return self.n if self.static else "n"

    def widths(self):
        return MIDDLES[self.middle][0](self.b)

    def model(self, o, I):
        H = ACTS[self.act](o, I["X"] @ I["W"] + I["c"])
        G = MIDDLES[self.middle][1](o, H, I)
        per_example = _head(self.head, o, G, I)
        return per_example if self.reduce is None else getattr(o, self.reduce)(per_example)

    def inputs(self):
        """(symdiff tensors, NumPy arrays, wrt names) of the model's inputs."""
        w, rng = self.widths(), np.random.default_rng(self.seed)
        classes = self.k if self.head == "cross_entropy" else w
        n = self.batch
        shapes = {"X": (n, self.a), "W": (self.a, self.b), "c": (self.b,),
                  "V": (w, self.k), "Y": (n, w), "t": (n,)}
        arrays = {name: rng.normal(size=tuple(self.n if d == "n" else d for d in shape))
                  for name, shape in shapes.items()}
        arrays["t"] = rng.integers(0, 2, self.n).astype(np.float64)
        arrays["y"] = rng.integers(0, classes, self.n)
        if self.dtype == "float32":
            arrays = {k: v.astype(np.float32) if v.dtype == np.float64 else v
                      for k, v in arrays.items()}
        tensors = {name: sd.tensor(name, shape, dtype=self.dtype) for name, shape in shapes.items()}
        tensors["y"] = sd.tensor("y", (n,), dtype=int)
        wrt = ["X"] * self.by_input + ["W", "c"] + (["V"] if self.head == "cross_entropy" else [])
        return tensors, arrays, wrt


COUPLED = {"batch_mean", "gram", "reverse", "permute"}  # middles that mix the rows of the batch
STATIC_ONLY = {"reverse", "permute"}  # a symbolic axis is only ever taken whole
BATCH_INPUTS = {"X"}  # the batch inputs that can be in wrt


def middles_for(reduce) -> list[str]:
    """The middles a model with this reduce may have: those that need a static batch size
    only per example (reduce None)."""
    return sorted(MIDDLES) if reduce is None else sorted(set(MIDDLES) - STATIC_ONLY)


def make_case(middle: str, static: bool, n: int, **fields) -> TensorCase:
    """A TensorCase, with a static batch size of at least 5 where its middle needs one."""
    static = static or middle in STATIC_ONLY
    return TensorCase(middle=middle, static=static, n=(5 if n < 5 else n) if static else n,
                      **fields)


def tensor_case(per_example: bool, dtype: str, second_order: bool = False):
    """A Hypothesis strategy of TensorCases, sizes 1-3 (size-1 axes included); per example,
    some with a static batch size (5 or 7: no other axis has that size, so the batch inputs are
    the ones whose leading axis has it) and some differentiated by the batch input X too."""
    return st.builds(
        make_case, act=st.sampled_from(sorted(ACTS)),
        middle=st.sampled_from(middles_for(None if per_example else "mean")),
        static=st.booleans() if per_example else st.just(False),
        by_input=st.booleans() if per_example else st.just(False),
        head=st.sampled_from(HEADS),
        reduce=st.just(None) if per_example else st.sampled_from(["mean", "sum"]),
        a=st.integers(1, 3), b=st.integers(1, 3), k=st.integers(1, 3),
        n=st.sampled_from([1, 3, 7]), seed=st.integers(0, 2**32 - 1), dtype=st.just(dtype),
        second_order=st.just(second_order))


def _forward(case, arrays, wrt_values):
    with np.errstate(all="ignore"):
        I = {k: np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else v
             for k, v in {**arrays, **wrt_values}.items()}
        return np.asarray(case.model(NumpyOps, I), dtype=np.float64)


def _directional(case, arrays, params, v, h):
    """Central difference of the forward pass along v, step h."""
    up = {k: params[k] + h * v[k] for k in params}
    down = {k: params[k] - h * v[k] for k in params}
    return (_forward(case, arrays, up) - _forward(case, arrays, down)) / (2 * h)


def derivative(case, arrays, params, v, h=1e-4):
    """(Richardson-extrapolated directional derivative, its error estimate)."""
    d1 = _directional(case, arrays, params, v, h)
    d2 = _directional(case, arrays, params, v, h / 2)
    return (4 * d2 - d1) / 3, np.abs(d1 - d2)


def second_derivative(case, arrays, params, v, u, h=1e-3):
    """u' H v by central differences of directional derivatives (Richardson, as above)."""
    def at(step):
        up = {k: params[k] + step * u[k] for k in params}
        down = {k: params[k] - step * u[k] for k in params}
        return (_directional(case, arrays, up, v, step) -
                _directional(case, arrays, down, v, step)) / (2 * step)
    d1, d2 = at(h), at(h / 2)
    return (4 * d2 - d1) / 3, np.abs(d1 - d2)


TOLERANCE = {"float64": (1e-10, 1e-7, 1e-4), "float32": (2e-5, 2e-3, 2e-3)}  # value, grad, 2nd


def _basis(params, name, index):
    return {k: np.zeros_like(p) if k != name else _one(p, index) for k, p in params.items()}


def _one(p, index):
    e = np.zeros_like(p)
    e[index] = 1.0
    return e


def tensor_problems(case: TensorCase) -> list[str]:
    """Every disagreement between symdiff and the oracle on `case`, as readable lines."""
    tensors, arrays, wrt = case.inputs()
    if case.reduce is None and case.middle in COUPLED:
        # examples that interact have no per-example gradient: refused, with the reason
        try:
            sd.compile(case.model(sd, tensors), wrt=[tensors[w] for w in wrt], reduce=None)
        except sd.DifferentiationError as e:
            return [] if "examples interact" in str(e) else [f"{case}: unclear refusal: {e}"]
        return [f"{case}: per-example gradients of coupled examples were not refused"]
    try:
        model = case.model(sd, tensors)
        f = sd.compile(model, wrt=[tensors[w] for w in wrt],
                       **({"reduce": None} if case.reduce is None else {}))
        args = {k: arrays[k] for k in f.inputs}
        value, grads = f.value_and_grad(**args)  # __call__, a kernel of its own that takes
    except Exception as e:  # noqa: BLE001 - seconds to compile, is run by the formula tests
        return [f"{case}: {traceback.format_exception_only(type(e), e)[-1].strip()[:300]}"]
    used = {k: arrays[k] for k in f.inputs}
    params = {w: np.asarray(used[w], dtype=np.float64) for w in wrt}
    f0 = _forward(case, used, {})
    tv, tg, t2 = TOLERANCE[case.dtype]
    problems = []
    if not np.allclose(np.asarray(value, np.float64), f0, rtol=tv, atol=tv):
        problems.append(f"{case}: value: expected {f0!r}, got {value!r}")
    scale = 1.0 + np.max(np.abs(f0))
    expected_grads = {}
    for w in wrt:
        # per example: a parameter's gradient has a row per example; a batch input's row i is
        # the diagonal block d value_i / d X[i] of the Jacobian
        own_rows = case.reduce is None and w in BATCH_INPUTS
        per = np.full((case.n,) + params[w].shape if case.reduce is None and not own_rows
                      else params[w].shape, np.nan)
        for index in np.ndindex(params[w].shape):
            exact, err = derivative(case, used, params, _basis(params, w, index))
            if own_rows:
                exact, err = exact[index[0]], err[index[0]]
            judged = err <= 1e-5 * (1 + np.abs(exact))
            slot = (slice(None),) + index if case.reduce is None and not own_rows else index
            per[slot] = np.where(judged, exact, np.nan)
        expected_grads[w] = per
        got = np.asarray(grads[w], dtype=np.float64)
        if got.shape != per.shape:
            problems.append(f"{case}: d/d{w} has shape {got.shape}, expected {per.shape}")
            continue
        bad = ~np.isnan(per) & ~(np.abs(got - per) <= tg * (scale + np.abs(per)))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            problems.append(f"{case}: d/d{w}{list(i)}: expected {per[i]!r}, got {got[i]!r}")
    if case.reduce is not None and not problems:
        problems += _sgd_step(case, f, used, params, expected_grads, tg, scale)
    if case.second_order and not problems:
        problems += _second_order(case, f, used, params, tg, t2, scale)
    return problems


def _sgd_step(case, f, used, params, expected_grads, tg, scale):
    lr = 0.125
    moved = {w: np.array(used[w], copy=True) for w in params}
    try:
        f.sgd_step(lr, **{**used, **moved})
    except Exception as e:  # noqa: BLE001
        return [f"{case}: sgd_step: {traceback.format_exception_only(type(e), e)[-1].strip()}"]
    for w, g in expected_grads.items():
        expected = params[w] - lr * g
        got = moved[w].astype(np.float64)
        bad = ~np.isnan(g) & ~(np.abs(got - expected) <= lr * tg * (scale + np.abs(g)) +
                               1e-6 * np.abs(params[w]) * (case.dtype == "float32"))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            return [f"{case}: sgd_step {w}{list(i)}: expected {expected[i]!r}, got {got[i]!r}"]
    return []


def _second_order(case, f, used, params, tg, t2, scale):
    rng = np.random.default_rng(case.seed + 1)
    v = {w: rng.normal(size=p.shape).astype(used[w].dtype) for w, p in params.items()}
    problems = []
    exact, err = derivative(case, used, params, v)
    _, got = f.jvp(v, **used)
    if err <= 1e-5 * (1 + abs(exact)) and not abs(got - exact) <= tg * (scale + abs(exact)):
        problems.append(f"{case}: jvp along {v}: expected {exact!r}, got {got!r}")
    hv = f.hvp(v, **used)
    for w, p in params.items():
        for index in np.ndindex(p.shape):
            exact, err = second_derivative(case, used, params, v, _basis(params, w, index))
            if err > 1e-3 * (1 + abs(exact)):
                continue
            got = np.asarray(hv[w])[index]
            if not abs(got - exact) <= t2 * (scale + abs(exact)) + 10 * err:
                problems.append(f"{case}: hvp[{w}{list(index)}] along {v}: "
                                f"expected {exact!r}, got {got!r}")
    return problems

"""Optimizers: update rules as records, and the objects that hold hyper-parameters and state.

Input: hyper-parameters (a learning rate may be a schedule, a callable of the step count).
Output: per step, the learning rate, the step number and the array of fixed hyper-parameters
the generated code takes, and the state arrays it updates in place. Each `Rule` is the one
home of an update's math: the scalar statements that turn a parameter p, its gradient g and
its state into their new values, written in the Numba spelling that codegen/steps.py pastes
into a loop over the entries (and, for whole arrays, into its NumPy twin). Nothing here imports
Numba; `Compiled.step(opt, **arguments)` runs the loss, the gradients and the update of every
parameter and state array in one kernel call.

>>> opt = Adam(lr=1e-3)
>>> opt.rule.state, opt.count
(('m', 'v'), 0)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError


@dataclass(frozen=True)
class Rule:
    """An elementwise update. `constants`: the hyper-parameters fixed when the optimizer is
    made; `prepare`: statements giving per-step scalars from them, the learning rate `lr` and
    the step number `t` (from 1); `scalars`: what the loop over the entries reads; `body`:
    statements over scalars p, g and the states (zeros at first) giving their new values."""

    name: str
    title: str
    state: tuple[str, ...]
    constants: tuple[str, ...]
    prepare: tuple[str, ...]
    scalars: tuple[str, ...]
    body: tuple[str, ...]


# t as a float: Numba's float ** int multiplies by squaring, which differs from Python's in
# the last bit; float ** float is the C library's pow in both
_ADAM = ("rest1 = 1.0 - beta1", "rest2 = 1.0 - beta2", "step = lr / (1.0 - beta1 ** float(t))",
         "root_c2 = np.sqrt(1.0 - beta2 ** float(t))")
_MOMENTS = ("m = beta1 * m + rest1 * g", "v = beta2 * v + rest2 * g * g",
            "p = p - step * (m / (np.sqrt(v) / root_c2 + eps))")
RULES = {rule.name: rule for rule in (
    Rule("sgd", "gradient descent", (), (), (), ("lr",), ("p = p - lr * g",)),
    # PyTorch's momentum: b = mu b + g; p = p - lr b (Nesterov: p = p - lr (g + mu b))
    Rule("momentum", "SGD with momentum", ("velocity",), ("mu",), (), ("lr", "mu"),
         ("velocity = mu * velocity + g", "p = p - lr * velocity")),
    Rule("nesterov", "SGD with Nesterov momentum", ("velocity",), ("mu",), (), ("lr", "mu"),
         ("velocity = mu * velocity + g", "p = p - lr * (g + mu * velocity)")),
    # Kingma & Ba: m, v moving averages of g and g^2; p -= lr m/c1 / (sqrt(v/c2) + eps) with
    # the bias corrections c_k = 1 - beta_k^t, written as PyTorch orders it
    Rule("adam", "Adam", ("m", "v"), ("beta1", "beta2", "eps"), _ADAM,
         ("step", "beta1", "rest1", "beta2", "rest2", "root_c2", "eps"), _MOMENTS),
    # Loshchilov & Hutter: decay decoupled from the gradient, p *= 1 - lr * weight_decay first
    Rule("adamw", "AdamW", ("m", "v"), ("beta1", "beta2", "eps", "weight_decay"),
         _ADAM + ("keep = 1.0 - lr * weight_decay",),
         ("step", "beta1", "rest1", "beta2", "rest2", "root_c2", "eps", "keep"),
         ("p = p * keep",) + _MOMENTS),
)}


def _real(name: str, value, low: float = 0.0, high: float = math.inf, open_high=False) -> float:
    """`value` as a float in [low, high] (or [low, high)), else an ArgumentError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a real number, not {type(value).__name__}")
    value = float(value)
    if not (low <= value <= high) or open_high and value == high or math.isnan(value):
        bound = f"[{low}, {high})" if open_high else f"[{low}, {high}]"
        raise ArgumentError(f"{name} must lie in {bound}, not {value}")
    return value


class Optimizer:
    """Hyper-parameters, the step count and the state arrays of one optimizer.

    `lr` is a number, or a schedule: a callable of the number of steps taken so far (0 at the
    first step) returning the rate, called once per step in Python, so a schedule needs no
    recompile; assigning `opt.lr` between steps works too (a plain attribute, which a step
    reads on every call; the next step checks it). Options of every optimizer:

    - `clip_norm`: scale the gradient (all parameters together) to at most this global norm.
    - `per_example_clip` C, `noise_multiplier` sigma, `rng`: differentially private SGD
      (Abadi et al.): each example's gradient is clipped to norm C, the clipped gradients are
      summed, Gaussian noise N(0, (sigma C)^2) is added to each entry (drawn from the NumPy
      Generator `rng`) and the sum is divided by the batch size (for a mean loss). The loss
      must be a mean or sum over examples.

    State arrays are created (zeros) on the first step, or by `init(params)`; they are updated
    in place. `state` maps each parameter to {state name: array}; `count` is the number of
    steps taken.

    What a model's compiled step receives, besides the learning rate and the step number
    `count + 1`: `constants`, an array of the rule's constants then the global clipping norm
    (0: none), and `flat_state`, which maps the parameters a model updates (a tuple of names)
    to their state arrays, flat in the rule's order (a scalar's as a 1-entry view), filled by
    the model's first step (`keep`). A model's generated step reads these public attributes
    directly: from Python every call costs, and a step is a few microseconds.
    """

    rule: Rule

    def __init__(self, lr, *, clip_norm=None, per_example_clip=None, noise_multiplier=0.0,
                 rng=None):
        self.lr = lr if callable(lr) else _real("the learning rate lr", lr)
        self.clip_norm = None if clip_norm is None else _real("clip_norm", clip_norm, 0.0)
        self.per_example_clip = None if per_example_clip is None else \
            _real("per_example_clip", per_example_clip, 0.0)
        self.noise_multiplier = _real("noise_multiplier", noise_multiplier)
        if self.noise_multiplier and self.per_example_clip is None:
            raise ArgumentError("noise_multiplier needs per_example_clip (the norm C that "
                                "bounds each example's gradient and scales the noise)")
        if self.noise_multiplier and not isinstance(rng, np.random.Generator):
            raise ArgumentError(f"noise_multiplier needs rng, a seeded NumPy Generator "
                                f"(np.random.default_rng(seed)), not {type(rng).__name__}")
        self.rng = rng
        self.count = 0
        self._state: dict[str, dict[str, np.ndarray]] = {}
        self.flat_state: dict[tuple, tuple] = {}

    def __repr__(self):
        lr = getattr(self.lr, "__name__", "schedule") if callable(self.lr) else self.lr
        return f"<symdiff.optim.{type(self).__name__} lr={lr} count={self.count}>"

    def rate(self) -> float:
        """The learning rate of the next step, checked (`lr` may have been assigned)."""
        if not callable(self.lr):
            return _real("the learning rate lr", self.lr)
        return _real(f"the schedule's learning rate at step {self.count}", self.lr(self.count))

    def hyper(self) -> tuple:
        """(learning rate, step number t from 1, the constants array) of the next step; the
        array holds the rule's constants, then the global clipping norm (0: none)."""
        lr = self.lr if self.lr.__class__ is float and self.lr >= 0.0 else self.rate()
        return lr, self.count + 1, self.constants

    def _fix(self, **constants) -> None:
        """Set the rule's constants, once, when the optimizer is made."""
        values = [constants[name] for name in self.rule.constants] + [self.clip_norm or 0.0]
        self.constants = np.array(values, dtype=np.float64)  # writable: Numba's dispatcher
        # types a read-only array slowly, as it does a 0-d one

    @property
    def state(self) -> dict:
        return self._state

    @state.setter
    def state(self, state: dict):
        self._state, self.flat_state = {p: dict(s) for p, s in state.items()}, {}

    def init(self, params: dict) -> "Optimizer":
        """Zero state arrays shaped like each parameter in `params` (name: array), of its
        float dtype (float64 for anything else); the count back to 0."""
        def zeros(value):
            value = np.asarray(value)
            return np.zeros(value.shape, value.dtype if value.dtype.kind == "f" else np.float64)
        self.state = {name: {s: zeros(value) for s in self.rule.state}
                      for name, value in params.items()}
        self.count = 0
        return self

    def arrays(self, names: tuple, specs: dict, arguments: dict) -> tuple:
        """(the state arrays of the parameters `names`, flat in the rule's order; the state
        made for parameters that had none, or None). New state is zeros of the parameter's
        shape (its argument's, for a symbolic one) and the model's dtype; it is kept only
        once a step has used it: see `keep`."""
        flat = self.flat_state.get(names)
        if flat is not None:
            return flat, None
        made = {}
        for name in names:
            have = self._state.get(name)
            if have is None:
                shape = specs[name].shape
                if any(isinstance(d, str) for d in shape):
                    shape = np.shape(arguments.get(name))
                made[name] = {s: np.zeros(shape, specs[name].numpy_dtype)
                              for s in self.rule.state}
            elif set(have) != set(self.rule.state):
                raise ArgumentError(f"the state of {name} has {', '.join(sorted(have)) or 'no'} "
                                    f"arrays; {self.rule.title} keeps "
                                    f"{', '.join(self.rule.state) or 'none'}")
        state = {**self._state, **made}
        return tuple(passed(state[n][s]) for n in names for s in self.rule.state), made

    def keep(self, names: tuple, flat: tuple, made: dict) -> None:
        """After a successful first step: keep the state made for it, and its flat order."""
        self._state.update(made)
        self.flat_state[names] = flat

    def noise_scale(self) -> float:
        return self.noise_multiplier * (self.per_example_clip or 0.0)


def passed(state):
    """A state array as steps receive it: a 0-d array as a 1-entry view of it (Numba's
    dispatcher types a 0-d argument in Python, ~100 ns slower than a 1-d one)."""
    return state.reshape(1) if type(state) is np.ndarray and state.ndim == 0 else state


def origin(state):
    """The state array a step received `state` for: undoes `passed`."""
    base = getattr(state, "base", None)
    if type(state) is np.ndarray and state.shape == (1,) and type(base) is np.ndarray \
            and base.ndim == 0:
        return base
    return state


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum or Nesterov momentum as PyTorch defines them:
    b = momentum b + g; p -= lr b (Nesterov: p -= lr (g + momentum b)).

    >>> SGD(0.1, momentum=0.9).rule.name
    'momentum'
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, **options):
        self.momentum = _real("momentum", momentum, 0.0, 1.0, open_high=True)
        if nesterov and not self.momentum:
            raise ArgumentError("nesterov=True needs a momentum > 0")
        self.rule = RULES["nesterov" if nesterov else "momentum" if self.momentum else "sgd"]
        super().__init__(lr, **options)
        self._fix(mu=self.momentum)


class Adam(Optimizer):
    """Adam (Kingma & Ba): m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
    p -= lr m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps), t the step number from 1."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **options):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ArgumentError(f"betas must be a pair (beta1, beta2), not {betas!r}")
        self.betas = tuple(_real(f"beta{k + 1}", b, 0.0, 1.0, open_high=True)
                           for k, b in enumerate(betas))
        self.eps = _real("eps", eps)
        self.rule = RULES["adam"]
        super().__init__(lr, **options)
        self._fix(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), scaled by the learning rate as
    in PyTorch and optax: p *= 1 - lr weight_decay, then Adam's step."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, **options):
        self.weight_decay = _real("weight_decay", weight_decay)
        super().__init__(lr, betas, eps, **options)
        self.rule = RULES["adamw"]
        self._fix(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                  weight_decay=self.weight_decay)

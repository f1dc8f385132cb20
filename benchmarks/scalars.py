"""scalars: the time of one call when a scalar argument comes as a Python float, a NumPy
float64 or a 0-d array (as `sgd_step` keeps parameters): every form should take the fast path.

Two models: the logistic-regression loss of `logreg` (arrays X, t, w and the scalar b) and a
scalar formula (a, x, y all scalars). Each call path is timed with b (or a) in each form,
the forms interleaved in rounds; the baseline is the Python float.
"""
from __future__ import annotations

import numpy as np

import symdiff as sd

from .env import threads
from .timing import compare, table

FORMS = {"float": float, "np.float64": np.float64, "0-d array": np.array}


def run(quick: bool = False) -> str:
    X, t = sd.tensor("X", ("n", 30)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (30,)), sd.scalar("b")
    logreg = sd.compile(sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t))
                        + 5e-4 * sd.sum(w * w), wrt=[w, b], wait=True)
    formula = sd.compile("(a*x - y)**2", wrt=["a"], wait=True)
    rng = np.random.default_rng(0)
    data = dict(X=rng.normal(size=(64, 30)), t=(rng.random(64) > 0.5) * 1.0,
                w=rng.normal(size=30) * 0.01)
    calls = {"logreg value_and_grad": lambda v: logreg.value_and_grad(b=v, **data),
             "logreg value": lambda v: logreg(b=v, **data),
             "formula value_and_grad": lambda v: formula.value_and_grad(a=v, x=1.0, y=2.0),
             "formula jvp": lambda v: formula.jvp({"a": 1.0}, a=v, x=1.0, y=2.0)}
    parts = [f"## scalars: one call, a scalar given in each form, {threads()} thread(s)"]
    for title, call in calls.items():
        systems = {form: (lambda value=make(0.5), call=call: call(value))
                   for form, make in FORMS.items()}
        times = compare(systems, rounds=5 if quick else 15, budget=0.02)
        parts.append(f"### {title}\n\n" + table(times, baseline="float"))
    return "\n\n".join(parts)

"""mlp-small: one training step of a 64-128-10 ReLU MLP on scikit-learn's digits, batch 128.

A step is the value, the gradients of all four parameters and the SGD update. The timed calls
cycle through one shuffled epoch of batches (14 of 128 samples), each system on its own copy
of the parameters. Before timing, every system's value and gradients at the start, and its
parameters after one epoch of steps, must equal symdiff's.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import mlp
from .check import assert_same
from .env import threads
from .timing import compare, table

SIZES, BATCH = (64, 128, 10), 128


def make_batches(seed: int = 0) -> list:
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order] / 16.0, y[order].astype(np.int64)  # pixels 0..16 -> [0, 1]
    return [(X[k:k + BATCH], y[k:k + BATCH]) for k in range(0, len(X) - BATCH + 1, BATCH)]


def run(quick: bool = False) -> str:
    batches = make_batches()
    params0 = mlp.init_params(SIZES, np.random.default_rng(1))
    times = time_steps(mlp.make_systems(SIZES, params0, batches), len(batches), quick)
    return (f"## mlp-small: one SGD step of a 64-128-10 ReLU MLP, digits, batch {BATCH}, "
            f"{threads()} thread(s)\n\n" + table(times, label="time per step"))


def time_steps(systems: dict, batches: int, quick: bool) -> dict:
    """Check every system's value and gradients at the start, and its parameters after one
    epoch of steps, against symdiff's; then time each one's steps, cycling through the
    batches. `systems` maps a name to (value_and_grad(k), step(k), params())."""
    reference = systems["symdiff"][0](0)
    for name, (value_and_grad, step, params) in systems.items():
        assert_same(name, value_and_grad(0), reference)
        for k in range(batches):
            step(k)
    reference = systems["symdiff"][2]()
    for name, (_, _, params) in systems.items():
        assert_same(name, params(), reference, what=f"the parameters after {batches} steps")

    def cycling(step):
        batch = itertools.cycle(range(batches))
        return lambda: step(next(batch))

    return compare({name: cycling(step) for name, (_, step, _) in systems.items()},
                   rounds=5 if quick else 15, budget=0.02 if quick else 0.05)

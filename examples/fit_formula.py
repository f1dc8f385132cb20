"""Fit y = a*sin(b*x) + c to noisy data by minibatch gradient descent on symdiff's gradients.

The squared error is written once as a formula; `sd.compile` differentiates it by a, b and c,
averages it over the batch inputs x and y, and emits one Numba kernel for the loss and its
three gradients. The batch size is symbolic, so the same kernel serves every minibatch, the
short last one included. The adjoint source is printed at the end.

    python examples/fit_formula.py           # the demo
    python examples/fit_formula.py --quick   # a small, fast run (what the test suite does)
"""
import sys
import time

import numpy as np

import symdiff as sd

TRUE = {"a": 2.0, "b": 1.5, "c": 0.5}
# The loss is not convex in the frequency b: start b near its true value (a and c may be far).
START = {"a": 1.0, "b": 1.2, "c": 0.0}


def make_data(n, noise, rng):
    """x uniform on [-3, 3]; y = a*sin(b*x) + c at the true parameters, plus Gaussian noise."""
    x = rng.uniform(-3.0, 3.0, n)
    y = TRUE["a"] * np.sin(TRUE["b"] * x) + TRUE["c"] + rng.normal(0.0, noise, n)
    return x, y


def minibatches(n, batch_size, rng):
    """Index arrays of one shuffled epoch; the last batch may be short."""
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def main(n=2000, epochs=60, batch_size=64, lr=0.05, momentum=0.9, noise=0.1, seed=0,
         tolerance=0.02, report_every=10, show_source=True):
    """Train, print the loss every few epochs and the fit; return the fitted parameters.

    Raises AssertionError if a fitted parameter is further than `tolerance` from the truth.
    """
    rng = np.random.default_rng(seed)
    x, y = make_data(n, noise, rng)
    loss = sd.compile("(a*sin(b*x) + c - y)**2", wrt=["a", "b", "c"], batch=["x", "y"],
                      reduce="mean")
    params = dict(START)

    velocity = {name: 0.0 for name in params}
    start, steps = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        rate = lr * (1 - (epoch - 1) / epochs)  # decays linearly, to settle at the end
        total = 0.0
        for batch in minibatches(n, batch_size, rng):
            value, grads = loss.value_and_grad(x=x[batch], y=y[batch], **params)
            for name in params:  # momentum: v <- mu v - rate g; p <- p + v
                velocity[name] = momentum * velocity[name] - rate * grads[name]
                params[name] += velocity[name]
            total += value * len(batch)
            steps += 1
        if epoch == 1 or epoch % report_every == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}   mean loss {total / n:.5f}   "
                  + "  ".join(f"{k} = {v:+.4f}" for k, v in params.items()))
    print(f"training: {steps} steps of {batch_size} in {time.perf_counter() - start:.2f} s "
          f"(noise variance {noise ** 2:.5f} is the best mean loss to expect)")
    # Numba compiled the kernel on a background thread meanwhile; until it was in place the
    # steps ran its module under CPython, which gives the kernel's bits
    print("compile: " + ", ".join(f"{stage} {seconds:.3f} s"
                                  for stage, seconds in loss.wait().timings.items()))

    print(f"\n{'':<4}{'fitted':>10}{'true':>10}")
    for name, value in params.items():
        print(f"{name:<4}{value:>10.4f}{TRUE[name]:>10.4f}")
    far = {k: v for k, v in params.items() if abs(v - TRUE[k]) > tolerance}
    assert not far, f"did not converge: {far} is further than {tolerance} from {TRUE}"

    if show_source:
        print("\nThe generated loss-and-gradient kernel (loss.kernel_source; loss.source adds the"
              " argument checks and the SGD step):\n")
        print(loss.kernel_source)
    return params


if __name__ == "__main__":
    if "--quick" in sys.argv[1:]:
        main(n=500, epochs=10, report_every=5, tolerance=0.05, show_source=False)
    else:
        main()

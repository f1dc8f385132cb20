"""Newton's method with symdiff's compiled Hessian, beside gradient descent.

Regularised logistic regression, L(w, b) = mean(BCE(X w + b, t)) + lam/2 |w|^2, on seeded
synthetic data. Newton solves H delta = g with the Hessian symdiff computes by forward over
reverse; gradient descent takes w <- w - lr g. Both stop when |g| < tol.

    python examples/newton.py
"""
import time

import numpy as np

import symdiff as sd


def make_data(n=400, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    t = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ w_true + 0.5)))).astype(float)
    return X, t


def compile_loss(d, lam):
    X, t = sd.tensor("X", ("n", d)), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (d,)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(X @ w + b, t)) + 0.5 * lam * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b])


def flat(grads):
    return np.concatenate([grads["w"], [grads["b"]]])


def minimize(loss, data, d, tol, step_size, max_steps):
    """Iterate (w, b) -= step_size(w, b, g) from zero until |g| < tol; (steps, loss, w, b)."""
    w, b = np.zeros(d), 0.0
    for step in range(max_steps):
        value, grads = loss.value_and_grad(**data, w=w, b=b)
        g = flat(grads)
        if np.linalg.norm(g) < tol:
            return step, value, w, b
        delta = step_size(w, b, g)
        w, b = w - delta[:-1], b - delta[-1]
    raise RuntimeError(f"no convergence in {max_steps} steps")


def newton(loss, data, d, tol):
    """Newton's step: solve H delta = g with the compiled Hessian."""
    return minimize(loss, data, d, tol,
                    lambda w, b, g: np.linalg.solve(loss.hessian(**data, w=w, b=b), g),
                    max_steps=50)


def gradient_descent(loss, data, d, tol, lr=1.0):
    """Plain gradient descent: delta = lr * g."""
    return minimize(loss, data, d, tol, lambda w, b, g: lr * g, max_steps=100_000)


def main(n=400, d=5, lam=1e-2, tol=1e-8):
    X, t = make_data(n, d)
    data = dict(X=X, t=t)
    loss = compile_loss(d, lam)
    results = {}
    for method in (newton, gradient_descent):
        start = time.perf_counter()
        steps, value, w, b = method(loss, data, d, tol)
        results[method.__name__] = steps, value, w
        print(f"{method.__name__:>16}: {steps:5d} steps to |gradient| < {tol:g}, loss {value:.12f}"
              f"  ({time.perf_counter() - start:.2f} s, compiles included)")
    (n_steps, n_value, n_w), (g_steps, g_value, g_w) = results.values()
    assert abs(n_value - g_value) < 1e-12 and np.allclose(n_w, g_w, atol=1e-6)
    return n_steps, g_steps


if __name__ == "__main__":
    newton_steps, descent_steps = main()
    assert newton_steps <= 10 < 100 <= descent_steps

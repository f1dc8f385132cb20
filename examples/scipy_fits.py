"""Full-batch fits with SciPy's optimizers on symdiff's kernels.

1. Regularised logistic regression on scikit-learn's breast-cancer data: `sd.scipy_objective`
   turns the compiled loss into `fun(x) -> (loss, gradient)` over the flat parameter vector
   (w, then b), for `scipy.optimize.minimize(..., jac=True)`: L-BFGS-B, and Newton-CG with
   `hessp`, the exact Hessian-vector product from forward over reverse mode.
2. The formula-fitting demo, y = a*sin(b*x) + c, by `scipy.optimize.least_squares` with the
   residuals' Jacobian compiled by `sd.jacobian`.

    python examples/scipy_fits.py
"""
import sys
import time

import numpy as np
import scipy.optimize

import symdiff as sd

try:
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler
except ImportError:
    sys.exit('This example needs scikit-learn: pip install -e ".[examples]"')


def logistic_regression(lam=1e-2):
    """Fit with L-BFGS-B and with Newton-CG; return {method: (result, params)}."""
    X, t = load_breast_cancer(return_X_y=True)
    X, t = StandardScaler().fit_transform(X), t.astype(float)
    Xs, ts = sd.tensor("X", ("n", X.shape[1])), sd.tensor("t", ("n",))
    w, b = sd.tensor("w", (X.shape[1],)), sd.scalar("b")
    loss = sd.mean(sd.binary_cross_entropy_with_logits(Xs @ w + b, ts)) + \
        lam * 0.5 * sd.sum(w * w)
    objective = sd.scipy_objective(sd.compile(loss, wrt=[w, b]), X=X, t=t)
    start = objective.flatten(w=np.zeros(X.shape[1]), b=0.0)
    fits = {}
    for method, extra in (("L-BFGS-B", {}), ("Newton-CG", {"hessp": objective.hessp})):
        began = time.perf_counter()
        result = scipy.optimize.minimize(objective.fun, start, jac=True, method=method, **extra)
        params = objective.unflatten(result.x)  # {"w": array of shape (30,), "b": float}
        accuracy = np.mean(((X @ params["w"] + params["b"]) > 0) == t)
        print(f"{method:>9}: {result.nit:3d} iterations, loss {result.fun:.10f}, "
              f"training accuracy {accuracy:.3f} ({time.perf_counter() - began:.2f} s, "
              f"compiles included)")
        fits[method] = result, params
    return fits


def formula(n=2000, noise=0.1, seed=0):
    """Fit a*sin(b*x) + c by least squares; return the fitted parameters."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, n)
    y = 2.0 * np.sin(1.5 * x) + 0.5 + rng.normal(0.0, noise, n)
    residuals = sd.scipy_residuals(
        sd.jacobian("a*sin(b*x) + c - y", wrt=["a", "b", "c"], batch=["x", "y"]), x=x, y=y)
    result = scipy.optimize.least_squares(residuals.fun, residuals.flatten(a=1.0, b=1.2, c=0.0),
                                          jac=residuals.jac)
    fitted = residuals.unflatten(result.x)
    print(f"least_squares: {result.nfev} evaluations, "
          + ", ".join(f"{k} = {v:.4f}" for k, v in fitted.items())
          + "  (true: a = 2, b = 1.5, c = 0.5)")
    return fitted


def main(n=2000):
    return logistic_regression(), formula(n)


if __name__ == "__main__":
    main()

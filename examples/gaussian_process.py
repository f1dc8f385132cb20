"""Fit a Gaussian process's hyperparameters by its marginal likelihood, and plot the fit.

The negative log marginal likelihood of noisy samples of a function,

    K = sf² exp(-(x - x')² / (2 ls²)) + sn² I,   nll = ½ yᵀ K⁻¹ y + ½ log det K + n/2 log 2π,

is compiled once over its three hyperparameters (log ls, log sf, log sn: logs keep them
positive). The Cholesky factor L of K gives both terms (log det K = 2 Σ log Lᵢᵢ, and
yᵀ K⁻¹ y = |L⁻¹ y|²) and, through Murray's adjoint, the exact gradient; `sd.scipy_objective`
hands value and gradient to SciPy's L-BFGS-B. The posterior mean and two standard deviations
are drawn over the data into gaussian_process.png, in the folder given by --out or a new
temporary folder it names.

    python examples/gaussian_process.py [--out FOLDER]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.optimize
from scipy.linalg import cho_factor, cho_solve

import symdiff as sd


def data(n=40, noise=0.2, seed=0):
    """Noisy samples of sin(3x) + x/2 at n points of [-2, 2]."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-2.0, 2.0, n))
    return x, np.sin(3 * x) + 0.5 * x + rng.normal(0.0, noise, n)


def likelihood(n):
    """The compiled negative log marginal likelihood of n points on a line."""
    X, y = sd.tensor("X", (n, 1)), sd.tensor("y", (n,))
    log_ls, log_sf, log_sn = sd.scalar("log_ls"), sd.scalar("log_sf"), sd.scalar("log_sn")
    K = sd.exp(2 * log_sf - 0.5 * (X - X.T) ** 2 / sd.exp(2 * log_ls)) \
        + sd.exp(2 * log_sn) * sd.eye(n)
    L = sd.cholesky(K)
    alpha = sd.solve_triangular(L, y)
    nll = 0.5 * sd.sum(alpha ** 2) + sd.sum(sd.log(sd.diagonal(L))) + 0.5 * n * np.log(2 * np.pi)
    return sd.compile(nll, wrt=[log_ls, log_sf, log_sn])


def fit(x, y):
    """The hyperparameters minimising the negative log likelihood, and SciPy's result."""
    objective = sd.scipy_objective(likelihood(len(x)), X=x[:, None], y=y)
    start = objective.flatten(log_ls=0.0, log_sf=0.0, log_sn=0.0)
    result = scipy.optimize.minimize(objective.fun, start, jac=True, method="L-BFGS-B")
    return objective.unflatten(result.x), result


def posterior(x, y, grid, log_ls, log_sf, log_sn):
    """The posterior mean and standard deviation at `grid` (NumPy: a handful of lines)."""
    def kernel(a, b):
        return np.exp(2 * log_sf - 0.5 * (a[:, None] - b[None, :]) ** 2 / np.exp(2 * log_ls))
    factor = cho_factor(kernel(x, x) + np.exp(2 * log_sn) * np.eye(len(x)), lower=True)
    cross = kernel(grid, x)
    mean = cross @ cho_solve(factor, y)
    variance = np.exp(2 * log_sf) - np.sum(cross * cho_solve(factor, cross.T).T, axis=1)
    return mean, np.sqrt(np.maximum(variance, 0.0))


def plot(path, x, y, grid, mean, sd_):
    """Draw the data, the posterior mean and its band into `path`; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.fill_between(grid, mean - 2 * sd_, mean + 2 * sd_, alpha=0.25, label="±2 sd")
    axes.plot(grid, mean, label="posterior mean")
    axes.plot(grid, np.sin(3 * grid) + 0.5 * grid, "--", label="true function")
    axes.plot(x, y, "k.", label="data")
    axes.set_xlabel("x")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(out=None):
    """Fit, print the hyperparameters, and plot; return the fitted hyperparameters."""
    x, y = data()
    began = time.perf_counter()
    params, result = fit(x, y)
    print(f"L-BFGS-B: {result.nit} iterations, {result.nfev} evaluations, "
          f"nll {result.fun:.6f} ({time.perf_counter() - began:.2f} s, the compile included)")
    print("length scale {:.4f}, signal sd {:.4f}, noise sd {:.4f}".format(
        *(float(np.exp(params[k])) for k in ("log_ls", "log_sf", "log_sn"))))
    grid = np.linspace(-2.2, 2.2, 200)
    mean, sd_ = posterior(x, y, grid, params["log_ls"], params["log_sf"], params["log_sn"])
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="symdiff-gp-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gaussian_process.png"
    if plot(path, x, y, grid, mean, sd_):
        print(f"plot saved to {path}")
    else:
        print('no plot: matplotlib is missing (pip install -e ".[examples]")')
    return params


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="the folder for gaussian_process.png "
                        "(default: a new temporary folder)")
    main(parser.parse_args().out)

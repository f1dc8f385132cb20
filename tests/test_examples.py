"""The examples run, at small sizes, and reach what they promise."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from needs import needs_dot


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logistic_regression_learns_breast_cancer(capsys):
    losses, accuracy = load("logistic_regression").main(epochs=8, show_program=False)
    assert losses[-1] < losses[0] and accuracy >= 0.94
    assert "test accuracy" in capsys.readouterr().out


def test_mlp_learns_digits_with_adam_and_plots_its_progress(capsys, tmp_path):
    plot = tmp_path / "mlp_digits.png"
    history = load("mlp_digits").main(epochs=4, lr=3e-3, out=tmp_path, show_source=False)
    assert history["train loss"][-1] < history["train loss"][0] / 3
    assert history["test accuracy"][-1] >= 0.93 and len(history["test loss"]) == 4
    assert "plot saved" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_newton_needs_a_handful_of_steps_where_gradient_descent_needs_hundreds():
    newton_steps, descent_steps = load("newton").main(n=200)
    assert newton_steps <= 10 and descent_steps >= 100


def test_lectures_example_checks_every_number(capsys):
    load("lectures").main(pictures=False)
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "# from:" in out and "upstream" in out


@needs_dot
def test_lectures_example_draws_every_circuit(tmp_path):
    load("lectures").main(pictures=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "add_and_mul_gates.png", "fan_out.png", "log_product_and_sin.png", "logistic_loss.png",
        "sigmoid_neuron.png"]


def test_gaussian_process_fit_is_a_stationary_point_of_the_likelihood(capsys, tmp_path):
    """At L-BFGS-B's answer the likelihood's slope, by central differences of a NumPy
    Cholesky, is 0; the noise is the data's, and the plot is written."""
    module = load("gaussian_process")
    params = module.main(out=tmp_path)
    x, y = module.data()

    def nll(p):
        log_ls, log_sf, log_sn = p
        K = np.exp(2 * log_sf - 0.5 * (x[:, None] - x[None]) ** 2 / np.exp(2 * log_ls)) \
            + np.exp(2 * log_sn) * np.eye(len(x))
        L = np.linalg.cholesky(K)
        a = np.linalg.solve(L, y)
        return 0.5 * a @ a + np.log(np.diag(L)).sum()
    p = np.array([params[k] for k in ("log_ls", "log_sf", "log_sn")])
    slope = [(nll(p + h) - nll(p - h)) / 2e-6 for h in np.eye(3) * 1e-6]
    assert np.max(np.abs(slope)) < 1e-3
    assert 0.15 < np.exp(params["log_sn"]) < 0.3  # the data's noise sd is 0.2
    assert (tmp_path / "gaussian_process.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lotka_volterra_fit_recovers_the_parameters(capsys, tmp_path):
    """The fit is within 10 % of the true parameters, its loss is an independent NumPy RK4's,
    whose central differences are 0 there (at the start they reach thousands), and the plot
    is written."""
    module = load("lotka_volterra")
    params = module.main(out=tmp_path)
    _, (prey, predators) = module.data()

    def loss(p):
        alpha, beta, delta, gamma = p
        def f(s):
            return np.array([alpha * s[0] - beta * s[0] * s[1],
                             delta * s[0] * s[1] - gamma * s[1]])
        s, h, path = np.array([10.0, 5.0]), 0.5 / 5, []
        for _ in prey:
            for _ in range(5):
                k1 = f(s)
                k2 = f(s + h / 2 * k1)
                k3 = f(s + h / 2 * k2)
                k4 = f(s + h * k3)
                s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            path.append(s)
        u, v = np.array(path).T
        return 0.5 * np.mean((u - prey) ** 2 + (v - predators) ** 2)
    names = ("alpha", "beta", "delta", "gamma")
    p = np.array([params[k] for k in names])
    for k, value in zip(names, p):
        assert value == pytest.approx(module.TRUE[k], rel=0.1), k
    assert f"loss {loss(p):.4f}" in capsys.readouterr().out
    slope = [(loss(p + h) - loss(p - h)) / (2 * h.max()) for h in np.diag(p * 1e-6)]
    assert np.max(np.abs(slope)) < 1e-2
    assert (tmp_path / "lotka_volterra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_formula_recovers_the_parameters(capsys):
    fitted = load("fit_formula").main(n=500, epochs=10, tolerance=0.05, show_source=False)
    assert set(fitted) == {"a", "b", "c"}


@pytest.mark.campaign  # Dask's own paths: test_dask.py, on a LocalCluster of processes
def test_dask_logistic_regression_reaches_scikit_learns_fit(capsys, tmp_path):
    import dask
    from sklearn.linear_model import LogisticRegression
    example = load("dask_logistic_regression")
    n, features, lam = 6000, 30, 1e-4
    result, history = example.main(n=n, features=features, rows=1000, lam=lam, tol=1e-9)
    out = capsys.readouterr().out
    assert "iteration   1  loss" in out and f"iteration {len(history):3d}" in out
    assert result.success and history[-1] < history[0]
    with dask.config.set(scheduler="threads"):  # the same data again, for an independent fit
        X, t = (a.compute() for a in example.write_data(tmp_path, n, features, 1000, seed=0))
    reference = LogisticRegression(C=1 / (lam * n), tol=1e-12, max_iter=10_000).fit(X, t)
    np.testing.assert_allclose(result.x[:features], reference.coef_[0], rtol=1e-4, atol=1e-6)
    assert result.x[features] == pytest.approx(reference.intercept_[0], rel=1e-4, abs=1e-6)
def test_mlp_digits_runs_without_tqdm_and_matplotlib(capsys, tmp_path, monkeypatch):
    for optional in ("tqdm", "matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, optional, None)  # importing it raises ImportError
    history = load("mlp_digits").main(epochs=1, out=tmp_path, show_source=False)
    out = capsys.readouterr().out
    assert "no progress bar" in out and "no plot" in out and "epoch   1" in out
    assert not (tmp_path / "mlp_digits.png").exists() and len(history["test accuracy"]) == 1


def test_scipy_fits_agree_and_recover_the_formula(capsys):
    fits, fitted = load("scipy_fits").main(n=300)
    (lbfgs, by_lbfgs), (newton, by_newton) = fits["L-BFGS-B"], fits["Newton-CG"]
    assert lbfgs.success and newton.success and abs(lbfgs.fun - newton.fun) < 1e-8
    assert by_lbfgs["w"].shape == (30,) and isinstance(by_newton["b"], float)
    assert fitted == {"a": pytest.approx(2.0, abs=0.05), "b": pytest.approx(1.5, abs=0.05),
                      "c": pytest.approx(0.5, abs=0.05)}
    assert "training accuracy" in capsys.readouterr().out


def test_the_examples_leave_a_clean_clone_clean(tmp_path):
    """The examples that write files, run with their default outputs from a clean copy of the
    repository's files (a fresh git repository of them, as they are in this tree), the current
    folder in it: they write into a temporary folder they name, never into the repository or
    the current folder, so git status stays empty."""
    import shutil
    import subprocess
    root, clone = EXAMPLES.parent, tmp_path / "clone"
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (root / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, clone / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clean"]):
        subprocess.run(git + command, cwd=clone, check=True)
    # each example's main() with its command-line defaults, from the clone's copy, cwd in the
    # clone, in one interpreter (one start-up); mlp_digits for one epoch (a full run takes half
    # a minute). The others write nothing.
    names = ("lectures", "mlp_digits", "gaussian_process", "lotka_volterra")
    code = "import runpy, sys\n" + "".join(
        f"print('=== {name}')\n"
        f"sys.argv = [{str(clone / 'examples' / f'{name}.py')!r}]\n"
        f"m = runpy.run_path(sys.argv[0], run_name='example')\n"
        + ("m['main'](epochs=1, show_source=False)\n" if name == "mlp_digits" else
           "m['main']()\n") for name in names)
    # -P: symdiff as installed, not the copy's package in the current folder
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=clone, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = done.stdout.split("=== ")[1:]
    assert [o.split("\n", 1)[0] for o in outputs] == list(names)
    for output in outputs:
        assert "symdiff-" in output, f"{output.split()[0]} did not name its output folder"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status

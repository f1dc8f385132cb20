"""A 64-128-10 ReLU network on scikit-learn's 8x8 digits, trained with Adam in the kernel.

This is the lectures' closing exercise: the forward and backward pass of an MLP, trained with
minibatch gradient descent, without a framework's autograd. Here the backward pass is
generated: `sd.compile` differentiates the softmax cross-entropy loss, and
`step.step(opt, ...)` runs the loss, the gradients of all four parameters and Adam's update
of the parameters and of its moment estimates in one kernel call per minibatch.

Each epoch it records the training and test loss and accuracy, shows a progress bar (with
tqdm) and at the end saves a plot of them (with matplotlib); both are optional:
`pip install -e ".[examples]"` installs them with scikit-learn. Without them the example
prints one line per epoch and says where the plot would have gone. The plot goes into the
folder given with --out, else into a new temporary folder, whose name it prints.

    python examples/mlp_digits.py [--out FOLDER]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# NumPy and SciPy (whose BLAS the kernel's matmuls use) each bring an OpenBLAS with its own
# threads; alternating small matmuls between them (the kernel's steps, NumPy's predictions)
# makes the two pools wait on each other, many times slower on a busy machine. One BLAS
# thread each is fastest at these sizes. (Read when NumPy loads: set before importing it.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import symdiff as sd  # noqa: E402

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError:
    sys.exit('This example needs scikit-learn: pip install -e ".[examples]"')


def compile_step(features, hidden, classes):
    """Mean softmax cross-entropy of relu(X W1 + b1) W2 + b2, with its parameter gradients."""
    X = sd.tensor("X", ("n", features))
    y = sd.tensor("y", ("n",), dtype=int)
    W1, b1 = sd.tensor("W1", (features, hidden)), sd.tensor("b1", (hidden,))
    W2, b2 = sd.tensor("W2", (hidden, classes)), sd.tensor("b2", (classes,))
    logits = sd.relu(X @ W1 + b1) @ W2 + b2
    loss = sd.mean(sd.softmax_cross_entropy(logits, y))
    return sd.compile(loss, wrt=[W1, b1, W2, b2])


def init_params(features, hidden, classes, rng):
    """He initialisation for the ReLU layer, Glorot for the output layer, zero biases."""
    return {"W1": rng.normal(0.0, np.sqrt(2.0 / features), (features, hidden)),
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, np.sqrt(2.0 / (hidden + classes)), (hidden, classes)),
            "b2": np.zeros(classes)}


def predict(params, X):
    """Class predictions, in NumPy: the compiled step gives the loss, not the logits."""
    hidden = np.maximum(X @ params["W1"] + params["b1"], 0.0)
    return np.argmax(hidden @ params["W2"] + params["b2"], axis=1)


def epochs_bar(epochs: int, progress: bool):
    """The epochs, under a tqdm progress bar when asked for and tqdm is installed."""
    if progress:
        try:
            from tqdm import tqdm
            return tqdm(range(1, epochs + 1), desc="training", unit="epoch")
        except ImportError:
            print('(no progress bar: pip install tqdm, or pip install -e ".[examples]")')
    return range(1, epochs + 1)


def plot(history: dict, path) -> bool:
    """Save the loss and accuracy per epoch to `path`; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no window
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = np.arange(1, len(history["train loss"]) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, what in ((left, "loss"), (right, "accuracy")):
        for split, style in (("train", "-o"), ("test", "-s")):
            label = "train (mean over the epoch's steps)" if split == "train" and \
                what == "loss" else f"{split} (end of epoch)"
            ax.plot(epochs, history[f"{split} {what}"], style, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    left.set_yscale("log")
    left.set_title("softmax cross-entropy (log scale)")
    right.set_title("accuracy")
    figure.suptitle("64-128-10 MLP on digits, Adam in symdiff's kernel")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(epochs=30, hidden=128, batch_size=64, lr=1e-3, seed=0, progress=True, out=None,
         show_source=True):
    """Train; return the history ({train/test loss/accuracy: one value per epoch}). The
    training loss is the mean of the losses the steps returned during the epoch; the others
    are measured at its end. The plot is written to `out`/mlp_digits.png (`out` None: a new
    temporary folder; False: no plot)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)  # pixels 0..16 -> [0, 1]
    rng = np.random.default_rng(seed)
    classes = 10

    start = time.perf_counter()
    step = compile_step(X.shape[1], hidden, classes)
    params = init_params(X.shape[1], hidden, classes, rng)
    opt = sd.optim.Adam(lr)
    scratch = {name: value.copy() for name, value in params.items()}
    step.step(opt, X=X_train[:1], y=y_train[:1], **scratch)  # starts Adam's step's compile
    step.wait()  # the kernel's (compiling since sd.compile) and the step's
    compile_seconds = time.perf_counter() - start
    stages = ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in step.timings.items())
    print(f"compile {compile_seconds:.2f} s ({stages})")
    opt.init(params)  # zero moments and step count: training starts here

    history = {key: [] for key in ("train loss", "test loss", "train accuracy",
                                   "test accuracy")}
    start = time.perf_counter()
    bar = epochs_bar(epochs, progress)
    for epoch in bar:
        total, order = 0.0, rng.permutation(len(X_train))
        for first in range(0, len(order), batch_size):  # the last batch may be short
            batch = order[first:first + batch_size]
            total += step.step(opt, X=X_train[batch], y=y_train[batch], **params) * len(batch)
        test_loss = step.value_and_grad(X=X_test, y=y_test, **params)[0]
        for key, value in (("train loss", total / len(X_train)), ("test loss", test_loss),
                           ("train accuracy", np.mean(predict(params, X_train) == y_train)),
                           ("test accuracy", np.mean(predict(params, X_test) == y_test))):
            history[key].append(float(value))
        line = "   ".join(f"{key} {values[-1]:.4f}" for key, values in history.items())
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"test accuracy {history['test accuracy'][-1]:.3f}")
        else:
            print(f"epoch {epoch:3d}   {line}")
    seconds = time.perf_counter() - start

    print(f"training {seconds:.2f} s for {epochs} epochs of {len(X_train)} samples "
          f"({opt.count} Adam steps)")
    print(f"final: {line}")
    if out is not False:
        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="symdiff-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "mlp_digits.png"
        print(f"plot saved to {path}" if plot(history, path) else
              'no plot: pip install matplotlib, or pip install -e ".[examples]"')
    if show_source:
        print("\nThe generated kernel, forward then adjoint (step.kernel_source):\n")
        print(step.kernel_source)
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="the folder for the plot (default: a new temporary one)")
    accuracy = main(out=parser.parse_args().out)["test accuracy"][-1]
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f} is below 0.95"

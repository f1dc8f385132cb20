"""Logistic regression on scikit-learn's breast-cancer data, trained with symdiff's gradients.

The model and its loss are written once with `sd.tensor`; `sd.compile` turns them into one
Numba kernel that returns the loss and its exact gradients. The batch dimension "n" is
symbolic, so the same kernel serves every minibatch, the short last one included. Training is
minibatch SGD with momentum, by hand; predictions use NumPy on the learned w and b.

    python examples/logistic_regression.py
"""
import sys
import time

import numpy as np

import symdiff as sd

try:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
except ImportError:
    sys.exit('This example needs scikit-learn: pip install -e ".[examples]"')


def load_data(seed):
    """Standardized (train split statistics only) features and 0/1 labels, train and test."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train.astype(float), y_test


def compile_step(features, lam):
    """The regularised loss of logistic regression, compiled with its gradients by w and b."""
    X = sd.tensor("X", ("n", features))
    y = sd.tensor("y", ("n",))
    w = sd.tensor("w", (features,))
    b = sd.tensor("b")
    logits = X @ w + b
    loss = sd.mean(sd.binary_cross_entropy_with_logits(logits, y)) + lam * 0.5 * sd.sum(w * w)
    return sd.compile(loss, wrt=[w, b])


def minibatches(n, batch_size, rng):
    """Index arrays of one shuffled epoch; the last batch may be short."""
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def main(epochs=30, batch_size=64, lr=0.1, momentum=0.9, lam=1e-3, seed=0, report_every=5,
         show_program=True):
    """Train, print the train loss every few epochs and the test accuracy; return both."""
    X_train, X_test, y_train, y_test = load_data(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    step = compile_step(X_train.shape[1], lam)
    params = {"w": np.zeros(X_train.shape[1]), "b": np.zeros(())}
    step.value_and_grad(X=X_train[:1], y=y_train[:1], **params)  # the kernel compiled in sd.compile
    print(f"compile {time.perf_counter() - start:.2f} s")

    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    losses = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        total = 0.0
        for batch in minibatches(len(X_train), batch_size, rng):
            loss, grads = step.value_and_grad(X=X_train[batch], y=y_train[batch], **params)
            for name in params:  # SGD with momentum: v <- mu v - lr g; p <- p + v
                velocity[name] = momentum * velocity[name] - lr * grads[name]
                params[name] = params[name] + velocity[name]
            total += loss * len(batch)
        losses.append(total / len(X_train))
        if epoch == 1 or epoch % report_every == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}   train loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - start

    predictions = (X_test @ params["w"] + params["b"]) > 0  # NumPy: sigmoid(logit) > 1/2
    accuracy = float(np.mean(predictions == y_test))
    print(f"training {seconds:.2f} s for {epochs} epochs of {len(X_train)} samples")
    print(f"test accuracy {accuracy:.3f} on {len(X_test)} samples")
    if show_program:
        print("\nThe compiled step, forward then adjoint (step.program):\n")
        print(step.program)
    return losses, accuracy


if __name__ == "__main__":
    _, accuracy = main()
    assert accuracy >= 0.94, f"test accuracy {accuracy:.3f} is below 0.94"

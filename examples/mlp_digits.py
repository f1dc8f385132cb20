"""A 64-128-10 ReLU network on scikit-learn's 8x8 digits, trained with symdiff's gradients.

This is the lectures' closing exercise: the forward and backward pass of an MLP, trained
with minibatch gradient descent, without a framework's autograd. Here the backward pass is
generated: `sd.compile` differentiates the softmax cross-entropy loss and emits one Numba
kernel for the loss and the gradients of all four parameters; its source is printed at the end.

    python examples/mlp_digits.py
"""
import sys
import time

import numpy as np

import symdiff as sd

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


def main(epochs=20, hidden=128, batch_size=64, lr=0.1, momentum=0.9, seed=0, show_source=True):
    """Train, printing the loss per epoch and the timings; return (losses, test accuracy)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)  # pixels 0..16 -> [0, 1]
    rng = np.random.default_rng(seed)
    classes = 10

    start = time.perf_counter()
    step = compile_step(X.shape[1], hidden, classes)
    params = init_params(X.shape[1], hidden, classes, rng)
    step.value_and_grad(X=X_train[:1], y=y_train[:1], **params)  # the kernel compiled in sd.compile
    compile_seconds = time.perf_counter() - start
    stages = ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in step.timings.items())
    print(f"compile {compile_seconds:.2f} s ({stages})")

    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    losses = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        total = 0.0
        order = rng.permutation(len(X_train))
        for first in range(0, len(order), batch_size):  # the last batch may be short
            batch = order[first:first + batch_size]
            loss, grads = step.value_and_grad(X=X_train[batch], y=y_train[batch], **params)
            for name in params:  # SGD with momentum: v <- mu v - lr g; p <- p + v
                velocity[name] = momentum * velocity[name] - lr * grads[name]
                params[name] = params[name] + velocity[name]
            total += loss * len(batch)
        losses.append(total / len(X_train))
        print(f"epoch {epoch:3d}   train loss {losses[-1]:.4f}")
    train_seconds = time.perf_counter() - start

    accuracy = float(np.mean(predict(params, X_test) == y_test))
    print(f"training {train_seconds:.2f} s for {epochs} epochs of {len(X_train)} samples")
    print(f"test accuracy {accuracy:.3f} on {len(X_test)} samples")
    if show_source:
        print("\nThe generated kernel, forward then adjoint (step.source):\n")
        print(step.source)
    return losses, accuracy


if __name__ == "__main__":
    _, accuracy = main()
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f} is below 0.95"

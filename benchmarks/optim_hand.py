"""The hand-written references of the `optim` workload: fused Numba Adam steps.

What an expert writes without symdiff: one njit function per step that computes the loss and
the gradients and applies Adam (Kingma & Ba) to every parameter and moment estimate in
place, the bias corrections computed inside from the step number t.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .logreg import hand_value_and_grad

B1, B2, EPS = 0.9, 0.999, 1e-8


@njit(error_model="numpy", cache=True)
def adam(p, g, m, v, lr, t):
    """Adam on flat arrays, in place."""
    step, root = lr / (1.0 - B1 ** t), math.sqrt(1.0 - B2 ** t)
    for k in range(p.size):
        m[k] = B1 * m[k] + (1.0 - B1) * g[k]
        v[k] = B2 * v[k] + (1.0 - B2) * g[k] * g[k]
        p[k] -= step * (m[k] / (math.sqrt(v[k]) / root + EPS))


@njit(error_model="numpy", cache=True)
def logreg_adam_step(X, t, w, b, gw, g, m, v, lr, step):
    """Loss, gradient and Adam on (w, b) in place; b is a 1-entry array, g, m, v have 31."""
    loss, gb = hand_value_and_grad(X, t, w, b[0], gw)
    g[:-1] = gw
    g[-1] = gb
    adam(w, g[:-1], m[:-1], v[:-1], lr, step)
    adam(b, g[-1:], m[-1:], v[-1:], lr, step)
    return loss


@njit(error_model="numpy", cache=True)
def mlp_adam_step(X, y, W1, b1, W2, b2, mW1, vW1, mb1, vb1, mW2, vW2, mb2, vb2, lr, step):
    """The 2-layer ReLU MLP's softmax cross-entropy, its gradients and Adam, in place."""
    n, classes = X.shape[0], W2.shape[1]
    a = np.dot(X, W1) + b1
    h = np.maximum(a, 0.0)
    z = np.dot(h, W2) + b2
    dz = np.empty_like(z)
    loss = 0.0
    for i in range(n):
        top = z[i, 0]
        for j in range(1, classes):
            top = max(top, z[i, j])
        total = 0.0
        for j in range(classes):
            dz[i, j] = math.exp(z[i, j] - top)
            total += dz[i, j]
        loss += math.log(total) + top - z[i, y[i]]
        for j in range(classes):
            dz[i, j] /= total * n
        dz[i, y[i]] -= 1.0 / n
    gW2, gb2 = np.dot(h.T, dz), dz.sum(axis=0)
    dh = np.dot(dz, W2.T)
    da = np.where(a > 0.0, dh, 0.0)
    gW1, gb1 = np.dot(X.T, da), da.sum(axis=0)
    adam(W1.ravel(), gW1.ravel(), mW1.ravel(), vW1.ravel(), lr, step)
    adam(b1, gb1, mb1, vb1, lr, step)
    adam(W2.ravel(), gW2.ravel(), mW2.ravel(), vW2.ravel(), lr, step)
    adam(b2, gb2, mb2, vb2, lr, step)
    return loss / n

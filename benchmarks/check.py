"""Correctness before timing: every system's value and gradients must equal symdiff's.

Results are compared as flat float64 vectors, so that a system may return its gradients as a
dict, a tuple or one stacked array, from NumPy, JAX or PyTorch.
"""
from __future__ import annotations

import numpy as np

RTOL = 1e-7


def flatten(result) -> np.ndarray:
    """All numbers in `result` (nested tuples, lists, dicts, arrays, tensors) as one vector."""
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (tuple, list)):
        parts = [flatten(part) for part in result]
        return np.concatenate(parts) if parts else np.empty(0)
    if hasattr(result, "detach"):  # a PyTorch tensor
        result = result.detach().numpy()
    return np.ravel(np.asarray(result, dtype=np.float64))


def assert_same(system: str, result, reference, what: str = "value and gradients",
                rtol: float = RTOL) -> None:
    """Raise AssertionError unless `result` equals `reference` (symdiff's) to `rtol`."""
    actual, expected = flatten(result), flatten(reference)
    assert actual.shape == expected.shape, \
        f"{system}: {what} has {actual.size} numbers, symdiff's has {expected.size}"
    atol = rtol * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{system}: {what} differs from symdiff's")

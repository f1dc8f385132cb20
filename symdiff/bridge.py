"""SciPy's optimizers on compiled models: named parameters <-> one flat vector.

Input: a compiled model (or Jacobian) and the fixed data it is called with. Output: the
callables `scipy.optimize` takes, over the flat vector of the parameters in `wrt` (in that
order, each raveled in C order): `fun(x) -> (value, gradient)` for `minimize(..., jac=True)`,
`hessp(x, p)` (a Hessian-vector product by forward over reverse mode), `hess(x)` (dense, for
small models); for `least_squares`, the residuals `fun(x)` and their Jacobian `jac(x)`.
`flatten` and `unflatten` convert between the vector and named arrays of the right shapes.
"""
from __future__ import annotations

import numpy as np

from .errors import ArgumentError, ShapeError
from .ir import format_shape

_FLOAT64 = np.dtype(np.float64)


class Layout:
    """Where each parameter of `wrt` lives in the flat vector."""

    def __init__(self, compiled):
        shapes = {n.attr("name"): n.shape for n in compiled.program.inputs}
        self.names, self.shapes, self.slices = tuple(compiled.wrt), [], []
        start = 0
        for name in self.names:
            shape = shapes[name]
            if any(isinstance(d, str) for d in shape):
                raise ShapeError(f"{name} has the symbolic shape {format_shape(shape)}; a flat "
                                 f"parameter vector needs fixed shapes")
            size = int(np.prod(shape, dtype=np.int64))
            self.shapes.append(shape)
            self.slices.append(slice(start, start + size))
            start += size
        self.size = start
        # (name, start, stop, shape, how a view is made: 0 a float, 1 a slice, 2 reshaped)
        self._parts = [(name, where.start, where.stop, shape, min(len(shape), 2))
                       for name, shape, where in zip(self.names, self.shapes, self.slices)]

    def flatten(self, params: dict | None = None, /, **named) -> np.ndarray:
        """The flat float64 vector of the parameters given by name (every one of `wrt`), in
        a dict, as keywords, or both."""
        params = {**(params or {}), **named}
        missing = [n for n in self.names if n not in params]
        unknown = [n for n in params if n not in self.names]
        if missing or unknown:
            raise ArgumentError(f"flatten takes the parameters {', '.join(self.names)}; "
                                f"missing: {', '.join(missing) or 'none'}, unknown: "
                                f"{', '.join(unknown) or 'none'}")
        x = np.empty(self.size)
        for name, shape, where in zip(self.names, self.shapes, self.slices):
            value = np.asarray(params[name], dtype=np.float64)
            if value.shape != shape:
                raise ShapeError(f"{name} must have shape {format_shape(shape)}, not "
                                 f"{value.shape}")
            x[where] = value.ravel()
        return x

    def unflatten(self, x) -> dict:
        """{name: array of its shape} (a copy; a scalar parameter as a float)."""
        x = self._vector(x)
        return {name: float(x[where][0]) if not shape else x[where].reshape(shape).copy()
                for name, shape, where in zip(self.names, self.shapes, self.slices)}

    def views(self, x) -> dict:
        """{name: a view of x with its shape}, scalars as Python floats: what a kernel call
        takes fastest (Numba's dispatcher types a NumPy scalar more slowly than a float)."""
        views = {}
        for name, start, stop, shape, how in self._parts:
            views[name] = x.item(start) if how == 0 else x[start:stop] if how == 1 else \
                x[start:stop].reshape(shape)
        return views

    def gather(self, values: dict) -> np.ndarray:
        """The flat vector of per-parameter results (gradients, products) by name."""
        out = np.empty(self.size)
        for name, start, stop, _, how in self._parts:
            if how == 0:
                out[start] = values[name]
            else:
                out[start:stop] = values[name] if how == 1 else values[name].ravel()
        return out

    def _vector(self, x) -> np.ndarray:
        if x.__class__ is np.ndarray and x.dtype is _FLOAT64 and x.shape == (self.size,):
            return x  # as SciPy passes it: no conversion to pay for
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.size,):
            raise ShapeError(f"the parameter vector must have shape ({self.size},), "
                             f"not {x.shape}")
        return x


class Objective(Layout):
    """A scalar model and its fixed data, as `scipy.optimize.minimize` wants them."""

    def __init__(self, compiled, data: dict):
        super().__init__(compiled)
        clash = [n for n in data if n in self.names]
        if clash:
            raise ArgumentError(f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} "
                                f"optimised; pass only the other inputs as data")
        self.compiled, self.data = compiled, dict(data)

    def fun(self, x):
        """(value, gradient) at x: for minimize(..., jac=True)."""
        value, grads = self.compiled.value_and_grad(**self.data, **self.views(self._vector(x)))
        return value, self.gather(grads)

    def hessp(self, x, p) -> np.ndarray:
        """The Hessian at x times p, one kernel call."""
        v = self.views(self._vector(p))
        return self.gather(self.compiled.hvp(v, **self.data, **self.views(self._vector(x))))

    def hess(self, x) -> np.ndarray:
        """The dense Hessian at x (one Hessian-vector product per parameter entry)."""
        return self.compiled.hessian(**self.data, **self.views(self._vector(x)))


class Residuals(Layout):
    """A vector-valued model (from `sd.jacobian`) and its data, for `least_squares`."""

    def __init__(self, jacobian, data: dict):
        super().__init__(jacobian.compiled)
        self.jacobian, self.data = jacobian, dict(data)

    def fun(self, x) -> np.ndarray:
        """The residuals at x, flattened."""
        value, _ = self.jacobian.compiled.jvp({}, **self.data, **self.views(self._vector(x)))
        return np.ravel(value)

    def jac(self, x) -> np.ndarray:
        """d residuals / d x: shape (residuals, parameters)."""
        return self.jacobian(**self.data, **self.views(self._vector(x)))


def scipy_objective(compiled, /, **data) -> Objective:
    """The objective of `scipy.optimize.minimize` for a compiled scalar model, over the flat
    vector of its `wrt` parameters; `data` are the model's other inputs, fixed.

    >>> import scipy.optimize, symdiff as sd
    >>> f = sd.compile("(a - 3)**2 + (b + 1)**2", wrt=["a", "b"])
    >>> objective = sd.scipy_objective(f)
    >>> result = scipy.optimize.minimize(objective.fun, objective.flatten(a=0.0, b=0.0),
    ...                                  jac=True, method="L-BFGS-B")
    >>> {k: round(v, 6) for k, v in objective.unflatten(result.x).items()}
    {'a': 3.0, 'b': -1.0}
    """
    return Objective(compiled, data)


def scipy_residuals(jacobian, /, **data) -> Residuals:
    """`fun` and `jac` of `scipy.optimize.least_squares` for a vector-valued model compiled
    with `sd.jacobian`, over the flat vector of its `wrt` parameters; `data` fixed."""
    return Residuals(jacobian, data)

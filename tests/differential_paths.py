"""The paths a compiled formula is called through, each compared with the formula oracle.

Input: a formula, its `FormulaOracle`, points and a path (tier, dtype, reduce, batch size,
call). Output: a list of `Problem`s (empty when every result agrees with the oracle), each
naming its class, the path, the point, expected and got, so that a failure reads as a report.
The differential tests assert the list is empty; the campaign script collects them.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass

import mpmath as mp
import numpy as np

import symdiff as sd
from formula_eval import Reject
from formula_oracle import FormulaOracle, Sample, mismatch

LR = 0.03125  # a power of two: p - lr*g rounds once


@dataclass
class Problem:
    kind: str      # crash, refusal, value, gradient, second-order, float32
    path: str
    formula: str
    point: dict
    detail: str

    def __str__(self):
        point = ", ".join(f"{k}={v!r}" for k, v in self.point.items())
        return f"[{self.kind}] {self.path}: {self.formula!r} at {point}: {self.detail}"


def report(problems) -> str:
    return "\n".join(str(p) for p in problems[:10]) + \
        (f"\n... and {len(problems) - 10} more" if len(problems) > 10 else "")


def _error(e: BaseException, path, text, point) -> Problem:
    kind = "refusal" if isinstance(e, sd.SymdiffError) else "crash"
    head = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[0][:300]
    return Problem(kind, path, text, point, head)


def compile_formula(text, oracle, path, **options):
    """(compiled, []) or (None, [the crash or refusal])."""
    try:
        return sd.compile(text, wrt=list(oracle.names), **options), []
    except Exception as e:  # noqa: BLE001 - every failure to compile a valid formula is reported
        return None, [_error(e, f"compile {path}", text, {})]


def _value_kind(sample: Sample, got, fmt):
    return mismatch(got, sample.kind, sample.value, sample.R, fmt)


def scalar_paths(text: str, oracle: FormulaOracle, points: list[dict], tier: str,
                 fmt: str = "float64", calls=("value_and_grad", "call", "grad")) -> list:
    """value_and_grad, __call__, grad (and sgd_step if asked) at each point."""
    path = f"tier={tier} dtype={fmt}"
    f, problems = compile_formula(text, oracle, path, tier=tier, dtype=fmt)
    if f is None:
        return problems
    kind = "float32" if fmt == "float32" else None
    for point in points:
        try:
            sample = oracle.sample(point)
        except Reject:
            continue
        args = {n: _cast(point[n], fmt) for n in oracle.names}
        for call in calls:
            where = f"{path} {call}"
            try:
                if call == "sgd_step":
                    if f.wrt:  # nothing to step for a constant model
                        problems += _sgd_step(f, text, sample, args, where, fmt)
                    continue
                value, grads = _results(f, call, args)
            except Exception as e:  # noqa: BLE001
                problems.append(_error(e, where, text, point))
                continue
            if value is not None and (why := _value_kind(sample, value, fmt)):
                problems.append(Problem(kind or "value", where, text, point, why))
            for name, got in (grads or {}).items():
                if name in sample.grads and (why := mismatch(got, "number", *sample.grads[name],
                                                              fmt)):
                    problems.append(Problem(kind or "gradient", where, text, point,
                                            f"d/d{name}: {why}"))
    return problems


def _cast(v, fmt):
    return np.float32(v) if fmt == "float32" else float(v)


def _results(f, call, args):
    if call == "value_and_grad":
        return f.value_and_grad(**args)
    if call == "call":
        return f(**args), None
    return None, f.grad(**args)


def _sgd_step(f, text, sample, args, where, fmt) -> list:
    """sgd_step returns the loss before the step and moves each parameter by -lr * grad."""
    dtype = np.float32 if fmt == "float32" else np.float64
    params = {n: np.array(args[n], dtype=dtype) for n in f.wrt}
    value = f.sgd_step(LR, **{**args, **params})
    problems = []
    if why := _value_kind(sample, value, fmt):
        problems.append(Problem("value", where, text, args, why))
    for name, (g, R) in sample.grads.items():
        old = mp.mpf(float(args[name]))
        expected = old - LR * g
        bound = LR * (R + abs(g)) + abs(expected) + abs(old)  # the product and the difference
        if why := mismatch(params[name], "number", expected, bound, fmt):
            problems.append(Problem("gradient", where, text, args, f"{name} after the step: {why}"))
    return problems


def batch_rows(oracle: FormulaOracle, batch: list[str], scalars: dict, rng, n: int):
    """(distinct samples, their rows, row index of each of the n entries) or None if a row
    sits on a kink. Large batches repeat up to 37 distinct rows in a random order, so each
    entry still has its own oracle and a misplaced chunk reads a different row."""
    m = min(n, 37)
    rows = []
    for _ in range(m):
        row = dict(scalars)
        for b in batch:
            row[b] = float(rng.choice([0.0, 1.0, -1.0, 0.5])) if rng.random() < 0.1 \
                else float(rng.uniform(-3, 3))
        rows.append(row)
    try:
        samples = [oracle.sample(r) for r in rows]
    except Reject:
        return None
    index = np.arange(n) if n == m else rng.integers(0, m, n)
    return samples, rows, index


def batch_path(text, oracle, batch, reduce, sizes, tier, scalars, seed) -> list:
    """value_and_grad over batches of each size in `sizes`, one compiled model for all."""
    path = f"tier={tier} batch={batch} reduce={reduce}"
    f, problems = compile_formula(text, oracle, path, tier=tier, batch=batch, reduce=reduce)
    if f is None:
        return problems
    rng = np.random.default_rng(seed)
    for n in sizes:
        drawn = batch_rows(oracle, batch, scalars, rng, n)
        if drawn is None:
            continue
        samples, rows, index = drawn
        args = {**scalars, **{b: np.array([rows[i][b] for i in index]) for b in batch}}
        where = f"{path} n={n} value_and_grad"
        point = {**scalars, **{b: f"<{n} values, first {rows[index[0]][b]!r}>" for b in batch}}
        try:
            value, grads = f.value_and_grad(**args)
        except Exception as e:  # noqa: BLE001
            problems.append(_error(e, where, text, point))
            continue
        try:  # the value alone: the same Program's forward statements, chunked alike
            alone = f(**args)
        except Exception as e:  # noqa: BLE001
            problems.append(_error(e, f"{path} n={n} f()", text, point))
            continue
        if not np.array_equal(alone, value, equal_nan=True):
            problems.append(Problem("value", f"{path} n={n} f()", text, point,
                                    f"f() gave {alone!r}, value_and_grad {value!r}"))
        picked = [samples[i] for i in index]
        problems += _batch_value(value, picked, reduce, where, text, point)
        for name in f.wrt:
            problems += _batch_gradient(grads[name], picked, name, name in batch, reduce,
                                        where, text, point)
    return problems


def _reduced(entries, reduce, n):
    """(exact, R) of the sum or mean of (exact, R) entries over the batch."""
    total = mp.fsum(e for e, _ in entries)
    R = mp.fsum(r for _, r in entries) + (n - 1) * mp.fsum(abs(e) for e, _ in entries)
    if reduce == "mean":
        return total / n, R / n + abs(total / n)
    return total, R


def _batch_value(value, samples, reduce, where, text, point) -> list:
    n = len(samples)
    if reduce is None:
        for i, s in enumerate(samples):
            if why := _value_kind(s, np.asarray(value)[i], "float64"):
                return [Problem("value", where, text, point, f"entry {i}: {why}")]
        return []
    if any(s.kind != "number" for s in samples):
        return []
    exact, R = _reduced([(s.value, s.R) for s in samples], reduce, n)
    why = mismatch(value, "number", exact, R, "float64")
    return [Problem("value", where, text, point, why)] if why else []


def _batch_gradient(got, samples, name, is_batch, reduce, where, text, point) -> list:
    n = len(samples)
    got = np.asarray(got, dtype=np.float64)
    per_entry = reduce is None or is_batch
    if per_entry:
        expected_shape = (n,)
    else:
        expected_shape = ()
    if got.shape != expected_shape:
        return [Problem("gradient", where, text, point,
                        f"d/d{name} has shape {got.shape}, expected {expected_shape}")]
    if per_entry:
        scale = n if (is_batch and reduce == "mean") else 1
        for i, s in enumerate(samples):
            if name in s.grads:
                g, R = s.grads[name]
                why = mismatch(got[i], "number", g / scale, R / scale + abs(g / scale), "float64")
                if why:
                    return [Problem("gradient", where, text, point, f"d/d{name}[{i}]: {why}")]
        return []
    if any(name not in s.grads for s in samples):
        return []
    exact, R = _reduced([s.grads[name] for s in samples], reduce, n)
    why = mismatch(got, "number", exact, R, "float64")
    return [Problem("gradient", where, text, point, f"d/d{name}: {why}")] if why else []


def second_order_path(text, oracle, point, tier, directions) -> list:
    """jvp, hvp and hessian at one point, against SymPy's first and second derivatives."""
    path = f"tier={tier}"
    f, problems = compile_formula(text, oracle, path, tier=tier)
    if f is None or not oracle.names:
        return problems
    try:
        sample = oracle.sample(point)
    except Reject:
        return problems
    names = list(oracle.names)
    H = {(a, b): oracle.second(sample, point, a, b) for a in names for b in names}
    v = {n: directions[k % len(directions)] for k, n in enumerate(names)}
    checks = []
    if all(n in sample.grads for n in names):
        terms = [(sample.grads[n][0] * v[n], sample.grads[n][1] * abs(v[n])) for n in names]
        checks.append(("jvp", lambda: f.jvp(v, **point)[1], _combine(terms)))
    for a in names:
        row = [H[(a, b)] for b in names]
        if all(r is not None for r in row):
            terms = [(r[0] * v[b], r[1] * abs(v[b])) for r, b in zip(row, names)]
            checks.append((f"hvp[{a}]", lambda a=a: f.hvp(v, **point)[a], _combine(terms)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if H[(a, b)] is not None:
                checks.append((f"hessian[{a},{b}]", lambda i=i, j=j: f.hessian(**point)[i, j],
                               H[(a, b)]))
    for label, call, (exact, R) in checks:
        try:
            got = call()
        except Exception as e:  # noqa: BLE001
            problems.append(_error(e, f"{path} {label}", text, point))
            break
        if why := mismatch(got, "number", exact, R, "float64"):
            problems.append(Problem("second-order", f"{path} {label}", text, point, why))
    return problems


def _combine(terms):
    """(sum, R) of (exact, R) terms."""
    total = mp.fsum(t for t, _ in terms)
    return total, mp.fsum(r for _, r in terms) + len(terms) * mp.fsum(abs(t) for t, _ in terms)


def jacobian_path(text, oracle, batch, scalars, tier, seed, n=5) -> list:
    """sd.jacobian of the per-sample values over a batch, by the scalar inputs."""
    wrt = [name for name in oracle.names if name not in batch]
    path = f"tier={tier} jacobian batch={batch}"
    if not wrt:
        return []
    try:
        J = sd.jacobian(text, wrt=wrt, batch=batch, tier=tier)
    except Exception as e:  # noqa: BLE001
        return [_error(e, f"compile {path}", text, {})]
    drawn = batch_rows(oracle, batch, scalars, np.random.default_rng(seed), n)
    if drawn is None:
        return []
    samples, rows, index = drawn
    args = {**scalars, **{b: np.array([rows[i][b] for i in index]) for b in batch}}
    point = {**scalars, **{b: list(args[b]) for b in batch}}
    try:
        got = np.asarray(J(**args))
    except Exception as e:  # noqa: BLE001
        return [_error(e, path, text, point)]
    if got.shape != (n, len(wrt)):
        return [Problem("gradient", path, text, point, f"shape {got.shape}, expected {(n, len(wrt))}")]
    for i, s in enumerate(samples):
        for j, name in enumerate(wrt):
            if name in s.grads and (why := mismatch(got[i, j], "number", *s.grads[name],
                                                    "float64")):
                return [Problem("gradient", path, text, point, f"J[{i}, {name}]: {why}")]
    return []

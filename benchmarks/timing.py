"""Timing shared by the workloads: warm-up, systems interleaved in rounds, medians, ratios.

A system is a callable of no arguments. After a warm-up call each one gets a repeat count that
makes one measurement last about `budget` seconds. Every round then measures each system once,
in an order rotated from round to round, so that load from other processes falls on all the
systems alike. A system's time is the median over rounds of its time per call; its ratio to the
baseline is taken within each round, then summarised by its median and its range.
"""
from __future__ import annotations

import gc
import math
import statistics
import time

BASELINE = "symdiff"


def measure(fn, number: int = 1) -> float:
    """Seconds per call of `fn`, over `number` calls with the garbage collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


def compare(systems: dict, rounds: int, budget: float) -> dict[str, list[float]]:
    """{name: [seconds per call in each round]} for the callables in `systems`."""
    numbers = {}
    for name, fn in systems.items():
        fn()  # warm-up: first-call work (compiles, caches) stays out of the measurements
        once = min(measure(fn) for _ in range(3))
        numbers[name] = max(1, math.ceil(budget / max(once, 1e-9)))
    names = list(systems)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(measure(systems[name], numbers[name]))
    return times


def checked_times(calls: dict, quick: bool, budget: float) -> dict[str, list[float]]:
    """compare() of callables that return (value, gradients), after checking each one's
    result against symdiff's; `budget` is the full run's (a quick run takes a third)."""
    from .check import assert_same
    reference = calls[BASELINE]()
    for name, fn in calls.items():
        assert_same(name, fn(), reference)
    return compare(calls, rounds=5 if quick else 15, budget=budget / 3 if quick else budget)


def ratios(times: dict[str, list[float]], name: str, baseline: str = BASELINE) -> list[float]:
    """The time of `name` over the baseline's, round by round."""
    return [t / b for t, b in zip(times[name], times[baseline])]


def table(times: dict[str, list[float]], per: float = 1.0, label: str = "time per call",
          extra: dict[str, dict[str, str]] | None = None, baseline: str = BASELINE) -> str:
    """A Markdown table: system, median time (over `per`), ratio to the baseline (median and
    range over rounds), then the `extra` columns, {title: {system: text}}."""
    extra = extra or {}
    header = ["system", label, f"× {baseline} (median)", f"× {baseline} (range over rounds)",
              *extra]
    body = []
    for name, values in times.items():
        r = ratios(times, name, baseline)
        body.append([name, format_time(statistics.median(values) / per),
                     f"{statistics.median(r):.2f}", f"{min(r):.2f}–{max(r):.2f}",
                     *(column.get(name, "") for column in extra.values())])
    return markdown(header, body)


def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= 0.9995 * scale:  # so that 0.9996 s prints as 1 s, not 1e+03 ms
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def markdown(header: list[str], body: list[list]) -> str:
    """A Markdown table; numbers are right-aligned."""
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    lines = [header, align, *body]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)

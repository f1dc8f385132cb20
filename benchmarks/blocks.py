"""blocks: a large batch in blocks of rows against one kernel call over the whole batch.

A 30-32-10 ReLU MLP (softmax cross-entropy) over 100,000 and 500,000 rows (100,000 with
--quick): `value_and_grad`, a plain SGD step, a private step (per-example clipping at C = 1,
noise multiplier 1.1), `jvp` and `hvp`, each as symdiff runs it (in blocks:
codegen/blocks.py) and with the blocks switched off for the call (the module's byte bounds
set to infinity), so that the kernel runs over the whole batch in its 16 chunks, as every
call did before blocks and as a private step, `jvp` and `hvp` did until they had blocks of
their own. The steps use a rate of 0, so the parameters stay where they are. Before timing,
each pair is checked to agree (the loss to 1e-13, relative; `hvp`'s products, which carry no
loss, to 1e-12 in norm), and the loss in blocks to have `value_and_grad`'s bits.
"""
from __future__ import annotations

import numpy as np

from .threads import model_and_data
from .timing import compare, format_time, markdown, ratios

SIZES, QUICK_SIZES = (100_000, 500_000), (100_000,)
BUDGET = 0.2  # seconds per measurement


def one_call(fn):
    """`fn` with the blocks switched off while it runs."""
    from symdiff.codegen import blocks

    def call():
        bounds = blocks.LARGE_BYTES, blocks.STREAM_BYTES
        blocks.LARGE_BYTES = blocks.STREAM_BYTES = float("inf")
        try:
            return fn()
        finally:
            blocks.LARGE_BYTES, blocks.STREAM_BYTES = bounds
    return call


def operations(n: int) -> dict:
    """{operation: a call returning (loss, ...)} for the MLP over n rows."""
    import symdiff as sd
    f, arguments = model_and_data("MLP 30-32-10", n)
    rng = np.random.default_rng(1)
    tangents = {w: rng.normal(size=np.shape(arguments[w])) for w in f.wrt}
    plain = sd.optim.SGD(0.0)
    private = sd.optim.SGD(0.0, per_example_clip=1.0, noise_multiplier=1.1,
                           rng=np.random.default_rng(2))
    return {"value_and_grad": lambda: f.value_and_grad(**arguments),
            "step (SGD)": lambda: (f.step(plain, **arguments), None),
            "private step": lambda: (f.step(private, **arguments), None),
            "jvp": lambda: f.jvp(tangents, **arguments),
            "hvp": lambda: (None, f.hvp(tangents, **arguments))}  # no loss


def run(quick: bool = False) -> str:
    body = []
    for n in QUICK_SIZES if quick else SIZES:
        calls = operations(n)
        loss = calls["value_and_grad"]()[0]
        for name, fn in calls.items():
            (blocked, products), (whole, whole_products) = fn()[:2], one_call(fn)()[:2]
            if blocked is None:  # hvp
                for w, product in products.items():
                    gap = np.linalg.norm(product - whole_products[w])
                    assert gap <= 1e-12 * np.linalg.norm(whole_products[w]), f"{name}: {w}"
            else:
                assert blocked == loss, f"{name}: its loss in blocks is not value_and_grad's"
                assert abs(whole - loss) <= 1e-13 * abs(loss), f"{name}: {whole} against {loss}"
            times = compare({"in blocks": fn, "one call": one_call(fn)},
                            rounds=5 if quick else 15, budget=BUDGET)
            middle = {k: float(np.median(v)) for k, v in times.items()}
            spread = ratios(times, "one call", "in blocks")
            body.append([name, f"{n:,}", format_time(middle["in blocks"]),
                         format_time(middle["one call"]),
                         f"{np.median(spread):.2f} ({min(spread):.2f}–{max(spread):.2f})"])
    header = ["operation", "rows", "in blocks", "one kernel call", "one call ÷ blocks"]
    return ("## blocks: a 30-32-10 MLP over a large batch, in blocks of rows against one "
            "kernel call (medians over rounds)\n\n" + markdown(header, body))

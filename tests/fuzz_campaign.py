"""A fuzzing campaign: many random formulas and tensor models through every path, every
failure collected (the tests stop at the first), shrunk, and written as JSON lines.

    python tests/fuzz_campaign.py --formulas 3000 --tensors 200 --out /tmp/fuzz.jsonl

Each formula runs on the tape tier (value_and_grad, __call__, grad, sgd_step), over batches
(reduce mean/sum/None, n = 1, 3, 1000) and through jvp/hvp/hessian on the tape; every
`--kernel-every`-th formula also on the kernel tier, in float32 and through sd.jacobian. Each
failure is shrunk (subtrees replaced by a child, `x` or `1`) while the same path still fails
with the same kind, and written with its minimal formula. Run from the repository root.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from differential_paths import (batch_path, jacobian_path, scalar_paths,  # noqa: E402
                                second_order_path)
from formula_grammar import MODEST_CONSTANTS, POINT_VALUES, formula  # noqa: E402
from formula_oracle import FormulaOracle  # noqa: E402
from tensor_oracle import ACTS, HEADS, make_case, middles_for, tensor_problems  # noqa: E402

CALLS = ("value_and_grad", "call", "grad", "sgd_step")


def random_point(seed, names, fmt="float64"):
    rng = random.Random(seed)
    point = {n: rng.choice(POINT_VALUES) if rng.random() < 0.25 else rng.uniform(-3, 3)
             for n in names}
    return {n: float(np.float32(v)) for n, v in point.items()} if fmt == "float32" else point


def paths_for(i: int, seed: int, kernel_every: int):
    """{label: function(text) -> problems} for formula number i."""
    rng = random.Random(seed)
    reduce = rng.choice(["mean", "sum", None])
    coin = [rng.random() < 0.5 for _ in range(4)]

    def split(o):
        batch = [n for n, c in zip(o.names, coin) if c] or list(o.names[:1])
        scalars = {n: v for n, v in random_point(seed, o.names).items() if n not in batch}
        return batch, scalars

    def scalar(tier):
        def run(t):
            o = FormulaOracle(t)
            pts = [random_point(seed + k, o.names) for k in range(3)]
            return scalar_paths(t, o, pts, tier, calls=CALLS)
        return run

    def batch(tier):
        def run(t):
            o = FormulaOracle(t)
            if not o.names:
                return []
            b, s = split(o)
            return batch_path(t, o, b, reduce, (1, 3, 1000), tier, s, seed)
        return run

    def second(tier):
        def run(t):
            o = FormulaOracle(t)
            return second_order_path(t, o, random_point(seed, o.names), tier,
                                     [1.0, -0.5, 2.0, 0.0])
        return run

    def jacobian(t):
        o = FormulaOracle(t)
        if not o.names:
            return []
        b, s = split(o)
        return jacobian_path(t, o, b, s, "kernel", seed)

    paths = {"tape scalar": scalar("tape"), f"tape batch {reduce}": batch("tape"),
             "tape second order": second("tape")}
    if i % kernel_every == 0:
        paths.update({"kernel scalar": scalar("kernel"), f"kernel batch {reduce}": batch("kernel"),
                      "kernel second order": second("kernel"), "kernel jacobian": jacobian})
    return paths


def float32_path(seed):
    def run(t):
        o = FormulaOracle(t, "float32")
        return scalar_paths(t, o, [random_point(seed + k, o.names, "float32") for k in range(3)],
                            "kernel", "float32")
    return run


def safe(run, text, seconds: int = 300):
    """run(text), an oracle or harness error (or `seconds` without an answer) reported as
    its own kind."""
    def out_of_time(*_):
        raise TimeoutError(f"no answer in {seconds} s")
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(seconds)
    try:
        return run(text)
    except Exception as e:  # noqa: BLE001
        head = "".join(traceback.format_exception_only(type(e), e)).strip()[:300]
        return [_Harness(text, head)]
    finally:
        signal.alarm(0)


class _Harness:
    kind, path, point = "harness", "oracle", {}

    def __init__(self, formula, detail):
        self.formula, self.detail = formula, detail


def shrink(text: str, run, kind: str, budget: int = 60) -> str:
    """The smallest formula found for which `run` still reports a problem of `kind`."""
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for candidate in _smaller(text):
            tries += 1
            if tries > budget:
                break
            if any(p.kind == kind for p in safe(run, candidate)):
                text, improved = candidate, True
                break
    return text


def _smaller(text: str):
    tree = ast.parse(text, mode="eval")
    nodes = [n for n in ast.walk(tree.body) if isinstance(n, ast.expr)]
    seen = set()
    for node in nodes:
        kids = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)
                and not (isinstance(node, ast.Call) and c is node.func)]
        for replacement in kids + [ast.Name("x"), ast.Constant(1)]:
            new = _replace(tree, node, replacement)
            if new and new != text and len(new) < len(text) and new not in seen:
                seen.add(new)
                yield new


def _replace(tree, target, replacement):
    """The text of `tree` with the subtree `target` replaced by `replacement`."""
    clone = copy.deepcopy(tree)
    mapping = dict(zip(map(id, ast.walk(tree)), ast.walk(clone)))
    target_clone = mapping[id(target)]
    repl = copy.deepcopy(replacement)

    class S(ast.NodeTransformer):
        def visit(self, node):
            return repl if node is target_clone else self.generic_visit(node)
    try:
        return ast.unparse(ast.fix_missing_locations(S().visit(clone)))
    except Exception:  # noqa: BLE001
        return None


def record(out, problem, label, original):
    """One finding: the problem as the minimal formula shows it, and the formula it came from."""
    out.write(json.dumps({"kind": problem.kind, "path": problem.path, "label": label,
                          "minimal": problem.formula, "original": original,
                          "point": {k: str(v) for k, v in problem.point.items()},
                          "detail": problem.detail}) + "\n")
    out.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--formulas", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0,
                        help="start at this formula number (--formulas is the end)")
    parser.add_argument("--tensors", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kernel-every", type=int, default=15)
    parser.add_argument("--out", default="/tmp/fuzz.jsonl")
    args = parser.parse_args()
    counts, shrunk = {}, {}
    with open(args.out, "a") as out:
        for i in range(args.first, args.formulas):
            seed = args.seed * 10**7 + i
            rng = random.Random(seed)
            text = formula(rng.randrange, rng.randint(1, 8))
            paths = paths_for(i, seed, args.kernel_every)
            if i % args.kernel_every == 0:
                f32 = formula(rng.randrange, rng.randint(1, 5), MODEST_CONSTANTS, folds=False)
                paths["kernel float32"] = (f32, float32_path(seed))
            for label, run in paths.items():
                subject, run = run if isinstance(run, tuple) else (text, run)
                problems = safe(run, subject)
                counts[label] = counts.get(label, 0) + 1
                for kind in sorted({p.kind for p in problems}):
                    first = next(p for p in problems if p.kind == kind)
                    key = (kind, label, first.detail[:40])
                    if key not in shrunk:  # (a harness problem is kept as it came)
                        shrunk[key] = subject if kind == "harness" else shrink(subject, run,
                                                                                 kind)
                        again = [p for p in safe(run, shrunk[key]) if p.kind == kind]
                        record(out, again[0] if again else first, label, subject)
            if i % 50 == 0:
                print(f"{i} formulas", flush=True)
        for j in range(args.tensors):
            rng = random.Random(args.seed * 10**7 + j)
            reduce = rng.choice(["mean", "sum", None])
            case = make_case(act=rng.choice(sorted(ACTS)), middle=rng.choice(middles_for(reduce)),
                             static=False, head=rng.choice(HEADS), reduce=reduce,
                             a=rng.randint(1, 3), b=rng.randint(1, 3), k=rng.randint(1, 3),
                             n=rng.choice([1, 3, 7]), seed=rng.randrange(2**32),
                             dtype="float32" if rng.random() < 0.2 else "float64")
            # jvp, hvp and the Hessian exist for reduced (scalar) losses only
            case.second_order = case.reduce is not None and rng.random() < 0.3
            try:
                problems = tensor_problems(case)
            except Exception as e:  # noqa: BLE001
                problems = [f"{case}: harness: {e!r}"]
            for p in problems:
                out.write(json.dumps({"kind": "tensor", "label": "tensor", "detail": p}) + "\n")
            out.flush()
            if j % 20 == 0:
                print(f"{j} tensor models", flush=True)
    print("paths run:", counts)


if __name__ == "__main__":
    main()

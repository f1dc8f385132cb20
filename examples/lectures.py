"""The lectures' worked examples, compiled by symdiff and checked against the lectures' numbers.

For each example: the value and the gradients next to the numbers the lectures print, then the
lectures' backprop table as symdiff computes it (forward values, then each adjoint as upstream
times local gradient, under the `# from:` statement it comes from), and the circuit picture
(values above each wire, gradients below; needs Graphviz) written into the folder given with
--out, else into a new temporary folder, whose name it prints (the README's pictures are
`--out docs/circuits`). Exits non-zero if any number, from the kernel or from the table,
differs from the lecture's by more than 1e-9 relative, so it doubles as an acceptance test.

    python examples/lectures.py [--out FOLDER]
"""
import argparse
import re
import tempfile
from pathlib import Path

import symdiff as sd

TOLERANCE = 1e-9

# (title, formula, point, expected value, expected gradients), as the lectures work them.
EXAMPLES = [  # the first words of each title name its picture
    ("add and mul gates: f = (x + y)*z, q = x + y; df/dz = q, df/dq = df/dx = df/dy = z",
     "(x + y) * z", dict(x=-2.0, y=5.0, z=-4.0),
     -12.0, dict(x=-4.0, y=-4.0, z=3.0)),
    ("sigmoid neuron: df/dw2 = df/d(dot) = f*(1 - f)",
     "1/(1 + exp(-(w0*x0 + w1*x1 + w2)))", dict(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0),
     0.7310585786, dict(w0=-0.1966119332, w1=-0.3932238665, w2=0.1966119332,
                        x0=0.3932238665, x1=-0.5898357997)),
    ("log, product and sin: df/dx1 = 1/x1 + x2, df/dx2 = x1 - cos(x2)",
     "log(x1) + x1*x2 - sin(x2)", dict(x1=2.0, x2=5.0),
     11.6520714552, dict(x1=5.5, x2=1.7163378145)),
    ("fan-out: x2 is used twice, its adjoints are summed",
     "x1*x2 + sin(x2)", dict(x1=2.0, x2=5.0),
     9.0410757253, dict(x1=5.0, x2=2.2836621855)),
    ("logistic loss: dL/dW = -(1 - p)*X",
     "-y*log(1/(1 + exp(-W*X)))", dict(X=3.0, y=1.0, W=3.0),
     1.234021897e-4, dict(W=-3.701837280e-4)),
]


def relative_error(got, want):
    return abs(got - want) / max(abs(want), 1e-300)


def report_line(label, got, want):
    """Print one number next to the lecture's; return True when they agree."""
    ok = relative_error(got, want) <= TOLERANCE
    print(f"  {label:<8} {got!s:>22} {want!s:>16}   {'ok' if ok else 'MISMATCH'}")
    return ok


def run_example(title, formula, point, value, grads, pictures=None):
    """Compile, compare with the lecture (the kernel's numbers and the table's), print the
    table, draw the circuit into `pictures`; return the labels that disagree."""
    f = sd.compile(formula, wrt=list(grads))
    got_value, got_grads = f.value_and_grad(**point)
    table = f.explain(**point)
    print(f"== f = {formula}   at {', '.join(f'{k}={v:g}' for k, v in point.items())}")
    print(f"   {title}")
    print(f"  {'':<8} {'symdiff':>22} {'lecture':>16}")
    bad = [] if report_line("f", got_value, value) else ["f"]
    bad += [f"df/d{name}" for name, want in grads.items()
            if not report_line(f"df/d{name}", got_grads[name], want)]
    bad += [] if relative_error(table.value, value) <= TOLERANCE else ["f in the table"]
    bad += [f"df/d{name} in the table" for name, want in grads.items()
            if relative_error(table.gradients[f"d{name}"], want) > TOLERANCE]
    print("\n    " + str(table).replace("\n", "\n    ") + "\n")
    if pictures is not None:
        draw(f, point, pictures / (re.sub(r"\W+", "_", title.split(":")[0]).strip("_") + ".png"))
    return [f"{formula}: {label}" for label in bad]


def draw(f, point, path):
    """The circuit picture; a note instead where Graphviz is not installed."""
    try:
        f.graph(**point).save(path)
        print(f"  circuit: {path}\n")
    except sd.MissingToolError as e:
        print(f"  (no picture: {e})\n")


def main(pictures=None):
    """Run every example, drawing circuits into the folder `pictures` (None: a new temporary
    one; False: none); raise AssertionError naming each number that disagrees."""
    if pictures is False:
        pictures = None
    else:
        pictures = Path(pictures or tempfile.mkdtemp(prefix="symdiff-circuits-"))
        pictures.mkdir(parents=True, exist_ok=True)
        print(f"circuits go to {pictures}")
    mismatches = [m for example in EXAMPLES for m in run_example(*example, pictures)]
    assert not mismatches, "disagrees with the lectures: " + "; ".join(mismatches)
    print(f"all {len(EXAMPLES)} examples agree with the lectures to {TOLERANCE:g} relative")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="the folder for the circuit pictures "
                                      "(default: a new temporary one)")
    main(parser.parse_args().out)

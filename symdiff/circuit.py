"""The circuit diagram of a compiled model: a Trace -> Graphviz DOT text -> SVG or PNG.

Inputs on the left, the value on the right, one node per forward statement. Given inputs,
each wire carries the value flowing forward above it (green) and the adjoint flowing back
along it below (red): where a value feeds several statements each wire has its own adjoint,
and they sum at the source. Statements that the code generator fuses into one loop are boxed
together, or drawn as one node with `collapse=True` (big models). The DOT text needs nothing;
pictures need the `graphviz` Python package and Graphviz's `dot` program.
"""
from __future__ import annotations

import html
import shutil
from collections import Counter
from pathlib import Path

import sympy as sp

from .errors import ArgumentError, MissingToolError
from .explain import ADJOINT_COLOUR, FORWARD_COLOUR, summarize
from .ir import Node
from .ir import format_shape
from .optable import OPS
from .passes.fuse import fuse
from .printing import body_name
from .trace_values import Trace

_SYMBOLS = {"add": "+", "mul": "×", "sub": "−", "div": "÷", "neg": "−x", "matmul": "@",
            "stop_gradient": "stop", "take_along": "take", "concatenate": "concat"}
FONT = "Helvetica"


def short(value) -> str:
    """A wire's number as the lectures write it (-12.00, 0.73), or a tensor's shape and norm."""
    if value is None:
        return ""
    text = summarize(value)
    if " norm " in text:  # a tensor: its shape and norm
        shape, norm = text.split(" [")[0], text.split(" norm ")[1]
        return f"{shape} ‖{norm}‖"
    x = float(text)
    return f"{x:.2f}" if x == 0 or 0.01 <= abs(x) < 1e5 else f"{x:.2e}"


def op_label(node: Node) -> str:
    """The gate's symbol: + × − ÷ for arithmetic, the function's name (exp, sigmoid) else."""
    if node.op != "elementwise":
        return _SYMBOLS.get(node.op, node.op)
    body = node.attr("body")
    if isinstance(body, sp.Pow) and body.exp == -1:
        return "1/x"
    if isinstance(body, sp.Pow):
        return f"x^{body.exp}"
    name = body_name(body)
    return _SYMBOLS.get(name, name)


def to_dot(t: Trace, collapse: bool = False) -> str:
    """The DOT text of the circuit of `t` (with its values and adjoints, if it has them)."""
    groups = _fused_groups(t)
    member = {uid: k for k, g in enumerate(groups) for uid in g}
    lines = ["digraph circuit {",
             f'  graph [rankdir=LR, nodesep=0.3, ranksep=0.35, fontname="{FONT}", '
             f'label=<{html.escape(t.title)}>, labelloc=t, fontsize=14];',
             f'  node [fontname="{FONT}", fontsize=13]; edge [fontname="{FONT}", '
             'arrowsize=0.7, color="#444444"];']
    drawn: dict[int, str] = {}  # uid -> id of the DOT node drawing it
    fanned = _fanned_out(t)
    for node in t.forward:
        if node.uid in member and collapse:
            drawn[node.uid] = f"g{member[node.uid]}"
        else:
            drawn[node.uid] = f"n{node.uid}"
            lines.append(f"  n{node.uid} [{_node_style(t, node, fanned.get(node.uid))}];")
    for k, group in enumerate(groups):
        lines += _group_lines(t, k, group, collapse)
    sent = {(e.node.uid, e.k): e.grad for s in t.steps for e in s.edges}
    for node in t.forward:
        for k, source in enumerate(node.inputs):
            tail, head = drawn[source.uid], drawn[node.uid]
            if tail != head:
                grad = sent.get((node.uid, k))
                lines += _wire(t, f"w{node.uid}_{k}", tail, head, source,
                               None if grad is None else t.value(grad))
    top = t.program.output("value")
    lines.append('  value [shape=plaintext, label=<<b>f</b>>];')
    seed = t.steps[0].adjoint if t.steps else None
    lines += _wire(t, "w_value", drawn[top.uid], "value", top,
                   None if seed is None else t.value(seed))
    return "\n".join(lines + ["}"]) + "\n"


def _node_style(t: Trace, node: Node, total=None) -> str:
    """A gate; an input's name, with the sum of its wires' adjoints where it fans out."""
    name = html.escape(t.names.get(node.uid, ""))
    if node.op == "dim":
        name = html.escape(node.attr("name"))
    if node.op in ("input", "const", "dim"):
        summed = "" if total is None else \
            (f'<br/><font point-size="11" color="{ADJOINT_COLOUR}">'
             f"Σ {html.escape(short(total))}</font>")
        return f'shape=plaintext, label=<<b>{name or html.escape(t.text(node))}</b>{summed}>'
    symbol = html.escape(op_label(node))
    shape = "circle" if len(symbol) <= 2 else "ellipse"
    return (f'shape={shape}, margin=0.02, label=<<font point-size="16">{symbol}</font><br/>'
            f'<font point-size="9" color="#777777">{name}</font>>')


def _fanned_out(t: Trace) -> dict:
    """{uid: total adjoint} of the inputs whose value feeds several wires (values given)."""
    if t.values is None:
        return {}
    uses = Counter(i.uid for n in t.forward for i in n.inputs)
    return {s.node.uid: t.value(s.adjoint) for s in t.steps
            if s.node.op == "input" and uses[s.node.uid] > 1}


def _wire(t: Trace, wire: str, tail: str, head: str, source: Node, grad) -> list[str]:
    """An edge tail -> head; with values, through a label node: the value above the line,
    the adjoint below (the line of the label table continues the wire)."""
    if t.values is None:
        return [f"  {tail} -> {head};"]
    value = html.escape(short(t.value(source)))
    below = html.escape(short(grad)) if grad is not None else "&nbsp;"
    label = (f'<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
             f'<tr><td><font color="{FORWARD_COLOUR}">{value}</font></td></tr><hr/>'
             f'<tr><td><font color="{ADJOINT_COLOUR}">{below}</font></td></tr></table>')
    return [f"  {wire} [shape=plaintext, margin=0, width=0, height=0, fontsize=11, "
            f"label=<{label}>];",
            f"  {tail} -> {wire} [arrowhead=none, headport=w];",
            f"  {wire} -> {head} [tailport=e];"]


def _fused_groups(t: Trace) -> list[list[int]]:
    """uids of forward statements the code generator runs in one loop (two or more)."""
    forward = {n.uid for n in t.forward}
    groups = []
    for unit in fuse(t.program):
        uids = [s.node.uid for s in unit.stmts if s.node.uid in forward]
        if unit.loop and unit.space and len(uids) > 1:
            groups.append(uids)
    return groups


def _group_lines(t: Trace, k: int, group: list[int], collapse: bool) -> list[str]:
    nodes = [t.node_by_uid[uid] for uid in group]
    last = nodes[-1]  # a reduction's loop runs over its operand
    space = format_shape(last.inputs[0].shape if OPS[last.op].kind == "reduce" else last.shape)
    if collapse:
        ops = html.escape(", ".join(op_label(n) for n in nodes))
        names = html.escape(f"{t.names[group[0]]} … {t.names[group[-1]]}")
        return [f'  g{k} [shape=box, style="rounded,dashed", label=<<b>fused loop</b> over '
                f'{space}<br/>{ops}<br/><font point-size="9" color="#777777">{names}</font>>];']
    inside = set(group)  # gates, and the wires between them, so the box runs left to right
    wires = [f"w{n.uid}_{j}" for n in nodes for j, i in enumerate(n.inputs) if i.uid in inside]
    members = " ".join(f"n{uid};" for uid in group) + "".join(
        f" {w};" for w in wires if t.values is not None)
    return [f'  subgraph cluster_{k} {{ style="rounded,dashed"; color="#999999"; '
            f'label=<<font point-size="9">fused loop over {space}</font>>; {members} }}']


class Circuit:
    """The circuit picture of a model: `dot` is its DOT text; `svg()`, `save(path)` and
    Jupyter's display render it with Graphviz."""

    def __init__(self, trace: Trace, collapse: bool = False):
        self.trace, self.collapse = trace, collapse
        self.dot = to_dot(trace, collapse)

    def __repr__(self):
        return f"<symdiff.Circuit {self.trace.title!r}: {len(self.trace.forward)} nodes>"

    def render(self, format: str = "svg") -> bytes:
        """The picture as bytes in `format` (svg, png, pdf: what Graphviz writes)."""
        return _graphviz().Source(self.dot, engine="dot").pipe(format=format)

    def svg(self) -> str:
        return self.render("svg").decode()

    def _repr_svg_(self):
        return self.svg()

    def save(self, path) -> Path:
        """Write the picture to `path`: .svg, .png or .pdf by its suffix, .dot for the text."""
        path = Path(path)
        kind = path.suffix.lstrip(".").lower()
        if kind == "dot":
            path.write_text(self.dot, encoding="utf-8")
        elif kind in ("svg", "png", "pdf"):
            path.write_bytes(self.render(kind))
        else:
            raise ArgumentError(f"save {path.name}: the suffix must be .svg, .png, .pdf or "
                                f".dot, not {path.suffix or 'none'}")
        return path


def _graphviz():
    """The graphviz package, once both it and the `dot` program are there."""
    try:
        import graphviz
    except ImportError:
        raise MissingToolError("drawing a circuit needs the graphviz Python package: "
                               "pip install 'symdiff[viz]' (Circuit.dot has the DOT text "
                               "without it)") from None
    if shutil.which("dot") is None:
        raise MissingToolError("drawing a circuit needs Graphviz's dot program, which is not "
                               "on PATH: install Graphviz with the system's package manager "
                               "(apt-get install graphviz, brew install graphviz, conda "
                               "install graphviz); Circuit.dot has the DOT text without it")
    return graphviz

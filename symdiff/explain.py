"""The lectures' backprop table of a compiled model at given inputs: a Trace -> rows -> text
or HTML.

One row per input and per statement of the Program, forward part first with its values; then
the reverse walk, one group per `# from:` statement: what arrives there (the upstream adjoint)
and, for each input of that statement, the local gradient, the product sent back and the
Program statement computing it. Adjoints the Program never names (`dx = z`: the adjoint of x is
z itself) still get their row, so the table reads like a hand-worked one. Tensors show their
shape, first entries and norm.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .functions import OUT, local_derivative, placeholder
from .functions import evaluate_body
from .printing import format_body, format_origin, format_stmt
from .trace_values import Edge, Trace

FORWARD_COLOUR, ADJOINT_COLOUR = "#1b7a2f", "#c0261e"  # the lectures': values green, grads red


def summarize(value, digits: int = 10, compact: bool = False) -> str:
    """A number in full (to `digits` significant digits); an array as shape, first entries, norm.

    >>> summarize(np.float64(-12.0)), summarize(np.arange(6.0).reshape(2, 3))
    ('-12', '(2, 3) [0, 1, 2, …] norm 7.416')
    """
    if value is None:
        return ""
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.{digits}g}"
    flat = value.ravel().astype(np.float64)
    if compact:
        return f"{_shape(value)} norm {np.linalg.norm(flat):.4g}"
    head = ", ".join(f"{x:.4g}" for x in flat[:3]) + (", …" if flat.size > 3 else "")
    return f"{_shape(value)} [{head}] norm {np.linalg.norm(flat):.4g}"


def _shape(value: np.ndarray) -> str:
    return "(" + ", ".join(map(str, value.shape)) + ("," if value.ndim == 1 else "") + ")"


@dataclass
class Row:
    """One line of the table; `kind` is input, forward, seed, from, edge, adjoint or output."""

    kind: str
    text: str  # the statement; for an edge, the adjoint it adds to ("dx", "dx2 +=")
    value: object = None  # the statement's value; for an edge, the product
    upstream: object = None  # edge: the adjoint arriving at the `# from:` statement
    local: str = ""  # edge: the local gradient, d(statement)/d(input), or the rule applied
    local_value: object = None  # edge: its value (None where it is not a number per entry)
    statement: str = ""  # edge, adjoint: the Program statement computing it, or what it is


def rows(t: Trace) -> list[Row]:
    """The table's rows for a Trace (values blank when it has none)."""
    program, names = t.program, t.names
    forward = {n.uid for n in t.forward}
    table = [Row("input", names[n.uid], t.value(n)) for n in program.inputs]
    table += [Row("forward", format_stmt(s.node, names), t.value(s.node))
              for s in program.stmts if s.node.uid in forward]
    if not t.steps:
        return table
    top = t.steps[0]
    table.append(Row("seed", f"d{names[top.node.uid]}", t.value(top.adjoint),
                     statement=f"{t.text(top.adjoint)} (the seed)"))
    uses = Counter(e.source.uid for s in t.steps for e in s.edges)
    groups: dict[int | None, list] = {}
    for s in program.stmts:
        if s.node.uid not in forward:
            groups.setdefault(s.origin.uid if s.origin is not None else None, []).append(s)
    for step in t.steps:
        stmts, edges = groups.pop(step.node.uid, []), list(step.edges)
        if not stmts and not edges:
            continue
        arrives = f"d{names[step.node.uid]}"
        if t.text(step.adjoint) != arrives:
            arrives += f" = {t.text(step.adjoint)}"
        table.append(Row("from", format_origin(step.node, names), t.value(step.adjoint),
                         statement=arrives))
        for s in stmts:
            edge = next((e for e in edges if e.grad is s.node), None)
            if edge is None:
                table.append(Row("adjoint", s.name, t.value(s.node),
                                 statement=format_stmt(s.node, names)))
                continue
            edges.remove(edge)
            table.append(_edge_row(t, edge, uses, format_stmt(s.node, names)))
        table += [_edge_row(t, e, uses, f"{t.text(e.grad)} itself") for e in edges]
    for s in groups.get(None, []):
        table.append(Row("adjoint", s.name, t.value(s.node), statement=format_stmt(s.node, names)))
    table += [Row("output", label, value) for label, value in t.outputs.items()]
    return table


def _edge_row(t: Trace, edge: Edge, uses: Counter, statement: str) -> Row:
    target = f"d{t.text(edge.source)}" + (" +=" if uses[edge.source.uid] > 1 else "")
    local, local_value = _local(t, edge)
    return Row("edge", target, t.value(edge.grad), t.value(t.step_of(edge.node).adjoint),
               local, local_value, statement)


def _local(t: Trace, edge: Edge) -> tuple[str, object]:
    """d node / d input k: for an elementwise op, its derivative and value; for another op,
    the adjoint its rule sends back (the local gradient is not one number per entry)."""
    v = edge.node
    if v.op != "elementwise":
        return f"rule: {t.expression(edge.grad)}", None
    derivative = local_derivative(v.attr("body"), edge.k)
    symbols = {placeholder(i).name: t.text(x) for i, x in enumerate(v.inputs)}
    text = format_body(derivative, {**symbols, OUT.name: t.text(v)})
    if t.values is None:
        return text, None
    env = {placeholder(i).name: t.value(x) for i, x in enumerate(v.inputs)}
    return text, evaluate_body(derivative, {**env, OUT.name: t.value(v)})


@dataclass
class Explanation:
    """The backprop table of a model at given inputs; prints as text, shows as HTML."""

    title: str
    arguments: dict
    rows: list[Row]

    @property
    def value(self):
        return next(r.value for r in self.rows if r.kind == "output" and r.text == "value")

    @property
    def gradients(self) -> dict:
        """{output label: value} of the gradients the Program returns ("dx": ...)."""
        return {r.text: r.value for r in self.rows if r.kind == "output" and r.text != "value"}

    def __str__(self):
        return render_text(self)

    def _repr_html_(self):
        return render_html(self)


def explain(t: Trace, arguments: dict) -> Explanation:
    return Explanation(t.title, dict(arguments), rows(t))


def _point(arguments: dict) -> str:
    return ", ".join(f"{k} = {summarize(v, 6, compact=True)}" for k, v in arguments.items())


def render_text(e: Explanation) -> str:
    """The table as aligned plain text: the forward pass, then the backward pass."""
    forward = [("  " + r.text, summarize(r.value), "", "", "") for r in e.rows
               if r.kind in ("input", "forward")]
    backward = [_text_cells(r) for r in e.rows if r.kind in ("seed", "from", "edge", "adjoint")]
    head_f, head_b = ("forward", "value", "", "", ""), _HEADER
    cells = [c for c in forward + backward + [head_f, head_b] if isinstance(c, tuple)]
    widths = [max(len(c[k]) for c in cells) for k in range(4)]
    lines = [f"{e.title}   at {_point(e.arguments)}", "", _line(head_f, widths)]
    lines += [_line(c, widths) for c in forward]
    if backward:
        lines += ["", _line(head_b, widths)]
        lines += [c if isinstance(c, str) else _line(c, widths) for c in backward]
    outputs = ", ".join(f"{r.text} = {summarize(r.value)}" for r in e.rows if r.kind == "output")
    return "\n".join(lines + ["", outputs])


_HEADER = ("backward", "product", "upstream", "× local gradient", "computed by")


def _text_cells(r: Row) -> tuple[str, ...] | str:
    """The cells of a row; a `# from:` line is one string across the columns."""
    if r.kind == "from":
        return f"# from: {r.text}   (arrives: {r.statement})"
    local = _local_text(r)
    return ("  " + r.text, summarize(r.value), summarize(r.upstream, compact=True),
            "× " + local if r.local_value is not None else local, r.statement)


def _line(cells, widths) -> str:
    name, value, upstream, local, statement = cells
    return (f"{name:<{widths[0]}}  {value:>{widths[1]}}  {upstream:>{widths[2]}}  "
            f"{local:<{widths[3]}}  {statement}").rstrip()


def _local_text(r: Row) -> str:
    """`z = -4`, or `1` alone where the expression is its value."""
    if r.local_value is None:
        return r.local
    value = summarize(r.local_value, compact=True)
    return value if r.local == value else f"{r.local} = {value}"


def render_html(e: Explanation) -> str:
    """The table as an HTML <table>, forward values green and adjoints red."""
    out = [f'<table class="symdiff-explain"><caption>{html.escape(e.title)} at '
           f"{html.escape(_point(e.arguments))}</caption>",
           "<tr><th>statement</th><th>value</th><th>upstream</th><th>local gradient</th>"
           "<th>computed by</th></tr>"]
    heads = {"input": "forward", "seed": "backward: product = upstream × local gradient",
             "output": "returned"}
    for r in e.rows:
        if r.kind in heads:
            out.append(f'<tr class="section"><th colspan="5">{heads.pop(r.kind)}</th></tr>')
        out.append(_html_row(r))
    return "\n".join(out + ["</table>"])


def _html_row(r: Row) -> str:
    esc = html.escape
    green, red = f'style="color:{FORWARD_COLOUR}"', f'style="color:{ADJOINT_COLOUR}"'
    if r.kind == "from":
        return (f'<tr class="row-from"><td colspan="5"><code># from: {esc(r.text)}</code> '
                f"&nbsp; arrives <code>{esc(r.statement)}</code></td></tr>")
    colour = green if r.kind in ("input", "forward", "output") and r.text == "value" \
        or r.kind in ("input", "forward") else red
    local = esc(_local_text(r))
    return (f'<tr class="row-{r.kind}"><td><code>{esc(r.text)}</code></td>'
            f'<td class="num" {colour}>{esc(summarize(r.value))}</td>'
            f'<td class="num" {red}>{esc(summarize(r.upstream, compact=True))}</td>'
            f"<td><code>{local}</code></td><td><code>{esc(r.statement)}</code></td></tr>")

"""The one-page report of a compiled model: a Compiled and inputs -> a self-contained HTML file.

The page holds the model, its value and gradients from the kernel, the circuit picture (inline
SVG; the DOT text when Graphviz is missing), the backprop table, the generated source with
each `# from:` comment linked to the forward line it quotes, and the compile timings. Styles
are inline and nothing is loaded from elsewhere, so the file can be mailed or archived alone.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from .circuit import Circuit
from .errors import MissingToolError
from .explain import ADJOINT_COLOUR, FORWARD_COLOUR, explain, render_html, summarize
from .trace_values import trace_compiled

STYLE = f"""
body {{ font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 76em;
       color: #222; line-height: 1.4; padding: 0 1em; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; border-bottom: 1px solid #ddd;
       margin-top: 2em; }}
code, pre {{ font-family: Menlo, Consolas, monospace; font-size: 0.85em; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; line-height: 1.35; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ padding: 0.15em 0.7em; text-align: left; vertical-align: top; }}
th {{ border-bottom: 1px solid #bbb; }}
tr.section th {{ padding-top: 0.8em; font-weight: 600; color: #555; }}
td.num {{ white-space: nowrap; text-align: right; font-family: Menlo, Consolas, monospace;
          font-size: 0.85em; }}
tr.row-from td {{ background: #f3f3f3; padding-top: 0.4em; }}
.forward {{ color: {FORWARD_COLOUR}; }} .adjoint {{ color: {ADJOINT_COLOUR}; }}
.circuit {{ overflow-x: auto; }}
a.from {{ color: #555; }} span.target {{ background: #fff3c4; }}
"""


def write_report(compiled, path, arguments: dict) -> Path:
    """Write the report of `compiled` at `arguments` to `path`; returns the path."""
    t = trace_compiled(compiled, arguments)
    value, grads, *_ = compiled.value_and_grad(**arguments)
    sections = [
        ("model", "Model", _model(compiled, arguments)),
        ("result", "Value and gradients (from the kernel)", _result(value, grads)),
        ("circuit", "Circuit: values above each wire, adjoints below", _picture(t)),
        ("table", "Backprop table", render_html(explain(t, arguments))),
        ("source", "Generated source", _source(compiled.kernel_source)),
        ("timings", "Compile timings", _timings(compiled.timings)),
    ]
    body = "\n".join(f'<section id="{key}"><h2>{html.escape(title)}</h2>\n{content}</section>'
                     for key, title, content in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>symdiff: {html.escape(compiled.title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>symdiff: <code>{html.escape(compiled.title)}</code></h1>\n"
            f"{body}\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def _model(compiled, arguments: dict) -> str:
    rows = "".join(f"<tr><td><code>{html.escape(name)}</code></td>"
                   f'<td class="num forward">{html.escape(summarize(arguments[name]))}</td>'
                   f"<td>{'differentiated' if name in compiled.wrt else ''}</td></tr>"
                   for name in compiled.inputs)
    return (f"<p><code>{html.escape(compiled.title)}</code>, run by the "
            f"{html.escape(compiled.tier)} tier.</p>"
            f"<table><tr><th>input</th><th>value</th><th></th></tr>{rows}</table>")


def _result(value, grads: dict) -> str:
    rows = f'<tr><td>value</td><td class="num forward">{html.escape(summarize(value))}</td></tr>'
    rows += "".join(f'<tr><td><code>d{html.escape(w)}</code></td><td class="num adjoint">'
                    f"{html.escape(summarize(g))}</td></tr>" for w, g in grads.items())
    return f"<table>{rows}</table>"


def _picture(t) -> str:
    circuit = Circuit(t, collapse=len(t.forward) > 20)
    try:
        svg = circuit.svg()
    except MissingToolError as e:
        return f"<p>{html.escape(str(e))}</p><pre>{html.escape(circuit.dot)}</pre>"
    return f'<div class="circuit">{svg[svg.index("<svg"):]}</div>'


_ASSIGN = re.compile(r"^\s*([A-Za-z_]\w*)(\[[^\]]*\])?\s*\+?=")


def _source(source: str) -> str:
    """The source, one anchor per line; each `# from: v = ...` links to the line defining v."""
    lines = source.splitlines()
    defined = {}
    for number, line in enumerate(lines, 1):
        match = _ASSIGN.match(line)
        if match and not line.lstrip().startswith("#"):
            defined.setdefault(match.group(1), number)
    out = []
    for number, line in enumerate(lines, 1):
        text = html.escape(line)
        quoted = line.strip().removeprefix("# from: ")
        name = quoted.split(" = ")[0] if line.strip().startswith("# from: ") else None
        if name in defined:
            text = text.replace("# from: ", f'<a class="from" href="#L{defined[name]}">'
                                f"# from:</a> ", 1)
        out.append(f'<span id="L{number}">{text}</span>')
    return "<pre>" + "\n".join(out) + "</pre>"


def _timings(timings: dict) -> str:
    rows = "".join(f'<tr><td>{html.escape(stage)}</td><td class="num">{seconds:.3f} s</td></tr>'
                   for stage, seconds in timings.items())
    return f"<table><tr><th>stage</th><th>time</th></tr>{rows}</table>"

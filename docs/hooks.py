"""MkDocs hooks: the parts of the pages that are made from the code when the site is built.

- `<!-- function table -->` becomes the table of formula functions, one row per record in
  `symdiff/functions.py` (built-in and composite) with its aliases, so a new record is listed
  when it lands.
- `<!-- lecture: TITLE -->` becomes one of the lectures' worked examples from
  `examples/lectures.py` (the example whose title starts with TITLE): its backprop table, and
  its circuit as an inline SVG drawn by Graphviz (a note instead where `dot` is missing).
"""
import importlib.util
import logging
import re
from pathlib import Path

import sympy as sp

log = logging.getLogger("mkdocs.hooks.symdiff")
ROOT = Path(__file__).resolve().parent.parent
LONG = 60  # a composite's definition longer than this is summarised, not printed


def on_page_markdown(markdown, page, config, files):
    markdown = markdown.replace("<!-- function table -->", function_table())
    return re.sub(r"<!-- lecture: (.+?) -->", lambda m: lecture(m.group(1)), markdown)


def function_table() -> str:
    """The formula functions as a Markdown table, from the records."""
    from symdiff.functions import BUILTINS, FUNCTIONS
    rows = ["| function | arguments | also | defined as | tests sample |", "|---|---|---|---|---|"]
    for name in sorted(n for n in BUILTINS if not FUNCTIONS[n].internal):
        f = FUNCTIONS[name]
        api = f" (`sd.{f.api}`)" if f.api and f.api != name else ""
        rows.append(f"| `{name}`{api} | {_arguments(f)} | "
                    f"{' '.join(f'`{a}`' for a in f.aliases)} | {_defined_as(f)} | "
                    f"[{f.domain[0]:g}, {f.domain[1]:g}] |")
    return "\n".join(rows)


def _arguments(f) -> str:
    if not f.params:
        return {1: "x", 2: "x, y", None: "a, b, …"}.get(f.arity, f"{f.arity} values")
    defaults = getattr(f, "defaults", ())  # the last parameters' values when a call omits them
    names = [p.name for p in f.params]
    given = len(names) - len(defaults)
    return ", ".join(names[:given] + [f"{n}={d!r}" for n, d in zip(names[given:], defaults)])


def _defined_as(f) -> str:
    if f.definition is None:
        return "primitive"
    text = sp.sstr(f.definition)
    if len(text) <= LONG:
        return f"`{text}`"
    return f"a stable form of {sp.count_ops(f.definition)} operations"


def lecture(title: str) -> str:
    """A worked example of the lectures: formula, table, circuit."""
    import symdiff as sd
    found = [e for e in _lectures().EXAMPLES if e[0].startswith(title)]
    if len(found) != 1:
        raise ValueError(f"<!-- lecture: {title} --> matches {len(found)} of "
                         "examples/lectures.py's EXAMPLES, not one")
    heading, formula, point, _, grads = found[0]
    f = sd.compile(formula, wrt=list(grads))
    at = ", ".join(f"{k} = {v:g}" for k, v in point.items())
    name, _, note = heading.partition(": ")
    note = re.sub(r"([*_\\])", r"\\\1", note)  # the lectures' math, not Markdown emphasis
    parts = [f"### {name[0].upper()}{name[1:]}", "", f"`f = {formula}` at {at}: {note}", "",
             "```text", str(f.explain(**point)), "```", ""]
    try:
        svg = f.graph(**point).svg()
    except sd.MissingToolError as error:
        log.info("circuit of %s not drawn: %s", formula, error)
        return "\n".join(parts + [f"*(The circuit is not drawn here: {error})*", ""])
    svg = svg[svg.index("<svg"):]  # inline: without the XML prolog and doctype
    return "\n".join(parts + ['<div class="circuit">', svg.strip(), "</div>", ""])


def _lectures():
    """examples/lectures.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("lectures", ROOT / "examples" / "lectures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

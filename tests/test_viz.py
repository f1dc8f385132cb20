"""explain, graph, report and the line-by-line gradient check: their numbers are the kernel's
and the lectures', the pictures render, the page holds what it promises."""
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import sympy

import symdiff as sd
from conftest import mlp_arguments
from needs import needs_dot
from symdiff.ops import elementwise
from symdiff.circuit import short

PRODUCT_AT = dict(x=-2.0, y=5.0, z=-4.0)
NEURON_AT = dict(w0=2.0, w1=-3.0, w2=-3.0, x0=-1.0, x1=-2.0)
FANOUT = "x1*x2 + sin(x2)"


@pytest.fixture(scope="module")
def fanout():
    return sd.compile(FANOUT, wrt=["x1", "x2"])


@pytest.fixture(scope="module")
def mlp_at():
    return mlp_arguments(5, seed=3)


def edges(explanation):
    return [r for r in explanation.rows if r.kind == "edge"]


def close(a, b):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                       rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- explain


def test_product_table_is_the_lectures(product):
    table = product.explain(**PRODUCT_AT)
    by_target = {(r.text, r.local): r for r in edges(table)}
    # f = q z, q = x + y: df/dq = z = -4 and df/dz = q = 3 (upstream 1); the add gate passes
    # -4 to x and y with local gradient 1
    assert [(r.upstream, r.local_value, r.value) for r in
            (by_target["dadd1", "z"], by_target["dz", "add1"],
             by_target["dx", "1"], by_target["dy", "1"])] == \
        [(1.0, -4.0, -4.0), (1.0, 3.0, 3.0), (-4.0, 1.0, -4.0), (-4.0, 1.0, -4.0)]
    forward = {r.text: r.value for r in table.rows if r.kind == "forward"}
    assert forward == {"add1 = x + y": 3.0, "mul2 = add1*z": -12.0}
    text = str(table)
    assert "# from: mul2 = add1*z" in text and "# from: add1 = x + y" in text


@pytest.mark.parametrize("name", ["product", "neuron", "fanout", "mlp"])
def test_table_value_and_gradients_are_the_kernels(name, request, mlp_at):
    f = request.getfixturevalue(name)
    at = {"product": PRODUCT_AT, "neuron": NEURON_AT, "fanout": dict(x1=2.0, x2=5.0),
          "mlp": mlp_at}[name]
    table = f.explain(**at)
    value, grads = f.value_and_grad(**at)
    assert close(table.value, value)
    assert list(table.gradients) == [f"d{w}" for w in f.wrt]
    for w in f.wrt:
        assert close(table.gradients[f"d{w}"], grads[w]), w


def test_neuron_local_gradient_of_sigmoid_is_f_times_one_minus_f(neuron):
    table = neuron.explain(**NEURON_AT)
    f = 1 / (1 + math.exp(-1.0))
    (row,) = [r for r in edges(table) if r.local == "sigmoid5*(1 - sigmoid5)"]
    assert row.text == "dadd4" and row.upstream == 1.0
    assert math.isclose(row.local_value, f * (1 - f), rel_tol=1e-14)
    assert row.statement == "dadd4 = sigmoid5*(1 - sigmoid5)"


def test_fan_out_rows_sum_to_the_gradient(fanout):
    table = fanout.explain(x1=2.0, x2=5.0)
    parts = [r for r in edges(table) if r.text == "dx2 +="]
    assert sorted(r.value for r in parts) == pytest.approx(sorted([math.cos(5.0), 2.0]))
    assert sum(r.value for r in parts) == pytest.approx(2.0 + math.cos(5.0), rel=1e-14)


def test_every_adjoint_statement_has_exactly_one_row(neuron, mlp, mlp_at):
    for f, at in ((neuron, NEURON_AT), (mlp, mlp_at)):
        table = f.explain(**at)
        forward_count = sum(r.kind == "forward" for r in table.rows)
        shown = [r.statement for r in table.rows if r.kind in ("edge", "adjoint")]
        statements = str(f.program).splitlines()
        adjoint = [s for s in statements[forward_count:] if not s.startswith(("#", "return"))]
        assert sorted(s for s in shown if s in adjoint) == sorted(adjoint)


def test_elementwise_products_are_upstream_times_local(mlp, mlp_at):
    table = mlp.explain(**mlp_at)
    checked = 0
    for r in edges(table):
        if r.local_value is not None:
            assert close(r.value, np.asarray(r.upstream) * np.asarray(r.local_value)), r
            checked += 1
    assert checked >= 8


def test_table_shows_tensors_by_shape_and_norm_and_renders_html(mlp, mlp_at):
    table = mlp.explain(**mlp_at)
    text = str(table)
    assert "dW1 = transpose" in text and "norm" in text
    parser = _Parser()
    parser.feed(table._repr_html_())
    assert parser.tags["table"] == 1 and parser.tags["tr"] > len(table.rows)


# ---------------------------------------------------------------- graph


WIRE = re.compile(r'<font color="#1b7a2f">([^<]*)</font>.*?<font color="#c0261e">([^<]*)</font>')


def wires(dot: str) -> list[tuple[str, str]]:
    return WIRE.findall(dot)


def test_product_circuit_carries_the_lectures_numbers(product):
    dot = product.graph(**PRODUCT_AT).dot
    # x, y into the add gate, q and z into the mul gate, f out (value above, gradient below)
    assert sorted(wires(dot)) == sorted([("-2.00", "-4.00"), ("5.00", "-4.00"),
                                         ("3.00", "-4.00"), ("-4.00", "3.00"),
                                         ("-12.00", "1.00")])


def test_neuron_circuit_gradients_are_the_kernels(neuron):
    _, grads = neuron.value_and_grad(**NEURON_AT)
    found = wires(neuron.graph(**NEURON_AT).dot)
    for w, g in grads.items():  # each input feeds one wire, carrying its gradient
        assert (short(NEURON_AT[w]), short(g)) in found, w
    assert (short(neuron(**NEURON_AT)), "1.00") in found


def test_fan_out_input_shows_the_sum_of_its_wires(fanout):
    dot = fanout.graph(x1=2.0, x2=5.0).dot
    assert f"Σ {short(2.0 + math.cos(5.0))}" in dot
    assert ("5.00", short(math.cos(5.0))) in wires(dot) and ("5.00", "2.00") in wires(dot)


def test_structure_alone_without_inputs(neuron):
    dot = neuron.graph().dot
    assert "#1b7a2f" not in dot and "sigmoid" in dot and dot.count("->") == 10


def test_collapse_draws_each_fused_loop_as_one_node(mlp, mlp_at):
    full, collapsed = mlp.graph(**mlp_at), mlp.graph(collapse=True, **mlp_at)
    assert "cluster_" in full.dot and "fused loop" in collapsed.dot
    assert collapsed.dot.count("->") < full.dot.count("->")


@needs_dot
def test_pictures_render_to_svg_and_png(neuron, tmp_path):
    circuit = neuron.graph(**NEURON_AT)
    assert "<svg" in circuit._repr_svg_()
    assert circuit.save(tmp_path / "n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sigmoid" in circuit.save(tmp_path / "n.svg").read_text(encoding="utf-8")
    with pytest.raises(sd.ArgumentError, match=r"\.jpg"):
        circuit.save(tmp_path / "n.jpg")


def test_a_missing_dot_program_is_a_clear_error(neuron, tmp_path, monkeypatch):
    circuit = neuron.graph(**NEURON_AT)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sd.MissingToolError, match="Graphviz's dot program.*apt-get install"):
        circuit.svg()
    assert circuit.dot.startswith("digraph")


def test_a_missing_graphviz_package_is_a_clear_error(neuron, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "graphviz", None)
    with pytest.raises(sd.MissingToolError, match=r"symdiff\[viz\]"):
        neuron.graph().svg()


# ---------------------------------------------------------------- line-by-line check


def test_every_line_agrees_for_correct_rules(neuron, mlp, mlp_at):
    for f, at in ((neuron, NEURON_AT), (mlp, mlp_at)):
        check = sd.check_grad(f, by_line=True, **at)
        assert check.ok and check.first is None, str(check)
        assert len(check.lines) >= len(f.wrt)


def test_the_first_wrong_line_is_named_with_its_origin_and_both_numbers(monkeypatch):
    right = elementwise.local_derivative

    def wrong(body, k):  # a rule with a sign error: d sin(u)/du = -cos(u)
        return -right(body, k) if isinstance(body, sympy.sin) else right(body, k)

    monkeypatch.setattr(elementwise, "local_derivative", wrong)  # still wrong when checked, as a
    wrong_sin = sd.compile(FANOUT, wrt=["x1", "x2"])    # user's own rule would be
    check = sd.check_grad(wrong_sin, by_line=True, x1=2.0, x2=5.0)
    assert not check.ok
    first = check.first
    assert first.origin == "sin2 = sin(x2)"
    assert first.adjoint == pytest.approx(-math.cos(5.0), rel=1e-12)
    assert first.numeric == pytest.approx(math.cos(5.0), rel=1e-7)
    assert first.statement in str(wrong_sin.program)
    assert "# from: sin2 = sin(x2)" in str(check) and f"{first.numeric:.10g}" in str(check)
    assert sd.check_grad(wrong_sin, x1=2.0, x2=5.0) > 0.1  # the whole-gradient check agrees


# ---------------------------------------------------------------- report


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.hrefs, self.srcs = {}, set(), [], []
        self.text, self._section = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.ids.add(attrs.get("id"))
        if tag == "section":
            self._section = attrs["id"]
        self.hrefs += [attrs["href"]] if "href" in attrs else []
        self.srcs += [attrs["src"]] if "src" in attrs else []

    def handle_data(self, data):
        if self._section:
            self.text.setdefault(self._section, []).append(data.strip())


@pytest.fixture(scope="module")
def neuron_page(neuron, tmp_path_factory):
    path = neuron.report(tmp_path_factory.mktemp("report") / "neuron.html", **NEURON_AT)
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@needs_dot  # the circuit's SVG is embedded
def test_report_has_every_section_and_nothing_external(neuron_page):
    assert {"model", "result", "circuit", "table", "source", "timings"} <= neuron_page.ids
    assert neuron_page.tags["svg"] == 1 and neuron_page.tags.get("script", 0) == 0
    assert not neuron_page.srcs and all(h.startswith("#") for h in neuron_page.hrefs)


def test_report_numbers_are_the_kernels(neuron, neuron_page):
    value, grads = neuron.value_and_grad(**NEURON_AT)
    shown = [float(x) for x in neuron_page.text["result"] if re.fullmatch(r"-?\d+\.\d+", x)]
    assert shown == pytest.approx([value] + list(grads.values()), rel=1e-9)
    assert "compile" in neuron_page.text["timings"]


def test_report_links_each_from_comment_to_its_forward_line(neuron, neuron_page):
    lines = neuron.kernel_source.splitlines()
    links = [h for h in neuron_page.hrefs if h.startswith("#L")]
    assert len(links) == sum(line.strip().startswith("# from: ") for line in lines) == 3
    for href in links:
        target = lines[int(href[2:]) - 1].strip()
        assert re.match(r"(mul1|mul2|sigmoid5) = ", target), target

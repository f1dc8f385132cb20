"""The docs site: it builds in strict mode (a warning is an error) into a temporary folder, its
function table is the function records, its circuits are SVG, and its pages render in headless
Chromium without console errors (screenshots saved as test artifacts)."""
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from needs import needs_chromium, needs_dot

ROOT = Path(__file__).resolve().parent.parent
LECTURES = 5  # the <!-- lecture: ... --> markers of docs/seeing.md


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(folder)], cwd=ROOT, capture_output=True, text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})  # Material's notice of its successor
    assert build.returncode == 0, build.stdout + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    return folder


def test_every_page_is_built(site):
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert (site / "index.html").is_file()
    assert sorted(p for p in pages if not (site / p / "index.html").is_file()) == []


def test_the_function_table_is_the_records(site):
    """Its rows name every formula function and alias, and nothing else."""
    from symdiff.functions import ALIASES, BUILTINS, FUNCTIONS
    page = (site / "formulas" / "index.html").read_text(encoding="utf-8")
    rows = [re.findall(r"<td>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    code = re.compile(r"<code>(\w+)</code>")
    listed = {code.match(cells[0]).group(1) for cells in rows if cells}
    listed |= {alias for cells in rows if cells for alias in code.findall(cells[2])}
    public = {name for name in BUILTINS if not FUNCTIONS[name].internal}
    assert listed == public | set(ALIASES)


@needs_dot
def test_the_lectures_circuits_are_inline_svg(site):
    page = (site / "seeing" / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<div class="circuit">\s*<svg', page)) == LECTURES


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on a free local port (the search runs in a web worker, which
    a file:// page may not start)."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: $SYMDIFF_ARTIFACTS, else a folder under pytest's basetemp."""
    folder = Path(os.environ.get("SYMDIFF_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@needs_chromium
@pytest.mark.parametrize("path, selector, least", [
    ("", "article h1", 1),                                            # the index
    pytest.param("seeing/", ".circuit svg", LECTURES, marks=needs_dot),  # the circuits' page
])
def test_pages_render_without_console_errors(served, artifacts, capsys, path, selector, least):
    from chromium import open_page
    page = open_page(served + path, {"shown": selector}, show=selector)
    shot = artifacts / f"{path.strip('/') or 'index'}.png"
    shot.write_bytes(page.screenshot)
    with capsys.disabled():
        print(f"\nscreenshot: {shot}")
    assert page.errors == [], shot
    assert page.found["shown"] >= least, shot
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 10_000, shot


@needs_chromium
def test_the_browser_test_sees_console_errors(tmp_path):
    """The check above can fail: a page with an uncaught exception, a console.error and a
    missing image reports all three."""
    from chromium import open_page
    (tmp_path / "bad.html").write_text(
        "<p>bad</p><img src='missing.png'><script>console.error('logged');"
        "undefined_function()</script>")
    page = open_page((tmp_path / "bad.html").as_uri(), {"shown": "p"})
    assert len(page.errors) == 3, page.errors
    assert any("logged" in e for e in page.errors)
    assert any("undefined_function" in e for e in page.errors)
    assert page.found["shown"] == 1

"""Every code block of the README and of the docs pages does what the page says.

A page's blocks are read in order, by their fence's language:

- `python`: run, each page in a namespace of its own shared by its blocks; a `text` block that
  follows it directly is what it prints, compared exactly (surrounding blank lines aside). A
  block whose first line is `# an excerpt of NAME.ATTR` is generated code: each of its
  functions must occur in that attribute of the page's NAME, as it is.
- `console`: commands a reader types: each is one of a few known forms, and the files and
  extras it names exist.
- `text` elsewhere: a figure (a diagram, a log), not run.

Any other block fails: a page says what each block is.
"""
import contextlib
import io
import re
import shlex
import sys
import threading
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
EXCERPT = re.compile(r"# an excerpt of (\w+)\.(\w+)\n")
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "optional-dependencies"]


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, what it prints or None) for each block of `page` that is not an
    output; an output is a `text` block right after a `python` block."""
    text = page.read_text(encoding="utf-8")
    found, previous = [], None
    for match in FENCE.finditer(text):
        language, code = match.group(1), match.group(2)
        follows = previous is not None and not text[previous.end():match.start()].strip()
        if language == "text" and follows and previous.group(1) == "python":
            found[-1] = (*found[-1][:2], code)
        else:
            found.append((language, code, None))
        previous = match
    return found


def run_page(page: Path) -> int:
    """Run the page's Python blocks in order, checking what they print; the number run."""
    namespace: dict = {}
    ran = 0
    for language, code, shown in blocks(page):
        if language != "python":
            continue
        excerpt = EXCERPT.match(code)
        if excerpt:
            source = getattr(namespace[excerpt.group(1)], excerpt.group(2))
            for function in code[excerpt.end():].strip().split("\n\n"):
                assert function in source, f"{page.name}: not in {excerpt.group(0)}{function}"
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(page), "exec"), namespace)  # the page's own code
            replaced = sys.stdout is not printed and repr(sys.stdout)
        # (once, in one cold run of the suite, a block printed nothing at all: this says who
        # took sys.stdout if it happens again)
        assert not replaced, f"{page.name}: sys.stdout became {replaced} as a block ran; " \
            f"threads: {[thread.name for thread in threading.enumerate()]}"
        ran += 1
        if shown is not None:
            assert printed.getvalue().strip() == shown.strip(), f"{page.name}:\n{code}"
    return ran


RUNNABLE = [page for page in PAGES if any(lang == "python" for lang, *_ in blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_a_page_prints_what_it_shows(page):
    assert run_page(page) >= 1


def test_every_block_says_what_it_is():
    for page in PAGES:
        for language, code, _ in blocks(page):
            assert language in ("python", "text", "console"), (
                f"{page.name} has a ```{language} block; mark it python (run, its output in "
                f"a text block right after it), console (commands) or text (a figure):\n{code}")


def command_problems(command: str) -> list[str]:
    """What is wrong with one shell command a page shows (nothing: an empty list)."""
    words = shlex.split(command.split("#")[0])
    if words[:3] == ["pip", "install", "-e"]:
        extra = re.fullmatch(r"\.(?:\[(\w+)\])?", words[3])
        return [] if extra and (extra.group(1) in (None, *EXTRAS)) else [f"no extra in {command}"]
    if words[:1] == ["python"] and words[1:2] != ["-m"]:
        return [] if (ROOT / words[1]).is_file() else [f"no file {words[1]}"]
    if words[:3] in (["python", "-m", "pytest"], ["python", "-m", "benchmarks"],
                     ["mkdocs", "serve"], ["mkdocs", "build"], ["apt-get", "install", "-y"]):
        return []
    return [f"an unknown command: {command}"]


def test_commands_name_files_and_extras_that_exist():
    commands = [part.strip() for page in PAGES for language, code, _ in blocks(page)
                if language == "console" for line in code.splitlines() if line.strip()
                for part in line.split("&&")]
    assert 'pip install -e ".[test]"' in commands and "python examples/fit_formula.py" in commands
    assert [problem for command in commands for problem in command_problems(command)] == []


def test_the_readme_fits_on_a_few_screens():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)

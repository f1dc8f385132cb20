"""The README's Python blocks run, and print what the README shows after them."""
import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCK = re.compile(r"```python\n(.*?)```\n(?:```\n(.*?)```)?", re.S)


def test_readme_examples_print_what_the_readme_shows():
    namespace: dict = {}
    blocks = BLOCK.findall(README)
    assert len(blocks) >= 5
    for code, shown in blocks:
        if code.lstrip().startswith("def _loop"):  # an excerpt of the step's generated source
            for function in code.strip().split("\n\n"):
                assert function in namespace["step"].source, function
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), namespace)  # the README's own code
        if shown:
            assert printed.getvalue().strip() == shown.strip(), code


def test_the_function_list_is_the_records():
    """The README's list of formula functions names every built-in record and alias, and
    nothing else."""
    from symdiff.functions import ALIASES, BUILTINS, FUNCTIONS
    section = README.split("these functions:", 1)[1].split("and the functions you define", 1)[0]
    listed = {name for quoted in re.findall(r"`([^`]*)`", section) for name in quoted.split()}
    public = {name for name in BUILTINS if not FUNCTIONS[name].internal}
    assert listed == public | set(ALIASES) | {"where"}

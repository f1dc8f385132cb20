"""The package's structure: every op record complete, every function record usable by every
backend, and modules that import on their own with no import cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from symdiff.functions import FUNCTIONS
from symdiff.optable import OPS, missing

ROOT = Path(__file__).resolve().parent.parent


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(("symdiff",) * (parts[0] == "codegen") + parts)  # installed as symdiff.codegen


MODULES = sorted(_name(p) for folder in ("symdiff", "codegen")
                 for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_record_says_what_every_backend_does(op):
    record = OPS[op]
    assert not missing(op), f"{op} was defined without {missing(op)}"
    if record.kind != "leaf":  # every backend that builds or runs a graph needs these
        for field in ("shape", "adjoint", "tangent", "evaluate"):
            assert getattr(record, field) is not None, f"{op} has no {field} rule"
    if record.kind == "reduce":
        assert record.accumulate is not None and record.identity is not None
    else:  # Numba: a statement of its own, or an element inside a fused loop
        assert record.emit or record.in_loop or op == "input", f"{op}: no Numba emission"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_record_is_complete(name):
    record = FUNCTIONS[name]
    assert callable(record.sympy) and callable(record.numpy)
    if record.definition is not None:  # composite (sd.function): printed from its definition
        assert record.definition.free_symbols <= set(record.params)
        return
    assert "{0}" in record.numba and "{0}" in record.numba32
    assert record.domain[0] < record.domain[1]


def _imports(path: Path, module: str) -> set[str]:
    """The package modules `module` imports when it loads (imports inside functions aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES}


def test_no_import_cycles():
    graph = {}
    for module in MODULES:
        parts = module.removeprefix("symdiff.").split(".") if module.startswith(
            "symdiff.codegen") else module.split(".")
        path = ROOT.joinpath(*parts[:-1], parts[-1] + ".py")
        if not path.exists():
            path = ROOT.joinpath(*parts, "__init__.py")
        graph[module] = _imports(path, module) - {module}
    state: dict[str, int] = {}

    def visit(module, trail):
        if state.get(module) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail + [module]))
        if state.get(module) == 2:
            return
        state[module] = 1
        for dependency in sorted(graph.get(module, ())):
            visit(dependency, trail + [module])
        state[module] = 2

    for module in MODULES:
        visit(module, [])


# One fresh interpreter imports NumPy and SymPy (most of a start-up's time), then forks a
# child per module, in which that module is the first of ours imported. Where there is no
# fork, a fresh interpreter per module. The children write the bytecode of our modules to a
# folder of the test's own (argv[1]), so each is compiled once, not in every child, even where
# PYTHONDONTWRITEBYTECODE is set.
IMPORT_EACH = """
import importlib, os, subprocess, sys, traceback
import numpy, sympy
sys.pycache_prefix, sys.dont_write_bytecode = sys.argv[1], False
for m in sys.argv[2:]:
    if not hasattr(os, "fork"):
        code = subprocess.run([sys.executable, "-c", "import sys; sys.pycache_prefix, "
                               f"sys.dont_write_bytecode = {sys.argv[1]!r}, False; import {m}"
                               ]).returncode
    elif (pid := os.fork()) == 0:
        try:
            importlib.import_module(m)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    else:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        print(m, "failed to import on its own", file=sys.stderr, flush=True)
        sys.exit(1)
"""


@pytest.mark.campaign  # 69 interpreters; the default run imports every module in one
def test_every_module_imports_on_its_own_in_a_fresh_interpreter(tmp_path):
    # from elsewhere than the repository: as installed
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH, str(tmp_path / "pyc"), *MODULES],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_code_generator_installs_as_symdiff_codegen(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import codegen"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert "No module named 'codegen'" in result.stderr


def test_the_architecture_page_lists_every_module():
    """docs/ARCHITECTURE.md names each module (the op records as the folder `ops/`)."""
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [p for folder in ("symdiff", "codegen") for p in (ROOT / folder).rglob("*.py")
               if p.name != "__init__.py" and "ops" not in p.parent.parts]
    names = [str(p.relative_to(ROOT / "symdiff")) if p.is_relative_to(ROOT / "symdiff")
             else str(p.relative_to(ROOT)) for p in modules]
    assert "`ops/`" in page
    assert [n for n in names if f"`{n}`" not in page and f"{n}`" not in page] == []

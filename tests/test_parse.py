"""The whitelisting parser: what it accepts, what it refuses and how it says so."""
import ast
import builtins
import os
import sys
import threading
import warnings

import pytest

import symdiff as sd
from symdiff import tensors as T
from symdiff.parse import MAX_DEPTH, MAX_LENGTH, build, free_names, parse_formula
from campaign import sizes


def names(text):
    return free_names(parse_formula(text))


def test_free_names_in_order_of_appearance_without_function_names():
    assert names("log(1 + exp(-y*(w0*x0 + w1*x1 + b)))") == ["y", "w0", "x0", "w1", "x1", "b"]
    assert names("max(a, b) + where(a > 0, a, c)") == ["a", "b", "c"]


@pytest.mark.parametrize("text, fragment", [
    ("foo(x)", "unknown function 'foo'"),
    ("expp(x)", "did you mean 'exp'"),
    ("__import__('os')", "unknown function '__import__'"),
    ("x.real", "Attribute is not allowed"),
    ("x[y]", "an index in a formula is a constant"),
    ("(x + 1)[0]", "only a name can be indexed"),
    ("x[0:y]", "an index in a formula is a constant"),
    ("lambda: 1", "Lambda is not allowed"),
    ("'text' * 2", "is not a real number"),
    ("True + x", "is not a real number"),
    ("1j * x", "is not a real number"),
    ("x // y", "FloorDiv is not allowed"),
    ("x % y", "Mod is not allowed"),
    ("not x", "Not is not allowed"),
    ("a < b < c", "single comparisons"),
    ("exp(x=1)", "positional arguments only"),
    ("exp(*x)", "positional arguments only"),
    ("exp + 1", "'exp' is a function"),
    ("_x + 1", "leading underscore"),
    ("(x).__class__", "Attribute is not allowed"),
    ("[x for x in y]", "ListComp is not allowed"),
    ("", "empty"),
])
def test_refusals_name_what_is_wrong(text, fragment):
    with pytest.raises(sd.ParseError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        parse_formula(text)


def test_syntax_error_says_where():
    with pytest.raises(sd.ParseError) as info:
        parse_formula("x + * y")
    assert "col 5" in str(info.value)
    assert info.value.offset == 4


def test_unknown_function_position_is_reported():
    with pytest.raises(sd.ParseError, match=r"\[col 5\]"):
        parse_formula("x + sinus(y)")


def test_parse_error_is_a_syntax_error_and_a_symdiff_error():
    with pytest.raises(SyntaxError):
        parse_formula("(x")
    with pytest.raises(sd.SymdiffError):
        parse_formula("(x")


def test_length_and_nesting_are_bounded():
    with pytest.raises(sd.ParseError, match="characters long"):
        parse_formula("x+" * MAX_LENGTH + "x")
    with pytest.raises(sd.ParseError, match="characters long"):
        parse_formula("(" * 100000)
    with pytest.raises(sd.ParseError, match="nest deeper"):
        parse_formula("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1))


def test_constant_powers_fold_in_float64_instead_of_growing_integers():
    tree = parse_formula("2**2**2**2**2**2**2 + x")
    out = build(tree, {"x": T.scalar("x")})
    assert out.node.op == "elementwise"  # x + inf, folded without computing 2**65536**...
    assert build(parse_formula("10**400"), {}) == float("inf")
    assert build(parse_formula("2**-1 * 3"), {}) == 1.5


SAVED = {fn: getattr(builtins, fn) for fn in ("eval", "exec", "compile", "__import__")}


def _refuse(*args, **kwargs):
    raise AssertionError("eval/exec/compile/__import__ reached with formula text")


def _syntax_tree_only(source, filename, mode, flags=0, *args, **kwargs):
    # ast.parse calls compile() with PyCF_ONLY_AST: a syntax tree, never a code object
    if not flags & ast.PyCF_ONLY_AST:
        _refuse()
    return SAVED["compile"](source, filename, mode, flags, *args, **kwargs)


def _loaded_only(name, globals=None, locals=None, fromlist=(), level=0):
    # SymPy imports its own loaded modules inside functions; nothing new may be loaded
    module = SAVED["__import__"](name, globals, locals, fromlist, level)
    if level == 0 and name not in sys.modules:
        _refuse()
    return module


def _with_builtins(replacements, fn):
    # an earlier test's background compile (a kernel, its threaded copy, a step module) must
    # not meet the replacements: Numba imports modules and runs exec as it compiles (the
    # blocks pool's idle threads never end, and compile nothing: joining them would hang)
    for thread in threading.enumerate():
        if thread.name.startswith(("symdiff kernel", "symdiff threads", "symdiff step")):
            thread.join()
    try:
        for name, replacement in replacements.items():
            setattr(builtins, name, replacement)
        return fn()
    finally:
        for name, original in SAVED.items():
            setattr(builtins, name, original)


def test_the_builtins_swap_waits_for_compiles_not_for_idle_pool_threads():
    # regression: it joined every thread named "symdiff...", among them the blocks pool's
    # idle workers, which never end; whenever a test before it had used the pool it hung
    from symdiff.codegen.blocks import _pool
    _pool(2).submit(int).result()  # the pool's threads started, now idle
    done = threading.Thread(target=_with_builtins, args=({}, lambda: None), daemon=True)
    done.start()
    done.join(60)
    assert not done.is_alive()


def test_formulas_never_reach_eval_exec_or_import():
    text = "sigmoid(w*x + b) + log1p(x**2) + where(x > 0, x, -x) + 2**0.5"
    tree = _with_builtins({"eval": _refuse, "exec": _refuse, "compile": _syntax_tree_only,
                           "__import__": _refuse}, lambda: parse_formula(text))
    env = {n: T.scalar(n) for n in free_names(tree)}
    build(tree, env, text)  # SymPy loads some of its own modules lazily on first use
    out = _with_builtins({"eval": _refuse, "exec": _refuse, "compile": _refuse,
                          "__import__": _loaded_only}, lambda: build(tree, env, text))
    assert out.node.op == "elementwise"


def test_wrong_arity_is_a_parse_error():
    with pytest.raises(sd.ParseError, match="takes 1 argument"):
        build(parse_formula("exp(x, y)"), {"x": T.scalar("x"), "y": T.scalar("y")})
    with pytest.raises(sd.ParseError, match="takes 3 arguments"):
        build(parse_formula("where(x, y)"), {"x": T.scalar("x"), "y": T.scalar("y")})


# ---------------------------------------------------------------- property-based

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("SYMDIFF_FUZZ", 400))  # SYMDIFF_FUZZ=5000 for a long run

TOKENS = ["x", "y", "w0", "(", ")", "+", "-", "*", "/", "**", "@", ",", ".", "<", ">=", "==",
          "1", "0", "2.5", "1e308", "1e-320", "9" * 30, "exp", "log", "sqrt", "where", "max",
          "sigmoid", "atan2", "__import__", "lambda", "[", "]", "{", "}", "'", "\\", " ", "\n",
          "if", "else", "not", "and", ":", "=", ";", "#", "j", "nan", "inf", "_", "ℌ"]


def parse_and_build(text):
    tree = parse_formula(text)
    return build(tree, {n: T.scalar(n) for n in free_names(tree)}, text)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)))
def test_any_text_parses_or_raises_symdiff_errors_only(text):
    try:
        out = parse_and_build(text)
    except sd.SymdiffError:
        return
    assert isinstance(out, (T.Tensor, float))


@pytest.mark.parametrize("examples", sizes(8, 60))
def test_deep_and_long_inputs_are_refused_or_built_never_crash(examples):
    @settings(max_examples=examples, deadline=None)
    @given(st.integers(1, 4000), st.sampled_from(["x+", "-", "(", "x**", "exp(", "not ", "2**"]))
    def check(repeat, piece):
        text = piece * repeat + "x" + (")" * repeat if piece.endswith("(") else "")
        try:
            out = parse_and_build(text)
        except sd.SymdiffError:
            return
        assert isinstance(out, (T.Tensor, float))
    check()


def test_string_escapes_raise_a_parse_error_and_no_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(sd.ParseError):
            sd.compile('x * "\\e"', wrt=["x"])
    assert not caught, [str(w.message) for w in caught]

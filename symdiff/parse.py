"""Formula strings -> Tensors, through a whitelisting parser on Python's `ast`.

Only arithmetic, comparisons, calls of known functions by name, names and real literals are
accepted; anything else is a ParseError that says what and where. The text is never given to
eval, exec or sympify. Length and nesting are bounded before parsing, and constant arithmetic
is folded in float64 (2**2**2**2**2**2 is inf, not a million-digit integer).
"""
from __future__ import annotations

import ast
import difflib
import warnings

from . import tensors as T
from .functions import FUNCTIONS
from .errors import ParseError

MAX_LENGTH = 20_000
MAX_DEPTH = 150
MAX_NODES = 20_000

_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a ** b, ast.MatMult: lambda a, b: T.matmul(a, b)}
_COMPARE = {ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
            ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b}
_EXTRA = {"where": (T.where, 3)}  # functions that are not elementwise SymPy bodies
KNOWN_FUNCTIONS = sorted(set(FUNCTIONS) | set(_EXTRA))


def parse_formula(text: str) -> ast.Expression:
    """Check `text` against the whitelist and return its syntax tree.

    >>> sorted(free_names(parse_formula("(x + y) * exp(z)")))
    ['x', 'y', 'z']
    """
    if not isinstance(text, str):
        raise ParseError(f"a formula must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"the formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise ParseError("the formula is empty")
    _check_nesting(text)
    try:
        with warnings.catch_warnings():  # our ParseError says it; no SyntaxWarning on top,
            warnings.simplefilter("ignore", SyntaxWarning)  # nor Python 3.11's warning for an
            warnings.simplefilter("ignore", DeprecationWarning)  # invalid escape like "\e"
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ParseError(f"invalid syntax in {_quote(text)}: {e.msg}", text,
                         (e.offset or 1) - 1) from None
    except (ValueError, MemoryError, RecursionError) as e:
        raise ParseError(f"cannot parse {_quote(text)}: {e}", text) from None
    nodes = _walk(tree)
    if len(nodes) > MAX_NODES:
        raise ParseError(f"the formula has more than {MAX_NODES} parts", text)
    called = _called(nodes)
    for node in nodes:
        if id(node) not in called:
            _check_node(node, text)
    return tree


def _walk(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` (ast.walk imports a module on each call; this does not)."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _called(nodes) -> set[int]:
    """ids of the Name nodes that are the function of a call."""
    return {id(n.func) for n in nodes if isinstance(n, ast.Call)}


def _check_nesting(text: str) -> None:
    depth = 0
    for col, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth > MAX_DEPTH:
            raise ParseError(f"brackets nest deeper than {MAX_DEPTH}", text, col)


def _check_node(node: ast.AST, text: str) -> None:
    col = getattr(node, "col_offset", None)
    if isinstance(node, (ast.Expression, ast.Load, ast.UAdd, ast.USub, *_BINARY, *_COMPARE)):
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ParseError(f"the operator {type(node.op).__name__} is not allowed "
                             f"(use + - * / ** @)", text, col)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise ParseError(f"the operator {type(node.op).__name__} is not allowed", text, col)
        return
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise ParseError("only single comparisons with < <= > >= are allowed", text, col)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ParseError(f"the literal {node.value!r} is not a real number", text, col)
        return
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS or node.id in _EXTRA:
            raise ParseError(f"{node.id!r} is a function; call it as {node.id}(...)", text, col)
        if node.id.startswith("_"):
            raise ParseError(f"the name {node.id!r} is not allowed (leading underscore)", text, col)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ParseError("only functions called by plain name are allowed", text, col)
        name = node.func.id
        if name not in FUNCTIONS and name not in _EXTRA:
            close = difflib.get_close_matches(name, KNOWN_FUNCTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParseError(f"unknown function {name!r}{hint} Known: {', '.join(KNOWN_FUNCTIONS)}",
                             text, col)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ParseError(f"{name}() takes positional arguments only", text, col)
        return
    raise ParseError(f"{type(node).__name__} is not allowed in a formula", text, col)


def free_names(tree: ast.Expression) -> list[str]:
    """Names the formula uses, in order of first appearance."""
    nodes = _walk(tree)
    called = _called(nodes)
    first: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, ast.Name) and id(node) not in called:
            first[node.id] = min(first.get(node.id, node.col_offset), node.col_offset)
    return sorted(first, key=first.get)


def build(tree: ast.Expression, env: dict, text: str = "") -> T.Tensor | float:
    """Turn a checked syntax tree into a Tensor; `env` maps each free name to a Tensor.

    The tree is walked with an explicit stack, so a long sum is no deeper for Python than a
    short one.
    """
    values: dict[int, object] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree.body, False)]
    while stack:
        node, ready = stack.pop()
        operands = _operands(node)
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(operands))
            continue
        values[id(node)] = _evaluate(node, [values.pop(id(c)) for c in operands], env, text)
    result = values[id(tree.body)]
    return float(result) if isinstance(result, int) else result


def _operands(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Compare):
        return [node.left, node.comparators[0]]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


def _evaluate(node: ast.AST, args: list, env: dict, text: str):
    """One node's value from its operands' values."""
    if isinstance(node, ast.Constant):
        return node.value if abs(node.value) <= 10**15 else float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -args[0] if isinstance(node.op, ast.USub) else args[0]
    if isinstance(node, (ast.BinOp, ast.Compare)):
        fn = _BINARY[type(node.op)] if isinstance(node, ast.BinOp) else _COMPARE[type(node.ops[0])]
        if all(isinstance(a, (int, float)) for a in args):
            return T.fold(fn, *args)
        try:
            return fn(*args)
        except T.ShapeError as e:
            raise T.ShapeError(f"{e} in {ast.get_source_segment(text, node) or _quote(text)} "
                               f"[col {node.col_offset + 1}]") from None
    name = node.func.id
    if name in _EXTRA:
        fn, arity = _EXTRA[name]
        if len(args) != arity:
            raise ParseError(f"{name} takes {arity} arguments, got {len(args)}", text,
                             node.col_offset)
        return fn(*args)
    try:
        return T.function(name, *args)
    except T.ArgumentError as e:
        raise ParseError(str(e), text, node.col_offset) from None


def _quote(text: str, limit: int = 60) -> str:
    """`text` for an error message, shortened if long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")

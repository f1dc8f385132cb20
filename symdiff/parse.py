"""Formula strings -> Tensors, through a whitelisting parser on Python's `ast`.

Only arithmetic, comparisons, calls of known functions by name (parameters with defaults
also by keyword, and True or False there: `gelu(x, approximate=True)`), names, real literals
and subscripts with constant indices are accepted; anything else is a ParseError that says what
and where. A formula is one expression, or lines `name = expression` whose last line (an
expression, or an assignment naming it) is the model: each name is assigned once, after the
lines that use it, and used by a later line. The text is never given to eval, exec or
sympify. Length and nesting are bounded before parsing, and constant arithmetic is folded in
float64 (2**2**2**2**2**2 is inf, not a million-digit integer).
"""
from __future__ import annotations

import ast
import difflib
import textwrap
import warnings

from . import tensors as T
from .functions import ALIASES, FUNCTIONS
from .errors import ParseError, SymdiffError

MAX_LENGTH = 20_000
MAX_DEPTH = 150
MAX_NODES = 20_000

_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a ** b, ast.MatMult: lambda a, b: T.matmul(a, b)}
_COMPARE = {ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
            ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
            ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}
_EXTRA = {"where": (T.where, 3)}  # functions that are not elementwise SymPy bodies


def known_functions() -> list[str]:
    """Every function a formula may call: the records (built-in and sd.function), their
    aliases and where."""
    return sorted({name for name, f in FUNCTIONS.items() if not f.internal} | set(ALIASES)
                  | set(_EXTRA))


def parse_formula(text: str) -> ast.Expression | ast.Module:
    """Check `text` against the whitelist and return its syntax tree: an Expression for one
    expression, a Module of assignment lines otherwise.

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
    tree = _parse(text)
    nodes = _walk(tree)
    if len(nodes) > MAX_NODES:
        raise ParseError(f"the formula has more than {MAX_NODES} parts", text)
    skipped = _called(nodes) | _subscript_parts(nodes, text)
    flags = {id(a) for n in nodes if isinstance(n, ast.Call) for a in _parameters(n)}
    for node in nodes:
        if id(node) not in skipped:
            _check_node(node, text, flags)
    if isinstance(tree, ast.Module):
        _check_lines(tree, text)
    return tree


def _parameters(call: ast.Call) -> list[ast.AST]:
    """The arguments of `call` given to parameters that have defaults (which may be True or
    False: gelu's approximate)."""
    name = getattr(call.func, "id", None)
    record = FUNCTIONS.get(ALIASES.get(name, name))
    if record is None or not record.defaults:
        return []
    return call.args[record.required:] + [k.value for k in call.keywords]


def formula_text(text: str) -> str:
    """The text as parsed: common indentation and leading and trailing blank lines removed
    (line 1 is the formula's first line)."""
    return textwrap.dedent(text).strip("\n").rstrip()


def _parse(text: str) -> ast.Expression | ast.Module:
    text = formula_text(text)
    with warnings.catch_warnings():  # our ParseError says it; no SyntaxWarning on top,
        warnings.simplefilter("ignore", SyntaxWarning)  # nor Python 3.11's warning for an
        warnings.simplefilter("ignore", DeprecationWarning)  # invalid escape like "\e"
        try:
            return ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            pass  # lines of assignments, or an error that parsing them names as well
        except (ValueError, MemoryError, RecursionError) as e:
            raise ParseError(f"cannot parse {_quote(text)}: {e}", text) from None
        try:
            module = ast.parse(text, mode="exec")
        except SyntaxError as e:
            raise ParseError(f"invalid syntax in {_quote(text)}: {e.msg}", text,
                             (e.offset or 1) - 1, e.lineno if "\n" in text else None) from None
        except (ValueError, MemoryError, RecursionError) as e:
            raise ParseError(f"cannot parse {_quote(text)}: {e}", text) from None
    if not module.body:
        raise ParseError("the formula is empty (only comments)", text)
    return module


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


def _place(node: ast.AST, text: str) -> dict:
    """ParseError keywords saying where `node` is: its column, and its line in a formula of
    several lines."""
    line = getattr(node, "lineno", None) if "\n" in formula_text(text) else None
    return dict(text=text, col=getattr(node, "col_offset", None), line=line)


def _check_node(node: ast.AST, text: str, flags: set) -> None:
    """`flags`: the ids of the True and False literals given to a function's parameter."""
    where = _place(node, text)
    if isinstance(node, (ast.Expression, ast.Module, ast.Expr, ast.Load, ast.Store, ast.UAdd,
                         ast.USub, *_BINARY, *_COMPARE)):
        return
    if isinstance(node, ast.Assign):
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise ParseError("a line assigns one name: `name = expression`", **where)
        return
    if isinstance(node, ast.stmt):
        raise ParseError(f"{type(node).__name__} is not allowed: a formula's lines are "
                         f"`name = expression`, the last one the model", **where)
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ParseError(f"the operator {type(node.op).__name__} is not allowed "
                             f"(use + - * / ** @)", **where)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            raise ParseError(f"the operator {type(node.op).__name__} is not allowed", **where)
        return
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise ParseError("only single comparisons with < <= > >= == != are allowed", **where)
        return
    if isinstance(node, ast.keyword):
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) and id(node) in flags:  # gelu(x, approximate=True)
            return
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ParseError(f"the literal {node.value!r} is not a real number", **where)
        return
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS or node.id in ALIASES or node.id in _EXTRA:
            raise ParseError(f"{node.id!r} is a function; call it as {node.id}(...)", **where)
        if node.id.startswith("_"):
            raise ParseError(f"the name {node.id!r} is not allowed (leading underscore)", **where)
        return
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise ParseError("only a name can be indexed: `X[:, 0]`", **where)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ParseError("only functions called by plain name are allowed", **where)
        name = node.func.id
        if name not in FUNCTIONS and name not in ALIASES and name not in _EXTRA:
            close = difflib.get_close_matches(name, known_functions(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParseError(f"unknown function {name!r}{hint} Known: "
                             f"{', '.join(known_functions())}", **where)
        record = FUNCTIONS.get(ALIASES.get(name, name))
        named = [p.name for p in record.params[record.required:]] if record else []
        if any(isinstance(a, ast.Starred) for a in node.args) or \
                node.keywords and not named:
            raise ParseError(f"{name}() takes positional arguments only", **where)
        for keyword in node.keywords:
            if keyword.arg not in named:
                raise ParseError(f"{name}() has no parameter {keyword.arg!r}; its parameters "
                                 f"by name: {', '.join(named)}", **where)
        return
    raise ParseError(f"{type(node).__name__} is not allowed in a formula", **where)


# ---------------------------------------------------------------- subscripts


def _subscript_parts(nodes, text: str) -> set[int]:
    """ids of the nodes inside subscripts' indices, each index checked to be constant."""
    inside = set()
    for node in nodes:
        if isinstance(node, ast.Subscript):
            static_key(node.slice, text)
            inside |= {id(n) for n in _walk(node.slice)}
    return inside


def static_key(node: ast.AST, text: str = ""):
    """A subscript's index as a Python key: ints, slices of ints, `...`, None, lists of ints
    and tuples of these; anything else (a name, arithmetic) is a ParseError."""
    if isinstance(node, ast.Tuple):
        return tuple(_key_entry(e, text) for e in node.elts)
    return _key_entry(node, text)


def _key_entry(node: ast.AST, text: str):
    if isinstance(node, ast.Slice):
        return slice(*(None if p is None else _integer(p, text)
                        for p in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis):
        return node.value
    if isinstance(node, ast.List):
        return [_integer(e, text) for e in node.elts]
    return _integer(node, text)


def _integer(node: ast.AST, text: str) -> int:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = -1, node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sign * node.value
    raise ParseError("an index in a formula is a constant: ints, slices of ints (1:5:2), "
                     "'...', None or a list of ints", **_place(node, text))


# ---------------------------------------------------------------- lines


def _check_lines(tree: ast.Module, text: str) -> None:
    """Each name assigned once, after every use; every line but the last used later."""
    assigned: dict[str, ast.AST] = {}
    used: dict[str, ast.AST] = {}  # name -> its first use
    for k, line in enumerate(tree.body):
        if isinstance(line, ast.Expr) and k < len(tree.body) - 1:
            raise ParseError("only the last line may be a bare expression (the model); "
                             "name the others: `name = expression`", **_place(line, text))
        for node in _names(line.value):
            if node.id not in assigned:
                used.setdefault(node.id, node)
        if isinstance(line, ast.Assign):
            target = line.targets[0]
            name = target.id
            if name in assigned:
                raise ParseError(f"{name} is assigned twice (lines {assigned[name].lineno} and "
                                 f"{line.lineno}): name each step once", **_place(target, text))
            if name in used:
                raise ParseError(f"{name} is used on line {used[name].lineno} before this line "
                                 f"assigns it: an input cannot be assigned, nor a name used "
                                 f"before its line", **_place(target, text))
            assigned[name] = target
    read = {n.id for line in tree.body for n in _names(line.value)}
    last = tree.body[-1]
    model = last.targets[0].id if isinstance(last, ast.Assign) else None
    for name, target in assigned.items():
        if name != model and name not in read:
            raise ParseError(f"{name} is never used: every line but the last must feed a later "
                             f"one", **_place(target, text))


def _names(tree: ast.AST) -> list[ast.Name]:
    """The Name nodes of `tree` that read a value (not the function of a call)."""
    nodes = _walk(tree)
    called = _called(nodes)
    return [n for n in nodes if isinstance(n, ast.Name) and id(n) not in called]


def free_names(tree: ast.Expression | ast.Module) -> list[str]:
    """The formula's inputs: names it reads that no line assigns, in order of first
    appearance."""
    lines = tree.body if isinstance(tree, ast.Module) else [tree]
    assigned = {line.targets[0].id for line in lines if isinstance(line, ast.Assign)}
    first: dict[str, tuple[int, int]] = {}
    for line in lines:
        for node in _names(line.value if isinstance(line, ast.stmt) else line):
            if node.id not in assigned:
                at = (getattr(node, "lineno", 1), node.col_offset)
                first[node.id] = min(first.get(node.id, at), at)
    return sorted(first, key=first.get)


def build(tree: ast.Expression | ast.Module, env: dict, text: str = "",
          steps: dict | None = None) -> T.Tensor | float:
    """Turn a checked syntax tree into a Tensor; `env` maps each free name to a Tensor.
    `steps`, if given, receives each assigned name's value, in line order.

    The tree is walked with an explicit stack, so a long sum is no deeper for Python than a
    short one.
    """
    if isinstance(tree, ast.Expression):
        return _build(tree.body, env, text)
    scope = dict(env)
    for line in tree.body:
        value = _build(line.value, scope, text)
        if isinstance(line, ast.Assign):
            scope[line.targets[0].id] = value
            if steps is not None:
                steps[line.targets[0].id] = value
    return value


def _build(root: ast.AST, env: dict, text: str) -> T.Tensor | float:
    values: dict[int, object] = {}
    stack: list[tuple[ast.AST, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        operands = _operands(node)
        if not ready:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(operands))
            continue
        values[id(node)] = _evaluate(node, [values.pop(id(c)) for c in operands], env, text)
    result = values[id(root)]
    return float(result) if isinstance(result, int) else result


def _operands(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Compare):
        return [node.left, node.comparators[0]]
    if isinstance(node, ast.Call):
        return list(node.args) + [k.value for k in node.keywords]
    if isinstance(node, ast.Subscript):
        return [node.value]
    return []


def _evaluate(node: ast.AST, args: list, env: dict, text: str):
    """One node's value from its operands' values."""
    if isinstance(node, ast.Constant):
        return node.value if abs(node.value) <= 10**15 else float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -args[0] if isinstance(node.op, ast.USub) else args[0]
    if isinstance(node, ast.Subscript):
        return _subscript(node, args[0], text)
    if isinstance(node, (ast.BinOp, ast.Compare)):
        fn = _BINARY[type(node.op)] if isinstance(node, ast.BinOp) else _COMPARE[type(node.ops[0])]
        if all(isinstance(a, (int, float)) for a in args):
            return T.fold(fn, *args)
        try:
            return fn(*args)
        except T.ShapeError as e:
            raise T.ShapeError(f"{e} in {_segment(node, text)}{_at(node, text)}") from None
    name = node.func.id
    if name in _EXTRA:
        fn, arity = _EXTRA[name]
        if len(args) != arity:
            raise ParseError(f"{name} takes {arity} arguments, got {len(args)}",
                             **_place(node, text))
        return fn(*args)
    given = len(node.args)
    keywords = {k.arg: value for k, value in zip(node.keywords, args[given:])}
    try:
        return T.function(name, *args[:given], **keywords)
    except T.ArgumentError as e:
        raise ParseError(str(e), **_place(node, text)) from None


def _subscript(node: ast.Subscript, value, text: str):
    """`name[index]`: only of a name the formula declares as an array (shapes=, batch=)."""
    name = node.value.id
    if not isinstance(value, T.Tensor) or not value.shape:
        raise ParseError(f"{name} is a scalar, so it cannot be indexed; declare it as an array "
                         f"with shapes={{{name!r}: (...)}}", **_place(node, text))
    try:
        return value[static_key(node.slice, text)]
    except SymdiffError as e:
        raise type(e)(f"{e} in {_segment(node, text)}{_at(node, text)}") from None


def _segment(node: ast.AST, text: str) -> str:
    return ast.get_source_segment(formula_text(text), node) or _quote(text)


def _at(node: ast.AST, text: str) -> str:
    where = _place(node, text)
    line = f"line {where['line']}, " if where["line"] else ""
    return f" [{line}col {node.col_offset + 1}]"


def _quote(text: str, limit: int = 60) -> str:
    """`text` for an error message, shortened if long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")

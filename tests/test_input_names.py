"""Any identifier is an input name: the parameter names of every method and function that takes
a model's inputs by keyword (collected with `inspect`), `self`, and the names the generated
entry points once gave their own parameters, on both tiers. A model whose inputs take all those
names at once gives, through every method, the numbers of the same model with ordinary names.
"""
import ast
import inspect

import numpy as np
import pytest

import symdiff as sd
from symdiff.bridge import Layout, Objective, Residuals
from symdiff.codegen.compiled import Compiled, Jacobian
from symdiff.codegen.emit import MACHINERY
from symdiff.errors import ArgumentError
from symdiff.ir import RESERVED

# what the generated entry points and optimizer steps called their own parameters, closures
# and builtins before those were underscored; and a name from the issue
GENERATED = ("threaded", "slow", "parallel", "missing", "unknown", "step", "rule", "hyper",
             "state", "noise", "general", "sgd", "steps", "key", "check", "len", "dict",
             "ValueError", "TypeError", "KeyError", "AttributeError", "IndexError", "x0",
             "opt", "lr", "first", "value", "status", "constants", "arguments", "t")
# (opt and lr: the first parameters of f.step and f.sgd_step, generated functions)


def parameter_names() -> set[str]:
    """Every parameter name of the public methods of Compiled, Jacobian and the SciPy bridge's
    classes, and of the public functions of symdiff.api and symdiff.bridge; and `self`."""
    methods = [method for cls in (Compiled, Jacobian, Layout, Objective, Residuals)
               for name, method in inspect.getmembers(cls, callable)
               if not name.startswith("_") or name == "__call__"]
    functions = [f for f in vars(sd).values()
                 if inspect.isfunction(f) and f.__module__ in ("symdiff.api", "symdiff.bridge")]
    return {"self"}.union(*(inspect.signature(f).parameters for f in methods + functions))


NAMES = sorted(n for n in parameter_names() | set(GENERATED)
               if n not in RESERVED and not n.startswith("_"))  # (those are refused anyway)
BATCH = "x"  # Objective.fun's parameter: the batch input
INPUTS = [n for n in NAMES if n != BATCH]
# the parameters: a few (an optimizer step's compile grows with their number), among them the
# names of the options and those that name the parameters (`flatten(params, ...)`)
WRT = ["self", "v", "tangents", "opt", "lr", "params", "state", "x0"]
PLAIN = {**{n: f"a{k}" for k, n in enumerate(INPUTS)}, BATCH: "xs"}  # ordinary names, in order


def formula(names: dict) -> str:
    """One term per input, each weighted, so that two swapped arguments change the numbers;
    per example total*x + sin(total)*x**2."""
    total = " + ".join(f"{k + 1}*{names[n]}" for k, n in enumerate(INPUTS))
    x = names[BATCH]
    return f"total = {total}\ntotal*{x} + sin(total)*{x}**2"


def compile_both(tier: str) -> tuple:
    """(the model with the names, the same model with ordinary names)."""
    return tuple(sd.compile(formula(names), wrt=[names[n] for n in WRT], batch=[names[BATCH]],
                            tier=tier) for names in ({n: n for n in NAMES}, PLAIN))


@pytest.fixture(scope="module")
def kernel_models():
    return compile_both("kernel")


@pytest.fixture(scope="module")
def tape_models():
    return compile_both("tape")


@pytest.fixture(params=["kernel", "tape"])
def models(request):
    named, reference = request.getfixturevalue(f"{request.param}_models")
    assert named.wait().tier == reference.wait().tier == request.param
    return named, reference


@pytest.fixture(scope="module", params=["kernel", "tape"])
def jacobians(request):
    """(named, plain) Jacobians of the per-example model."""
    return tuple(sd.jacobian(formula(names), wrt=[names[n] for n in WRT], batch=[names[BATCH]],
                             tier=request.param) for names in ({n: n for n in NAMES}, PLAIN))


RNG = np.random.default_rng(25)
POINT = {**{n: float(RNG.uniform(-0.03, 0.03)) for n in INPUTS}, BATCH: RNG.normal(size=5)}
DATA = {n: value for n, value in POINT.items() if n not in WRT}  # `compiled`, `jacobian`, ...
DIRECTION = {n: float(RNG.normal()) for n in WRT}


def plain(named: dict) -> dict:
    """The same arguments under the ordinary names."""
    return {PLAIN[n]: value for n, value in named.items()}


def as_named(values: dict) -> dict:
    """Results keyed by ordinary names, keyed by the names."""
    back = {p: n for n, p in PLAIN.items()}
    return {back[p]: value for p, value in values.items()}


def in_place(point: dict) -> dict:
    """The parameters as the writable 0-d arrays a step updates; the batch as it is."""
    return {n: np.array(v) if n in WRT else v for n, v in point.items()}


def parameters(point: dict) -> dict:
    """{parameter: its value as a float}."""
    return {n: float(v) for n, v in point.items() if n in WRT}


def test_the_names_include_every_colliding_parameter():
    assert {"self", "v", "tangents", "eps", "by_line", "opt", "lr", "collapse", "path",
            "compiled", "jacobian", "params", "arguments", "x0"} <= set(NAMES)
    assert set(WRT) <= set(NAMES)


def test_value_and_gradients(models):
    named, reference = models
    value, grads = named.value_and_grad(**POINT)
    assert (value, grads) == (reference.value_and_grad(**plain(POINT))[0],
                              as_named(reference.value_and_grad(**plain(POINT))[1]))
    assert named(**POINT) == reference(**plain(POINT)) == value
    assert named.grad(**POINT) == grads
    # the slow path: a list, an int and a 0-d array, converted by name
    slow = {**POINT, BATCH: list(POINT[BATCH]), "self": 0, "v": np.array(0.0)}
    assert named.value_and_grad(**slow) == (reference.value_and_grad(**plain(slow))[0],
                                            as_named(reference.value_and_grad(**plain(slow))[1]))
    with pytest.raises(ArgumentError, match="missing argument self"):
        named.value_and_grad(**{n: v for n, v in POINT.items() if n != "self"})


def test_forward_mode_and_second_order(models):
    named, reference = models
    assert named.jvp(DIRECTION, **POINT) == reference.jvp(plain(DIRECTION), **plain(POINT))
    products = named.hvp(DIRECTION, **POINT)
    assert products == as_named(reference.hvp(plain(DIRECTION), **plain(POINT)))
    assert sd.hvp(named)(DIRECTION, **POINT) == products
    hessian = named.hessian(**POINT)
    assert np.array_equal(hessian, reference.hessian(**plain(POINT)))
    assert np.array_equal(sd.hessian(named)(**POINT), hessian)


def test_optimizer_steps(models):
    named, reference = models
    for make in (lambda: sd.optim.SGD(0.1, momentum=0.9), lambda: sd.optim.Adam(0.01)):
        ours, theirs = in_place(POINT), plain(in_place(POINT))
        named_opt, plain_opt = make(), make()
        for batch in (POINT[BATCH], POINT[BATCH], list(POINT[BATCH])):  # the last, slow
            ours[BATCH], theirs[PLAIN[BATCH]] = batch, batch
            assert named.step(named_opt, **ours) == reference.step(plain_opt, **theirs)
        assert parameters(ours) == parameters(as_named(theirs)) != parameters(POINT)
    ours, theirs = in_place(POINT), plain(in_place(POINT))
    for _ in range(2):
        assert named.sgd_step(0.5, **ours) == reference.sgd_step(0.5, **theirs)
    assert parameters(ours) == parameters(as_named(theirs)) != parameters(POINT)


def test_check_grad_explain_graph_and_report(models, tmp_path):
    named, reference = models
    assert sd.check_grad(named, **POINT) == sd.check_grad(reference, **plain(POINT))
    assert sd.check_grad(named, 1e-5, **POINT) == sd.check_grad(reference, 1e-5,
                                                                **plain(POINT))
    lines = sd.check_grad(named, 1e-6, True, **POINT)
    theirs = sd.check_grad(reference, 1e-6, True, **plain(POINT))
    assert lines.ok and [(line.adjoint, line.numeric) for line in lines.lines] == \
        [(line.adjoint, line.numeric) for line in theirs.lines]
    table = named.explain(**POINT)
    assert table.value == reference.explain(**plain(POINT)).value
    assert list(table.gradients.values()) == \
        list(reference.explain(**plain(POINT)).gradients.values())
    assert "self" in named.graph(**POINT).dot and named.graph(True, **POINT).dot
    assert named.report(tmp_path / "page.html", **POINT).exists()


def test_scipy_objective(models):
    named, reference = models
    ours = sd.scipy_objective(named, **DATA)
    theirs = sd.scipy_objective(reference, **plain(DATA))
    point = {n: POINT[n] for n in WRT}  # `self` and `params` among them
    at = ours.flatten(**point)
    assert np.array_equal(at, theirs.flatten(plain(point)))
    assert np.array_equal(ours.flatten({"self": POINT["self"]}, **{n: v for n, v in
                                       point.items() if n != "self"}), at)
    assert ours.unflatten(at) == point
    along = ours.flatten(**DIRECTION)
    value, gradient = ours.fun(at)
    assert value == theirs.fun(at)[0] and np.array_equal(gradient, theirs.fun(at)[1])
    assert np.array_equal(ours.hessp(at, along), theirs.hessp(at, along))
    assert np.array_equal(ours.hess(at), theirs.hess(at))


def test_jacobian_and_scipy_residuals(jacobians):
    named, reference = jacobians
    assert np.array_equal(named(**POINT), reference(**plain(POINT)))
    ours = sd.scipy_residuals(named, **DATA)
    theirs = sd.scipy_residuals(reference, **plain(DATA))
    at = ours.flatten(**{n: POINT[n] for n in WRT})
    assert np.array_equal(ours.fun(at), theirs.fun(at))
    assert np.array_equal(ours.jac(at), theirs.jac(at))


def test_options_also_come_by_keyword_when_no_input_has_their_name(tape_models):
    _, reference = tape_models
    point, direction = plain(POINT), plain(DIRECTION)
    assert reference.hvp(v=direction, **point) == reference.hvp(direction, **point)
    assert reference.jvp(tangents=direction, **point) == reference.jvp(direction, **point)
    assert sd.check_grad(reference, eps=1e-5, **point) == sd.check_grad(reference, 1e-5, **point)
    assert sd.check_grad(reference, by_line=True, **point).ok
    assert reference.graph(collapse=True, **point).dot == reference.graph(True, **point).dot


def test_an_option_named_like_an_input_comes_by_position(tape_models):
    named, _ = tape_models
    with pytest.raises(ArgumentError, match="hvp is missing its argument v; v= is the model's"):
        named.hvp(**POINT)
    with pytest.raises(ArgumentError, match="jvp is missing its argument tangents"):
        named.jvp(**POINT)
    with pytest.raises(TypeError):
        named.step(**in_place(POINT))  # opt, like lr and path, only by position


def outside_names(source: str) -> dict[str, list[str]]:
    """{function: the names it reads from outside itself that an input could take}."""
    found = {}

    def visit(function):
        a = function.args
        parameters = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
        parameters |= {p.arg for p in (a.vararg, a.kwarg) if p}
        loads, stores, stack = set(), set(), list(function.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef):  # its defaults are read here
                stores.add(node.name)
                stack += [d for d in node.args.defaults + node.args.kw_defaults if d]
                visit(node)
                continue
            if isinstance(node, ast.Name):
                (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
            stack.extend(ast.iter_child_nodes(node))
        taken = sorted(n for n in loads - parameters - stores
                       if not n.startswith("_") and n not in RESERVED)
        if taken:
            found[function.name] = taken

    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            visit(node)
    return found


@pytest.fixture(scope="module")
def cubic():
    """The model of the issue's `v`; small, so each of its Programs runs as a kernel."""
    return sd.compile("v**3 + v*w**2", wrt=["v", "w"])  # H = [[6v, 2w], [2w, 2v]]


def test_generated_code_reads_no_name_an_input_can_take(kernel_models, cubic):
    stepped = kernel_models[0]  # its source then shows the optimizer steps' modules too
    for opt in (sd.optim.SGD(0.1, momentum=0.9), sd.optim.Adam(0.01)):
        stepped.step(opt, **in_place(POINT))
    stepped.sgd_step(0.1, **in_place(POINT))
    sources = [model.source_of(kind) for model in (kernel_models[0], cubic)
               for kind in ("grad", "value", "jvp", "hvp")] + [stepped.source]
    generated = [source for source in sources if MACHINERY in source]  # (not a tape's listing)
    assert len(generated) >= 6
    for source in generated:
        assert outside_names(source) == {}
    assert outside_names("def f(a, b=c):\n    def g(d):\n        return a + d + e\n") == \
        {"g": ["a", "e"]}  # the check sees closures and globals


def test_an_input_named_v_works_with_hvp_and_hessian(cubic):
    """Issue 25: an input named v made hvp and sd.hessian fail ("got multiple values for
    argument 'v'")."""
    f = cubic
    assert f.hvp({"v": 1.0, "w": 0.0}, v=2.0, w=0.5) == {"v": 12.0, "w": 1.0}
    assert sd.hvp(f)({"w": 1.0}, v=2.0, w=0.5) == {"v": 1.0, "w": 4.0}
    assert np.array_equal(sd.hessian(f)(v=2.0, w=0.5), [[12.0, 1.0], [1.0, 4.0]])


def test_an_input_named_self_works():
    """Issue 25: an input named self compiled, and then every call failed."""
    f = sd.compile("self*x + self**2", wrt=["self"])
    assert f(self=3.0, x=2.0) == 15.0
    assert f.value_and_grad(self=3.0, x=2.0) == (15.0, {"self": 8.0})
    assert f.grad(self=3, x=np.array(2.0)) == {"self": 8.0}  # converted, by name
    parameter = np.array(3.0)
    assert f.sgd_step(0.25, self=parameter, x=2.0) == 15.0 and parameter == 1.0
    assert sd.check_grad(f, self=3.0, x=2.0) < 1e-8

"""The house's shape, read from the code's own imports: layers point one way, no circles.

A subpackage of jaxgen may import only subpackages of lower layers (and itself); modules form
no import circle, counting imports inside functions too; nothing outside the package imports a
private name of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A name is a subpackage or top-level module of jaxgen.
LAYERS = (
    {"requests"},  # the request schema and its errors: the words every layer speaks
    {"models", "shapes", "schedulers", "default_model", "logs"},
    {"weights"},
    {"images"},  # init images and masks, read for the engine
    {"engine"},
    {"dataset", "eval"},
    {"beam", "train", "report"},
    {"augment"},  # a recipe over a labelled dataset, run by the beam pipeline
    {"api"},
    {"cli"},
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (ROOT / "jaxgen").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imported(path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) of every absolute import in the file, functions' own included;
    not those under `if TYPE_CHECKING:`, which never run."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for name, _ in _imported(path):
            target = resolve(name) if name.startswith("jaxgen") else ""
            # A module importing its own package (e.g. for a sibling's name) is no circle.
            if target and target != mod and not mod.startswith(target + "."):
                graph[mod].add(target)
    return graph


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_subpackage_has_a_layer():
    parts = {_part(m) for m in _modules()} - {""}
    assert parts <= set(LEVEL), f"give these a layer in LAYERS: {sorted(parts - set(LEVEL))}"


def test_imports_point_down_the_layers():
    wrong = []
    for mod, targets in _graph().items():
        for target in targets:
            a, b = _part(mod), _part(target)
            if a in LEVEL and b in LEVEL and a != b and LEVEL[b] >= LEVEL[a]:
                wrong.append(f"{mod} -> {target}")
    assert not wrong, "imports from a layer to one at or above it: " + ", ".join(sorted(wrong))


def test_no_import_circles():
    graph, order, low, stack, on_stack, circles = _graph(), {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in order:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_package_does_not_import_the_launchers():
    outside = ("pipelines", "benchmarks", "research", "scripts", "tests")
    wrong = [f"{path.relative_to(ROOT)}:{line} {name}" for path in _modules().values()
             for name, line in _imported(path) if name.split(".")[0] in outside]
    assert not wrong, wrong


@pytest.mark.parametrize("folder", ["pipelines", "benchmarks", "research", "scripts", "tests"])
def test_nothing_outside_the_package_imports_its_private_names(folder):
    wrong = []
    for path in (ROOT / folder).rglob("*.py"):
        for name, line in _imported(path):
            parts = name.split(".")
            if parts[0] == "jaxgen" and any(p.startswith("_") and not p.startswith("__")
                                            for p in parts):
                wrong.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not wrong, wrong

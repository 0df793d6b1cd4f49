"""The layout of ``curate/review/``: no import circles, a leaf for the names, small pieces.

The import graph is read with :mod:`ast` from the source, imports inside functions
included (they are how the package defers FiftyOne, and a deferred import can still close
a circle). No FiftyOne or MongoDB needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "curate.review"
ROOT = Path(__file__).resolve().parent.parent / "curate" / "review"
#: The leaf every other review module takes its field names from.
LEAF = "fields"
#: Modules below the load: they may not import the modules that orchestrate it.
LOWER = ("views", "label_scores", "corrections")
UPPER = ("load", "runs", "sources", "documents", "audit_fields")
MAX_FUNCTION_LINES = 120
MAX_MODULE_LINES = 800


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(ROOT.glob("*.py"))}


def imported_modules(tree: ast.Module, modules: set[str]) -> set[str]:
    """The package's modules ``tree`` imports anywhere (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if alias.name.startswith(PACKAGE + ".") and len(parts) > 2:
                    found.add(parts[2])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: ``from . import x`` / ``from .x import y``
                base = PACKAGE + ("." + base if base else "")
            if base == PACKAGE:
                found.update(alias.name for alias in node.names if alias.name in modules)
            elif base.startswith(PACKAGE + "."):
                found.add(base.split(".")[2])
    return found & modules


def import_graph() -> dict[str, set[str]]:
    trees = _modules()
    names = set(trees) - {"__init__"}
    return {name: imported_modules(trees[name], names) - {name} for name in sorted(names)}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; every component, singletons included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_circles() -> None:
    graph = import_graph()
    circles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert circles == [], f"import circles in {PACKAGE}: {circles} (graph {graph})"


def test_graph_reader_sees_deferred_and_relative_imports() -> None:
    tree = ast.parse(
        "from curate.review import db\n"
        "def f():\n    from curate.review.load import x\n    from . import views\n"
        "import curate.review.runs as r\n"
    )
    assert imported_modules(tree, {"db", "load", "views", "runs", "fields"}) == {"db", "load", "views", "runs"}
    assert strongly_connected_components({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"], ["c"]]


def test_fields_is_a_leaf() -> None:
    tree = _modules()[LEAF]
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add(("." * node.level) + (node.module or ""))
    allowed = {"__future__", "dataclasses", "re", "curate"}
    assert roots <= allowed | {"curate.labels"}, roots
    assert not imported_modules(tree, set(import_graph())), "the leaf imports another review module"


@pytest.mark.parametrize("module", LOWER)
def test_lower_modules_do_not_import_upward(module: str) -> None:
    assert not import_graph()[module] & set(UPPER), import_graph()[module]


def test_functions_and_modules_are_small() -> None:
    too_long = []
    for name, tree in _modules().items():
        lines = len((ROOT / f"{name}.py").read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}.py: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []

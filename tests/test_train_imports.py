"""The import graph of ``train/``: no circles, counting imports inside functions too (read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "train"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (module level or inside
    functions). ``from train import x`` counts as importing ``train.x`` when ``x`` is a module,
    else the package itself; the implicit import of a parent package is not counted."""
    name = package.name
    modules = {f"{name}.{path.stem}" if path.stem != "__init__" else name: path for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # relative: from . import x / from .x import y
                base = f"{name}.{node.module}" if node.module else name
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_train_has_no_import_circles() -> None:
    graph = import_graph(PACKAGE)
    assert {"train.loop", "train.fit", "train.oof", "train.data", "train.rows"} <= set(graph)
    circles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert circles == []


def test_fit_compare_runs_and_oof_do_not_import_loop() -> None:
    graph = import_graph(PACKAGE)
    for module in ("train.fit", "train.compare", "train.runs", "train.oof"):
        assert "train.loop" not in graph[module], module
    assert "train.fit" in graph["train.loop"] and "train.fit" in graph["train.oof"]  # the shared fit


def test_the_graph_sees_imports_inside_functions(tmp_path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from pkg.a import f\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["pkg.a", "pkg.b"]]

"""The shape of the library code: import circles, longest functions, longest modules.

Run ``python tests/code_shape.py [ROOT]`` for the report the architecture test checks
(``tests/test_architecture.py``). Imports are read with ``ast`` -- including imports inside
functions, which a circle must not hide behind -- and resolved to the project's modules;
circles are the strongly connected components of that graph with more than one module.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("curate", "train", "tfds_builders")


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of :data:`PACKAGES` (tests excluded)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            if path.name.endswith("_test.py") or "tests" in relative.parts:
                continue
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            found[".".join(parts)] = path
    return found


def _imported(name: str, node: ast.AST, known: dict[str, Path]) -> Iterator[str]:
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # `from curate import labels` imports the module curate.labels; `from curate.x import f`, curate.x
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    else:
        return
    for target in targets:
        while target and target not in known:  # `from curate import labels` -> curate.labels
            target = target.rpartition(".")[0]
        if target and target != name:
            yield target


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {target for node in ast.walk(tree) for target in _imported(name, node, known)}
    return graph


def _package_edges_only(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ importing its own submodules (and them importing a sibling
    # through the package) is how packages re-export; a circle is between modules.
    out = {}
    for name, targets in graph.items():
        out[name] = {t for t in targets if not (name.startswith(t + ".") or t.startswith(name + "."))}
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph = _package_edges_only(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def longest_functions(root: Path, top: int = 10) -> list[tuple[int, str]]:
    """``(lines, "file:line name")`` of the longest functions, longest first."""
    rows = []
    for path in modules(root).values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(rows, key=lambda row: (-row[0], row[1]))[:top]


def longest_modules(root: Path, top: int = 10) -> list[tuple[int, str]]:
    """``(lines, file)`` of the longest modules, longest first."""
    rows = [(len(path.read_text().splitlines()), str(path.relative_to(root))) for path in modules(root).values()]
    return sorted(rows, key=lambda row: (-row[0], row[1]))[:top]


def report(root: Path) -> str:
    lines = [f"import circles: {len(found := circles(import_graph(root)))}"]
    lines += [f"  {' <-> '.join(component)}" for component in found]
    lines.append("longest functions (lines):")
    lines += [f"  {n:4d} {where}" for n, where in longest_functions(root)]
    lines.append("longest modules (lines):")
    lines += [f"  {n:4d} {where}" for n, where in longest_modules(root)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)))

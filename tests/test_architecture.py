"""The package map holds: no import circles, no function over 120 lines, no module over 800.

``tests/code_shape.py`` reads the code with ``ast`` (imports inside functions included);
``python tests/code_shape.py`` prints what these tests check.
"""

from __future__ import annotations

from pathlib import Path

from code_shape import circles, import_graph, longest_functions, longest_modules

ROOT = Path(__file__).resolve().parent.parent


def test_no_import_circles():
    assert circles(import_graph(ROOT)) == []


def test_the_checker_sees_a_circle_hidden_in_a_function(tmp_path):
    package = tmp_path / "curate"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from curate import b\n")
    (package / "b.py").write_text("def later():\n    from curate.a import thing\n")
    (package / "c.py").write_text("from . import d\n")  # relative imports count too
    (package / "d.py").write_text("def later():\n    from .c import thing\n")
    assert circles(import_graph(tmp_path)) == [["curate.a", "curate.b"], ["curate.c", "curate.d"]]


def test_functions_and_modules_stay_readable():
    assert [row for row in longest_functions(ROOT, top=1000) if row[0] > 120] == []
    assert [row for row in longest_modules(ROOT, top=1000) if row[0] > 800] == []


def test_the_architecture_rules_hold():
    graph = import_graph(ROOT)
    for name, targets in graph.items():
        if name.startswith(("tfds_builders", "train")):
            assert not any(t.startswith("curate.review") for t in targets), (name, targets)
        if name.startswith("tfds_builders"):
            assert not any(t.startswith("train") for t in targets), (name, targets)
        if name.startswith("curate.") and not name.startswith(("curate.cli", "curate.review", "curate.demo")):
            assert not any(t.startswith("curate.review") for t in targets), (name, targets)
        if name in ("curate.labels", "curate.datasets"):
            assert targets <= {"curate.labels"}, (name, targets)
        if name.startswith("curate.formats"):
            assert not any(t.startswith(("curate.workspace", "curate.studies", "train")) for t in targets), name


def _inside(graph: dict[str, set[str]], module: str, package: str) -> set[str]:
    return {target for target in graph[module] if target.startswith(package + ".")}


def test_review_modules_import_downward_only():
    graph = import_graph(ROOT)
    assert graph["curate.review.fields"] <= {"curate.labels"}  # the leaf
    for module in ("views", "label_scores", "corrections"):
        assert _inside(graph, f"curate.review.{module}", "curate.review") <= {
            "curate.review.fields", "curate.review.duplicates"
        }, module  # fmt: skip
    assert {"curate.review.sources", "curate.review.documents", "curate.review.runs"} <= graph["curate.review.load"]


def test_the_trainer_and_cross_fitting_share_one_fit():
    graph = import_graph(ROOT)
    for module in ("fit", "compare", "runs", "oof"):
        assert "train.loop" not in graph[f"train.{module}"], module
    assert "train.fit" in graph["train.loop"] and "train.fit" in graph["train.oof"]


def test_the_studies_share_one_counting_module():
    graph = import_graph(ROOT)
    assert not _inside(graph, "curate.studies.counting", "curate.studies")
    assert "curate.studies.counting" in graph["curate.studies.balance"] & graph["curate.studies.remap"]

"""Protocols and data fingerprints in the studies; FER+ vote disagreement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from workspace_tables import affectnet_rows, parsed

from curate import labels
from curate.cli import app
from curate.studies import run_remap_study
from curate.studies.remap import policy_runs, policy_study
from curate.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from curate.cli.app import console

    monkeypatch.setattr(console, "width", 250)


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path / "ws", timeout=0)
    workspace.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="hand")
    return workspace


def _metrics(protocol, fingerprint, balanced, cf=None, *, seed=None, balanced_accuracy=None):
    out = {"balanced": {"accuracy": balanced}}
    if balanced_accuracy is not None:
        out["balanced"]["balanced_accuracy"] = balanced_accuracy
    if seed is not None:
        out["seed"], out["arm"] = seed, "arm:x"
    if cf is not None:
        out["class_frequency"] = {"accuracy": cf}
    if protocol is not None:
        out["protocol"] = protocol
    if fingerprint is not None:
        out["data_fingerprint"] = fingerprint
    return out


# -- task 1: protocol and fingerprint beside every registered run ----------------------


def test_policy_runs_one_row_per_protocol_and_fingerprint():
    runs = [  # newest first, as runs_from returns them
        {"name": "new", "policy": "p", "path": "/a", "metrics": _metrics("affectnet-8@1", "sha256:aa", 0.6)},
        {"name": "other", "policy": "q", "path": "/b", "metrics": _metrics("affectnet-7@1", "sha256:aa", 0.9)},
        {"name": "old", "policy": "p", "path": "/c", "metrics": _metrics("affectnet-8@1", "sha256:aa", 0.4)},
        {"name": "newdata", "policy": "p", "path": "/d", "metrics": _metrics("affectnet-8@1", "sha256:bb", 0.5)},
        {"name": "merged", "policy": "p", "path": "/e", "metrics": _metrics("affectnet-8-merge@1", "sha256:aa", 0.7)},
        {"name": "bare", "policy": "p", "path": "/f", "metrics": {"balanced/accuracy": 0.3}},
    ]
    rows = policy_runs(runs, "p")
    assert [r["name"] for r in rows] == ["new", "newdata", "merged", "bare"]
    # Never averaged: the newest run of (affectnet-8@1, sha256:aa) keeps its own number.
    assert rows[0]["views"]["balanced"]["accuracy"] == {"mean": 0.6, "sd": None, "values": [0.6]}
    assert rows[0]["runs"] == 2
    assert (rows[1]["protocol"], rows[1]["data_fingerprint"]) == ("affectnet-8@1", "sha256:bb")
    assert rows[2]["protocol"] == "affectnet-8-merge@1"
    assert rows[3]["protocol"] is None and rows[3]["data_fingerprint"] is None
    assert rows[3]["views"]["balanced"]["accuracy"]["mean"] == 0.3
    assert policy_runs(runs, "none") == []


def test_policy_runs_seeds_of_one_recipe_show_mean_and_sd():
    """Seeds of one recipe (same arm key) are one row: the newest run of each seed, mean and sd;
    another recipe of the same policy is a row of its own."""
    runs = [
        {"name": "s1-new", "policy": "p", "path": "/a", "metrics": _metrics("c@1", "fp", 0.5, seed=1, balanced_accuracy=0.4)},
        {"name": "s0", "policy": "p", "path": "/b", "metrics": _metrics("c@1", "fp", 0.7, seed=0, balanced_accuracy=0.6)},
        {"name": "s1-old", "policy": "p", "path": "/c", "metrics": _metrics("c@1", "fp", 0.1, seed=1, balanced_accuracy=0.1)},
        {"name": "other", "policy": "p", "path": "/d", "metrics": {**_metrics("c@1", "fp", 0.9, seed=0), "arm": "arm:y"}},
    ]  # fmt: skip
    seeds, other = policy_runs(runs, "p")
    assert seeds["name"] == "s1-new" and seeds["seeds"] == [1, 0] and seeds["runs"] == 3
    accuracy = seeds["views"]["balanced"]["accuracy"]
    assert accuracy["mean"] == pytest.approx(0.6) and accuracy["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert seeds["views"]["balanced"]["balanced_accuracy"]["mean"] == pytest.approx(0.5)
    assert other["name"] == "other" and other["views"]["balanced"]["accuracy"]["mean"] == 0.9
    from curate.studies.remap import run_figure

    assert run_figure(seeds, "balanced", "accuracy") == "60.0 ± 14.1% (2 seeds)"
    assert run_figure(other, "balanced", "accuracy") == "90.0%"
    assert run_figure(other, "class_frequency", "accuracy") == "–"


def test_remap_study_prints_protocol_and_fingerprint(ws, tmp_path):
    ws.register_run(
        "d8-a",
        dataset="affectnet",
        policy="drop-8-plus",
        path=".",
        metrics=_metrics("affectnet-8@1", "sha256:1111111111111111", 0.412, 0.5),
    )
    ws.register_run(
        "d8-b",
        dataset="affectnet",
        policy="drop-8-plus",
        path=".",
        metrics=_metrics("affectnet-8@1", "sha256:2222222222222222", 0.455),
    )
    ws.register_run(
        "m2n",
        dataset="affectnet",
        policy="merge-to-neutral",
        path=".",
        metrics=_metrics("affectnet-7-merge@1", None, 0.6),
    )
    results = policy_study(ws, "affectnet", policies=["keep-all", "drop-8-plus", "merge-to-neutral"])
    per = results["per_policy"]
    d8 = {r["name"]: r for r in per["drop-8-plus"]["runs"]}
    assert set(d8) == {"d8-a", "d8-b"}
    assert d8["d8-a"]["data_fingerprint"] == "sha256:1111111111111111"
    assert d8["d8-a"]["views"]["balanced"]["accuracy"]["mean"] == 0.412
    assert d8["d8-b"]["data_fingerprint"] == "sha256:2222222222222222"
    assert d8["d8-b"]["views"]["balanced"]["accuracy"]["mean"] == 0.455
    assert per["drop-8-plus"]["run"] == per["drop-8-plus"]["runs"][0]
    assert per["merge-to-neutral"]["run"]["protocol"] == "affectnet-7-merge@1"
    assert per["keep-all"]["runs"] == [] and per["keep-all"]["run"] is None

    outcome = run_remap_study(
        ws, "affectnet", policies=["keep-all", "drop-8-plus", "merge-to-neutral"], out_dir=tmp_path / "rep", plots=False
    )
    text = outcome.report.markdown.read_text()
    section = text.split("## Registered runs", 1)[1].split("\n## ", 1)[0]
    assert (
        "| policy | run | protocol | data fingerprint | balanced view: accuracy | class-frequency view: accuracy |"
        in section
    )
    assert "| `drop-8-plus` | d8-a | `affectnet-8@1` | `sha256:1111111111111111` | 41.2% | 50.0% |" in section
    assert "| `drop-8-plus` | d8-b | `affectnet-8@1` | `sha256:2222222222222222` | 45.5% | – |" in section
    assert "| `merge-to-neutral` | m2n | `affectnet-7-merge@1` | – | 60.0% | – |" in section
    numbers = json.loads(outcome.report.json.read_text())
    assert {r["data_fingerprint"] for r in numbers["per_policy"]["drop-8-plus"]["runs"]} == {
        "sha256:1111111111111111",
        "sha256:2222222222222222",
    }

    result = runner.invoke(
        app,
        ["study", "remap", "-d", "affectnet", "--policies", "drop-8-plus", "--out", str(tmp_path / "cli"), "--no-plots"]
        + ["-w", str(ws.root)],
    )
    assert result.exit_code == 0, result.output
    assert "registered runs" in result.output
    assert "sha256:1111111111111111" in result.output and "sha256:2222222222222222" in result.output
    assert result.output.count("affectnet-8@1") == 2


# -- task 2: FER+ vote disagreement ----------------------------------------------------


def _fer_rows(with_original: bool):
    from workspace_tables import ferplus_rows

    rows = ferplus_rows()
    # FER2013 originals (canonical): 0 Neutral, 3 Surprise, 1 Happy, 0, 3 Surprise, 1.
    originals = (0, 3, 1, 0, 3, 1)
    for row, original in zip(rows, originals, strict=True):
        if with_original:  # FER2013's own code (raw_label); the workspace keeps its canonical in fer2013_label
            row["raw_label"] = labels.FER2013_TO_CANONICAL.index(original)
            row["label"] = original
        else:
            row["raw_label"] = None
            row["label"] = None
    return rows


def test_vote_disagreement_by_hand(tmp_path):
    from curate.studies.ferplus_modes import vote_mode_study

    ws = Workspace(tmp_path / "fer", timeout=0)
    ws.ingest(parsed("ferplus", _fer_rows(True)), dataset="ferplus", source="hand")
    numbers = vote_mode_study(ws)["disagreement"]
    # Kept by majority: row 0 Neutral 10/10, row 1 Happy 6/10, row 4 Surprise 7/10.
    assert numbers["kept"] == 3 and numbers["kept_per_class"][:4] == [1, 1, 0, 1]
    agreement = numbers["agreement"]
    assert agreement["per_class"][:4] == [1.0, 0.6, None, pytest.approx(0.7)]
    assert agreement["overall"] == pytest.approx((1.0 + 0.6 + 0.7) / 3)
    assert agreement["unanimous_share_per_class"][:2] == [1.0, 0.0]
    entropy = numbers["entropy"]
    assert entropy["unanimous_share"] == pytest.approx(2 / 6)  # rows 0 and 3 (NF)
    assert entropy["max"] == pytest.approx(3.3219, abs=1e-4)
    fer = numbers["fer2013"]
    # Row 0: Neutral vs Neutral; row 1: Happy (FER+) vs Surprise (FER2013); row 4: Surprise vs Surprise.
    assert fer["rows"] == 3 and fer["disagreement"] == pytest.approx(1 / 3)
    assert fer["disagreement_per_majority_class"][:4] == [0.0, 1.0, None, 0.0]
    assert fer["rows_per_fer2013_class"][:4] == [1, 0, 0, 2]
    assert fer["disagreement_per_fer2013_class"][:4] == [0.0, None, None, 0.5]
    assert fer["confusion"][3][1] == 1 and sum(map(sum, fer["confusion"])) == 3

    outcome = run_remap_study(ws, "ferplus", out_dir=tmp_path / "rep", policies=["keep-all"], plots=False)
    text = outcome.report.markdown.read_text()
    assert "## Vote disagreement" in text or "### Vote disagreement" in text
    assert "| Happy | 1 | 60.0% | 0.0% | 1 | 100.0% | 0 | – |" in text
    assert "differs from the original FER2013 label on 33.3% of the 3 kept rows" in text
    stored = json.loads(outcome.report.json.read_text())
    assert stored["vote_modes"]["disagreement"]["fer2013"]["rows"] == 3

    result = runner.invoke(
        app,
        ["study", "remap", "-d", "ferplus", "--policies", "keep-all", "--out", str(tmp_path / "cli"), "--no-plots"]
        + ["-w", str(ws.root)],
    )
    assert result.exit_code == 0, result.output
    assert "FER+ vote disagreement" in result.output
    assert "FER+ majority differs from FER2013 on 33.3% of 3 rows" in result.output


def test_vote_disagreement_votes_only_skips_fer2013(tmp_path):
    from curate.studies.ferplus_modes import vote_mode_study

    ws = Workspace(tmp_path / "fer", timeout=0)
    ws.ingest(parsed("ferplus", _fer_rows(False)), dataset="ferplus", source="hand")
    numbers = vote_mode_study(ws)["disagreement"]
    assert numbers["fer2013"] is None and numbers["agreement"]["per_class"][1] == 0.6
    outcome = run_remap_study(ws, "ferplus", out_dir=tmp_path / "rep", policies=["keep-all"], plots=False)
    assert "only the votes file was ingested" in outcome.report.markdown.read_text()


def test_vote_disagreement_through_manual_dir_ingest(tmp_path):
    """fer2013.csv + fer2013new.csv through `curate ingest --manual-dir`; numbers recomputed from the files."""
    import numpy as np
    import polars as pl

    from curate import labels
    from curate.studies.ferplus_modes import vote_mode_study
    from curate.synth.ferplus import generate_ferplus

    manual = tmp_path / "manual"
    generate_ferplus(manual, scale=0.01, seed=4, annotations_only=True, workers=1)
    ws = Workspace(tmp_path / "ws", timeout=0)
    result = runner.invoke(app, ["ingest", "ferplus", "--manual-dir", str(manual), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    numbers = vote_mode_study(ws)["disagreement"]
    original = pl.read_csv(manual / "fer2013.csv", columns=["emotion"])["emotion"].to_numpy()
    raw = pl.read_csv(manual / "fer2013new.csv", infer_schema_length=0)
    votes = raw.select(list(labels.FERPLUS_VOTE_COLUMNS)).cast(pl.Int64).to_numpy()
    assert len(original) == len(votes) == numbers["rows"]
    canonical = np.asarray(labels.FER2013_TO_CANONICAL)[original]
    targets = labels.ferplus_vote_targets(votes, "majority")
    keep = targets.keep
    differs = targets.label[keep] != canonical[keep]
    fer = numbers["fer2013"]
    assert fer["rows"] == int(keep.sum()) and fer["disagreement"] == pytest.approx(differs.mean())
    for c in range(labels.NUM_CANONICAL):
        in_class = targets.label[keep] == c
        expected = differs[in_class].mean() if in_class.any() else None
        assert fer["disagreement_per_majority_class"][c] == pytest.approx(expected)


def test_vote_disagreement_on_the_real_votes_file(tmp_path):
    import numpy as np
    import polars as pl

    from curate import labels
    from curate.studies.ferplus_modes import vote_mode_study

    path = Path(os.environ.get("FERPLUS_LABELS_CSV") or "/work/shared/data/ferplus/fer2013new.csv")
    if not path.is_file():
        pytest.skip(f"real FER+ vote file absent ({path})")
    ws = Workspace(tmp_path / "ws", timeout=0)
    result = runner.invoke(app, ["ingest", "ferplus", "--votes-file", str(path), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    numbers = vote_mode_study(ws)["disagreement"]
    assert numbers["fer2013"] is None  # only votes: no original labels
    raw = pl.read_csv(path, infer_schema_length=0)
    votes = raw.select(list(labels.FERPLUS_VOTE_COLUMNS)).cast(pl.Int64).to_numpy()
    votes = votes[votes.sum(axis=1) > 0]
    targets = labels.ferplus_vote_targets(votes, "majority")
    assert numbers["kept"] == int(targets.keep.sum())
    # Independent consensus: votes of the majority label's column over all votes, Happy (canonical 1).
    happy = targets.keep & (targets.label == 1)
    expected = (votes[happy, labels.FERPLUS_VOTE_TO_CANONICAL.index(1)] / votes[happy].sum(axis=1)).mean()
    assert numbers["agreement"]["per_class"][1] == pytest.approx(expected)
    assert 0.5 < numbers["agreement"]["overall"] < 1.0
    assert np.isfinite(numbers["entropy"]["mean"])

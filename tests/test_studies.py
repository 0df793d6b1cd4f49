"""Balance, remap and the policy / vote-mode studies, on tables whose numbers are worked out by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from workspace_tables import FERPLUS_VOTES, affectnet_rows, ferplus_rows, parsed, rafdb_rows, random_table

from curate import labels
from curate.studies import balance as bal
from curate.studies import class_weights, run_remap_study
from curate.studies.counting import (
    class_counts_duckdb,
    class_counts_polars,
    remap_frame,
    transition_matrix_duckdb,
    transition_matrix_polars,
)
from curate.studies.ferplus_modes import vote_entropy, vote_mode_study
from curate.studies.holdout import in_holdout
from curate.studies.remap import policy_study, remap, run_view_metrics, va_summary_duckdb
from curate.workspace import NothingIngestedError, Workspace, WorkspaceError


@pytest.fixture
def ws(tmp_path):
    workspace = Workspace(tmp_path / "ws", timeout=0)
    workspace.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="hand")
    return workspace


# -- balance numbers -------------------------------------------------------------------


def test_class_weights_by_hand():
    counts = [10, 30, 60]
    # inverse: raw 1/n -> sum(n * raw) = 3 over N = 100 -> scale 100 / 3.
    assert class_weights(counts, "inverse") == pytest.approx([10 / 3, 10 / 9, 5 / 9])
    raw = 1 / np.sqrt(counts)
    assert class_weights(counts, "sqrt") == pytest.approx(raw * 100 / np.dot(counts, raw))
    effective = [(1 - 0.9**n) / 0.1 for n in counts]
    raw = 1 / np.array(effective)
    assert class_weights(counts, "effective", beta=0.9) == pytest.approx(raw * 100 / np.dot(counts, raw))
    assert class_weights(counts, "none") == pytest.approx([1, 1, 1])
    for method in bal.WEIGHT_METHODS:
        weights = class_weights([5, 0, 20], method)
        assert weights[1] == 0 and np.dot([5, 0, 20], weights) / 25 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown class-weight method 'log'; valid: none, inverse, sqrt, effective"):
        class_weights(counts, "log")
    with pytest.raises(ValueError, match="all zero"):
        class_weights([0, 0], "inverse")
    with pytest.raises(ValueError, match="beta"):
        class_weights(counts, "effective", beta=1.0)


def test_balance_metrics_by_hand():
    counts = [10, 3, 1, 0]
    assert bal.imbalance_ratio(counts) == 10.0
    p = np.array([10, 3, 1]) / 14
    assert bal.normalized_entropy(counts) == pytest.approx(-(p * np.log(p)).sum() / np.log(4))
    assert bal.normalized_entropy([5, 5, 5]) == pytest.approx(1.0)
    assert bal.effective_number([1, 2], beta=0.5).tolist() == pytest.approx([1.0, 1.5])
    assert bal.effective_number([100], beta=0.999)[0] == pytest.approx((1 - 0.999**100) / 0.001)
    assert bal.subsample_plan(counts).tolist() == [1, 1, 1, 0]
    assert bal.oversample_plan(counts).tolist() == [10, 10, 10, 0]
    summary = bal.balance_summary(counts, ["a", "b", "c", "d"])
    assert summary["empty_classes"] == ["d"] and summary["total"] == 14
    assert summary["shares"][0] == pytest.approx(10 / 14)


def test_balance_of_workspace_under_policy(ws):
    report = bal.balance(ws, policy="merge-to-neutral")
    train = report.groups[("affectnet", "train")]
    # Neutral 4 + Contempt 2 + None 2 + Uncertain 1 + No-Face 1 = 10; Happy 3; Sad 1.
    assert train["counts"] == [10, 3, 1, 0, 0, 0, 0] and train["dropped"] == 0
    assert train["imbalance_ratio"] == 10.0
    assert train["weights"]["inverse"] == pytest.approx([14 / 30, 14 / 9, 14 / 3, 0, 0, 0, 0])
    validation = bal.balance(ws, policy="drop-7-plus", split="validation").groups
    assert list(validation) == [("affectnet", "validation")]
    assert validation[("affectnet", "validation")]["counts"][:2] == [1, 1]
    assert validation[("affectnet", "validation")]["dropped"] == 3
    with pytest.raises(
        WorkspaceError, match="split 'test' does not exist in affectnet.*available splits: train, validation"
    ):
        bal.balance(ws, split="test")
    with pytest.raises(labels.PolicyError, match="unknown label policy 'merge'"):
        bal.balance(ws, policy="merge")
    with pytest.raises(NothingIngestedError, match="dataset 'rafdb' is not ingested"):
        bal.balance(ws, dataset="rafdb")


# -- the shared computations agree across engines --------------------------------------


@pytest.mark.parametrize("policy_name", list(labels.BUILTIN_POLICIES))
def test_duckdb_and_polars_agree_for_every_policy(tmp_path, policy_name):
    table = random_table(3000, seed=1)
    policy = labels.get_policy(policy_name)
    import duckdb

    con = duckdb.connect()
    con.register("annotations", table.to_arrow())
    datasets = ["affectnet", "ferplus", "rafdb"]
    duck = class_counts_duckdb(con, policy, datasets=datasets)
    polars_counts = class_counts_polars(table, policy)
    assert duck.keys() == polars_counts.keys()
    for key in duck:
        assert duck[key].tolist() == polars_counts[key].tolist()
    assert (transition_matrix_duckdb(con, policy, datasets=datasets) == transition_matrix_polars(table, policy)).all()
    for split in ("train", "test"):
        assert (
            transition_matrix_duckdb(con, policy, datasets=datasets, split=split)
            == transition_matrix_polars(table, policy, split=split)
        ).all()
    # Every row lands in exactly one column; NumPy's form of the policy agrees too.
    matrix = transition_matrix_polars(table, policy)
    assert matrix.sum() == table.height
    expected = np.bincount(
        np.where(policy.apply(table["label"]) < 0, policy.num_classes, policy.apply(table["label"])),
        minlength=policy.num_classes + 1,
    )
    assert (matrix.sum(axis=0) == expected).all()
    frame = remap_frame(table, policy).collect()
    assert frame["class_index"].null_count() == expected[-1]
    con.close()


def test_va_summary_duckdb_agrees_with_polars_and_skips_sentinels(tmp_path):
    """V/A moments from the workspace equal Polars' on the same ingested rows; -2 never enters."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(600):
        label = int(rng.integers(0, 11))
        annotated = label < 9 and rng.random() > 0.1
        valence, arousal = (rng.uniform(-1, 1, 2).round(4).tolist()) if annotated else (-2.0, -2.0)
        if annotated and rng.random() < 0.05:
            arousal = -2.0  # one sentinel alone: the row is not annotated at all
        rows.append({"id": f"va{i}", "split": "train", "label": label, "valence": valence, "arousal": arousal})
    workspace = Workspace(tmp_path / "ws", timeout=0)
    workspace.ingest(parsed("affectnet", rows), dataset="affectnet", source="hand")
    with workspace.connect() as con:
        duck = va_summary_duckdb(con, "affectnet")
    frame = pl.DataFrame(rows, schema_overrides={"valence": pl.Float32, "arousal": pl.Float32})
    annotated = (pl.col("valence") != -2) & (pl.col("arousal") != -2)
    expected = (
        frame.group_by("label")
        .agg(
            annotated.sum().alias("n"),
            (~annotated).sum().alias("missing"),
            pl.col("valence").filter(annotated).cast(pl.Float64).mean().alias("vm"),
            pl.col("valence").filter(annotated).cast(pl.Float64).std().alias("vs"),
            pl.col("arousal").filter(annotated).cast(pl.Float64).mean().alias("am"),
            pl.col("arousal").filter(annotated).cast(pl.Float64).std().alias("as"),
        )
        .sort("label")
    )
    assert [row[0] for row in duck] == expected["label"].to_list()
    for got, want in zip(duck, expected.iter_rows(), strict=True):
        assert got[:3] == want[:3]
        assert got[3:] == pytest.approx(want[3:], abs=1e-9, nan_ok=True)
        assert got[3] is None or -1 <= got[3] <= 1


# -- remap -----------------------------------------------------------------------------


def test_remap_stores_labels_and_transition_by_hand(ws, tmp_path):
    result = remap(ws, "merge-to-neutral", out=tmp_path / "out" / "m.parquet")
    matrix = result.transition
    assert matrix[:, 0].tolist() == [5, 0, 0, 0, 0, 0, 0, 3, 3, 2, 1]  # Neutral column: 0, 7, 8, 9, 10
    assert matrix[1, 1] == 4 and matrix[2, 2] == 1 and result.kept == 19 and result.dropped == 0
    assert result.balance.groups[("affectnet", "validation")]["counts"] == [4, 1, 0, 0, 0, 0, 0]
    exported = pl.read_parquet(result.out)
    assert exported.height == 19 and set(exported["class_name"]) == {"Neutral", "Happy", "Sad"}
    assert pq.ParquetFile(result.out).metadata.row_group(0).column(0).compression == "ZSTD"
    dropped = remap(ws, "drop-8-plus")
    assert dropped.kept == 13 and dropped.dropped == 6  # None 3, Uncertain 2, No-Face 1
    with ws.connect() as con:
        stored = dict(con.execute("SELECT policy, count(*) FROM remapped GROUP BY policy").fetchall())
        nulls = con.execute(
            "SELECT count(*) FROM remapped WHERE policy = 'drop-8-plus' AND class_index IS NULL"
        ).fetchone()[0]
        policies = [r[0] for r in con.execute("SELECT name FROM policies ORDER BY name").fetchall()]
    assert stored == {"merge-to-neutral": 19, "drop-8-plus": 19}
    assert nulls == dropped.dropped
    assert policies == ["drop-8-plus", "merge-to-neutral"]
    # Running again replaces rather than appends; a re-ingest is followed without a re-remap.
    remap(ws, "drop-8-plus")
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM remapped WHERE policy = 'drop-8-plus'").fetchone()[0] == 19
    ws.ingest(parsed("affectnet", affectnet_rows()[:5]), dataset="affectnet", source="again")
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM remapped WHERE policy = 'drop-8-plus'").fetchone()[0] == 5


def test_remap_with_toml_policy_and_errors(ws, tmp_path):
    path = tmp_path / "five.toml"
    path.write_text(
        'name = "five"\nclasses = ["Neutral", "Positive", "Negative", "Surprise", "Other"]\n'
        "drop = [9, 10]\n[mapping]\nNeutral = 0\nHappy = 1\nSad = 2\nFear = 2\nDisgust = 2\nAnger = 2\n"
        "Surprise = 3\nContempt = 4\nNone = 4\n",
        encoding="utf-8",
    )
    result = remap(ws, str(path))
    assert result.policy.name == "five"
    assert result.transition[:, -1].sum() == 3  # Uncertain 2 + No-Face 1
    assert result.balance.groups[("affectnet", "train")]["counts"] == [4, 3, 1, 0, 4]
    with pytest.raises(labels.PolicyError, match="unknown label policy"):
        remap(ws, "no-such-policy")
    empty = Workspace(tmp_path / "empty", timeout=0)
    with pytest.raises(NothingIngestedError, match=r"curate ingest .*curate demo"):
        remap(empty, "merge-to-neutral")


# -- the policy study ------------------------------------------------------------------


def test_policy_study_by_hand(ws):
    ws.register_run(
        "m2n",
        dataset="affectnet",
        policy="merge-to-neutral",
        path=".",
        metrics={"balanced": {"accuracy": 0.376}, "class_frequency": {"accuracy": 0.571}},
    )
    ws.register_run("d7", dataset="affectnet", policy="drop-7-plus", path=".", metrics={"balanced/accuracy": 0.211})
    results = policy_study(ws, "affectnet", fraction=0.5, seed=3)
    per = results["per_policy"]
    assert results["policies"] == list(labels.BUILTIN_POLICIES)[:5]
    assert per["drop-7-plus"]["kept"] == {"train": 8, "validation": 2}
    assert per["drop-7-plus"]["dropped"] == {"train": 6, "validation": 3}
    assert per["drop-8-plus"]["kept"] == {"train": 10, "validation": 3}
    assert per["keep-all"]["kept_share"]["train"] == 1.0
    # The balanced view (validation: 0, 1, 7, 8, 9): merging puts 4 of 5 rows in Neutral.
    balanced = per["merge-to-neutral"]["views"]["validation"]
    assert balanced["counts"][:2] == [4, 1] and balanced["majority_accuracy"] == pytest.approx(0.8)
    assert per["keep-all"]["views"]["validation"]["majority_accuracy"] == pytest.approx(0.2)
    # The class-frequency view is the hashed hold-out of train, same rule as the trainer.
    train_ids = [r["id"] for r in affectnet_rows() if r["split"] == "train"]
    train_labels = [r["label"] for r in affectnet_rows() if r["split"] == "train"]
    held = [lbl for i, lbl in zip(train_ids, train_labels, strict=True) if in_holdout(i, fraction=0.5, seed=3)]
    assert results["holdout"]["rows"] == len(held)
    assert results["holdout"]["counts"] == np.bincount(held, minlength=11).tolist()
    assert per["keep-all"]["views"]["class_frequency"]["total"] == len(held)
    # Runs joined by policy.
    merge = per["merge-to-neutral"]["run"]["views"]
    assert merge["balanced"]["accuracy"]["mean"] == 0.376 and merge["balanced"]["accuracy"]["sd"] is None
    assert merge["class_frequency"]["accuracy"]["mean"] == 0.571
    assert per["drop-7-plus"]["run"]["views"]["balanced"]["accuracy"]["mean"] == 0.211
    assert per["keep-all"]["run"] is None
    # V/A: Uncertain and No-Face have none; Contempt is compared with Neutral.
    va = results["va"]["per_label"]
    assert va["Uncertain"]["n_va"] == 0 and va["Uncertain"]["n_without_va"] == 2
    assert va["Neutral"]["n_va"] == 5 and va["Neutral"]["valence_mean"] == pytest.approx(0.0, abs=1e-7)
    assert va["Contempt"]["valence_mean"] == pytest.approx((0.2 + 0.3 + 0.0) / 3, abs=1e-6)
    assert va["Contempt"]["vs_neutral"]["wasserstein_valence"] > 0
    merged = results["va"]["merged_neutral"]["merge-to-neutral"]
    assert (
        merged["labels"] == ["Neutral", "Contempt", "None", "Uncertain", "No-Face"] and merged["rows_without_va"] == 3
    )
    assert set(results["va"]["merged_neutral"]) == {"merge-to-neutral", "merge-8-plus-to-neutral"}
    with pytest.raises(ValueError, match="policy listed twice"):
        policy_study(ws, "affectnet", policies=["keep-all", "keep-all"])


def test_run_view_metrics_forms():
    metrics = {"balanced": {"accuracy": 0.5, "balanced_accuracy": 0.4}, "class_frequency/accuracy": 0.7}
    assert run_view_metrics(metrics) == {
        "balanced": {"accuracy": 0.5, "balanced_accuracy": 0.4},
        "class_frequency": {"accuracy": 0.7, "balanced_accuracy": None},
    }
    assert run_view_metrics({}) == {}


def test_report_files_and_json(ws, tmp_path):
    outcome = run_remap_study(ws, "affectnet", policies=["keep-all", "merge-to-neutral"], out_dir=tmp_path / "rep")
    files = outcome.report
    assert files.markdown.read_text().startswith("# Label policies compared on affectnet")
    text = files.markdown.read_text()
    assert "## Valence and arousal" in text and "**Reading:**" in text
    assert sorted(p.name for p in files.figures) == ["class_bars.png", "transitions.png", "va_density.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in files.figures)
    numbers = json.loads(files.json.read_text())
    assert numbers["per_policy"]["merge-to-neutral"]["transition"][7][0] == 3
    assert ws.study(outcome.study_id)["dataset"] == "affectnet"
    # Default folder under the workspace's reports/.
    again = run_remap_study(ws, "affectnet", policies=["keep-all"], plots=False)
    assert again.report.folder.parent == ws.reports_dir and "va_density.png" not in [
        p.name for p in again.report.figures
    ]


def test_all_datasets_side_by_side(ws, tmp_path):
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    outcome = run_remap_study(ws, "all", out_dir=tmp_path / "all")
    datasets = outcome.results["datasets"]
    assert datasets["rafdb"]["total"][:4] == [1, 2, 0, 2] and sum(datasets["rafdb"]["total"]) == 5
    assert datasets["affectnet"]["splits"]["validation"] == [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert "| 3 Surprise |" in outcome.report.markdown.read_text()


# -- FER+ vote modes -------------------------------------------------------------------


def test_vote_mode_study_by_hand(tmp_path):
    ws = Workspace(tmp_path / "fer", timeout=0)
    ws.ingest(parsed("ferplus", ferplus_rows()), dataset="ferplus", source="hand")
    results = vote_mode_study(ws)
    majority = results["per_mode"]["majority"]
    # Rows 0 (neutral, train), 1 (happiness, train) and 4 (surprise, train) are kept;
    # 2 (tie, validation), 3 (NF, test) and 5 (unknown, test) are not.
    assert majority["kept"] == {"train": 3, "validation": 0, "test": 0}
    assert majority["counts"]["train"][:4] == [1, 1, 0, 1]
    assert results["per_mode"]["argmax"]["kept"] == {"train": 3, "validation": 1, "test": 0}
    assert results["agreement"]["majority"]["majority"]["decision"] == 1.0
    # majority vs argmax differ only on row 2 (argmax keeps Neutral).
    assert results["agreement"]["majority"]["argmax"]["decision"] == pytest.approx(5 / 6)
    entropy = vote_entropy(np.array(FERPLUS_VOTES))
    assert entropy[0] == 0.0 and entropy[2] == pytest.approx(1.0)
    assert majority["mean_entropy_by_class"][0] == 0.0
    for mode in labels.VOTE_MODES:
        targets = labels.ferplus_vote_targets(np.array(FERPLUS_VOTES), mode)
        assert sum(results["per_mode"][mode]["kept"].values()) == int(targets.keep.sum())
    outcome = run_remap_study(ws, "ferplus", out_dir=tmp_path / "rep", policies=["keep-all"])
    assert "FER+ vote modes compared" in outcome.report.markdown.read_text()
    assert {"mode_counts.png", "agreement.png"} <= {p.name for p in outcome.report.figures}


def _ferplus_labels_csv() -> Path | None:
    candidates = [
        os.environ.get("FERPLUS_LABELS_CSV"),
        Path(__file__).resolve().parents[1] / "../shared/data/ferplus/fer2013new.csv",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_real_ferplus_votes_through_ingest_and_study(tmp_path):
    path = _ferplus_labels_csv()
    if path is None:
        pytest.skip(
            "real FER+ vote file absent (set FERPLUS_LABELS_CSV or place ../shared/data/ferplus/fer2013new.csv)"
        )
    pytest.importorskip("curate.formats.ferplus", reason="curate.formats.ferplus (FER+ reader) not available yet")
    from typer.testing import CliRunner

    from curate.cli import app

    ws = Workspace(tmp_path / "ws", timeout=0)
    result = CliRunner().invoke(app, ["ingest", "ferplus", "--votes-file", str(path), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    with ws.connect() as con:
        (source, rows, rejected) = con.execute("SELECT source, rows, rejects FROM ingests").fetchone()
    assert source == f"votes:{path}"
    # Independent read of the file: the ten vote columns as they are written.
    raw = pl.read_csv(path, infer_schema_length=0)
    votes = raw.select(list(labels.FERPLUS_VOTE_COLUMNS)).cast(pl.Int64).to_numpy()
    split = (
        raw["Usage"].replace_strict({"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}).to_numpy()
    )
    assert rows + rejected == raw.height
    results = vote_mode_study(ws)
    for mode in labels.VOTE_MODES:
        targets = labels.ferplus_vote_targets(votes, mode)
        for name in ("train", "validation", "test"):
            in_split = split == name
            expected = np.bincount(targets.label[in_split & targets.keep], minlength=11)
            assert results["per_mode"][mode]["counts"][name] == expected.tolist(), (mode, name)
    majority = results["per_mode"]["majority"]["kept"]
    assert majority["train"] > 20000 and majority["test"] > 3000
    assert sum(results["rows_per_split"].values()) == rows

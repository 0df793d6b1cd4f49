"""Review corrections applied at ingest: relabels override, exclusions become listed rejects."""

from __future__ import annotations

from typer.testing import CliRunner

from curate import corrections
from curate.cli import app
from curate.formats import affectnet
from curate.workspace import Workspace


def test_ingest_applies_corrections_without_losing_rows(synth_affectnet_original, tmp_path):
    parsed = affectnet.read(synth_affectnet_original)
    rows = parsed.annotations.sort("id")
    relabel_id = rows.filter(rows["label"] != 4)["id"][0]
    exclude_id = rows["id"][-1]
    table = corrections.corrections_from_tags(
        [(relabel_id, ["relabel:fear"]), (exclude_id, ["exclude", "seen"])], dataset="affectnet", source="test"
    )
    path = corrections.write_corrections(table, tmp_path / "corrections.parquet")

    workspace = tmp_path / "ws"
    result = CliRunner().invoke(
        app,
        ["ingest", "affectnet", "--manual-dir", str(synth_affectnet_original), "--corrections", str(path),
         "--workspace", str(workspace)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "1 rows relabelled, 1 excluded" in result.output
    stored = Workspace(workspace).annotations("affectnet", columns=["id", "label"])
    assert stored.height == parsed.annotations.height - 1
    labels_by_id = dict(zip(stored["id"].to_list(), stored["label"].to_list(), strict=True))
    assert labels_by_id[relabel_id] == 4 and exclude_id not in labels_by_id
    rejects = Workspace(workspace).rejects("affectnet")
    assert rejects.filter(rejects["reason"] == "excluded by review correction")["id"].to_list() == [exclude_id]
    assert stored.height + rejects.height == parsed.rows_in

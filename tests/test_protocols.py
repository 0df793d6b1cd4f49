"""Tests of curate.protocols: shipped cards, fingerprints, the comparability guard, the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from curate import labels, protocols
from curate.cli import app


def test_shipped_cards_are_consistent():
    expected = {
        "affectnet-7": ("drop-7-plus", 7),
        "affectnet-8": ("drop-8-plus", 8),
        "affectnet-7-merge": ("merge-to-neutral", 7),
        "affectnet-8-merge": ("merge-8-plus-to-neutral", 8),
        "ferplus-8-majority": ("drop-8-plus", 8),
        "ferplus-8-probability": ("drop-8-plus", 8),
        "rafdb-7": ("drop-7-plus", 7),
    }
    for name, (policy, n_classes) in expected.items():
        card = protocols.get_protocol(name)
        assert card.policy == policy and card.label_policy.num_classes == n_classes
        # Model selection never happens on the test split.
        assert card.test_split not in card.selection_split.split()
    assert protocols.get_protocol("affectnet-va").metrics == ("rmse", "ccc", "pcc", "sagr")
    assert protocols.get_protocol("ferplus-8-probability").vote_mode == "probability"
    assert protocols.get_protocol("affectnet-8").test_view == "balanced"


def test_unknown_protocol_lists_known_ones():
    with pytest.raises(protocols.ProtocolError, match="affectnet-8"):
        protocols.get_protocol("affectnet-9")


def test_fingerprint_changes_with_data_and_policy_but_not_order():
    base = dict(dataset="affectnet", dataset_version="1.0.0", annotation_sha256={"a.csv": "1", "b.csv": "2"})
    first = protocols.data_fingerprint(**base, policy="drop-8-plus")
    assert first == protocols.data_fingerprint(
        dataset="affectnet", dataset_version="1.0.0", annotation_sha256={"b.csv": "2", "a.csv": "1"}, policy="drop-8-plus"
    )
    assert first != protocols.data_fingerprint(**base, policy="drop-7-plus")
    assert first != protocols.data_fingerprint(**{**base, "annotation_sha256": {"a.csv": "1", "b.csv": "3"}}, policy="drop-8-plus")
    assert first != protocols.data_fingerprint(**{**base, "dataset_version": "1.0.1"}, policy="drop-8-plus")
    # Same name, other mapping (a user's TOML policy edited in place) -> other fingerprint.
    renamed = labels.LabelPolicy("drop-8-plus", "x", labels.CANONICAL_NAMES[:8], (0, 1, 2, 3, 4, 5, 6, 7, None, None, 0))
    assert first != protocols.data_fingerprint(**base, policy=renamed)
    assert first.startswith("sha256:")


def test_check_comparable_refuses_mixed_protocols():
    assert protocols.check_comparable(["affectnet-8@1", None, "affectnet-8@1"]) == "affectnet-8@1"
    with pytest.raises(protocols.ProtocolError, match="affectnet-7@1, affectnet-8@1"):
        protocols.check_comparable(["affectnet-8@1", "affectnet-7@1"])


def test_cli_lists_and_shows_protocols():
    runner = CliRunner()
    result = runner.invoke(app, ["protocols"], terminal_width=250)
    assert result.exit_code == 0
    for name in protocols.PROTOCOLS:
        assert name in result.output
    result = runner.invoke(app, ["protocols", "rafdb-7"])
    assert result.exit_code == 0 and '"test_split": "test"' in result.output
    result = runner.invoke(app, ["protocols", "nope"])
    assert result.exit_code == 1 and "known protocols" in result.output


def test_train_protocol_option_fixes_dataset_and_policy(monkeypatch):
    import train.config

    seen = {}

    class Stop(Exception):
        pass

    def capture(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(train.config, "TrainConfig", capture)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--protocol", "ferplus-8-probability"])
    assert isinstance(result.exception, Stop), result.output
    assert (seen["dataset"], seen["policy"], seen["vote_mode"]) == ("ferplus", "drop-8-plus", "probability")
    result = runner.invoke(app, ["train", "--protocol", "affectnet-8", "--policy", "drop-7-plus"])
    assert result.exit_code == 1 and "contradicts protocol affectnet-8@1" in result.output
    result = runner.invoke(app, ["train", "--protocol", "affectnet-va"])
    assert result.exit_code == 1 and "valence-arousal" in result.output

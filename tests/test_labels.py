"""Tests of curate.labels: taxonomy, policies, their three backends, TOML policies, FER+ modes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from curate import labels
from curate.labels import BUILTIN_POLICIES, CANONICAL_NAMES, PolicyError

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_LABELS = np.arange(labels.NUM_CANONICAL)


def ferplus_votes_csv() -> Path | None:
    path = Path(os.environ.get("FERPLUS_LABELS_CSV", REPO_ROOT.parent / "shared/data/ferplus/fer2013new.csv"))
    return path if path.is_file() else None


# -- taxonomy ---------------------------------------------------------------------------


def test_dataset_mappings_match_datasets_md():
    from curate import datasets

    assert datasets.to_canonical("ferplus", range(7)).tolist() == [6, 5, 4, 1, 2, 3, 0]
    assert datasets.to_canonical("rafdb", range(1, 8)).tolist() == [3, 4, 5, 1, 2, 6, 0]
    assert datasets.to_canonical("affectnet", range(11)).tolist() == list(range(11))
    assert list(labels.FERPLUS_VOTE_TO_CANONICAL) == [0, 1, 3, 2, 6, 5, 4, 7, 9, 10]
    # Names agree with the canonical names they map to.
    for raf_index, canonical in enumerate(labels.RAFDB_TO_CANONICAL):
        assert labels.RAFDB_NAMES[raf_index][:4] == CANONICAL_NAMES[canonical][:4] or (
            labels.RAFDB_NAMES[raf_index], CANONICAL_NAMES[canonical]
        ) in {("Happiness", "Happy"), ("Sadness", "Sad")}


def test_to_canonical_marks_unknown_codes():
    from curate import datasets

    assert datasets.to_canonical("rafdb", [0, 8, 4]).tolist() == [-1, -1, 1]
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.to_canonical("imagenet", [1])


# -- shipped policies -------------------------------------------------------------------

EXPECTED_CLASSES = {
    "keep-all": CANONICAL_NAMES,
    "drop-7-plus": CANONICAL_NAMES[:7],
    "merge-to-neutral": CANONICAL_NAMES[:7],
    "drop-8-plus": CANONICAL_NAMES[:8],
    "merge-8-plus-to-neutral": CANONICAL_NAMES[:8],
    "drop-no-face": CANONICAL_NAMES[:10],
}
EXPECTED_DROPS = {
    "keep-all": (),
    "drop-7-plus": (7, 8, 9, 10),
    "merge-to-neutral": (),
    "drop-8-plus": (8, 9, 10),
    "merge-8-plus-to-neutral": (),
    "drop-no-face": (10,),
}
EXPECTED_MERGED_INTO_NEUTRAL = {
    "merge-to-neutral": (0, 7, 8, 9, 10),
    "merge-8-plus-to-neutral": (0, 8, 9, 10),
}


def test_registry_ships_the_six_policies():
    assert set(BUILTIN_POLICIES) == set(EXPECTED_CLASSES)


@pytest.mark.parametrize("name", list(EXPECTED_CLASSES))
def test_policy_classes_drops_and_conservation(name):
    policy = labels.get_policy(name)
    assert policy.classes == EXPECTED_CLASSES[name]
    assert policy.dropped_labels == EXPECTED_DROPS[name]
    rng = np.random.default_rng(0)
    rows = rng.integers(0, labels.NUM_CANONICAL, size=5000)
    mapped = policy.apply(rows)
    kept, dropped = (mapped >= 0).sum(), (mapped < 0).sum()
    assert kept + dropped == rows.size
    assert dropped == np.isin(rows, EXPECTED_DROPS[name]).sum()
    source_counts = np.bincount(rows, minlength=labels.NUM_CANONICAL)
    class_counts = np.bincount(mapped[mapped >= 0], minlength=policy.num_classes)
    for class_index, class_name in enumerate(policy.classes):
        sources = [label for label in ALL_LABELS if policy.mapping[label] == class_index]
        assert class_counts[class_index] == source_counts[sources].sum()
        if class_name == "Neutral" and name in EXPECTED_MERGED_INTO_NEUTRAL:
            assert tuple(sources) == EXPECTED_MERGED_INTO_NEUTRAL[name]
        elif class_name != "Neutral":
            assert [CANONICAL_NAMES[s] for s in sources] == [class_name]


@pytest.mark.parametrize("name", list(EXPECTED_CLASSES))
def test_three_backends_agree_on_every_label(name):
    import duckdb
    import polars as pl

    policy = labels.get_policy(name)
    probe = list(range(-1, labels.NUM_CANONICAL + 1))  # includes out-of-range labels
    expected = policy.apply(probe).tolist()

    from_polars = pl.DataFrame({"label": probe}).select(policy.polars_expr("label"))
    assert [(-1 if v is None else v) for v in from_polars.to_series().to_list()] == expected

    connection = duckdb.connect()
    connection.execute("CREATE TABLE rows AS SELECT unnest($1::INTEGER[]) AS label, generate_subscripts($1::INTEGER[], 1) AS i", [probe])
    table = policy.duckdb_table(connection)
    joined = connection.execute(
        f'SELECT coalesce(p.class_index, -1) FROM rows r LEFT JOIN "{table}" p ON p.canonical_label = r.label ORDER BY r.i'
    ).fetchall()
    assert [row[0] for row in joined] == expected
    cased = connection.execute(f"SELECT coalesce({policy.sql_case('label')}, -1) FROM rows ORDER BY i").fetchall()
    assert [row[0] for row in cased] == expected

    import tensorflow as tf

    looked_up = policy.tf_lookup().lookup(tf.constant(probe, dtype=tf.int64)).numpy().tolist()
    assert looked_up == expected


def test_unknown_policy_lists_known_ones():
    with pytest.raises(PolicyError) as error:
        labels.get_policy("merge-all")
    for name in BUILTIN_POLICIES:
        assert name in str(error.value)


# -- TOML policies ----------------------------------------------------------------------

VALID_TOML = """
name = "positive-negative"
description = "Valence buckets"
classes = ["neutral", "positive", "negative"]
drop = ["No-Face", "Uncertain"]

[mapping]
Neutral = "neutral"
None = "neutral"
Happy = "positive"
Surprise = "positive"
Sad = "negative"
Fear = "negative"
Disgust = "negative"
Anger = "negative"
7 = 2
"""


def write(tmp_path, text, name="policy.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_policy_loads_and_maps(tmp_path):
    policy = labels.get_policy(str(write(tmp_path, VALID_TOML)))
    assert policy.classes == ("neutral", "positive", "negative")
    assert policy.apply(ALL_LABELS).tolist() == [0, 1, 2, 1, 2, 2, 2, 2, 0, -1, -1]
    assert policy.source.endswith("policy.toml")


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (lambda t: t.replace("7 = 2\n", ""), "mapping", "Contempt neither mapped nor dropped"),
        (lambda t: t.replace("7 = 2", "7 = 5"), "mapping.7", "out of range"),
        (lambda t: t.replace('"negative"]', '"positive"]'), "classes", "duplicate class name 'positive'"),
        (lambda t: t.replace("[mapping]", "[mapping"), "TOML syntax error", ""),
        (lambda t: t.replace('Sad = "negative"', 'Sad = "sadness"'), "mapping.Sad", "not one of classes"),
        (lambda t: t.replace('"Uncertain"]', '"Uncertain", "Happy"]'), "drop", "both mapped and dropped"),
        (lambda t: t.replace("Neutral =", "Calm ="), "mapping.Calm", "unknown canonical label"),
        (lambda t: t.replace('name = "positive-negative"', 'name = "keep-all"'), "name", "built-in"),
    ],
)
def test_toml_policy_errors_name_file_key_reason(tmp_path, edit, key, reason):
    path = write(tmp_path, edit(VALID_TOML))
    with pytest.raises(PolicyError) as error:
        labels.get_policy(str(path))
    message = str(error.value)
    assert message.startswith(str(path)), message
    assert key in message and reason in message, message


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file"):
        labels.get_policy(str(tmp_path / "absent.toml"))


def test_cli_lists_policies_and_rejects_bad_toml_cleanly(tmp_path):
    from typer.testing import CliRunner

    from curate.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["policies"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in [*BUILTIN_POLICIES, *labels.VOTE_MODES]:
        assert name in result.output
    bad = write(tmp_path, VALID_TOML.replace("7 = 2", "7 = 9"), "bad.toml")
    result = runner.invoke(app, ["policies", str(bad)], terminal_width=300)
    assert result.exit_code == 1
    assert "out of range" in result.output and "Traceback" not in result.output
    good = write(tmp_path, VALID_TOML, "good.toml")
    result = runner.invoke(app, ["policies", str(good)], terminal_width=200)
    assert result.exit_code == 0 and "positive-negative" in result.output


# -- FER+ vote modes ---------------------------------------------------------------------
# Votes are in FER+ column order: neutral, happiness, surprise, sadness, anger, disgust,
# fear, contempt, unknown, NF. Expected labels are canonical (9 = unknown, 10 = NF).

HAND_ROWS = {
    # sadness's single vote is an outlier; neutral 4 of 9 is no majority.
    "outlier_no_majority": [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
    "tie": [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    "all_single_votes": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    "unknown_wins": [2, 0, 0, 0, 0, 0, 0, 0, 8, 0],
    "not_a_face": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
    "exact_30_percent": [7, 3, 0, 0, 0, 0, 0, 0, 0, 0],
    "unknown_ties_top": [4, 0, 0, 0, 0, 0, 0, 0, 4, 2],
    "four_way_tie": [3, 3, 3, 3, 0, 0, 0, 0, 0, 0],
    "two_rounds": [5, 0, 3, 2, 0, 0, 0, 0, 0, 0],
}

# mode -> row -> (canonical label, kept, {canonical class: probability} for kept rows)
EXPECTED = {
    "majority": {
        "outlier_no_majority": (9, False, None),
        "tie": (9, False, None),
        "all_single_votes": (9, False, None),
        "unknown_wins": (9, False, None),
        "not_a_face": (10, False, None),
        "exact_30_percent": (0, True, {0: 1.0}),
        "unknown_ties_top": (9, False, None),
        "four_way_tie": (9, False, None),
        "two_rounds": (9, False, None),  # 5 of 10 is not more than half
    },
    "probability": {
        "outlier_no_majority": (0, True, {0: 4 / 7, 6: 3 / 7}),
        "tie": (0, True, {0: 0.5, 1: 0.5}),
        "all_single_votes": (9, False, None),
        "unknown_wins": (9, False, None),
        "not_a_face": (10, False, None),
        "exact_30_percent": (0, True, {0: 0.7, 1: 0.3}),
        "unknown_ties_top": (9, False, None),  # unknown taken then un-taken: 4 of 10 <= 50%
        "four_way_tie": (9, False, None),  # four emotions in one round: too many
        "two_rounds": (0, True, {0: 5 / 8, 3: 3 / 8}),  # surprise column -> canonical 3
    },
    "multi-target": {
        "outlier_no_majority": (0, True, {0: 4 / 7, 6: 3 / 7}),  # disgust 2 < 30% of 9
        "tie": (0, True, {0: 0.5, 1: 0.5}),
        "all_single_votes": (9, False, None),
        "unknown_wins": (9, False, None),
        "not_a_face": (10, False, None),
        "exact_30_percent": (0, True, {0: 0.7, 1: 0.3}),  # 3 of 10 is exactly 30%: kept
        "unknown_ties_top": (0, True, {0: 1.0}),  # unknown's mass is trimmed for training
        "four_way_tie": (9, False, None),  # 25% each: none reaches 30%
        "two_rounds": (0, True, {0: 0.5 / 0.8, 3: 0.3 / 0.8}),  # sadness 2 < 3 dropped
    },
    "argmax": {
        "outlier_no_majority": (0, True, {0: 1.0}),
        "tie": (0, True, {0: 1.0}),
        "all_single_votes": (0, True, {0: 1.0}),
        "unknown_wins": (9, False, None),
        "not_a_face": (10, False, None),
        "exact_30_percent": (0, True, {0: 1.0}),
        "unknown_ties_top": (0, True, {0: 1.0}),
        "four_way_tie": (0, True, {0: 1.0}),
        "two_rounds": (0, True, {0: 1.0}),
    },
}
EXPECTED["crossentropy"] = EXPECTED["probability"]


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_vote_modes_on_hand_worked_rows(mode):
    names = list(HAND_ROWS)
    targets = labels.ferplus_vote_targets(np.array([HAND_ROWS[n] for n in names]), mode)
    for i, name in enumerate(names):
        label, keep, distribution = EXPECTED[mode][name]
        assert (targets.label[i], bool(targets.keep[i])) == (label, keep), (mode, name)
        if keep:
            expected = np.zeros(labels.NUM_CANONICAL)
            for class_index, probability in distribution.items():
                expected[class_index] = probability
            np.testing.assert_allclose(targets.distribution[i], expected, err_msg=f"{mode} {name}")


def test_vote_modes_tensorflow_form_matches_numpy():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    votes = np.concatenate([np.array(list(HAND_ROWS.values())), rng.multinomial(10, np.full(10, 0.1), size=500)])
    for mode in labels.VOTE_MODES:
        expected = labels.ferplus_vote_targets(votes, mode)
        label, keep, distribution = labels.ferplus_vote_targets_tf(tf.constant(votes), mode)
        assert np.array_equal(label.numpy(), expected.label), mode
        assert np.array_equal(keep.numpy(), expected.keep), mode
        np.testing.assert_allclose(distribution.numpy(), expected.distribution, err_msg=mode)


def test_unknown_vote_mode():
    with pytest.raises(PolicyError, match="majority"):
        labels.get_vote_mode("plurality")


def reference_distribution(votes: list[float], mode: str) -> list[float]:
    """A plain per-row reading of the FER+ rules in datasets.md, as an independent oracle."""
    votes = [0.0 if v <= 1 else float(v) for v in votes]
    total = sum(votes)
    unknown = [0.0] * 10
    unknown[8] = 1.0
    result = [0.0] * 10
    if mode == "majority":
        top = max(votes)
        if top > total / 2:
            result[votes.index(top)] = 1.0
            return result
        return unknown
    if mode == "multi-target":
        result = [v if v >= 0.3 * total else 0.0 for v in votes]
        return unknown if sum(result) <= total / 2 else [v / sum(result) for v in result]
    taken, count, stop = 0.0, 0, False
    remaining = list(votes)
    while taken < 0.75 * total and count < 3 and not stop:
        top = max(remaining)
        for i in range(10):
            if remaining[i] != top:
                continue
            result[i], remaining[i] = top, 0.0
            taken, count = taken + top, count + 1
            if i >= 8:
                stop = True
                if sum(result) > top:
                    result[i], count = 0.0, count - 1
                break
    if sum(result) <= total / 2 or count > 3:
        return unknown
    return [v / sum(result) for v in result]


@pytest.mark.skipif(ferplus_votes_csv() is None, reason="real fer2013new.csv not found at ../shared/data/ferplus")
def test_vote_modes_over_the_real_ferplus_file():
    import polars as pl

    table = pl.read_csv(ferplus_votes_csv())
    assert table.height == 35_887
    votes = table.select(labels.FERPLUS_VOTE_COLUMNS).to_numpy()
    sample = np.random.default_rng(0).choice(table.height, size=3000, replace=False)
    for mode in ("majority", "probability", "multi-target"):
        targets = labels.ferplus_vote_targets(votes, mode)
        # Conservation per split.
        per_split = table.with_columns(keep=pl.Series(targets.keep)).group_by("Usage").agg(
            rows=pl.len(), kept=pl.col("keep").sum(), dropped=(~pl.col("keep")).sum()
        )
        for row in per_split.iter_rows(named=True):
            assert row["kept"] + row["dropped"] == row["rows"]
        assert per_split["rows"].sum() == 35_887
        # Agreement with the per-row oracle on a sample of real rows.
        for index in sample:
            oracle = reference_distribution(votes[index].tolist(), mode)
            winner = int(np.argmax(oracle))
            assert targets.label[index] == labels.FERPLUS_VOTE_TO_CANONICAL[winner], (mode, index)
            assert bool(targets.keep[index]) == (winner < 8)


def test_vote_modes_tensorflow_form_in_a_graph_with_unknown_batch_size():
    import tensorflow as tf

    votes = np.array(list(HAND_ROWS.values()))
    dataset = tf.data.Dataset.from_tensor_slices(votes).batch(4)  # batch dimension is None
    for mode in ("majority", "probability", "multi-target"):
        expected = labels.ferplus_vote_targets(votes, mode)
        mapped = dataset.map(lambda batch, m=mode: labels.ferplus_vote_targets_tf(batch, m)[0])
        assert np.concatenate(list(mapped.as_numpy_iterator())).tolist() == expected.label.tolist(), mode

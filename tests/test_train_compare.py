"""train.compare: arms over seeds, trivial rules, the common-ground view, paired intervals, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from curate import labels
from train import compare
from train.config import TrainError

#: Validation rows of the fake runs: canonical label of each row (0-10, 20 rows each).
CANONICAL = np.repeat(np.arange(11), 20)
TRAIN_COUNTS = {  # canonical training counts: Happy is the majority, No-Face second
    0: 300, 1: 500, 2: 100, 3: 60, 4: 30, 5: 20, 6: 90, 7: 20, 8: 120, 9: 40, 10: 320,
}  # fmt: skip


def write_run(root, name, policy_name, seed, predict, *, dataset="affectnet", holdout_fraction=0.05):
    """A complete run folder whose model predicts ``predict(canonical, rng) -> canonical guess``
    for every row of its balanced view (rows the policy drops are absent, as in a real run)."""
    policy = labels.get_policy(policy_name)
    rng = np.random.default_rng(seed)
    kept = np.array([policy.mapping[c] is not None for c in CANONICAL])
    canonical = CANONICAL[kept]
    label = np.array([policy.mapping[c] for c in canonical])
    guess = np.array([predict(int(c), rng) for c in canonical])
    predicted = np.array([policy.mapping[g] if policy.mapping[g] is not None else 0 for g in guess])
    counts = np.zeros(policy.num_classes)
    for c, n in TRAIN_COUNTS.items():
        if policy.mapping[c] is not None:
            counts[policy.mapping[c]] += n
    run = root / name
    run.mkdir()
    config = {
        "name": name, "dataset": dataset, "policy": policy_name, "policy_name": policy_name, "vote_mode": None,
        "seed": seed, "model": "mobilenet_v3_small", "image_size": 64, "num_classes": policy.num_classes,
        "class_names": list(policy.classes), "policy_mapping": list(policy.mapping),
        "holdout_fraction": holdout_fraction, "holdout_seed": 0, "max_eval_examples": 0,
        "source": {"name": dataset, "config": "crop224", "version": "1.0.0", "annotation_sha256": {"a": "1"}},
        "data": {"train_counts": dict(zip(policy.classes, counts.tolist(), strict=True))},
    }  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    metrics = {
        "balanced": {"description": "official validation split (policy applied)", "split": "validation"},
        "training": {"epochs_run": 10, "best_epoch": 8},
        "protocol": None,
        "data_fingerprint": f"sha256:{policy_name}",
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    n = len(canonical)
    pq.write_table(
        pa.table({
            "id": [f"v{i}" for i in np.flatnonzero(kept)], "view": ["balanced"] * n, "split": ["validation"] * n,
            "label": label.astype(np.int64), "canonical": canonical.astype(np.int64),
            "predicted": predicted.astype(np.int64),
        }),  # fmt: skip
        run / "predictions.parquet",
    )
    (run / "COMPLETE").write_text("")
    return run


def perfect(canonical, rng):
    return canonical


def noisy(rate):
    def predict(canonical, rng):
        return canonical if rng.random() > rate else int(rng.integers(0, 7))

    return predict


def test_weighted_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, 300)
    guess = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 6, 300))
    guess[guess == 5] = -1  # outside the label space: wrong, never a false positive
    got = {k: float(v[0]) for k, v in compare.weighted_metrics(np.ones((1, 300)), truth, guess, 5).items()}
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, guess))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, guess))
    assert got["macro_f1"] == pytest.approx(f1_score(truth, guess, labels=range(5), average="macro"))
    # Weights are row counts: doubling every row changes nothing, a weight of 0 removes the row.
    doubled = compare.weighted_metrics(np.full((1, 300), 2.0), truth, guess, 5)
    assert doubled["balanced_accuracy"][0] == pytest.approx(got["balanced_accuracy"])
    weights = np.ones(300)
    weights[:100] = 0
    part = compare.weighted_metrics(weights[None], truth, guess, 5)
    assert part["accuracy"][0] == pytest.approx(accuracy_score(truth[100:], guess[100:]))


def test_trivial_rules_exact_values() -> None:
    truth = np.array([0, 0, 0, 1, 2, 2])
    counts = np.array([10.0, 30.0, 60.0])  # class 2 is the training majority
    rules = compare.trivial_rules(truth, 3, counts, np.arange(3))
    assert rules["majority"]["class"] == 2
    assert rules["majority"]["accuracy"] == pytest.approx(2 / 6)
    assert rules["majority"]["balanced_accuracy"] == pytest.approx(1 / 3)
    prior = rules["prior"]
    assert prior["accuracy"] == pytest.approx(0.5 * 0.1 + (1 / 6) * 0.3 + (2 / 6) * 0.6)
    assert prior["balanced_accuracy"] == pytest.approx((0.1 + 0.3 + 0.6) / 3)


def test_common_ground_compares_merge_and_drop_on_the_seven_basic_expressions(tmp_path) -> None:
    runs = []
    for seed in (0, 1):
        runs.append(write_run(tmp_path, f"merge-s{seed}", "merge-to-neutral", seed, perfect))
        runs.append(write_run(tmp_path, f"drop-s{seed}", "drop-7-plus", seed, noisy(0.6)))
    table = compare.compare_runs(runs, replicates=400)
    assert [arm["label"] for arm in table["arms"]] == ["merge-to-neutral", "drop-7-plus"]
    assert table["arms"][0]["seeds"] == [0, 1]
    common = table["common_ground"]
    assert common["classes"] == list(labels.CANONICAL_NAMES[:7])
    (view,) = common["views"]
    assert view["rows"] == 140 and view["label_counts"] == [20] * 7
    merge, drop = view["arms"]["merge-to-neutral"], view["arms"]["drop-7-plus"]
    assert merge["balanced_accuracy"]["mean"] == 1.0 and merge["balanced_accuracy"]["sd"] == 0.0
    assert drop["balanced_accuracy"]["mean"] < 0.7 and drop["balanced_accuracy"]["sd"] > 0
    low, high = drop["balanced_accuracy"]["ci95"]
    assert low < drop["balanced_accuracy"]["mean"] < high
    # Trivial rules on the common ground: merge's majority is Neutral (300 + 20 + 120 + 40 + 320 rows).
    assert merge["trivial"]["majority"]["class_name"] == "Neutral"
    assert drop["trivial"]["majority"]["class_name"] == "Happy"
    assert merge["trivial"]["majority"]["balanced_accuracy"] == pytest.approx(1 / 7)
    (difference,) = view["differences"]
    assert difference["balanced_accuracy"]["ci95"][0] > 0
    assert difference["balanced_accuracy"]["verdict"] == "merge-to-neutral higher"
    # Each policy's own view: merge keeps every row (Neutral holds 5 canonical labels), drop 7 x 20.
    (own,) = table["views"]
    assert own["arms"]["merge-to-neutral"]["rows"] == 220 and own["arms"]["drop-7-plus"]["rows"] == 140
    markdown = compare.comparison_markdown(table)
    assert "## Common ground: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger" in markdown
    assert "| ↳ always Neutral (majority class) | 140 |" in markdown
    assert "balanced accuracy (mean recall)" in markdown and "…" not in markdown


def test_equal_models_show_no_detectable_difference(tmp_path) -> None:
    runs = [
        write_run(tmp_path, "a", "drop-7-plus", 0, noisy(0.5)),
        write_run(tmp_path, "b", "drop-8-plus", 0, noisy(0.5)),  # same seed: the same guesses on the rows
    ]
    table = compare.compare_runs(runs, replicates=400)
    assert table["common_ground"]["classes"] == list(labels.CANONICAL_NAMES[:7])
    (difference,) = table["common_ground"]["views"][0]["differences"]
    for metric in ("accuracy", "balanced_accuracy"):
        assert difference[metric]["difference"] == pytest.approx(0.0)
        assert difference[metric]["verdict"] == "no detectable difference"
    assert "no detectable difference" in compare.comparison_markdown(table)


def test_same_runs_same_table(tmp_path) -> None:
    runs = [write_run(tmp_path, f"r{s}", "drop-7-plus", s, noisy(0.4)) for s in (0, 1, 2)]
    runs.append(write_run(tmp_path, "m", "merge-to-neutral", 0, noisy(0.4)))
    assert compare.compare_runs(runs, replicates=300) == compare.compare_runs(runs, replicates=300)
    paths = compare.write_comparison(compare.compare_runs(runs, replicates=300), tmp_path / "out" / "cmp")
    assert json.loads(paths["json"].read_text())["arms"][0]["seeds"] == [0, 1, 2]
    assert paths["markdown"].read_text().startswith("# Policy comparison on affectnet")


def test_refuses_mixed_datasets_protocols_repeated_seeds_and_incomplete_runs(tmp_path) -> None:
    a = write_run(tmp_path, "a", "drop-7-plus", 0, perfect)
    r = write_run(tmp_path, "r", "drop-7-plus", 1, perfect, dataset="rafdb")
    h = write_run(tmp_path, "h", "drop-7-plus", 2, perfect, holdout_fraction=0.2)
    twin = write_run(tmp_path, "twin", "drop-7-plus", 0, perfect)
    with pytest.raises(TrainError, match="different datasets"):
        compare.compare_runs([a, r])
    with pytest.raises(TrainError, match="different holdout_fraction: 0.05 in a, 0.2 in h"):
        compare.compare_runs([a, h])
    with pytest.raises(TrainError, match="same recipe with the same seed"):
        compare.compare_runs([a, twin])
    (a / "COMPLETE").unlink()
    with pytest.raises(TrainError, match="not complete"):
        compare.compare_runs([a])
    with pytest.raises(TrainError, match="at least one run"):
        compare.compare_runs([])


def test_runs_from_before_the_canonical_column_skip_the_common_ground(tmp_path) -> None:
    old = write_run(tmp_path, "old", "drop-7-plus", 0, perfect)
    new = write_run(tmp_path, "new", "merge-to-neutral", 0, perfect)
    table = pq.read_table(old / "predictions.parquet")
    pq.write_table(table.drop(["canonical"]), old / "predictions.parquet")
    compared = compare.compare_runs([old, new], replicates=200)
    assert compared["common_ground"]["views"] == [] and "no canonical column" in compared["common_ground"]["note"]
    assert len(compared["views"]) == 1  # each policy's own view is still scored
    assert "Common ground: none (some runs' predictions.parquet has no canonical column" in compare.comparison_markdown(
        compared
    )

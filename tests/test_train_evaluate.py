"""train.evaluate: metrics, V/A figures, predictions schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train import evaluate


def test_classification_metrics_against_hand_counts() -> None:
    labels_ = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    m = evaluate.classification_metrics(labels_, predicted, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)  # class d absent: not counted
    assert m["confusion_matrix"][0] == [3, 1, 0, 0] and m["confusion_matrix"][3] == [0, 0, 0, 0]
    assert m["per_class"]["a"]["precision"] == pytest.approx(3 / 4) and m["per_class"]["b"]["recall"] == 0.5
    assert m["per_class"]["d"]["support"] == 0
    assert 0 < m["macro_f1"] < 1
    json.dumps(m)


def test_ccc_and_va_metrics() -> None:
    truth = np.array([-0.5, 0.0, 0.5, 0.9])
    assert evaluate.concordance_correlation(truth, truth) == pytest.approx(1.0)
    assert evaluate.concordance_correlation(truth, truth + 0.5) < 1.0
    centred = truth - truth.mean()
    assert evaluate.concordance_correlation(centred, -centred) == pytest.approx(-1.0)
    predictions = {
        "valence": np.array([0.5, -0.5, 0.0, 0.3], np.float32),
        "arousal": np.array([0.1, 0.2, 0.0, 0.3], np.float32),
        "valence_pred": np.array([0.5, -0.5, 0.9, 0.3], np.float32),
        "arousal_pred": np.array([0.1, 0.2, -0.9, 0.3], np.float32),
        "va_mask": np.array([1, 1, 0, 1], np.float32),  # the third row has no V/A: masked out
    }
    m = evaluate.va_metrics(predictions)
    assert m["count"] == 3
    assert m["valence"]["rmse"] == pytest.approx(0.0, abs=1e-6) and m["valence"]["ccc"] == pytest.approx(1.0)
    assert m["arousal"]["sagr"] == 1.0


def test_predictions_table_schema() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]], np.float32)
    predictions = {
        "id": np.array(["a", "b"], dtype=object),
        "label": np.array([0, 2]),
        "logits": logits,
        "probabilities": (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32),
    }
    table = evaluate.predictions_table(predictions, view="balanced", split="validation", canonical=np.array([0, 7]))
    assert table.column_names == [
        "id", "view", "split", "label", "canonical", "predicted", "confidence", "probabilities", "logits",
        "valence_pred", "arousal_pred",
    ]  # fmt: skip
    rows = table.to_pylist()
    assert rows[1]["predicted"] == 1 and rows[1]["label"] == 2 and rows[0]["valence_pred"] is None
    assert [r["canonical"] for r in rows] == [0, 7]
    unknown = evaluate.predictions_table(predictions, view="balanced", split="validation").to_pylist()
    assert [r["canonical"] for r in unknown] == [None, None]
    assert rows[0]["confidence"] == pytest.approx(max(rows[0]["probabilities"]))
    assert str(table.schema.field("probabilities").type) == "list<item: float>"


def test_confusion_png(tmp_path) -> None:
    path = tmp_path / "confusion_balanced.png"
    evaluate.plot_confusion([[3, 1], [0, 2]], ["Neutral", "Happy"], path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

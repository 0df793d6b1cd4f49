"""How far a run's probabilities can be taken at their word: ECE, reliability diagrams, temperature scaling.

* :func:`expected_calibration_error` -- ECE over :data:`BINS` equal-width confidence bins
  (Guo et al. 2017): the row-weighted mean gap between each bin's accuracy and its mean
  top-1 probability.
* :func:`ece_noise_floor` -- how large an ECE sampling alone makes on these rows: the 95th
  percentile of the ECE of a perfectly calibrated model with the same confidences (each row
  right with probability equal to its confidence; "consistency resampling", Bröcker & Smith
  2007). An ECE under the floor is indistinguishable from perfect calibration.
* :func:`fit_temperature` -- one scalar ``T`` that divides the logits, fitted by minimising
  the negative log-likelihood on the **hold-out view only** (the hashed hold-out of the
  training split, :data:`FIT_VIEW`); never on a test split. ``T`` changes no top-1, only how
  sure the model says it is.
* :func:`plot_reliability` -- one PNG per view: accuracy per confidence bin before and after
  ``T``, against the diagonal, with the rows in each bin.

A hold-out of fewer than :data:`MIN_FIT_ROWS` rows fits no temperature: the run stores why,
and its exports and ``curate predict`` use the raw probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from train.evaluate import softmax

#: Confidence bins of the ECE and the reliability diagrams.
BINS = 15
#: The view the temperature is fitted on: the hashed hold-out of the training split.
FIT_VIEW = "class_frequency"
#: Fewest hold-out rows to fit a temperature on.
MIN_FIT_ROWS = 100
#: Search range of log(T).
_LOG_T_BOUNDS = (-3.0, 3.0)


class CalibrationError(ValueError):
    """The hold-out cannot fit a temperature (too few rows, or no such view)."""


def bin_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: rows, mean confidence and accuracy (NaN where empty)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    rows = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / rows
        accuracy = np.bincount(index, weights=correct, minlength=bins) / rows
    return {"rows": rows, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE: sum over bins of (rows in bin / rows) x |accuracy - mean confidence|."""
    table = bin_table(np.asarray(probabilities), np.asarray(labels), bins)
    filled = table["rows"] > 0
    weights = table["rows"][filled] / table["rows"].sum()
    return float(np.sum(weights * np.abs(table["accuracy"][filled] - table["confidence"][filled])))


def ece_noise_floor(
    probabilities: np.ndarray, *, bins: int = BINS, replicates: int = 1000, seed: int = 0
) -> float:
    """95th percentile of the ECE of ``replicates`` perfectly calibrated draws at these confidences."""
    confidence = np.asarray(probabilities).max(axis=1)
    if confidence.size == 0:
        return 0.0
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    rng = np.random.default_rng([seed, 67])
    eces = np.empty(replicates)
    for replicate in range(replicates):
        correct = rng.random(confidence.size) < confidence
        # sum over bins of |sum in bin of (right - confidence)| / rows == ECE
        eces[replicate] = np.abs(np.bincount(index, weights=correct - confidence, minlength=bins)).sum()
    return float(np.percentile(eces / confidence.size, 95))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, view: str = FIT_VIEW) -> float:
    """The ``T`` minimising the mean negative log-likelihood of ``softmax(logits / T)`` on these rows."""
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(labels) < MIN_FIT_ROWS:
        raise CalibrationError(
            f"the {view} hold-out has {len(labels)} rows, fewer than the {MIN_FIT_ROWS} needed to fit a "
            "temperature (raise --holdout-fraction or use more training data)"
        )

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def plot_reliability(
    logits: np.ndarray, labels: np.ndarray, temperature: float | None, path: str | Path, *, title: str
) -> Path:
    """A reliability diagram (accuracy per confidence bin, before and after ``temperature``) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    centres = (np.arange(BINS) + 0.5) / BINS
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    curves = [("raw", 1.0, "tab:red")] + ([(f"T = {temperature:.2f}", temperature, "tab:blue")] if temperature else [])
    for name, t, colour in curves:
        probabilities = softmax(logits, t)
        table = bin_table(probabilities, labels)
        filled = table["rows"] > 0
        ece = expected_calibration_error(probabilities, labels)
        ax.plot(table["confidence"][filled], table["accuracy"][filled], marker="o", color=colour,
                label=f"{name}: ECE {100 * ece:.1f}%")  # fmt: skip
    raw = bin_table(softmax(logits), labels)
    ax.bar(centres, raw["rows"] / max(raw["rows"].sum(), 1), width=1 / BINS, alpha=0.2, color="grey",
           label="share of rows (raw)")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def calibrate_views(
    predictions: dict[str, dict[str, np.ndarray]], work: Path, *, run: str
) -> dict[str, Any]:
    """Fit ``T`` on the hold-out view, then ECE before / after and a reliability PNG for every view.

    ``predictions``: view -> :func:`train.evaluate.predict_view` output (``logits``, ``label``).
    """
    out: dict[str, Any] = {"bins": BINS, "fitted_on": FIT_VIEW, "temperature": None, "views": {}}
    fit = predictions.get(FIT_VIEW)
    try:
        if fit is None:
            raise CalibrationError(f"no {FIT_VIEW} hold-out view to fit a temperature on")
        out["temperature"] = fit_temperature(fit["logits"], fit["label"])
        out["fit_rows"] = int(len(fit["label"]))
    except CalibrationError as error:
        out["not_fitted"] = str(error)
    temperature = out["temperature"]
    for view, result in predictions.items():
        logits, labels = result["logits"], result["label"]
        raw = softmax(logits)
        entry = {"ece": expected_calibration_error(raw, labels), "ece_noise_floor": ece_noise_floor(raw)}
        if temperature is not None:
            scaled = softmax(logits, temperature)
            entry["ece_after"] = expected_calibration_error(scaled, labels)
            entry["ece_after_noise_floor"] = ece_noise_floor(scaled)
        image = plot_reliability(logits, labels, temperature, work / f"reliability_{view}.png",
                                 title=f"{run}: {view} view, {len(labels):,} rows")  # fmt: skip
        entry["reliability"] = image.name
        out["views"][view] = entry
    return out

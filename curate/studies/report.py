"""Study reports: a Markdown page, PNG plots and a JSON of every number, in one folder.

:func:`write_report` takes a study's result dict (from
:func:`curate.studies.remap.policy_study`, :func:`curate.studies.ferplus_modes.vote_mode_study`
or :func:`curate.studies.remap.canonical_distribution`) and writes ``report.md``,
``study.json`` and the plots. Matplotlib runs with the Agg backend and is imported here only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels
from curate.studies import remap
from curate.studies.balance import REPORTED_WEIGHT_METHODS


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report`."""

    folder: Path
    markdown: Path
    json: Path
    figures: list[Path]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells are formatted with :func:`_fmt`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in row) + " |")
    return "\n".join(lines)


def _policy_runs(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A policy's run rows (``runs``; older study.json files only have ``run``)."""
    if entry.get("runs") is not None:
        return list(entry["runs"])
    return [entry["run"]] if entry.get("run") else []


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_json(results: Mapping[str, Any], path: Path) -> Path:
    from curate.workspace import json_dumps

    path.write_text(json.dumps(json.loads(json_dumps(results)), indent=2) + "\n", encoding="utf-8")
    return path


def write_report(
    results: Mapping[str, Any], out_dir: str | Path, *, va_points: Mapping[str, np.ndarray] | None = None
) -> ReportFiles:
    """Write ``report.md``, ``study.json`` and PNG plots of a study into ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    kind = results.get("kind")
    writers = {"remap": _remap_report, "vote-modes": _vote_mode_report, "distribution": _distribution_report}
    if kind not in writers:
        raise ValueError(f"unknown study kind {kind!r}; valid: {', '.join(writers)}")
    json_path = write_json(results, folder / "study.json")
    markdown, figures = writers[kind](results, folder, va_points)
    md_path = folder / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    return ReportFiles(folder=folder, markdown=md_path, json=json_path, figures=figures)


# --------------------------------------------------------------------------------------
# Policy comparison
# --------------------------------------------------------------------------------------


def _remap_report(results: Mapping[str, Any], folder: Path, va_points: Any) -> tuple[str, list[Path]]:
    """The policy comparison: summary, evaluation views, runs, class counts, V/A, figures."""
    out = [f"# Label policies compared on {results['dataset']}", ""]
    out.append(
        "Every number below is also in `study.json`. Rows are annotation rows as ingested; "
        "`kept` excludes rows a policy drops."
    )
    if results.get("vote_mode"):
        excluded = results.get("vote_excluded") or {}
        listed = ", ".join(f"{label} {n:,}" for label, n in excluded.items()) or "none"
        out += [
            "",
            f"Labels from the FER+ votes under the `{results['vote_mode']}` vote mode; rows whose winner is "
            f"unknown or not a face are dropped by every policy ({listed}).",
        ]
    out += _policy_summary_section(results)
    out += _evaluation_views_section(results)
    out += _registered_runs_section(results)
    out += _class_counts_section(results)
    va = results.get("va")
    if va:
        out += _va_section(va)
    figure_lines, figures = _remap_figures(results, folder, va_points)
    return "\n".join(out + figure_lines), figures


def _policy_summary_section(results: Mapping[str, Any]) -> list[str]:
    """One row per policy: classes, train rows kept, balance and the mapping in words."""
    rows = []
    for name in results["policies"]:
        entry = results["per_policy"][name]
        train = entry["balance"].get("train", {})
        rows.append(
            [
                f"`{name}`",
                entry["num_classes"],
                entry["kept"].get("train", 0),
                _pct(entry["kept_share"].get("train")),
                train.get("imbalance_ratio"),
                train.get("normalized_entropy"),
                entry["mapping_summary"],
            ]
        )
    headers = ["policy", "classes", "train kept", "train kept %", "imbalance max/min", "norm. entropy", "mapping"]
    return ["", "## Summary", "", md_table(headers, rows)]


def _evaluation_views_section(results: Mapping[str, Any]) -> list[str]:
    """What trivial predictors score on each evaluation view under each policy."""
    per_policy = results["per_policy"]
    balanced = results.get("balanced_view")
    hold = results["holdout"]
    out = ["", "## Evaluation views", ""]
    out.append(
        f"`class_frequency` is the hold-out of train by `class_frequency_holdout` (fraction {hold['fraction']}, "
        f"seed {hold['seed']}; rule: {hold['rule']}): {hold['rows']:,} rows."
        + (f" `{balanced}` is the official balanced split." if balanced else "")
        + " *Majority acc.* is what always predicting the largest class scores: a policy that merges labels into "
        "one class inflates it."
    )
    out.append("")
    view_names = list(next(iter(per_policy.values()))["views"])
    rows = []
    for name in results["policies"]:
        for view in view_names:
            summary = per_policy[name]["views"][view]
            rows.append(
                [
                    f"`{name}`",
                    view + (" (balanced)" if view == balanced else ""),
                    summary["total"],
                    summary["dropped"],
                    summary["majority_class"] or "–",
                    _pct(summary["majority_accuracy"]),
                    _pct(summary["chance_accuracy"]),
                    summary["normalized_entropy"],
                ]
            )
    headers = ["policy", "view", "rows kept", "dropped", "largest class", "majority acc.", "chance", "norm. entropy"]
    out.append(md_table(headers, rows))
    return out


def _registered_runs_section(results: Mapping[str, Any]) -> list[str]:
    """One row per policy, protocol, data fingerprint and recipe of the registered runs."""
    names = results["policies"]
    runs = [(n, r) for n in names for r in _policy_runs(results["per_policy"][n])]
    out = ["", "## Registered runs", ""]
    if not runs:
        out.append("No training runs registered for these policies yet (`Workspace.register_run`).")
        return out
    columns = remap.run_columns([r for _, r in runs])
    out += [
        "One row per policy, protocol card, data fingerprint and recipe (the newest run of each seed): runs "
        "measured under different protocols, on different data or with different recipes are listed apart, "
        "never averaged; several seeds of one recipe show mean ± sd. *Accuracy* is the share of a view's rows "
        "predicted right, *balanced accuracy* the mean recall over its classes (`curate train compare` adds "
        "intervals and trivial baselines).",
        "",
        md_table(
            ["policy", "run", "protocol", "data fingerprint", *(remap.RUN_COLUMNS[c] for c in columns)],
            [
                [
                    f"`{n}`",
                    r["name"],
                    f"`{r['protocol']}`" if r.get("protocol") else "–",
                    f"`{r['data_fingerprint']}`" if r.get("data_fingerprint") else "–",
                    *(remap.run_figure(r, view, metric) for view, metric in columns),
                ]
                for n, r in runs
            ],
        ),
    ]
    return out


def _class_counts_section(results: Mapping[str, Any]) -> list[str]:
    """Per policy, the train counts, shares, class weights and resampling plans."""
    out = ["", "## Class counts per policy (train)", ""]
    for name in results["policies"]:
        train = results["per_policy"][name]["balance"].get("train")
        if not train:
            continue
        weights = train.get("weights", {})
        missing = [None] * len(train["counts"])
        out += [f"### `{name}`", ""]
        out.append(
            md_table(
                ["class", "count", "share", *(f"w {m}" for m in REPORTED_WEIGHT_METHODS), "subsample", "oversample"],
                [
                    [
                        c,
                        train["counts"][i],
                        _pct(train["shares"][i]),
                        *(weights.get(m, missing)[i] for m in REPORTED_WEIGHT_METHODS),
                        train["subsample_plan"][i],
                        train["oversample_plan"][i],
                    ]
                    for i, c in enumerate(train["classes"])
                ],
            )
        )
        out.append("")
    return out


def _va_section(va: Mapping[str, Any]) -> list[str]:
    """Valence/arousal per label, distances to Neutral, and what Neutral becomes under merges."""
    out = ["## Valence and arousal: do merged labels look like Neutral?", ""]
    out.append(
        "Only rows with annotated V/A enter (AffectNet's -2 sentinel never does). Distances to Neutral: "
        "1-D Wasserstein and energy distances on every row; 2-D energy distance on a random sample of at most "
        f"{va['sample']:,} rows per side. The other emotions' distances give the scale."
    )
    out.append("")
    rows = []
    for name, entry in va["per_label"].items():
        d = entry.get("vs_neutral", {})
        rows.append(
            [
                ("**" + name + "**") if name in va["focus"] else name,
                entry["n_va"],
                entry["n_without_va"],
                entry["valence_mean"],
                entry["valence_std"],
                entry["arousal_mean"],
                entry["arousal_std"],
                d.get("wasserstein_valence"),
                d.get("wasserstein_arousal"),
                d.get("energy_2d"),
            ]
        )
    headers = [
        "label",
        "rows with V/A",
        "without",
        "valence mean",
        "sd",
        "arousal mean",
        "sd",
        "W1 valence",
        "W1 arousal",
        "energy 2-D",
    ]
    out.append(md_table(headers, rows))
    if va["merged_neutral"]:
        out += ["", "What the Neutral class becomes under each policy that merges into it:", ""]
        out.append(
            md_table(
                ["policy", "labels in the class", "rows without V/A", "W1 valence", "W1 arousal", "energy 2-D"],
                [
                    [
                        f"`{p}`",
                        ", ".join(m["labels"]),
                        m["rows_without_va"],
                        m["vs_neutral"].get("wasserstein_valence"),
                        m["vs_neutral"].get("wasserstein_arousal"),
                        m["vs_neutral"].get("energy_2d"),
                    ]
                    for p, m in va["merged_neutral"].items()
                ],
            )
        )
    out += ["", _va_verdict(va), ""]
    return out


def _remap_figures(results: Mapping[str, Any], folder: Path, va_points: Any) -> tuple[list[str], list[Path]]:
    """Draw the policy figures (and the FER+ vote-mode part); their Markdown lines and files."""
    figures = [
        _plot_class_bars(results, folder / "class_bars.png"),
        _plot_transitions(results, folder / "transitions.png"),
    ]
    out = ["## Figures", "", "![class counts per policy](class_bars.png)", "", "![transitions](transitions.png)", ""]
    if results.get("va") and va_points is not None and len(va_points.get("label", [])):
        figures.append(_plot_va(va_points, folder / "va_density.png"))
        out += ["![valence/arousal per label](va_density.png)", ""]
    if results.get("vote_modes"):
        text, more = _vote_mode_report(results["vote_modes"], folder, None, level=2)
        out += ["", text]
        figures += more
    return out, figures


def _va_verdict(va: Mapping[str, Any]) -> str:
    """One paragraph saying, with numbers, how far the merged labels are from Neutral."""
    per_label = va["per_label"]
    scale = {
        name: e["vs_neutral"]["energy_2d"]
        for name, e in per_label.items()
        if "energy_2d" in e.get("vs_neutral", {}) and name not in va["focus"]
    }
    parts = []
    for name in va["focus"]:
        entry = per_label.get(name)
        if not entry or "energy_2d" not in entry.get("vs_neutral", {}):
            continue
        distance = entry["vs_neutral"]["energy_2d"]
        nearer = sorted(n for n, v in scale.items() if v < distance)
        parts.append(
            f"{name} lies at 2-D energy distance {distance:.3f} from Neutral "
            f"(valence mean {entry['valence_mean']:+.3f} vs Neutral {per_label['Neutral']['valence_mean']:+.3f}); "
            + (
                f"basic emotions nearer to Neutral than {name}: {', '.join(nearer)}."
                if nearer
                else f"{name} is nearer to Neutral than any basic emotion."
            )
        )
    if scale:
        parts.append(f"The basic emotions lie at {min(scale.values()):.3f}-{max(scale.values()):.3f}.")
    for policy, merged in va.get("merged_neutral", {}).items():
        moved = merged["vs_neutral"].get("energy_2d")
        if moved is None:
            continue
        parts.append(
            f"Under `{policy}` the Neutral class moves {moved:.3f} from pure Neutral and gains "
            f"{merged['rows_without_va']:,} rows with no V/A at all."
        )
    return "**Reading:** " + " ".join(parts) if parts else ""


def _plot_class_bars(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    names = results["policies"]
    per_policy = results["per_policy"]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.2 * len(names) + 0.6), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        train = per_policy[name]["balance"].get("train") or next(iter(per_policy[name]["balance"].values()))
        ax.bar(train["classes"], train["counts"], color="#4878a8")
        ax.set_title(f"{name}: train rows per class", fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_transitions(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    names = results["policies"]
    per_policy = results["per_policy"]
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names, strict=False):
        matrix = np.asarray(per_policy[name]["transition"], dtype=np.float64)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks(range(matrix.shape[0]), labels.CANONICAL_NAMES, fontsize=7)
        ax.set_xticks(range(matrix.shape[1]), [*per_policy[name]["classes"], "dropped"], fontsize=7, rotation=60)
        ax.set_title(name, fontsize=9)
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                ax.text(
                    j,
                    i,
                    f"{int(value):,}",
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if shares[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_va(points: Mapping[str, np.ndarray], path: Path) -> Path:
    plt = _pyplot()
    label = np.asarray(points["label"], dtype=np.int64)
    present = [c for c in range(labels.NUM_CANONICAL) if (label == c).any()]
    cols = 3
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.ravel()[len(present) :]:
        ax.axis("off")
    valence = np.asarray(points["valence"], dtype=np.float64)
    arousal = np.asarray(points["arousal"], dtype=np.float64)
    for ax, code in zip(axes.ravel(), present, strict=False):
        mask = label == code
        ax.hexbin(
            valence[mask], arousal[mask], gridsize=30, extent=(-1, 1, -1, 1), bins="log", cmap="viridis", mincnt=1
        )
        ax.set_title(f"{labels.CANONICAL_NAMES[code]} (n={int(mask.sum()):,})", fontsize=9)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
    for ax in axes[-1]:
        ax.set_xlabel("valence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("arousal", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------
# FER+ vote modes
# --------------------------------------------------------------------------------------


def _vote_mode_report(results: Mapping[str, Any], folder: Path, _: Any, *, level: int = 1) -> tuple[str, list[Path]]:
    h1, h2 = "#" * level, "#" * (level + 1)
    modes = results["modes"]
    per_mode = results["per_mode"]
    splits = results["splits"]
    names = results["canonical_names"]
    out = [f"{h1} FER+ vote modes compared ({results['rows']:,} rows with votes)", ""]
    out.append(
        "Labels come from `curate.labels.ferplus_vote_targets` (the FER+ authors' rules). A row is kept unless "
        "its winner is `unknown` or `NF`. Ambiguity = entropy of the raw votes in bits (max 3.32)."
    )
    out += ["", f"{h2} Rows kept per split", ""]
    out.append(
        md_table(
            ["mode", "target", *[f"{s} kept" for s in splits], *[f"{s} dropped" for s in splits]],
            [
                [
                    f"`{m}`",
                    per_mode[m]["target"],
                    *[per_mode[m]["kept"][s] for s in splits],
                    *[per_mode[m]["dropped"][s] for s in splits],
                ]
                for m in modes
            ],
        )
    )
    for split in splits:
        out += ["", f"{h2} Rows kept per class ({split})", ""]
        used = [c for c in range(len(names)) if any(per_mode[m]["counts"][split][c] for m in modes)]
        out.append(
            md_table(
                ["mode", *[names[c] for c in used]],
                [[f"`{m}`", *[per_mode[m]["counts"][split][c] for c in used]] for m in modes],
            )
        )
    out += [
        "",
        f"{h2} Agreement between modes",
        "",
        "Share of all rows with the same decision (same label, or both drop):",
        "",
    ]
    out.append(
        md_table(
            ["", *modes], [[f"`{a}`", *[_pct(results["agreement"][a][b]["decision"]) for b in modes]] for a in modes]
        )
    )
    out += ["", f"{h2} Annotator ambiguity (mean vote entropy, bits) per class", ""]
    used = [c for c in range(len(names)) if any(per_mode[m]["mean_entropy_by_class"][c] is not None for m in modes)]
    out.append(
        md_table(
            ["mode", *[names[c] for c in used], "dropped rows"],
            [
                [
                    f"`{m}`",
                    *[per_mode[m]["mean_entropy_by_class"][c] for c in used],
                    per_mode[m]["mean_entropy_dropped"],
                ]
                for m in modes
            ],
        )
    )
    if results.get("disagreement"):
        out += _disagreement_section(results["disagreement"], names, h2)
    figures = [
        _plot_mode_counts(results, folder / "mode_counts.png"),
        _plot_agreement(results, folder / "agreement.png"),
    ]
    out += [
        "",
        f"{h2} Figures",
        "",
        "![rows per class per mode](mode_counts.png)",
        "",
        "![agreement](agreement.png)",
        "",
    ]
    return "\n".join(out), figures


def _disagreement_section(numbers: Mapping[str, Any], names: Sequence[str], h2: str) -> list[str]:
    """Vote entropy, crowd consensus and FER+ vs FER2013 disagreement (``vote_disagreement``)."""
    entropy = numbers["entropy"]
    agreement = numbers["agreement"]
    out = ["", f"{h2} Vote disagreement", ""]
    out.append(
        f"Vote entropy over all {numbers['rows']:,} rows (bits, max {_fmt(entropy['max'], 2)}): mean "
        f"{_fmt(entropy['mean'])}, median {_fmt(entropy['median'])}, 90th percentile {_fmt(entropy['p90'])}; "
        f"unanimous rows {_pct(entropy['unanimous_share'])}; mean of kept rows {_fmt(entropy['mean_kept'])}, "
        f"of dropped rows {_fmt(entropy['mean_dropped'])}."
    )
    out += [
        "",
        f"Crowd consensus on the {numbers['kept']:,} rows the `majority` mode keeps: *agreement* is the share of a "
        "row's votes cast for its majority label (FER+ publishes vote counts, not per-annotator labels, so "
        f"cleanlab's multi-annotator scores do not apply). Overall {_pct(agreement['overall'])}, unanimous "
        f"{_pct(agreement['unanimous_share'])}.",
        "",
    ]
    fer = numbers.get("fer2013")
    used = [c for c in range(len(names)) if numbers["kept_per_class"][c] or (fer and fer["rows_per_fer2013_class"][c])]
    headers = ["majority label", "rows", "agreement", "unanimous"]
    if fer:
        headers += ["with FER2013 label", "differs from FER2013", "FER2013 rows of this class", "FER2013 label differs"]
    rows = []
    for c in used:
        row = [
            names[c],
            numbers["kept_per_class"][c],
            _pct(agreement["per_class"][c]),
            _pct(agreement["unanimous_share_per_class"][c]),
        ]
        if fer:
            row += [
                fer["rows_per_majority_class"][c],
                _pct(fer["disagreement_per_majority_class"][c]),
                fer["rows_per_fer2013_class"][c],
                _pct(fer["disagreement_per_fer2013_class"][c]),
            ]
        rows.append(row)
    out.append(md_table(headers, rows))
    out.append("")
    if fer:
        out.append(
            f"The FER+ majority label differs from the original FER2013 label on {_pct(fer['disagreement'])} of the "
            f'{fer["rows"]:,} kept rows that have one ("differs from FER2013": by majority class; "FER2013 label '
            'differs": by the original class).'
        )
    else:
        out.append("No FER2013 original labels in the workspace (only the votes file was ingested).")
    return out


def _plot_mode_counts(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    modes = results["modes"]
    names = results["canonical_names"]
    totals = {m: np.sum([results["per_mode"][m]["counts"][s] for s in results["splits"]], axis=0) for m in modes}
    used = [c for c in range(len(names)) if any(totals[m][c] for m in modes)]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        ax.bar(np.arange(len(used)) + i * width, totals[mode][used], width, label=mode)
    ax.set_xticks(np.arange(len(used)) + 0.4 - width / 2, [names[c] for c in used], fontsize=8)
    ax.set_ylabel("rows kept (all splits)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_agreement(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    modes = results["modes"]
    matrix = np.array([[results["agreement"][a][b]["decision"] for b in modes] for a in modes])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(matrix, cmap="Greens", vmin=0, vmax=1)
    ax.set_xticks(range(len(modes)), modes, rotation=45, fontsize=8)
    ax.set_yticks(range(len(modes)), modes, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{100 * value:.1f}", ha="center", va="center", fontsize=7)
    ax.set_title("decision agreement (%)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------
# All datasets side by side
# --------------------------------------------------------------------------------------


def _distribution_report(results: Mapping[str, Any], folder: Path, _: Any) -> tuple[str, list[Path]]:
    names = results["canonical_names"]
    datasets = results["datasets"]
    out = ["# Canonical class distribution of every ingested dataset", ""]
    out.append("Counts over all splits, with the share of each dataset's rows in parentheses.")
    out.append("")
    rows = []
    for c, name in enumerate(names):
        rows.append([f"{c} {name}", *[f"{d['total'][c]:,} ({_pct(d['shares'][c])})" for d in datasets.values()]])
    rows.append(["total", *[f"{sum(d['total']):,}" for d in datasets.values()]])
    out.append(md_table(["label", *datasets], rows))
    for dataset, entry in datasets.items():
        out += ["", f"## {dataset} per split", ""]
        splits = list(entry["splits"])
        out.append(
            md_table(
                ["label", *splits], [[names[c], *[entry["splits"][s][c] for s in splits]] for c in range(len(names))]
            )
        )
    path = folder / "distribution.png"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / max(len(datasets), 1)
    for i, (dataset, entry) in enumerate(datasets.items()):
        ax.bar(np.arange(len(names)) + i * width, entry["shares"], width, label=dataset)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8, rotation=30)
    ax.set_ylabel("share of the dataset's rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    out += ["", "![class shares per dataset](distribution.png)", ""]
    return "\n".join(out), [path]

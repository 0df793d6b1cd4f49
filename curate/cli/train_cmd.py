"""`curate train ...` (also `python -m train ...`): train, evaluate and export baselines.

``curate train --dataset affectnet --policy merge-to-neutral`` trains one run;
``--policies a,b,c`` trains one run per policy and writes a comparison table;
``curate train compare RUN...`` rebuilds that table from finished run folders.
A thin layer over :mod:`train` (:mod:`train.plan` resolves the options, the protocol card
included, and runs them); TensorFlow is imported only when a command runs. The options are
``Annotated`` aliases defined once below, so the command's signature stays one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli.app import VoteModeOption, app, console, fail, print_markdown

train_app = typer.Typer(
    help="Train a MobileNet baseline on a built TFDS dataset under a label policy; compare policies.",
    no_args_is_help=True,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(train_app, name="train")

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="CURATE_WORKSPACE",
        help="Workspace whose runs/ holds the run folders and whose database registers them "
        "(default ./curate-workspace, or $CURATE_WORKSPACE).",
        show_default=False,
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Folder for the run folders instead of <workspace>/runs (then runs are registered only if --workspace is given).",
    ),
]


DatasetOption = Annotated[
    str | None, typer.Option("--dataset", "-d", help="affectnet, ferplus or rafdb (a built TFDS dataset).")
]
ProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="A protocol card (`curate protocols`): sets the dataset, policy and vote mode it fixes; "
        "an explicit option that contradicts it is an error.",
    ),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="TFDS data dir holding the built dataset (default: TFDS's).")
]
TfdsConfigOption = Annotated[
    str | None, typer.Option("--tfds-config", help="Builder config, e.g. crop224 or original (AffectNet).")
]
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        "-p",
        help="Label policy name or TOML file (default: drop-8-plus; drop-7-plus for rafdb).",
    ),
]
PoliciesOption = Annotated[
    str | None,
    typer.Option("--policies", help="Comma-separated policies: one run each, then a comparison table."),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large or small_cnn (a 0.1 M-parameter CNN for 32-64 px).",
    ),
]
AlphaOption = Annotated[float, typer.Option("--alpha", help="MobileNet width multiplier.")]
ImageSizeOption = Annotated[int, typer.Option("--image-size", help="Square input side in pixels (96; 224 available).")]
EpochsOption = Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping may end sooner).")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Batch size.")]
LearningRateOption = Annotated[
    float, typer.Option("--learning-rate", help="Peak Adam rate (after the warm-up; cosine decay).")
]
WeightsOption = Annotated[
    str,
    typer.Option(
        "--weights",
        help="none (random init); imagenet (Keras' ImageNet weights from its cache $KERAS_HOME/models, "
        "downloaded there by Keras when missing and online); a local .h5/.weights.h5 for the backbone; or a "
        "previous run's model.keras.",
    ),
]
AlignOption = Annotated[
    str,
    typer.Option(
        "--align",
        help="auto (eyes where the dataset has 68-point landmarks: AffectNet), eyes (rotate, scale and shift "
        "each face so its eye centres sit at fixed places) or none (the stored crop).",
    ),
]
ColourOption = Annotated[
    str,
    typer.Option(
        "--colour",
        help="rgb, or grey: the model turns its input into luma first (a frozen layer inside the model, so "
        "exports still take RGB).",
    ),
]
FreezeEpochsOption = Annotated[
    int,
    typer.Option(
        "--freeze-epochs",
        help="Two-phase fine-tuning: the first N epochs train the heads on a frozen backbone, the rest train "
        "all layers but batch norm at a tenth of --learning-rate (use with pretrained --weights).",
    ),
]
EmaOption = Annotated[
    float,
    typer.Option(
        "--ema",
        help="Momentum of the moving average of the weights that is evaluated and kept (0 = the raw weights).",
    ),
]
WarmupEpochsOption = Annotated[
    float, typer.Option("--warmup-epochs", help="Linear learning-rate warm-up before the cosine decay.")
]
ClassWeightOption = Annotated[
    str, typer.Option("--class-weight", help="none, inverse, sqrt or effective (as `curate balance`).")
]
SamplerOption = Annotated[
    str,
    typer.Option(
        "--sampler", help="balanced (rejection sampling to equal classes; the default) or natural (as stored)."
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of everything random in the run.")]
SeedsOption = Annotated[
    int,
    typer.Option(
        "--seeds",
        help="Train each policy this many times (seeds --seed, --seed+1, ...); the comparison shows the mean, "
        "the spread between seeds and intervals over rows and seeds.",
    ),
]
VaHeadOption = Annotated[
    bool, typer.Option("--va-head", help="AffectNet: add a valence/arousal regression head (masked MSE).")
]
VaLossWeightOption = Annotated[float, typer.Option("--va-loss-weight", help="Weight of the V/A loss.")]
PatienceOption = Annotated[
    int,
    typer.Option(
        "--patience",
        help="Early stopping: epochs without improvement, counted in the second half of --epochs (epochs of the "
        "first half are never selected); 0 turns early stopping off (every epoch runs, the best is kept).",
    ),
]
MonitorOption = Annotated[
    str,
    typer.Option(
        "--monitor",
        help="View whose balanced accuracy selects the best epoch: auto (protocol: train hold-out; "
        "FERPlus validation), balanced or class_frequency.",
    ),
]
HoldoutFractionOption = Annotated[
    float, typer.Option("--holdout-fraction", help="Share of train held out by hashed id (class-frequency view).")
]
HoldoutSeedOption = Annotated[
    int, typer.Option("--holdout-seed", help="Seed of the hashed hold-out (keep equal to the studies').")
]
MaxTrainExamplesOption = Annotated[
    int, typer.Option("--max-train-examples", help="Cap on training rows (0 = all), for quick runs.")
]
MaxEvalExamplesOption = Annotated[
    int, typer.Option("--max-eval-examples", help="Cap on rows per evaluation view (0 = all).")
]
ExcludeOption = Annotated[
    Path | None,
    typer.Option(
        "--exclude",
        help="Exclusion list (Parquet, e.g. from `curate audit duplicates --exclusions-out`): its ids of the "
        "run's dataset are dropped from the training rows and the class-frequency hold-out; the official "
        "balanced and test views are NOT filtered. Its SHA-256 and id count go into config.json and the "
        "data fingerprint.",
    ),
]
OofFoldsOption = Annotated[
    int,
    typer.Option(
        "--oof-folds",
        help="Also cross-fit K extra models (each on K-1 label-stratified folds of the training rows) and "
        "write their out-of-fold predictions as view train_oof (for `curate review load --run`); 0 = off.",
    ),
]
OofEpochsOption = Annotated[int, typer.Option("--oof-epochs", help="Epochs of each --oof-folds model (0 = --epochs).")]
CacheOption = Annotated[
    str, typer.Option("--cache", help="auto, memory, file or none (decoded images, sizes <= 128 px).")
]
ExportOption = Annotated[
    bool, typer.Option("--export/--no-export", help="Write TFLite float, full-integer int8 and dynamic-range int8 models with latency.")
]
AugmentOption = Annotated[bool, typer.Option("--augment/--no-augment", help="Flip, affine and colour jitter.")]
NameOption = Annotated[
    str | None, typer.Option("--name", "-n", help="Run name (default dataset-policy-model-size-seed).")
]
RegisterOption = Annotated[
    bool, typer.Option("--register/--no-register", help="Record the run in the workspace database.")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace run folders of the same name.")]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Keras progress bars (a summary line per epoch always).")
]


#: The options the commands over finished runs share.
RunOption = Annotated[str, typer.Option("--run", help="Run folder or run name (looked up in <workspace>/runs).")]
RunsArgument = Annotated[list[str], typer.Argument(help="Run folders or run names (looked up in <workspace>/runs).")]
RunsDirOption = Annotated[
    Path | None, typer.Option("--runs-dir", help="Where run names are looked up (default <workspace>/runs).")
]


def _user_errors() -> tuple[type[BaseException], ...]:
    return (ValueError, OSError)


def _split_policies(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


@train_app.callback()
def train_command(
    ctx: typer.Context,
    dataset: DatasetOption = None,
    protocol: ProtocolOption = None,
    data_dir: DataDirOption = None,
    tfds_config: TfdsConfigOption = None,
    policy: PolicyOption = None,
    policies: PoliciesOption = None,
    vote_mode: VoteModeOption = None,
    model: ModelOption = "mobilenet_v3_small",
    alpha: AlphaOption = 1.0,
    image_size: ImageSizeOption = 96,
    epochs: EpochsOption = 10,
    batch_size: BatchSizeOption = 64,
    learning_rate: LearningRateOption = 3e-3,
    weights: WeightsOption = "none",
    align: AlignOption = "auto",
    colour: ColourOption = "rgb",
    freeze_epochs: FreezeEpochsOption = 0,
    ema: EmaOption = 0.99,
    warmup_epochs: WarmupEpochsOption = 1.0,
    class_weight: ClassWeightOption = "none",
    sampler: SamplerOption = "balanced",
    seed: SeedOption = 0,
    seeds: SeedsOption = 1,
    va_head: VaHeadOption = False,
    va_loss_weight: VaLossWeightOption = 0.5,
    patience: PatienceOption = 5,
    monitor: MonitorOption = "auto",
    holdout_fraction: HoldoutFractionOption = 0.05,
    holdout_seed: HoldoutSeedOption = 0,
    max_train_examples: MaxTrainExamplesOption = 0,
    max_eval_examples: MaxEvalExamplesOption = 0,
    exclude: ExcludeOption = None,
    oof_folds: OofFoldsOption = 0,
    oof_epochs: OofEpochsOption = 0,
    cache: CacheOption = "auto",
    export: ExportOption = True,
    augment: AugmentOption = True,
    name: NameOption = None,
    out: OutOption = None,
    workspace: WorkspaceOption = None,
    register: RegisterOption = True,
    overwrite: OverwriteOption = False,
    progress: ProgressOption = True,
) -> None:
    """Train one run (or one per policy with --policies), evaluate it on the balanced and
    class-frequency views, export TFLite and register it in the workspace."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from train.plan import plan_training, run_plan

        plan = plan_training(
            dataset=dataset,
            protocol=protocol,
            policy=policy,
            policies=_split_policies(policies),
            vote_mode=vote_mode,
            seeds=seeds,
            runs_dir=out,
            workspace=workspace,
            register=register,
            overwrite=overwrite,
            verbose=1 if progress else 2,
            config=tfds_config,
            data_dir=data_dir,
            model=model,
            alpha=alpha,
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weights=weights,
            align=align,
            colour=colour,
            freeze_epochs=freeze_epochs,
            ema=ema,
            warmup_epochs=warmup_epochs,
            class_weight=class_weight,
            sampler=sampler,
            seed=seed,
            va_head=va_head,
            va_loss_weight=va_loss_weight,
            patience=patience,
            monitor=monitor,
            holdout_fraction=holdout_fraction,
            holdout_seed=holdout_seed,
            max_train_examples=max_train_examples,
            max_eval_examples=max_eval_examples,
            exclude=exclude,
            oof_folds=oof_folds,
            oof_epochs=oof_epochs,
            cache=cache,
            export_tflite=export,
            augment=augment,
            name=name,
        )
        outcome = run_plan(plan)
    except _user_errors() as error:
        fail(str(error))
    if outcome.comparison is not None:
        markdown, json_path = outcome.comparison["markdown"], outcome.comparison["json"]
        print_markdown(markdown.read_text(encoding="utf-8"))
        console.print(f"comparison: {markdown} and {json_path}", highlight=False, soft_wrap=True)
    for result in outcome.runs:
        _print_result(result, registered=plan.register)


def _print_parity(parity: dict[str, Any]) -> None:
    """Every backend on every evaluation row, then a line for each quantised file under the target."""
    from train.compare import parity_markdown, parity_notes

    print_markdown(parity_markdown(parity))
    for note in parity_notes(parity):
        console.print(note, highlight=False, soft_wrap=True)


def _print_result(result: Any, *, registered: bool) -> None:
    from train.compare import with_interval
    from train.evaluate import one_class_warning

    metrics = result.metrics
    parts, warnings = [], []
    for view in ("balanced", "class_frequency", "test"):
        if view in metrics:
            m = metrics[view]
            acc, bal = (with_interval(100 * m[key], m, key, "{:.1f}%", 100) for key in ("accuracy", "balanced_accuracy"))
            parts.append(f"{view} ({m['count']} rows): acc {acc} bal-acc {bal} macro-F1 {100 * m['macro_f1']:.1f}%")
            warnings.append(one_class_warning(view, m, metrics["class_names"]))
    if "train_oof" in metrics:
        parts.append(f"train_oof ({metrics['oof']['folds']} folds): acc {100 * metrics['train_oof']['accuracy']:.1f}%")
    console.print(f"[bold]{result.name}[/]: " + "; ".join(parts), highlight=False, soft_wrap=True)
    for warning in filter(None, warnings):
        console.print(f"[yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
    export = metrics.get("export") or {}
    files = {kind: entry for kind, entry in export.items() if kind in ("float", "int8", "dynamic")}
    if files:
        console.print(
            "TFLite: "
            + ", ".join(
                f"{kind} {entry['bytes'] / 1e6:.2f} MB {entry['latency_ms']:.2f} ms/img" for kind, entry in files.items()
            ),
            highlight=False,
            soft_wrap=True,
        )
    from train.diagnostics import diagnostics_markdown

    if export.get("parity"):
        _print_parity(export["parity"])
    extras = diagnostics_markdown(metrics)
    if extras:
        print_markdown(extras)
    console.print(
        f"run folder: {result.path}" + (" (registered)" if registered else ""), highlight=False, soft_wrap=True
    )


@train_app.command("compare")
def compare_command(
    runs: RunsArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the table to OUT.md and OUT.json as well.")
    ] = None,
    runs_dir: RunsDirOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Rebuild the policy comparison table (Markdown + JSON) from finished runs."""
    try:
        from train import compare

        table = compare.compare_runs(runs, runs_dir=runs_dir, workspace=workspace)
        print_markdown(compare.comparison_markdown(table))
        if out is not None:
            paths = compare.write_comparison(table, out)
            console.print(f"written: {paths['markdown']} and {paths['json']}", highlight=False, soft_wrap=True)
    except _user_errors() as error:
        fail(str(error))


@train_app.command("export")
def export_command(
    run: RunOption,
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="TFDS data dir, when the build moved since the run.")
    ] = None,
    runs_dir: RunsDirOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Export a finished run (ONNX) and measure every backend against Keras on its evaluation rows."""
    try:
        from train.export_run import export_run

        exports = export_run(run, formats=(format_,), runs_dir=runs_dir, workspace=workspace, data_dir=data_dir)
    except _user_errors() as error:
        fail(str(error))
    onnx = exports.get("onnx")
    if onnx:
        console.print(
            f"written {onnx['file']} ({onnx['bytes'] / 2**20:.1f} MiB, {onnx['latency_ms']:.2f} ms per image on one thread)",
            highlight=False,
        )
    _print_parity(exports.get("parity", {}))


@train_app.command("evaluate")
def evaluate_command(
    run: RunOption,
    on: Annotated[str, typer.Option("--on", help="DATASET[:SPLIT] to score it on (default split: test, else validation).")],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="TFDS data dir of the target (default: the run's).")
    ] = None,
    runs_dir: RunsDirOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Score a finished run on another built dataset through the canonical taxonomy, with intervals."""
    try:
        from train.cross import cross_markdown, evaluate_on

        cell = evaluate_on(run, on, data_dir=data_dir, runs_dir=runs_dir, workspace=workspace)
    except _user_errors() as error:
        fail(str(error))
    matrix = {"runs": [cell["run"]], "trained_on": [cell["trained_on"]], "targets": [cell["target"]],
              "cells": [[cell]], "method": f"policy {cell['policy']}; classes scored: {', '.join(cell['classes_scored'])}"}  # fmt: skip
    print_markdown(cross_markdown(matrix))


@train_app.command("cross")
def cross_command(
    runs: RunsArgument,
    on: Annotated[
        str, typer.Option("--on", help="Comma-separated DATASET[:SPLIT] targets.")
    ] = "affectnet,ferplus,rafdb",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write OUT.md, OUT.json and OUT.png (heatmap) as well.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="TFDS data dir of the targets (default: each run's).")
    ] = None,
    runs_dir: RunsDirOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """The train-on x test-on matrix of a set of runs over built datasets (balanced accuracy, 95% intervals)."""
    try:
        from train.cross import cross_markdown, cross_matrix, write_cross

        targets = [t.strip() for t in on.split(",") if t.strip()]
        matrix = cross_matrix(runs, targets, data_dir=data_dir, runs_dir=runs_dir, workspace=workspace)
    except _user_errors() as error:
        fail(str(error))
    print_markdown(cross_markdown(matrix))
    if out is not None:
        paths = write_cross(matrix, out)
        console.print(f"written: {paths['markdown']}, {paths['json']} and {paths['png']}", highlight=False)


@train_app.command("slices")
def slices_command(
    run: RunOption,
    by: Annotated[
        str | None, typer.Option("--by", help="Comma-separated attributes (default: every one the dataset has).")
    ] = None,
    view: Annotated[str | None, typer.Option("--view", help="One evaluation view (default: all).")] = None,
    runs_dir: RunsDirOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """A finished run's accuracy per slice (95% intervals, best-worst gap) and its calibration."""
    try:
        from curate.slicing import check_attributes
        from train.runs import load_run

        loaded = load_run(run, runs_dir=runs_dir, workspace=workspace)
        dataset = loaded["config"]["dataset"]
        wanted = check_attributes(dataset, [a.strip() for a in by.split(",") if a.strip()] if by else None)
        diagnostics = loaded["metrics"].get("diagnostics")
        if not diagnostics:
            raise ValueError(f"run {loaded['path'].name} has no slices (trained before they existed): train it again")
        if view is not None and view not in diagnostics:
            raise ValueError(f"run {loaded['path'].name} has no view {view!r} (views: {', '.join(diagnostics)})")
    except _user_errors() as error:
        fail(str(error))
    from train.slices import slices_markdown

    for name, entry in diagnostics.items():
        if view is None or name == view:
            chosen = {a: v for a, v in entry.get("slices", {}).items() if a in wanted}
            missing = [a for a in wanted if a not in chosen]
            print_markdown(slices_markdown(chosen, title=f"## {loaded['path'].name}: {name} view"))
            if missing:
                console.print(f"not in this build (older build or copy without them): {', '.join(missing)}")

"""`curate synth {affectnet,ferplus,rafdb}`: write fake manual dirs in the raw release layouts.

A thin layer over :mod:`curate.synth`: parses options, calls the generator, prints what was
written (split and class counts, injected quirks, manifest and noise-ledger paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from curate.cli.app import app, console, fail, print_table

if TYPE_CHECKING:
    from curate.synth.common import SynthReport

synth_app = typer.Typer(
    help="Write fake AffectNet / FERPlus / RAF-DB manual dirs (raw layouts, procedural faces).",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")

Out = Annotated[Path, typer.Option("--out", help="Manual dir to create (must be absent or empty).")]
Scale = Annotated[
    float | None,
    typer.Option(help="Fraction of the real dataset size (default: small demo size; 1.0 with --annotations-only)."),
]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")]
LabelNoise = Annotated[
    float,
    typer.Option(
        "--label-noise",
        help="Fraction of labels to flip along realistic confusions; the flips go to <out>.noise_ledger.parquet.",
    ),
]
AnnotationsOnly = Annotated[
    bool, typer.Option("--annotations-only", help="Write the annotation files at full size, without images.")
]
Workers = Annotated[int | None, typer.Option(help="Processes drawing images (default: number of CPUs).")]


def _generate(generate: Any, out: Path, **options: Any) -> None:
    """Run a generator; its refusals (ValueError, OSError) become one-line errors, its report is printed."""
    try:
        report = generate(out, **options)
    except (ValueError, OSError) as error:
        fail(str(error))
    _report(report)


def _report(report: SynthReport) -> None:
    table = Table(title=f"{report.dataset} ({report.layout}) -> {report.out}")
    table.add_column("split", style="bold cyan")
    table.add_column("rows", justify="right")
    table.add_column("classes (label: count)")
    for split, count in report.split_counts.items():
        classes = ", ".join(f"{label}: {n}" for label, n in sorted(report.class_counts.get(split, {}).items()))
        table.add_row(split, str(count), classes)
    print_table(table)
    quirks = ", ".join(f"{name} {count}" for name, count in report.quirks.items() if count) or "none"
    console.print(f"images written: {report.images_written}   quirks: {quirks}   ({report.seconds:.1f} s)")
    console.print(f"manifest: {report.manifest_path}")
    if report.noise_ledger_path is not None:
        console.print(f"noise ledger: {report.noise_ledger_path} ({report.flipped} labels flipped)")


@synth_app.command("affectnet")
def synth_affectnet(
    out: Out,
    layout: Annotated[
        str, typer.Option(help="Release layout: original (CSV lists + images) or cropped (AffectNet-8).")
    ] = "original",
    scale: Scale = None,
    seed: Seed = 0,
    label_noise: LabelNoise = 0.0,
    annotations_only: AnnotationsOnly = False,
    workers: Workers = None,
    validation_scale: Annotated[
        float | None, typer.Option(help="Fraction of the real validation size (default: --scale).")
    ] = None,
) -> None:
    """Fake AffectNet (original or cropped layout) with the release's quirks."""
    from curate.synth.affectnet import generate_affectnet

    _generate(
        generate_affectnet,
        out,
        layout=layout,
        scale=scale,
        seed=seed,
        label_noise=label_noise,
        annotations_only=annotations_only,
        workers=workers,
        validation_scale=validation_scale,
    )


@synth_app.command("ferplus")
def synth_ferplus(
    out: Out,
    scale: Scale = None,
    seed: Seed = 0,
    label_noise: LabelNoise = 0.0,
    annotations_only: AnnotationsOnly = False,
    votes_from: Annotated[
        Path | None,
        typer.Option(
            "--votes-from",
            help="A real fer2013new.csv: copied into --out, with an aligned fer2013.csv drawn from its vote winners.",
        ),
    ] = None,
    copy: Annotated[
        str,
        typer.Option(
            "--copy",
            help="FER2013 copy to write: fer2013 (fer2013.csv), icml_face_data (icml_face_data.csv) or "
            "kaggle-train-test (train.csv + unlabelled test.csv).",
        ),
    ] = "fer2013",
    workers: Workers = None,
) -> None:
    """Fake FERPlus: a FER2013 copy (48x48 pixels, fer2013.csv by default) aligned with fer2013new.csv (votes)."""
    from curate.synth.ferplus import generate_ferplus

    _generate(
        generate_ferplus,
        out,
        scale=scale,
        seed=seed,
        label_noise=label_noise,
        annotations_only=annotations_only,
        votes_from=votes_from,
        copy=copy,
        workers=workers,
    )


@synth_app.command("rafdb")
def synth_rafdb(
    out: Out,
    layout: Annotated[
        str,
        typer.Option(
            help="Copy to write: basic (as released), basic-aligned-only (no original images), "
            "basic-labels-only (no Annotation/ either) or folder-per-label (<split>/<1-7>/ + <split>_labels.csv)."
        ),
    ] = "basic",
    labels_csv: Annotated[
        bool, typer.Option("--labels-csv/--no-labels-csv", help="folder-per-label: write <split>_labels.csv.")
    ] = True,
    scale: Scale = None,
    seed: Seed = 0,
    label_noise: LabelNoise = 0.0,
    annotations_only: AnnotationsOnly = False,
    workers: Workers = None,
) -> None:
    """Fake RAF-DB basic: label list, original and aligned images, annotation files (or another copy, --layout)."""
    from curate.synth.rafdb import generate_rafdb

    _generate(
        generate_rafdb,
        out,
        scale=scale,
        seed=seed,
        label_noise=label_noise,
        annotations_only=annotations_only,
        layout=layout,
        labels_csv=labels_csv,
        workers=workers,
    )

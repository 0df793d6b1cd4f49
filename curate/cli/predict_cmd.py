"""`curate predict`: a finished run applied to pictures (a thin Typer command over :mod:`train.predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli.app import WorkspaceOption, app, console, fail, print_table

#: Output formats of ``--out``, by file ending.
OUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json"}


@app.command("predict")
def predict_command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    run: Annotated[str, typer.Option("--run", help="Run name (in the workspace's runs) or run folder.")],
    backend: Annotated[
        str, typer.Option("--backend", help="keras, tflite (float), tflite-int8 (full integer), tflite-dynamic (int8 weights) or onnx (after `train export`).")
    ] = "keras",
    detect: Annotated[
        bool,
        typer.Option("--detect/--no-detect", help="Find faces (OpenCV cascade) or take each image as a face crop."),
    ] = True,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every row to a .csv, .parquet or .json file.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=4096, help="Faces per model call.")] = 32,
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", help="Runs folder (default: <workspace>/runs).")
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Predict the expression of every face in the given pictures with a trained run."""
    import polars as pl
    from rich.progress import Progress
    from rich.table import Table

    from train import predict
    from train.config import TrainError

    if out is not None and out.suffix.lower() not in OUT_FORMATS:
        fail(f"--out {out}: give a file ending in {', '.join(OUT_FORMATS)}")
    try:
        predictor = predict.load_predictor(run, backend, runs_dir=runs_dir, workspace=workspace)
        paths = predict.image_paths(inputs)
    except (TrainError, OSError) as error:
        fail(str(error))
    console.print(predict.describe(predictor))
    with Progress(console=console, transient=True, disable=len(paths) < 20 or not console.is_terminal) as bar:
        task = bar.add_task("predicting", total=len(paths))
        rows = predict.predict_images(
            predictor,
            paths,
            detect=detect,
            batch_size=batch_size,
            progress=lambda done: bar.update(task, completed=done),
        )
    frame = pl.DataFrame(rows, infer_schema_length=None)
    faces = frame.filter(pl.col("status") == "ok").height
    missing = frame.filter(pl.col("status") == "no face").height
    unreadable = frame.filter(pl.col("status").str.starts_with("unreadable")).height
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        kind = OUT_FORMATS[out.suffix.lower()]
        if kind == "csv":
            frame.write_csv(out)
        elif kind == "parquet":
            frame.write_parquet(out)
        else:
            frame.write_json(out)
    table = Table(
        title=f"{len(paths):,} image(s): {faces:,} face(s), {missing:,} without a face, {unreadable:,} unreadable"
    )
    columns = ["file", "face", "box", "predicted", "confidence"] + (["valence", "arousal"] if predictor.va_head else [])
    for column in columns:
        table.add_column(column, justify="left" if column in ("file", "box", "predicted") else "right")
    for row in frame.iter_rows(named=True):
        if row["status"] != "ok":
            table.add_row(row["file"], "", "", row["status"], "", *([""] * (len(columns) - 5)))
            continue
        box = f"{row['box_x']},{row['box_y']} {row['box_width']}x{row['box_height']}"
        cells = [row["file"], str(row["face"]), box, row["predicted"], f"{row['confidence']:.3f}"]
        if predictor.va_head:
            cells += [f"{row['valence']:+.2f}", f"{row['arousal']:+.2f}"]
        table.add_row(*cells)
    print_table(table)
    if out is not None:
        console.print(f"{frame.height:,} row(s) with every class probability written to {out}")

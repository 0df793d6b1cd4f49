"""Reader speed of curate.formats against two references.

For AffectNet's ``training.csv`` (full size by default: 414,798 rows, ~420 MB, written by the
annotations-only generator) it times

* the floor: one pass over the file bytes (read them and count the newlines),
* ``curate.formats.affectnet.read`` (both CSVs, landmarks parsed, every check, SHA-256),
* a straightforward pandas + pyarrow.compute implementation of the same step (SHA-256, pandas'
  pyarrow CSV engine, ``split_pattern`` + cast of the landmarks, the same range checks; it
  does not locate rejected lines, duplicates or malformed rows),

and prints seconds, MB/s and the ratios. FERPlus (fer2013.csv at full size) and RAF-DB (the
label list and 3 annotation files per image at full size) are timed against their floors too.

Usage::

    python benchmarks/bench_formats.py                 # full size, best of 3
    python benchmarks/bench_formats.py --scale 0.25 --repeat 1 --datasets affectnet
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CPU: dict[str, float] = {}


def best_of(fn: Callable[[], object], repeat: int, name: str = "") -> float:
    """Best wall time of ``repeat`` runs; the CPU seconds (all threads) of that run go to CPU[name]."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - started, time.process_time() - cpu))
    CPU[name] = best[1]
    return best[0]


def one_pass(paths: list[Path]) -> int:
    lines = 0
    for path in paths:
        lines += path.read_bytes().count(b"\n")
    return lines


def pandas_affectnet(root: Path) -> tuple[int, int]:
    """The same parsing step with pandas (pyarrow engine) and pyarrow.compute.

    Reads and hashes each CSV, parses the landmarks and applies the same range checks; it
    does not find the line numbers of rejected rows, duplicate ids or malformed lines.
    """
    import hashlib

    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    kept = rejected = 0
    for name in ("training.csv", "validation.csv"):
        path = root / "Manually_Annotated_file_lists" / name
        hashlib.sha256(path.read_bytes()).hexdigest()
        frame = pd.read_csv(path, engine="pyarrow", dtype_backend="pyarrow", dtype=str)
        frame.columns = [c.lstrip("#") for c in frame.columns]
        landmarks = pc.cast(
            pc.split_pattern(pa.chunked_array(frame["facial_landmarks"].array._pa_array), ";"),
            pa.list_(pa.float32()),
            safe=False,
        )
        numbers = {
            c: pc.cast(pa.chunked_array(frame[c].array._pa_array), pa.float32(), safe=False)
            for c in ("face_x", "face_y", "face_width", "face_height", "valence", "arousal")
        }
        expression = pc.cast(pa.chunked_array(frame["expression"].array._pa_array), pa.int64(), safe=False)
        ok = pc.equal(pc.list_value_length(landmarks), 136)
        ok = pc.and_(ok, pc.and_(pc.greater_equal(expression, 0), pc.less_equal(expression, 10)))
        ok = pc.and_(ok, pc.and_(pc.greater(numbers["face_width"], 0), pc.greater(numbers["face_height"], 0)))
        for c in ("valence", "arousal"):
            inside = pc.and_(pc.greater_equal(numbers[c], -1), pc.less_equal(numbers[c], 1))
            ok = pc.and_(ok, pc.or_(inside, pc.equal(numbers[c], -2)))
        n_ok = pc.sum(pc.cast(ok, pa.int64())).as_py()
        kept += n_ok
        rejected += len(frame) - n_ok
    return kept, rejected


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))


def bench_affectnet(workdir: Path, scale: float, repeat: int) -> None:
    from curate.formats import affectnet
    from curate.synth.affectnet import generate_affectnet

    root = workdir / "affectnet"
    started = time.perf_counter()
    report = generate_affectnet(root, annotations_only=True, scale=scale, seed=0)
    print(f"generated {report.rows:,} AffectNet rows (annotations only) in {time.perf_counter() - started:.1f} s")
    paths = [root / rel for rel in affectnet.ORIGINAL_FILES.values()]
    size = sum(p.stat().st_size for p in paths) / 1e6
    floor = best_of(lambda: one_pass(paths), repeat, "floor")
    reader = best_of(lambda: affectnet.read(root), repeat, "reader")
    pandas = best_of(lambda: pandas_affectnet(root), repeat, "pandas")
    tables = affectnet.read(root)
    assert tables.rows_in == report.rows
    print(f"\nAffectNet original: {size:.0f} MB, {report.rows:,} rows, best of {repeat}")
    table(
        [
            ("step", "wall s", "CPU s", "MB/s", "x floor"),
            ("one pass over the bytes (floor)", f"{floor:.2f}", f"{CPU['floor']:.2f}", f"{size / floor:.0f}", "1.0"),
            (
                "curate.formats.affectnet.read",
                f"{reader:.2f}",
                f"{CPU['reader']:.2f}",
                f"{size / reader:.0f}",
                f"{reader / floor:.1f}",
            ),
            (
                "pandas + pyarrow.compute (+ SHA-256)",
                f"{pandas:.2f}",
                f"{CPU['pandas']:.2f}",
                f"{size / pandas:.0f}",
                f"{pandas / floor:.1f}",
            ),
        ]
    )
    print(f"pandas / curate: {pandas / reader:.2f}x wall, {CPU['pandas'] / CPU['reader']:.2f}x CPU")


def bench_ferplus(workdir: Path, scale: float, repeat: int) -> None:
    from curate.formats import ferplus
    from curate.synth.ferplus import generate_ferplus

    root = workdir / "ferplus"
    report = generate_ferplus(root, annotations_only=True, scale=scale, seed=0)
    paths = [root / ferplus.FER2013_FILE, root / ferplus.FERPLUS_FILE]
    size = sum(p.stat().st_size for p in paths) / 1e6
    floor = best_of(lambda: one_pass(paths), repeat, "floor")
    reader = best_of(lambda: ferplus.read(root), repeat, "reader")
    with_pixels = best_of(lambda: ferplus.read(root, with_pixels=True), repeat, "pixels")
    print(f"\nFERPlus: {size:.0f} MB, {report.rows:,} rows, best of {repeat}")
    table(
        [
            ("step", "wall s", "CPU s", "MB/s", "x floor"),
            ("one pass over the bytes (floor)", f"{floor:.2f}", f"{CPU['floor']:.2f}", f"{size / floor:.0f}", "1.0"),
            (
                "curate.formats.ferplus.read",
                f"{reader:.2f}",
                f"{CPU['reader']:.2f}",
                f"{size / reader:.0f}",
                f"{reader / floor:.1f}",
            ),
            (
                "  with_pixels=True",
                f"{with_pixels:.2f}",
                f"{CPU['pixels']:.2f}",
                f"{size / with_pixels:.0f}",
                f"{with_pixels / floor:.1f}",
            ),
        ]
    )


def bench_rafdb(workdir: Path, scale: float, repeat: int) -> None:
    from curate.formats import rafdb
    from curate.synth.rafdb import generate_rafdb

    root = workdir / "rafdb"
    report = generate_rafdb(root, annotations_only=True, scale=scale, seed=0)
    paths = sorted(p for p in (root / "basic").rglob("*.txt"))
    size = sum(p.stat().st_size for p in paths) / 1e6
    floor = best_of(lambda: one_pass(paths), repeat, "floor")
    reader = best_of(lambda: rafdb.read(root), repeat, "reader")
    print(f"\nRAF-DB: {len(paths):,} files, {size:.1f} MB, {report.rows:,} rows, best of {repeat}")
    table(
        [
            ("step", "wall s", "CPU s", "files/s", "x floor"),
            (
                "open + read every file (floor)",
                f"{floor:.2f}",
                f"{CPU['floor']:.2f}",
                f"{len(paths) / floor:,.0f}",
                "1.0",
            ),
            (
                "curate.formats.rafdb.read",
                f"{reader:.2f}",
                f"{CPU['reader']:.2f}",
                f"{len(paths) / reader:,.0f}",
                f"{reader / floor:.1f}",
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--datasets", default="affectnet,ferplus,rafdb")
    parser.add_argument("--workdir", type=Path, help="where to write the generated tables (default: a temp dir)")
    args = parser.parse_args()
    print(f"CPUs: {os.cpu_count()}  load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in args.datasets.split(","):
            {"affectnet": bench_affectnet, "ferplus": bench_ferplus, "rafdb": bench_rafdb}[name](
                Path(tmp), args.scale, args.repeat
            )


if __name__ == "__main__":
    main()

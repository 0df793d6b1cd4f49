"""Speed of the fake-dataset generators (curate.synth).

Prints, per dataset, images per second with one worker and with ``--workers`` processes
(and the speedup), the time to write all three demo datasets at their default scales, and
the rows per second of the annotations-only AffectNet ``training.csv`` at full size. With
``--ferplus-real PATH`` it also times mode (b): a fer2013.csv aligned with a real
fer2013new.csv (35,887 images at 48x48).

Usage::

    python benchmarks/bench_synth.py                       # modest sizes
    python benchmarks/bench_synth.py --scale 0.002 --workers 2 --ferplus-real ../shared/data/ferplus/fer2013new.csv
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


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


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    from curate.synth import generate_affectnet, generate_ferplus, generate_rafdb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.0015, help="AffectNet scale; FERPlus x10, RAF-DB x30")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ferplus-real", type=Path, help="a real fer2013new.csv to time mode (b)")
    parser.add_argument("--skip-defaults", action="store_true", help="skip the default-scale demo run")
    args = parser.parse_args()
    print(
        f"CPUs: {os.cpu_count()}  workers: {args.workers}  load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    jobs = {
        "affectnet original": (generate_affectnet, {"layout": "original", "scale": args.scale}),
        "affectnet cropped": (generate_affectnet, {"layout": "cropped", "scale": args.scale}),
        "ferplus": (generate_ferplus, {"scale": args.scale * 10}),
        "rafdb": (generate_rafdb, {"scale": args.scale * 30}),
    }
    rows = [("generator", "images", "1 worker img/s", f"{args.workers} workers img/s", "speedup")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, (generate, options) in jobs.items():
            one, t1 = timed(generate, root / f"{name}-1".replace(" ", "-"), seed=1, workers=1, **options)
            many, tn = timed(generate, root / f"{name}-n".replace(" ", "-"), seed=1, workers=args.workers, **options)
            images = one.images_written
            rows.append((name, f"{images:,}", f"{images / t1:.0f}", f"{images / tn:.0f}", f"{t1 / tn:.2f}x"))
        print()
        table(rows)

        if not args.skip_defaults:
            demo = [("demo (default scale)", "images", "seconds")]
            total = 0.0
            for name, generate, options in (
                ("affectnet original", generate_affectnet, {}),
                ("ferplus", generate_ferplus, {}),
                ("rafdb", generate_rafdb, {}),
            ):
                report, seconds = timed(
                    generate, root / f"demo-{name}".replace(" ", "-"), seed=0, workers=args.workers, **options
                )
                total += seconds
                demo.append((name, f"{report.images_written:,}", f"{seconds:.1f}"))
            demo.append(("all three", "", f"{total:.1f}"))
            print()
            table(demo)

        report, seconds = timed(generate_affectnet, root / "annotations-only", annotations_only=True, seed=0)
        print()
        table(
            [
                ("annotations only (full size)", "rows", "seconds", "rows/s"),
                ("affectnet original CSVs", f"{report.rows:,}", f"{seconds:.1f}", f"{report.rows / seconds:,.0f}"),
            ]
        )
        if args.ferplus_real:
            report, seconds = timed(
                generate_ferplus, root / "ferplus-real", votes_from=args.ferplus_real, workers=args.workers
            )
            print()
            table(
                [
                    ("ferplus --votes-from (real file)", "images", "seconds", "img/s"),
                    (
                        "fer2013.csv aligned",
                        f"{report.images_written:,}",
                        f"{seconds:.1f}",
                        f"{report.images_written / seconds:.0f}",
                    ),
                ]
            )


if __name__ == "__main__":
    main()

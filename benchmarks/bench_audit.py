"""Duplicate audit (curate.audit): recall, precision and speed on injected duplicates.

Writes a synthetic AffectNet manual dir (original layout), injects ``--inject`` duplicates
across train/validation with :func:`curate.audit.inject_duplicates` (exact copies, 90 %
resized PNG copies, JPEG quality-60 re-encodes, in turn), then measures, in the same run:

* the audit (decoded-pixel SHA-256 + 256-bit pHash of the face crop, process pool);
* the baseline: SHA-256 of the file bytes alone (exact copies only).

It also times the all-pairs near search alone on random hashes (10k and ``--pairs-n``).
Prints a Markdown section. Usage::

    python benchmarks/bench_audit.py [--scale 0.005] [--inject 60] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path


def table(rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


def file_sha_pairs(images):
    """Baseline: pairs of images whose file bytes have the same SHA-256."""
    import polars as pl

    from curate import audit

    digests = []
    for path in images["path"].to_list():
        try:
            digests.append(hashlib.sha256(Path(path).read_bytes()).digest())
        except OSError:
            digests.append(None)
    hashed = images.select("id", "dataset", "split").with_columns(
        pl.Series("sha256", digests, dtype=pl.Binary),
        pl.Series("ok", [d is not None for d in digests]),
        pl.Series("phash", [b"\0" * 32] * images.height, dtype=pl.Binary),
        pl.Series("thumb", [b"\0" * 256] * images.height, dtype=pl.Binary),
    )
    pairs = audit.pairs_from_hashes(hashed, max_distance=-1)  # no near pairs
    return pairs


def main() -> None:
    import numpy as np

    from curate import audit
    from curate.synth.affectnet import generate_affectnet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.005, help="AffectNet scale (0.005: about 2,100 images)")
    parser.add_argument("--inject", type=int, default=60, help="duplicates to inject")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pairs-n", type=int, default=50_000, help="hashes for the pair-search timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "affectnet"
        generate_affectnet(out, layout="original", scale=args.scale, seed=args.seed, workers=args.workers)
        truth = audit.inject_duplicates(out, args.inject, seed=args.seed)
        images = audit.load_images("affectnet", out)
        n = images.height

        started = time.perf_counter()
        hashed = audit.hash_images(images, workers=args.workers)
        hashed_s = time.perf_counter() - started
        pairs = audit.pairs_from_hashes(hashed)
        audit_s = time.perf_counter() - started
        ours = audit.score_pairs(pairs, truth)

        started = time.perf_counter()
        base_pairs = file_sha_pairs(images)
        base_s = time.perf_counter() - started
        base = audit.score_pairs(base_pairs, truth)
        by_kind = {
            kind: audit.score_pairs(pairs, truth.filter(truth["kind"] == kind))["recall"] for kind in audit.INJECT_KINDS
        }
        base_by_kind = {
            kind: audit.score_pairs(base_pairs, truth.filter(truth["kind"] == kind))["recall"]
            for kind in audit.INJECT_KINDS
        }

    rng = np.random.default_rng(0)
    search = []
    for size in (10_000, args.pairs_n):
        hashes = rng.integers(0, 2**63, size=(size, audit.HASH_WORDS), dtype=np.uint64)
        started = time.perf_counter()
        audit.near_pairs(hashes, audit.DEFAULT_MAX_DISTANCE)
        search.append((size, time.perf_counter() - started))

    print("## Duplicate audit (curate.audit)\n")
    print(
        f"Synthetic AffectNet, original layout, scale {args.scale} ({n:,} images incl. {truth.height} injected "
        f"copies: {', '.join(audit.INJECT_KINDS)} in turn, across train/validation); {args.workers} worker "
        f"process(es); near = 256-bit pHash of the face crop, distance <= {audit.DEFAULT_MAX_DISTANCE}, "
        f"verified by a 16x16 grey thumbnail difference <= {audit.DEFAULT_MAX_PIXEL_DIFF}.\n"
    )
    table(
        [
            ("method", "recall", "precision", "pairs found", "seconds", "images/s", "s per 10k images"),
            (
                "audit (pixel SHA-256 + pHash)",
                f"{ours['recall']:.3f}",
                f"{ours['precision']:.3f}",
                f"{int(ours['found'])}",
                f"{audit_s:.2f}",
                f"{n / audit_s:,.0f}",
                f"{1e4 * audit_s / n:.1f}",
            ),
            (
                "baseline: SHA-256 of file bytes",
                f"{base['recall']:.3f}",
                f"{base['precision']:.3f}",
                f"{int(base['found'])}",
                f"{base_s:.2f}",
                f"{n / base_s:,.0f}",
                f"{1e4 * base_s / n:.1f}",
            ),
        ]
    )
    print()
    print(
        "Recall by injected kind: "
        + ", ".join(f"{k} {by_kind[k]:.2f} (baseline {base_by_kind[k]:.2f})" for k in audit.INJECT_KINDS)
        + f". Decoding + hashing took {hashed_s:.2f} s of the audit's {audit_s:.2f} s.\n"
    )
    print(
        "All-pairs near search alone (random 256-bit hashes): "
        + ", ".join(f"{size:,} hashes {seconds:.2f} s" for size, seconds in search)
        + " (grows as n²).\n"
    )


if __name__ == "__main__":
    main()

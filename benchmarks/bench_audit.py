"""Duplicate audit (curate.audit): recall, precision and speed on injected duplicates.

Writes a synthetic AffectNet manual dir (original layout), injects ``--inject`` duplicates
across train/validation with :func:`curate.audit.inject_duplicates` (exact copies, 90 %
resized PNG copies, JPEG quality-60 re-encodes, in turn), then measures, in the same run:

* the audit (decoded-pixel SHA-256 + 256-bit pHash of the face crop, process pool);
* the baseline: SHA-256 of the file bytes alone (exact copies only).

It then injects one copy of each edit of :data:`curate.audit.EDIT_KINDS` per ``--edits``
round (brightness, contrast, gamma, small crop, horizontal flip besides the three above) and
reports recall per edit, with the thumbnails compared after the rank transform (the audit)
and as raw grey levels (before).

Then decode-and-hash throughput: the audit from the sources and from a ``tfds build
affectnet --config crop224`` of the same ``--throughput-n`` images (``--tfds-dir``: the stored
crops), against that build's own examples/s measured in the same run.

Last, the near search alone (:mod:`curate.near_search`) on random 256-bit hashes with planted
pairs (:func:`curate.near_search.planted_hashes`; a fifth of them exactly at the threshold,
the rest 0-36 bits apart): today's exact NumPy blocks at ``--pairs-n`` (the baseline), our
bit-sampling LSH and faiss ``IndexBinaryIVF`` on the same hashes, faiss
``IndexBinaryMultiHash`` on ``--multihash-n`` of them (it is slow at this radius), and LSH
and IVF at ``--large-n``, where exact search does not fit in the time, with the recall of
the planted pairs (all, and those exactly at the radius). Prints a Markdown section.
Usage::

    python benchmarks/bench_audit.py [--scale 0.005] [--inject 60] [--edits 5] [--workers N]
        [--pairs-n 50000] [--large-n 500000] [--multihash-n 20000] [--throughput-n 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_tfds_build, run as a script or -m


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


def edit_recall(out, args):
    """Recall per edit kind on freshly injected copies: rank-normalised (the audit) and raw thumbnails."""
    import polars as pl

    from curate import audit

    truth = audit.inject_duplicates(out, args.edits * len(audit.EDIT_KINDS), seed=args.seed + 1, kinds=audit.EDIT_KINDS)
    hashed = audit.hash_images(audit.load_images("affectnet", out), workers=args.workers)
    rows = []
    for label, options in (
        ("rank (audit)", {}),
        ("rank + `--flips`", {"flips": True}),
        ("raw grey (before)", {"normalise": "raw", "max_pixel_diff": 6.0}),
    ):
        pairs = audit.pairs_from_hashes(hashed, **options)
        score = audit.score_pairs(pairs, truth)
        by_kind = {k: audit.score_pairs(pairs, truth.filter(pl.col("kind") == k))["recall"] for k in audit.EDIT_KINDS}
        rows.append((label, by_kind, score))
    idx = {k: n for n, k in enumerate(hashed["id"].to_list())}
    words = audit.hash_words([p or b"\0" * 32 for p in hashed["phash"].to_list()])
    distances = {}
    for kind in audit.EDIT_KINDS:
        pairs = truth.filter(pl.col("kind") == kind).select("id_a", "id_b").rows()
        d = [int(np.bitwise_count(words[idx[a]] ^ words[idx[b]]).sum()) for a, b in pairs]
        distances[kind] = (min(d), max(d))
    return truth, rows, distances, args.seed + 1


def print_edits(truth, rows, distances, seed) -> None:
    from curate import audit

    per = truth.height // len(audit.EDIT_KINDS)
    print(
        f"Recall per edit ({per} copies of each, injector seed {seed}; pHash distance <= "
        f"{audit.DEFAULT_MAX_DISTANCE}, thumbnails rank-normalised, difference <= {audit.DEFAULT_MAX_PIXEL_DIFF}; "
        "before: raw grey levels, difference <= 6):\n"
    )
    header = ("thumbnails", *audit.EDIT_KINDS, "precision")
    body = [
        (label, *(f"{by_kind[k]:.2f}" for k in audit.EDIT_KINDS), f"{score['precision']:.3f}")
        for label, by_kind, score in rows
    ]
    body.append(("pHash distance (min-max)", *(f"{distances[k][0]}-{distances[k][1]}" for k in audit.EDIT_KINDS), ""))
    table([header, *body])
    print()


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def _pairs(result) -> set[tuple[int, int]]:
    i, j, _ = result
    return set(zip(i.tolist(), j.tolist(), strict=True))


def index_comparison(args) -> list[tuple]:
    """(label, n, seconds, pairs found, recall, baseline seconds) of each search on planted random hashes."""
    from curate import near_search as ns

    radius = 36
    out = []
    small, _ = ns.planted_hashes(args.pairs_n, args.pairs_n // 100, seed=args.seed, threshold_share=0.2)
    exact_pairs, exact_s = timed(ns.near_pairs, small, radius, method="exact")
    exact = _pairs(exact_pairs)
    out.append(("exact NumPy blocks (today, baseline)", args.pairs_n, exact_s, len(exact), 1.0, exact_s))
    for label, method in (("bit-sampling LSH, Polars joins (ours)", "lsh"), ("faiss IndexBinaryIVF", "ivf")):
        result, seconds = timed(ns.near_pairs, small, radius, method=method)
        found = _pairs(result)
        out.append((label, args.pairs_n, seconds, len(found), len(found & exact) / len(exact), exact_s))
    sub = small[: args.multihash_n]
    sub_pairs, sub_exact_s = timed(ns.near_pairs, sub, radius, method="exact")
    mh_pairs, mh_s = timed(ns.near_pairs, sub, radius, method="multihash")
    sub_exact, mh = _pairs(sub_pairs), _pairs(mh_pairs)
    out.append(("exact NumPy blocks", args.multihash_n, sub_exact_s, len(sub_exact), 1.0, sub_exact_s))
    recall = len(mh & sub_exact) / max(len(sub_exact), 1)
    out.append(("faiss IndexBinaryMultiHash (exact)", args.multihash_n, mh_s, len(mh), recall, sub_exact_s))
    large, large_truth = ns.planted_hashes(args.large_n, 5000, seed=args.seed + 1, threshold_share=0.2)
    planted = set(map(tuple, large_truth.tolist()))
    at_threshold = {p for p in planted if int(np.bitwise_count(large[p[0]] ^ large[p[1]]).sum()) == radius}
    extrapolated = exact_s * (args.large_n / args.pairs_n) ** 2
    for label, method in (("bit-sampling LSH, Polars joins (ours)", "lsh"), ("faiss IndexBinaryIVF", "ivf")):
        result, seconds = timed(ns.near_pairs, large, radius, method=method)
        found = _pairs(result)
        out.append((label, args.large_n, seconds, len(found), len(found & planted) / len(planted), extrapolated))
        hits = len(found & at_threshold)
        out.append((f"  of which planted exactly at {radius} bits", len(at_threshold), None, hits,
                    hits / max(len(at_threshold), 1), None))  # fmt: skip
    # --flips searches every hash against the mirrored ones: one search over twice the hashes
    mirrored, _ = ns.planted_hashes(args.large_n, 0, seed=args.seed + 2)  # stands in for the mirror images' hashes
    both = np.vstack([large, mirrored])
    result, seconds = timed(ns.near_pairs, both, radius, method="lsh")
    out.append((f"LSH over hashes + mirrored hashes (`--flips`), {args.large_n:,} images", 2 * args.large_n,
                seconds, len(result[0]), None, extrapolated))  # fmt: skip
    out.append(("memory estimate (lsh, bytes)", args.large_n, None, ns.memory_needed("lsh", args.large_n), None, None))
    return out


def print_search(search, args) -> None:
    from curate import near_search as ns

    k, tables = ns.lsh_shape(args.large_n, 256, 36)
    small_k, small_tables = ns.lsh_shape(args.pairs_n, 256, 36)
    print(
        f"Near search alone, random 256-bit hashes with planted pairs (a fifth exactly at the radius), radius 36. "
        f"LSH: {k} key bits x {tables} tables at {args.large_n:,} ({small_k} x {small_tables} at {args.pairs_n:,}), "
        f"chosen so a pair at the radius is missed with probability <= {ns.LSH_MISS}; faiss with {_threads()} "
        f"thread(s), IVF {ns.ivf_lists(args.large_n)} lists at {args.large_n:,} ({ns.ivf_lists(args.pairs_n)} at "
        f"{args.pairs_n:,}), {ns.IVF_NPROBE} probed. Recall: share of the exact search's pairs found (at the large "
        "size: of the planted pairs; exact search is not run there). Time ratio: against exact NumPy blocks on "
        "the same hashes (at the large size: extrapolated as n²).\n"
    )
    rows = [("search", "hashes", "seconds", "pairs", "recall", "time / exact")]
    for label, n, seconds, pairs, recall, base in search:
        if label.startswith("memory"):
            continue
        rows.append((
            label, f"{n:,}", "" if seconds is None else f"{seconds:.2f}", f"{pairs:,}",
            "" if recall is None else f"{recall:.4f}", "" if base is None else f"{seconds / base:.3f}",
        ))  # fmt: skip
    table(rows)
    memory = next(row for row in search if row[0].startswith("memory"))
    print(
        f"\nMemory planned before the LSH search of {memory[1]:,} hashes: {memory[3] / 2**20:.0f} MiB "
        "(near_search.check_memory refuses with one line when it exceeds 80 % of the available memory).\n"
    )


def throughput(args) -> dict[str, float]:
    """Decode-and-hash images/s of the audit (sources; a TFDS build) against ``tfds build`` on the same images."""
    import bench_tfds_build as build_bench

    from curate import audit
    from curate.audit_tfds import hash_tfds

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manual = build_bench.generate(args.throughput_n, work, args.seed)
    data_dir = work / f"tfds-{args.throughput_n}"
    command = [str(build_bench.PYTHON), build_bench.__file__, "tfds", "build", "affectnet", "--imports",
               "tfds_builders", "--config", "crop224", f"--manual_dir={manual}", f"--data_dir={data_dir}"]  # fmt: skip
    import tensorflow  # noqa: F401 - its start-up stays outside the timers, as for the build

    images = audit.load_images("affectnet", manual)
    build_s, sources_s, built_s = [], [], []
    for _ in range(2):  # interleaved, best of two each (the machine is shared)
        shutil.rmtree(data_dir, ignore_errors=True)
        _, _, output = build_bench.run_measured(command, cwd=work)
        build_s.append(json.loads(output.strip().splitlines()[-1])["download_and_prepare_seconds"])
        _, seconds = timed(audit.hash_images, images, workers=args.workers)
        sources_s.append(seconds)
        built, seconds = timed(hash_tfds, data_dir, "affectnet", workers=args.workers)
        built_s.append(seconds)
    shutil.rmtree(data_dir, ignore_errors=True)
    build_s, sources_s, built_s = min(build_s), min(sources_s), min(built_s)
    return {
        "images": images.height, "built": built.height, "build": built.height / build_s,
        "sources": images.height / sources_s, "tfds": built.height / built_s,
    }  # fmt: skip


def print_throughput(rates: dict[str, float], args) -> None:
    print(
        f"Decode-and-hash throughput on {rates['images']:,} synthetic AffectNet images (original layout, "
        f"`bench_tfds_build.py`'s generator; {rates['built']:,} built), {args.workers} worker process(es), "
        "in the same run as `tfds build affectnet --config crop224` on the same images (TensorFlow start-up "
        "outside every timer; best of two interleaved runs each):\n"
    )
    table([
        ("step", "images/s", "ratio to the build"),
        ("`tfds build` (decode, crop, resize, encode, write)", f"{rates['build']:,.0f}", "1.00"),
        ("audit from the sources (decode, SHA-256, pHash, thumbnail)", f"{rates['sources']:,.0f}",
         f"{rates['sources'] / rates['build']:.2f}"),
        ("audit from the build (`--tfds-dir`: the stored 224 px crops)", f"{rates['tfds']:,.0f}",
         f"{rates['tfds'] / rates['build']:.2f}"),
    ])  # fmt: skip
    print()


def _threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()


def main() -> None:
    from curate import audit
    from curate.synth.affectnet import generate_affectnet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.005, help="AffectNet scale (0.005: about 2,100 images)")
    parser.add_argument("--inject", type=int, default=60, help="duplicates to inject")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pairs-n", type=int, default=50_000, help="hashes for the exact vs index comparison")
    parser.add_argument("--large-n", type=int, default=500_000, help="hashes for the index at full size")
    parser.add_argument("--multihash-n", type=int, default=20_000, help="hashes for the multi-index hashing timing")
    parser.add_argument("--edits", type=int, default=5, help="copies of each edit kind to inject")
    parser.add_argument("--throughput-n", type=int, default=20_000, help="images for the throughput comparison")
    parser.add_argument("--work", default="/tmp/bench_tfds_build", help="cache of generated manual dirs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "affectnet"
        generate_affectnet(out, layout="original", scale=args.scale, seed=args.seed, workers=args.workers)
        fresh = Path(tmp) / "affectnet-edits"
        shutil.copytree(out, fresh)  # the edited copies go into an untouched copy of the same images
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

        edits = edit_recall(fresh, args)

    rates = throughput(args)
    search = index_comparison(args)
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
    print_edits(*edits)
    print_throughput(rates, args)
    print_search(search, args)


if __name__ == "__main__":
    main()

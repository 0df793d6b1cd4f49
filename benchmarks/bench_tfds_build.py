"""Throughput and peak memory of ``tfds build affectnet`` against a plain image loop.

For each size N (default 2,000 and 20,000 rows of the original layout) the script

1. generates a synthetic AffectNet manual dir with ``curate synth affectnet --layout
   original --scale N/420300`` (cached under ``--work``);
2. runs the *limit*: a plain Python loop over the same rows that reads each image file,
   decodes it with Pillow, crops the face box + 20% margin, resizes to 224x224 and
   re-encodes it as JPEG (quality 95) -- what the ``crop224`` builder does per example,
   without TFDS;
3. runs ``tfds build affectnet --config crop224 --imports tfds_builders`` in a subprocess:
   TFDS's own CLI entry point (``launch_cli``, what the ``tfds`` script runs) with a timer
   around ``DatasetBuilder.download_and_prepare`` -- the build itself (reading the
   annotations, decoding, writing, shuffling, ``dataset_info.json``), without the 5-15 s
   of Python/TensorFlow start-up (TensorFlow is imported before the timer starts: TFDS
   would otherwise import it lazily inside the build); and the same command with
   ``--max_examples_per_split 0`` for the start-up memory (TensorFlow alone is ~0.8 GB
   resident).

and prints examples/s, the ratio build/limit and the peak resident memory (``ru_maxrss``
of each subprocess, from ``os.wait4``; each measurement is a fresh process). The
end-to-end rate including start-up (subprocess wall time) is shown too.

The build makes examples on the builders' thread pool (``--workers N`` to change it; 1 is
the single-threaded build), the limit stays a single-threaded loop.

Run: ``.venv/bin/python benchmarks/bench_tfds_build.py [--sizes 2000 20000] [--work DIR] [--workers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
TFDS_BIN = PYTHON.with_name("tfds")
CURATE_BIN = PYTHON.with_name("curate")
AFFECTNET_ROWS = 414_800 + 5_500
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}


def run_measured(command: list[str], *, cwd: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, combined output) of one subprocess."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output_file = tempfile.TemporaryFile(mode="w+")
    assert process.stdout is not None
    for line in process.stdout:  # drain while it runs
        output_file.write(line)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    output_file.seek(0)
    output = output_file.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-4000:]}")
    return wall, usage.ru_maxrss / 1024.0, output


def generate(size: int, work: Path, seed: int) -> Path:
    out = work / f"affectnet-original-{size}"
    if (out / "Manually_Annotated_file_lists" / "validation.csv").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    scale = size / AFFECTNET_ROWS
    command = [
        str(CURATE_BIN),
        "synth",
        "affectnet",
        "--out",
        str(out),
        "--layout",
        "original",
        "--scale",
        f"{scale:.8f}",
        "--seed",
        str(seed),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, env=ENV, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    print(f"  generated {out} with `curate synth affectnet` in {time.perf_counter() - started:.0f} s")
    return out


# --------------------------------------------------------------------------------------
# The limit: decode, crop, resize, re-encode; no TFDS (runs in a subprocess: `limit DIR`)
# --------------------------------------------------------------------------------------


def limit_loop(manual_dir: str) -> None:
    import io
    import math

    from PIL import Image

    from curate.formats import affectnet

    rows = (
        affectnet.read(manual_dir)
        .annotations.select("source_path", "face_x", "face_y", "face_width", "face_height")
        .rows()
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    done = 0
    for path, x, y, w, h in rows:
        try:
            with open(os.path.join(manual_dir, path), "rb") as handle:
                data = handle.read()
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception:  # missing / truncated: skipped, as the builder rejects them
            continue
        if image.mode != "RGB":
            image = image.convert("RGB")
        box = (
            max(0, math.floor(x - 0.2 * w)),
            max(0, math.floor(y - 0.2 * h)),
            min(image.width, math.ceil(x + 1.2 * w)),
            min(image.height, math.ceil(y + 1.2 * h)),
        )
        crop = image.resize((224, 224), resample=Image.Resampling.BILINEAR, box=box)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=95)
        done += 1
    print(
        json.dumps(
            {
                "examples": done,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started,
            }
        )
    )


def tfds_cli(arguments: list[str]) -> None:
    """``tfds ARGUMENTS`` in this process, timing ``download_and_prepare`` (subprocess: `tfds ...`)."""
    import tensorflow as tf  # TFDS imports TensorFlow lazily; import it before the timer starts
    import tensorflow_datasets as tfds
    from tensorflow_datasets.scripts.cli import main as cli

    tf.train.Example()  # noqa: B018  (resolve the lazy protobuf modules too)
    if os.environ.get("BENCH_TFDS_WORKERS"):  # --workers: threads of the plain path
        from tfds_builders import common

        common.ManualDownloadBuilder.WORKERS = int(os.environ["BENCH_TFDS_WORKERS"])

    seconds: list[float] = []
    cpu_seconds: list[float] = []
    prepare = tfds.core.DatasetBuilder.download_and_prepare

    def timed(self, *args, **kwargs):
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            return prepare(self, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu_started)

    tfds.core.DatasetBuilder.download_and_prepare = timed
    sys.argv = ["tfds", *arguments]
    try:
        cli.launch_cli()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    print(json.dumps({"download_and_prepare_seconds": sum(seconds), "cpu_seconds": sum(cpu_seconds)}))


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def measure(size: int, work: Path, seed: int, repeat: int) -> dict[str, float]:
    print(f"size {size}:")
    manual = generate(size, work, seed)
    data_dir = work / f"tfds-{size}"
    base = [
        str(PYTHON),
        __file__,
        "tfds",
        "build",
        "affectnet",
        "--imports",
        "tfds_builders",
        "--config",
        "crop224",
        f"--manual_dir={manual}",
        f"--data_dir={data_dir}",
    ]
    shutil.rmtree(data_dir, ignore_errors=True)
    startup_wall, startup_rss, _ = run_measured([*base, "--max_examples_per_split", "0"], cwd=work)
    limits, builds = [], []
    for attempt in range(repeat):  # interleaved, best of `repeat` (the machine is shared)
        limit_wall, limit_rss, output = run_measured([str(PYTHON), __file__, "limit", str(manual)], cwd=REPO)
        limits.append({**json.loads(output.strip().splitlines()[-1]), "rss": limit_rss})
        shutil.rmtree(data_dir, ignore_errors=True)
        build_wall, build_rss, output = run_measured(base, cwd=work)
        timing = json.loads(output.strip().splitlines()[-1])
        out = data_dir / "affectnet" / "crop224" / "1.0.0"
        info = json.loads((out / "metadata.json").read_text())
        builds.append(
            {
                "seconds": timing["download_and_prepare_seconds"],
                "cpu_seconds": timing["cpu_seconds"],
                "wall": build_wall,
                "rss": build_rss,
                "examples": info["totals"]["examples"],
                "rejects": info["totals"]["rejects"],
                "tfrecord_mb": sum(p.stat().st_size for p in out.glob("*.tfrecord*")) / 2**20,
            }
        )
        shutil.rmtree(data_dir, ignore_errors=True)
        print(
            f"  run {attempt + 1}: limit {limits[-1]['examples'] / limits[-1]['seconds']:.0f} ex/s, "
            f"build {builds[-1]['examples'] / builds[-1]['seconds']:.0f} ex/s"
        )
    limit = min(limits, key=lambda r: r["seconds"])
    best = min(builds, key=lambda r: r["seconds"])
    examples = best["examples"]
    result = {
        "size": size,
        "examples": examples,
        "rejects": best["rejects"],
        "limit_eps": limit["examples"] / limit["seconds"],
        "limit_cpu_ms": 1000 * limit["cpu_seconds"] / limit["examples"],
        "limit_rss": max(r["rss"] for r in limits),
        "build_eps": examples / best["seconds"],
        "build_cpu_ms": 1000 * min(r["cpu_seconds"] for r in builds) / examples,
        "build_seconds": best["seconds"],
        "build_e2e_eps": examples / min(r["wall"] for r in builds),
        "startup_wall": startup_wall,
        "build_rss": max(r["rss"] for r in builds),
        "startup_rss": startup_rss,
        "tfrecord_mb": best["tfrecord_mb"],
    }
    result["ratio"] = result["build_eps"] / result["limit_eps"]
    result["ratio_cpu"] = result["limit_cpu_ms"] / result["build_cpu_ms"]
    result["ratio_e2e"] = result["build_e2e_eps"] / result["limit_eps"]
    print("  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))
    return result


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))  # tfds_builders.common.default_workers (not imported: it imports TFDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_tfds_build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs per size; the best is kept")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads making examples in the build (default: the builders' own, the usable CPUs up to 4)",
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.workers is not None:
        ENV["BENCH_TFDS_WORKERS"] = str(args.workers)
    workers = args.workers if args.workers is not None else _default_workers()
    print(f"cpus: {os.cpu_count()}  build worker threads: {workers}  work dir: {args.work}")
    results = [measure(size, args.work, args.seed, args.repeat) for size in args.sizes]
    header = (
        f"{'rows':>7} {'examples':>8} {'limit ex/s':>10} {'build ex/s':>10} {'ratio':>6} "
        f"{'limit CPU ms/ex':>15} {'build CPU ms/ex':>15} {'CPU ratio':>9} {'e2e ex/s':>8} {'e2e ratio':>9} "
        f"{'limit RSS':>9} {'build RSS':>9} {'start-up RSS':>12} {'records MB':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['size']:>7} {r['examples']:>8} {r['limit_eps']:>10.1f} {r['build_eps']:>10.1f} {r['ratio']:>6.2f} "
            f"{r['limit_cpu_ms']:>15.2f} {r['build_cpu_ms']:>15.2f} {r['ratio_cpu']:>9.2f} "
            f"{r['build_e2e_eps']:>8.1f} {r['ratio_e2e']:>9.2f} "
            f"{r['limit_rss']:>8.0f}M {r['build_rss']:>8.0f}M {r['startup_rss']:>11.0f}M {r['tfrecord_mb']:>10.1f}"
        )
    print(
        "\nratio = build ex/s / limit ex/s (wall time of the build inside `tfds build`, TensorFlow start-up "
        "excluded); CPU ratio = limit CPU ms/ex / build CPU ms/ex (all threads; robust to a shared machine); "
        "e2e = whole `tfds build` process including start-up."
    )
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(
            f"\npeak RSS of the build: {a['build_rss']:.0f} MiB at {a['size']} rows, {b['build_rss']:.0f} MiB at "
            f"{b['size']} rows ({b['size'] / a['size']:.0f}x rows, {b['build_rss'] / a['build_rss']:.2f}x RSS); "
            "TFDS's writer keeps serialized examples in memory up to 1 GiB per split before spilling to disk."
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "limit":
        limit_loop(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 2 and sys.argv[1] == "tfds":
        tfds_cli(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())

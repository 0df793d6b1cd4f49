"""Random access through ``curate.data_source`` against sequential ``tf.data`` reading of the same build.

The script

1. generates a synthetic AffectNet manual dir (original layout, ``--scale``, cached under
   ``--work``) and builds ``affectnet/crop224`` from it twice: as TFRecord (what
   ``tfds.load`` reads) and as ArrayRecord (``--file_format=array_record``, what
   ``tfds.data_source`` serves) -- the same examples in the same order;
2. times, interleaved and best of ``--repeat``, over the train split with the label policy
   ``--policy`` applied at read time and every image decoded to uint8:

   * ``tf.data``: ``builder.as_dataset`` + ``curate.readtime.policy_dataset``, iterated in
     stored order with ``tfds.as_numpy`` (TensorFlow decodes the JPEGs; parallel maps);
   * ``PolicySource`` random access: ``source[i]`` for every kept index in a shuffled order
     (one Python thread, Pillow decodes);
   * ``PolicySource.__getitems__`` on shuffled batches of 64 (what a PyTorch DataLoader or
     Grain batch asks for);
   * opening a ``PolicySource`` (the policy pre-pass over every record, images undecoded);

and prints examples/s and the ratios to ``tf.data`` measured in the same run, as a Markdown
section. The timing is indicative: the machines here are shared and busy.

Run: ``.venv/bin/python benchmarks/bench_data_source.py [--scale 0.005] [--repeat 3] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BATCH = 64


def manual_dir(work: Path, scale: float, seed: int) -> Path:
    from curate.synth.affectnet import generate_affectnet

    out = work / f"affectnet_original_{scale}_{seed}"
    if not (out / ".complete").exists():
        generate_affectnet(out, layout="original", scale=scale, seed=seed, workers=os.cpu_count() or 1)
        (out / ".complete").write_text("")
    return out


def build(manual: Path, data_dir: Path, file_format: str) -> object:
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers affectnet)

    builder = tfds.builder("affectnet", config="crop224", data_dir=str(data_dir))
    builder.download_and_prepare(
        file_format=file_format, download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    return builder


def tf_data_pipeline(builder: object, policy: str) -> object:
    """The ``tf.data`` read of the train split, built once (its maps are traced here, not while timed)."""
    from curate import readtime

    ds = builder.as_dataset(split="train", shuffle_files=False)
    return readtime.policy_dataset(ds, "affectnet", policy).prefetch(16)


def read_tf_data(ds: object) -> int:
    import tensorflow_datasets as tfds

    return sum(1 for _image, _label in tfds.as_numpy(ds))


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    count = fn()
    return time.perf_counter() - started, count


def run(args: argparse.Namespace) -> dict[str, object]:
    from curate.data_source import PolicySource

    manual = manual_dir(args.work, args.scale, args.seed)
    key = f"{args.scale}_{args.seed}"
    tfrecord = build(manual, args.work / f"tfrecord_{key}", "tfrecord")
    build(manual, args.work / f"array_record_{key}", "array_record")
    array_dir = args.work / f"array_record_{key}"

    def open_source() -> PolicySource:
        return PolicySource("affectnet", "train", args.policy, data_dir=array_dir, config="crop224")

    source = open_source()
    order = [int(i) for i in np.random.default_rng(args.seed).permutation(len(source))]
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]

    def one_by_one() -> int:
        return sum(source[i]["image"].shape[0] > 0 for i in order)

    def batched() -> int:
        return sum(len(source.__getitems__(batch)) for batch in batches)

    def opening() -> int:
        return len(open_source())

    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    pipeline = tf_data_pipeline(tfrecord, args.policy)
    read_tf_data(pipeline)  # warm the page cache and TensorFlow
    for _ in range(args.repeat):
        for name, fn in (
            ("tf.data", lambda: read_tf_data(pipeline)),
            ("random", one_by_one),
            ("batched", batched),
            ("open", opening),
        ):
            seconds, counts[name] = timed(fn)
            best[name] = min(best.get(name, float("inf")), seconds)
    if len({counts["tf.data"], counts["random"], counts["batched"], counts["open"]}) != 1:
        raise SystemExit(f"the paths read different numbers of examples: {counts}")
    return {"stored": tfrecord.info.splits["train"].num_examples, "kept": counts["tf.data"], "seconds": best}


def markdown(args: argparse.Namespace, result: dict[str, object]) -> str:
    seconds: dict[str, float] = result["seconds"]  # type: ignore[assignment]
    kept, stored = result["kept"], result["stored"]
    rate = {name: kept / value for name, value in seconds.items()}
    rate["open"] = stored / seconds["open"]  # the pre-pass reads every stored record
    rows = [
        ("`tf.data`: `as_dataset` + `policy_dataset`, stored order (TFRecord build)", "tf.data"),
        ("`PolicySource[i]`, shuffled indices, one at a time (ArrayRecord build)", "random"),
        (f"`PolicySource.__getitems__`, shuffled batches of {BATCH} (ArrayRecord build)", "batched"),
    ]
    lines = [
        "## Random access without TensorFlow (curate.data_source)",
        "",
        f"Synthetic AffectNet `crop224` (224x224 JPEG), train split: {stored:,} stored examples, {kept:,} kept by "
        f"`{args.policy}`; the same manual dir built as TFRecord and as ArrayRecord. Every path decodes every image "
        f"to uint8 and applies the policy; best of {args.repeat}, interleaved, after one warm-up read; the `tf.data` "
        "pipeline is built (and its maps traced) once, outside the timings. `tf.data` decodes with TensorFlow in "
        "parallel maps; `PolicySource` decodes with Pillow in one Python thread (a DataLoader or Grain spreads it "
        f"over worker processes). {os.cpu_count()} logical cores, 1-minute load average {os.getloadavg()[0]:.1f} "
        "when it ended: the figures are indicative; the ratios compare paths measured in the same run.",
        "",
        "| path | seconds | examples/s | ratio to tf.data |",
        "|---|---:|---:|---:|",
    ]
    for label, name in rows:
        lines.append(f"| {label} | {seconds[name]:.2f} | {rate[name]:,.0f} | {rate[name] / rate['tf.data']:.2f} |")
    lines += [
        "",
        f"Opening a `PolicySource` (the policy pre-pass: every stored record read, only its label parsed) took "
        f"{seconds['open']:.2f} s, {rate['open']:,.0f} records/s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.005, help="of the real AffectNet size (0.005: ~2,100 images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--policy", default="drop-8-plus")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_data_source")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with contextlib.redirect_stdout(sys.stderr):  # generator and TFDS chatter; stdout is the section
        result = run(args)
    print(markdown(args, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

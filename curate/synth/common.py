"""Shared machinery of the fake-dataset generators (AffectNet, FERPlus, RAF-DB).

Scope
-----
* :class:`SynthReport` -- what every ``generate_*`` function returns.
* Paths written *next to* (outside) a generated manual dir: the quirk manifest
  ``<out>.synth_manifest.json`` and the label-noise ledger ``<out>.noise_ledger.parquet``
  (:func:`manifest_path`, :func:`noise_ledger_path`). Keeping them outside means a builder
  pointed at the manual dir never sees them. The manifest names the ledger by its file
  name (same folder), so its bytes do not depend on where ``out`` is.
* Class counts at a scale (:func:`scale_counts`), realistic label flips
  (:data:`CONFUSIONS`, :func:`flip_labels`), per-chunk random generators
  (:func:`chunk_rng`) and an ordered process pool (:func:`run_chunks`).

Determinism: everything random comes from ``numpy.random.Generator`` objects seeded from the
user's seed plus fixed stream numbers; images are drawn in fixed-size chunks, each with its
own generator, so the output bytes do not depend on the number of worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels

#: Rows per image-drawing task; fixed so output does not depend on the worker count.
CHUNK_ROWS = 32
#: Generator version written to manifests; bump when the bytes written change.
GENERATOR_VERSION = "1.0.0"

#: Realistic confusions used by ``--label-noise``: canonical label -> ((target, weight), ...).
#: Labels 9 (Uncertain) and 10 (No-Face) are never flipped nor flipped to.
CONFUSIONS: Mapping[int, tuple[tuple[int, float], ...]] = {
    0: ((2, 0.35), (8, 0.25), (7, 0.15), (1, 0.15), (6, 0.10)),  # Neutral
    1: ((0, 0.55), (3, 0.25), (7, 0.20)),  # Happy
    2: ((0, 0.55), (4, 0.25), (6, 0.20)),  # Sad
    3: ((4, 0.70), (1, 0.20), (0, 0.10)),  # Surprise
    4: ((3, 0.65), (2, 0.20), (5, 0.15)),  # Fear
    5: ((6, 0.65), (2, 0.20), (4, 0.15)),  # Disgust
    6: ((5, 0.60), (0, 0.25), (2, 0.15)),  # Anger
    7: ((0, 0.60), (1, 0.25), (5, 0.15)),  # Contempt
    8: ((0, 0.80), (1, 0.20)),  # None
}


@dataclasses.dataclass(frozen=True)
class SynthReport:
    """Summary of one generated manual dir.

    Attributes
    ----------
    dataset : str
        ``affectnet``, ``ferplus`` or ``rafdb``.
    out : Path
        The manual dir written (pass it to a builder as ``manual_dir``).
    layout : str
        Layout written (``original`` / ``cropped`` for AffectNet, ``fer2013+ferplus``,
        ``basic``).
    seed, scale, label_noise : number
        The generation parameters (``scale`` is the fraction of the real size).
    split_counts : dict
        Rows per split, as written in the annotation files.
    class_counts : dict
        Per split, the written (given) canonical label -> count.
    images_written : int
        Image files written (0 with ``annotations_only``).
    annotations_only : bool
        Whether images were skipped.
    flipped : int
        Labels flipped by ``label_noise`` (``round(label_noise * rows)``).
    quirks : dict
        Injected quirk -> count (the manifest also lists the ids).
    manifest_path : Path
        ``<out>.synth_manifest.json``.
    noise_ledger_path : Path or None
        ``<out>.noise_ledger.parquet`` when ``label_noise > 0``.
    seconds : float
        Wall time.
    """

    dataset: str
    out: Path
    layout: str
    seed: int
    scale: float
    label_noise: float
    split_counts: dict[str, int]
    class_counts: dict[str, dict[int, int]]
    images_written: int
    annotations_only: bool
    flipped: int
    quirks: dict[str, int]
    manifest_path: Path
    noise_ledger_path: Path | None
    seconds: float

    @property
    def rows(self) -> int:
        return sum(self.split_counts.values())


def manifest_path(out: str | Path) -> Path:
    """``<out>.synth_manifest.json``, next to the manual dir (outside it)."""
    out = Path(out)
    return out.parent / f"{out.name}.synth_manifest.json"


def noise_ledger_path(out: str | Path) -> Path:
    """``<out>.noise_ledger.parquet``, next to the manual dir (outside it)."""
    out = Path(out)
    return out.parent / f"{out.name}.noise_ledger.parquet"


def scale_counts(counts: Sequence[int], scale: float, *, minimum: int = 1) -> np.ndarray:
    """Counts multiplied by ``scale`` and rounded half to even, at least ``minimum`` each."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    scaled = np.rint(np.asarray(counts, dtype=np.float64) * scale).astype(np.int64)
    return np.maximum(scaled, np.where(np.asarray(counts) > 0, minimum, 0))


def shuffled_labels(rng: np.random.Generator, counts: Sequence[int], codes: Sequence[int] | None = None) -> np.ndarray:
    """A random order of ``counts[i]`` copies of ``codes[i]`` (default ``i``)."""
    codes = np.arange(len(counts)) if codes is None else np.asarray(codes)
    return rng.permutation(np.repeat(codes, np.asarray(counts, dtype=np.int64)))


def chunk_rng(seed: int, stream: int, chunk: int) -> np.random.Generator:
    """Independent generator for ``chunk`` of ``stream`` (streams separate datasets/splits)."""
    return np.random.default_rng([int(seed), int(stream), int(chunk)])


def flip_labels(
    rng: np.random.Generator, true_labels: np.ndarray, rate: float, *, allowed: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * len(true_labels))`` labels along :data:`CONFUSIONS`.

    Only rows whose label has a confusion target inside ``allowed`` (the labels the dataset
    can write) are candidates; each chosen row moves to one of its targets drawn with the
    table's weights renormalised over ``allowed``.

    Returns ``(given_labels, flipped_index)`` (sorted row indices of the flipped rows).
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"label noise rate must be in [0, 1], got {rate!r}")
    n_flip = round(rate * len(true_labels))
    given = true_labels.copy()
    if n_flip == 0:
        return given, np.zeros(0, dtype=np.int64)
    allowed_set = set(int(a) for a in allowed)
    targets = {
        source: [(t, w) for t, w in pairs if t in allowed_set]
        for source, pairs in CONFUSIONS.items()
        if source in allowed_set
    }
    targets = {source: pairs for source, pairs in targets.items() if pairs}
    candidates = np.flatnonzero(np.isin(true_labels, list(targets)))
    if n_flip > len(candidates):
        raise ValueError(
            f"label noise {rate} asks for {n_flip} flips but only {len(candidates)} rows have a confusable label"
        )
    chosen = np.sort(rng.choice(candidates, size=n_flip, replace=False))
    for source, pairs in sorted(targets.items()):
        rows = chosen[true_labels[chosen] == source]
        if len(rows) == 0:
            continue
        codes = np.array([t for t, _ in pairs])
        weights = np.array([w for _, w in pairs], dtype=np.float64)
        given[rows] = rng.choice(codes, size=len(rows), p=weights / weights.sum())
    return given, chosen


def write_noise_ledger(out: str | Path, ids: Any, splits: Any, given: Any, true: Any) -> Path:
    """Write the flipped rows (``id``, ``split``, ``given_label``, ``true_label``; canonical ints)."""
    import polars as pl

    path = noise_ledger_path(out)
    frame = pl.DataFrame(
        {
            "id": pl.Series(list(ids), dtype=pl.String),
            "split": pl.Series(list(splits), dtype=pl.String),
            "given_label": pl.Series(np.asarray(given, dtype=np.int8)),
            "true_label": pl.Series(np.asarray(true, dtype=np.int8)),
        }
    )
    frame.write_parquet(path, statistics=False)
    return path


def write_manifest(out: str | Path, content: Mapping[str, Any]) -> Path:
    """Write the quirk manifest next to ``out`` (sorted keys, no timestamps: deterministic)."""
    path = manifest_path(out)
    path.write_text(json.dumps(_jsonable(content), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


#: Largest ``scale`` (a fraction of the real dataset size); beyond it the counts stop looking real.
MAX_SCALE = 4.0
#: Seeds are NumPy ``SeedSequence`` entropy: non-negative and below 2**63.
MAX_SEED = 2**63 - 1


def check_out(out: str | Path) -> Path:
    """Refuse an ``out`` that cannot become an empty manual dir, touching nothing.

    Raises ``ValueError`` naming the path when ``out`` (or a folder above it) exists and is
    not a folder, when ``out`` is a folder that already holds files, or when the manifest or
    noise-ledger path next to it is taken by a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out exists and is not a folder; choose a folder path (absent or empty)")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: output folder is not empty; remove it or choose another")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{parent}: is a file, so --out {out} cannot be created inside it")
            break
    for beside in (manifest_path(out), noise_ledger_path(out)):
        if beside.is_dir():
            raise ValueError(f"{beside}: is a folder, but the generator writes a file there; remove it")
    return out


def check_options(
    *, seed: int, scale: float, label_noise: float, workers: int | None, validation_scale: float | None = None
) -> None:
    """Raise ``ValueError`` naming the first option outside its range (before anything is written)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed: value {seed} is out of range; allowed an integer in [0, 2**63 - 1]")
    for option, value in (("--scale", scale), ("--validation-scale", validation_scale)):
        if value is not None and not 0.0 < value <= MAX_SCALE:  # False for NaN
            raise ValueError(f"{option}: value {value} is out of range; allowed (0, {MAX_SCALE:g}]")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"--label-noise: value {label_noise} is out of range; allowed [0, 1]")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers: value {workers} is out of range; allowed at least 1")


@contextlib.contextmanager
def output_folder(out: str | Path) -> Iterator[Path]:
    """Create ``out`` (checked by :func:`check_out`) for a generator; all or nothing.

    When the generator raises, what it wrote is removed: ``out`` itself when this call
    created it (its contents when it was there, empty, before), and the manifest and noise
    ledger next to it.
    """
    out = check_out(out)
    existed = out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if existed:
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        for beside in (manifest_path(out), noise_ledger_path(out)):
            beside.unlink(missing_ok=True)
        raise


def finish(out: Path, content: Mapping[str, Any], *, started: float) -> SynthReport:
    """Write the manifest and summarise it: the last step of every generator.

    ``content`` is the manifest: it names dataset, layout, seed, scale, label_noise,
    annotations_only, split/class counts, images_written, flipped, quirks and noise_ledger.
    """
    manifest = write_manifest(out, content)
    return SynthReport(
        dataset=content["dataset"],
        out=out,
        layout=content["layout"],
        seed=content["seed"],
        scale=content["scale"],
        label_noise=content["label_noise"],
        split_counts=content["split_counts"],
        class_counts=content["class_counts"],
        images_written=content["images_written"],
        annotations_only=content["annotations_only"],
        flipped=content["flipped"],
        quirks={name: quirk["count"] for name, quirk in content["quirks"].items()},
        manifest_path=manifest,
        noise_ledger_path=noise_ledger_path(out) if content["noise_ledger"] else None,
        seconds=time.perf_counter() - started,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def class_counts(split_labels: Mapping[str, np.ndarray]) -> dict[str, dict[int, int]]:
    return {
        split: {int(k): int(v) for k, v in zip(*np.unique(values, return_counts=True), strict=True)}
        for split, values in split_labels.items()
    }


def default_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def chunk_slices(n_rows: int, size: int = CHUNK_ROWS) -> list[slice]:
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def run_chunks(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(t) for t in tasks]``, in a process pool when ``workers > 1``.

    Results come back in task order. ``fn`` must be a module-level function (it is pickled).
    Workers are forked where the platform allows (they only use NumPy and Pillow, never the
    parent's Polars or TensorFlow threads) -- spawn would re-run a ``__main__`` read from
    stdin; set ``CURATE_SYNTH_START_METHOD=spawn`` (or ``forkserver``) to override.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [fn(task) for task in tasks]
    methods = multiprocessing.get_all_start_methods()
    method = os.environ.get("CURATE_SYNTH_START_METHOD") or ("fork" if "fork" in methods else "spawn")
    context = multiprocessing.get_context(method)
    with context.Pool(processes=min(workers, len(tasks))) as pool:
        return pool.map(fn, tasks, chunksize=1)


def landmark_templates(seed: int, count: int = 48) -> np.ndarray:
    """``(count, 68, 2)`` landmark shapes of drawn faces, normalised to their face box.

    Used by the annotations-only paths, which place these shapes in a row's box instead of
    drawing an image (:func:`curate.synth.faces.draw_face` is the only shape source).
    """
    from curate.synth.faces import draw_face

    rng = np.random.default_rng([int(seed), 9001])
    shapes = []
    for k in range(count):
        face = draw_face(rng, k % 9, size=(96, 96))
        x, y, w, h = face.box
        shapes.append((face.landmarks68 - np.array([x, y])) / np.array([max(w, 1.0), max(h, 1.0)]))
    return np.stack(shapes).astype(np.float32)


def place_templates(
    rng: np.random.Generator, templates: np.ndarray, boxes: np.ndarray, *, jitter: float = 0.01
) -> np.ndarray:
    """``(n, 68, 2)`` landmarks: a random template per row scaled into ``boxes`` (x, y, w, h)."""
    pick = rng.integers(0, len(templates), size=len(boxes))
    shapes = templates[pick] + rng.normal(0.0, jitter, size=(len(boxes), 68, 2)).astype(np.float32)
    origin = boxes[:, None, 0:2].astype(np.float32)
    size = boxes[:, None, 2:4].astype(np.float32)
    return origin + shapes * size


def canonical_name(label: int) -> str:
    return labels.CANONICAL_NAMES[label]


def allocate(total: int, proportions: Sequence[float]) -> np.ndarray:
    """Split ``total`` into integer counts following ``proportions`` (largest remainder)."""
    p = np.asarray(proportions, dtype=np.float64)
    p = p / p.sum()
    exact = p * total
    counts = np.floor(exact).astype(np.int64)
    remainder = total - counts.sum()
    if remainder:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:remainder]] += 1
    return counts

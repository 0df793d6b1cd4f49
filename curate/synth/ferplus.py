"""Fake FERPlus manual dirs: a FER2013 copy (48x48 grey pixels) aligned with ``fer2013new.csv``.

Scope
-----
:func:`generate_ferplus` has two modes.

Synthetic votes (default)
    Rows follow the FER2013 split sizes (28,709 Training, 3,589 PublicTest, 3,589
    PrivateTest at scale 1, written in that order, as the release) and the class mix of the
    real FER+ vote winners (:data:`TRUE_PROPORTIONS`). Each row's image shows its true
    class; its ten votes are drawn around that class with a per-row agreement and
    realistic confusions (some unknown / NF votes); No-Face rows are non-face images whose
    votes say NF, and most of them have an empty ``Image name`` like the rejected images
    of the real file. ``emotion`` is the true class in FER2013 codes (Contempt, Uncertain
    and No-Face rows get a plausible FER2013 code, as the old labels did).
``votes_from`` (a real ``fer2013new.csv``)
    The file is copied into ``out`` byte for byte and an aligned ``fer2013.csv`` is
    generated for every row (``scale`` does not apply): the image shows the row's vote
    winner (FER+ majority; where the majority rule says unknown, the plain argmax), NF
    winners are non-face images, and ``emotion`` is the winner's FER2013 code.

``copy`` picks the FER2013 copy written beside ``fer2013new.csv``
(:data:`curate.formats.ferplus.COPIES`): ``fer2013.csv`` (default), Kaggle's
``icml_face_data.csv``, or Kaggle's ``train.csv`` + unlabelled ``test.csv`` -- the same rows
in the same order, so the reader gives the same annotations from each.

``label_noise`` flips the FER2013 ``emotion`` of exactly ``round(rate * rows)`` rows along
:data:`curate.synth.common.CONFUSIONS` (the votes and image keep the true class); the
flips go to ``<out>.noise_ledger.parquet`` with canonical labels (``true_label`` = the
class the image shows). ``annotations_only`` reuses a small pool of drawn faces for the
pixel column instead of drawing one image per row.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels
from curate.formats import ferplus as fmt
from curate.synth import common

DATASET = "ferplus"
SPLIT_SIZES: dict[str, int] = {"train": 28709, "validation": 3589, "test": 3589}
#: Canonical class mix of the real FER+ vote winners (argmax over the ten votes).
TRUE_PROPORTIONS: tuple[float, ...] = (
    0.3596,
    0.2607,
    0.1218,
    0.1243,
    0.0228,
    0.0069,
    0.0867,
    0.0060,
    0.0,
    0.0062,
    0.0050,
)
#: FER2013 label frequencies (Angry ... Neutral) of the release, for plausible codes.
FER2013_PROPORTIONS: tuple[float, ...] = (0.138, 0.015, 0.143, 0.250, 0.169, 0.112, 0.173)
DEFAULT_SCALE = 0.05
#: Fraction of No-Face rows written with an empty ``Image name`` and ten NF votes.
EMPTY_NAME_FRACTION = 0.6
_STREAM_TABLE, _STREAM_NOISE, _STREAM_IMAGES, _STREAM_POOL = 21, 22, 23, 24
_CANONICAL_TO_FER2013 = {canonical: code for code, canonical in enumerate(labels.FER2013_TO_CANONICAL)}
_VOTE_COLUMN = {canonical: j for j, canonical in enumerate(labels.FERPLUS_VOTE_TO_CANONICAL)}
_UNKNOWN, _NF = _VOTE_COLUMN[9], _VOTE_COLUMN[10]


def generate_ferplus(
    out: str | Path,
    *,
    scale: float | None = None,
    seed: int = 0,
    label_noise: float = 0.0,
    annotations_only: bool = False,
    votes_from: str | Path | None = None,
    copy: str = "fer2013",
    workers: int | None = None,
) -> common.SynthReport:
    """Write a fake FERPlus manual dir (a FER2013 copy + ``fer2013new.csv``) at ``out``.

    Parameters
    ----------
    out : path
        Folder to create (must be absent or empty).
    scale : float, optional
        Fraction of the real 35,887 rows (default :data:`DEFAULT_SCALE`, or 1.0 with
        ``annotations_only``). Not allowed with ``votes_from`` (every row is generated).
    seed : int
        Same seed, same bytes.
    label_noise : float
        Fraction of rows whose FER2013 ``emotion`` is flipped (ledger next to ``out``).
    annotations_only : bool
        Fill ``pixels`` from a small pool of drawn faces instead of one drawing per row.
    votes_from : path, optional
        A real ``fer2013new.csv`` to copy and align with.
    copy : str
        Which FER2013 copy to write (:data:`curate.formats.ferplus.COPIES`): ``fer2013``
        (``fer2013.csv``, default), ``icml_face_data`` (``icml_face_data.csv``) or
        ``kaggle-train-test`` (``train.csv`` + an unlabelled ``test.csv``; not with
        ``label_noise``, whose flips the unlabelled rows could not show).
    workers : int, optional
        Processes drawing images (default ``os.cpu_count()``).
    """
    started = time.perf_counter()
    if copy not in fmt.COPIES_BY_NAME:
        raise ValueError(f"unknown FER2013 copy {copy!r}; expected one of {', '.join(fmt.COPIES_BY_NAME)}")
    if copy == "kaggle-train-test" and label_noise > 0:
        raise ValueError("label_noise needs FER2013 labels in every row; the Kaggle test.csv has none")
    if votes_from is not None:
        if scale is not None and scale != 1.0:
            raise ValueError("scale does not apply with votes_from: every row of the vote file is generated")
        if not Path(votes_from).is_file():
            raise ValueError(f"{votes_from}: vote file not found")
        scale = 1.0
    else:
        scale = (1.0 if annotations_only else DEFAULT_SCALE) if scale is None else float(scale)
    common.check_options(seed=seed, scale=scale, label_noise=label_noise, workers=workers)
    common.check_out(out)
    with common.output_folder(out) as folder:
        return _write_ferplus(
            folder, scale, seed, label_noise, annotations_only, votes_from, common.default_workers(workers), started,
            copy=copy,
        )  # fmt: skip


def _write_ferplus(
    out: Path,
    scale: float,
    seed: int,
    label_noise: float,
    annotations_only: bool,
    votes_from: str | Path | None,
    workers: int,
    started: float,
    *,
    copy: str,
) -> common.SynthReport:
    table_rng = np.random.default_rng([seed, _STREAM_TABLE])
    if votes_from is not None:
        table = _table_from_votes(Path(votes_from), out, table_rng)
    else:
        table = _synthetic_table(table_rng, scale)
        fmt.write_ferplus_votes(out / fmt.FERPLUS_FILE, table["usage"], table["image_names"], table["votes"])
    n = len(table["true"])
    ids = np.array([f"fer{i:07d}" for i in range(n)])
    splits = np.array([fmt.USAGE_TO_SPLIT.get(u, "unknown") for u in table["usage"]])
    clean_fer = table["emotion"]
    clean_canonical = np.asarray(labels.FER2013_TO_CANONICAL)[clean_fer]
    given_canonical, flipped = common.flip_labels(
        np.random.default_rng([seed, _STREAM_NOISE]), clean_canonical, label_noise, allowed=range(7)
    )
    emotion = np.array([_CANONICAL_TO_FER2013[c] for c in given_canonical.tolist()], dtype=np.int64)
    ledger = None
    if label_noise > 0:
        ledger = common.write_noise_ledger(
            out, ids[flipped], splits[flipped], given_canonical[flipped], table["true"][flipped]
        )
    if annotations_only:
        pixels = _pool_pixels(seed, table["true"], table_rng)
        images_written = 0
    else:
        tasks = [{"seed": seed, "chunk": k, "labels": table["true"][s]} for k, s in enumerate(common.chunk_slices(n))]
        results = common.run_chunks(_draw_chunk, tasks, workers)
        pixels = np.concatenate(results) if results else np.zeros((0, fmt.NUM_PIXELS), dtype=np.uint8)
        images_written = n
    written = fmt.write_fer2013_copy(out, copy, emotion, pixels, table["usage"])
    unlabelled = int((splits != "train").sum()) if copy == "kaggle-train-test" else 0
    split_names = [s for s in ("train", "validation", "test") if (splits == s).any()]
    content: dict[str, Any] = {
        "dataset": DATASET,
        "layout": fmt.COPIES_BY_NAME[copy].layout,
        "mode": "votes_from" if votes_from is not None else "synthetic",
        "votes_from": str(votes_from) if votes_from is not None else None,
        "seed": seed,
        "scale": scale,
        "label_noise": label_noise,
        "annotations_only": annotations_only,
        "generator_version": common.GENERATOR_VERSION,
        "files": [path.name for path in written] + [fmt.FERPLUS_FILE],
        "split_counts": {s: int((splits == s).sum()) for s in split_names},
        "class_counts": common.class_counts({s: given_canonical[splits == s] for s in split_names}),
        "true_class_counts": common.class_counts({s: table["true"][splits == s] for s in split_names}),
        "images_written": images_written,
        "quirks": {
            "empty_image_name": {
                "count": int(sum(1 for name in table["image_names"] if not name)),
                "effect": "rejected by the FER+ annotators; votes say NF",
            },
            **(
                {
                    "no_fer2013_label": {
                        "count": unlabelled,
                        "effect": "Kaggle test.csv rows: FER2013 label null (class_counts give the label not written)",
                    }
                }
                if unlabelled
                else {}
            ),
        },
        "expected_reader_rejects": {},
        "flipped": len(flipped),
        "noise_ledger": ledger.name if ledger else None,
    }
    return common.finish(out, content, started=started)


def _plausible_fer2013(rng: np.random.Generator, true: np.ndarray) -> np.ndarray:
    """FER2013 code per true canonical class; Contempt / Uncertain / No-Face get a plausible one."""
    emotion = np.array([_CANONICAL_TO_FER2013.get(c, -1) for c in true.tolist()], dtype=np.int64)
    contempt = true == 7
    emotion[contempt] = rng.choice([6, 1, 0], size=int(contempt.sum()), p=[0.5, 0.25, 0.25])
    other = emotion < 0
    emotion[other] = rng.choice(7, size=int(other.sum()), p=np.asarray(FER2013_PROPORTIONS) / sum(FER2013_PROPORTIONS))
    return emotion


def _vote_probabilities(rng: np.random.Generator, true: np.ndarray) -> np.ndarray:
    """Per-row probabilities over the ten FER+ columns, around each row's true class."""
    n = len(true)
    probs = np.zeros((n, 10))
    agreement = np.where(true == 1, rng.beta(9.0, 1.5, size=n), rng.beta(6.0, 2.5, size=n))
    for canonical in range(8):
        rows = np.flatnonzero(true == canonical)
        if len(rows) == 0:
            continue
        own = _VOTE_COLUMN[canonical]
        rest = 1.0 - agreement[rows]
        partners = [(_VOTE_COLUMN[0 if t == 8 else t], w) for t, w in common.CONFUSIONS[canonical]]
        weights = np.zeros(10)
        for column, w in partners:
            weights[column] += 0.65 * w
        others = [j for j in range(8) if j != own]
        weights[others] += 0.25 / len(others)
        weights[_UNKNOWN] += 0.08
        weights[_NF] += 0.02
        probs[rows] = rest[:, None] * (weights / weights.sum())[None, :]
        probs[rows, own] += agreement[rows]
    uncertain = np.flatnonzero(true == 9)
    for row in uncertain.tolist():
        a, b = rng.choice(8, size=2, replace=False)
        probs[row, [a, b]] = 0.35
        probs[row, _UNKNOWN] = 0.30
    no_face = np.flatnonzero(true == 10)
    probs[no_face, _NF] = 0.8
    probs[no_face, _UNKNOWN] = 0.1
    probs[no_face, _VOTE_COLUMN[0]] = 0.1
    return probs


def _synthetic_table(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    usage: list[str] = []
    true_parts = []
    for split, size in SPLIT_SIZES.items():
        n_split = max(1, round(size * scale))
        counts = common.allocate(n_split, TRUE_PROPORTIONS)
        true_parts.append(common.shuffled_labels(rng, counts))
        usage += [fmt.SPLIT_TO_USAGE[split]] * n_split
    true = np.concatenate(true_parts)
    n = len(true)
    votes = rng.multinomial(10, _vote_probabilities(rng, true))
    no_face = np.flatnonzero(true == 10)
    empty = no_face[rng.random(len(no_face)) < EMPTY_NAME_FRACTION]
    votes[empty] = 0
    votes[empty, _NF] = 10
    image_names: list[str | None] = [fmt.image_name(i) for i in range(n)]
    for row in empty.tolist():
        image_names[row] = None
    return {
        "true": true,
        "usage": usage,
        "votes": votes,
        "image_names": image_names,
        "emotion": _plausible_fer2013(rng, true),
    }


def _table_from_votes(path: Path, out: Path, rng: np.random.Generator) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"{path}: vote file not found")
    target = out / fmt.FERPLUS_FILE
    shutil.copyfile(path, target)
    parsed = fmt._parse_votes(target.read_bytes(), fmt.FERPLUS_FILE)
    n = parsed.height
    votes = np.zeros((n, 10), dtype=np.int64)
    valid = parsed["votes"].is_not_null().to_numpy()
    if valid.any():
        votes[valid] = np.stack(parsed["votes"].filter(parsed["votes"].is_not_null()).to_list())
    winner = labels.ferplus_vote_targets(votes, "majority").label
    argmax = labels.ferplus_vote_targets(votes, "argmax").label
    true = np.where(winner == 9, argmax, winner)
    true = np.where(valid, true, rng.choice(8, size=n))  # unreadable vote rows: any class
    return {
        "true": true.astype(np.int64),
        "usage": parsed["usage"].fill_null("Training").to_list(),
        "votes": votes,
        "image_names": parsed["image_name"].to_list(),
        "emotion": _plausible_fer2013(rng, true),
    }


def _draw_chunk(task: dict[str, Any]) -> np.ndarray:
    """Draw one chunk of 48x48 grey images; returns ``(n, 2304)`` uint8 (worker process)."""
    from curate.synth.faces import draw_face

    rng = common.chunk_rng(task["seed"], _STREAM_IMAGES, task["chunk"])
    side = fmt.IMAGE_SIDE
    out = np.zeros((len(task["labels"]), fmt.NUM_PIXELS), dtype=np.uint8)
    for i, label in enumerate(task["labels"].tolist()):
        face = draw_face(rng, int(label), size=(side, side), grey=True, face_fraction=(0.75, 0.98))
        out[i] = np.asarray(face.image.convert("L"), dtype=np.uint8).reshape(-1)
    return out


def _pool_pixels(seed: int, true: np.ndarray, rng: np.random.Generator, per_class: int = 8) -> Any:
    """Pixel text for annotations-only mode: a few drawn faces per class, reused."""
    pool_rng = np.random.default_rng([seed, _STREAM_POOL])
    classes = sorted(set(true.tolist()))
    faces = np.zeros((len(classes) * per_class, fmt.NUM_PIXELS), dtype=np.uint8)
    from curate.synth.faces import draw_face

    for k, label in enumerate(classes):
        for j in range(per_class):
            face = draw_face(pool_rng, int(label), size=(fmt.IMAGE_SIDE,) * 2, grey=True, face_fraction=(0.75, 0.98))
            faces[k * per_class + j] = np.asarray(face.image.convert("L"), dtype=np.uint8).reshape(-1)
    text = fmt.pixels_to_text(faces)
    index = {label: k for k, label in enumerate(classes)}
    pick = np.array([index[t] for t in true.tolist()], dtype=np.int64) * per_class + rng.integers(
        0, per_class, size=len(true)
    )
    return text.gather(pick)

"""Dataset audits: duplicate and near-duplicate images, valence/arousal consistency.

Scope
-----
* :func:`load_images` -- the image list of one manual dir, through the format readers
  (AffectNet ``source_path`` + face box, RAF-DB aligned images, FERPlus pixels).
* :func:`hash_images` -- decode and hash every image (process pool): an *exact* digest, a
  256-bit perceptual hash and a 16x16 grey thumbnail of the face.
* :func:`find_duplicates` -- pairs of images that are the same (``kind="exact"``) or look
  the same (``kind="near"``), within and across splits and datasets;
  :func:`pair_summary` counts them per (dataset/split, dataset/split).
* :func:`exclusion_ids` / :func:`write_exclusions` -- which ids to drop so each duplicate
  group keeps one image (the test/validation copy stays; the train copy goes).
* :func:`inject_duplicates` -- the evaluation injector (AffectNet original layout).
* :func:`va_outliers` -- AffectNet rows whose (valence, arousal) is far from their label's
  typical region.

Decisions
---------
*Exact* is the SHA-256 of the **decoded pixels** of the whole image (mode, size and the raw
pixel bytes), not of the file bytes: the same picture saved as PNG and BMP, or a copy with
different metadata, is still exact; FERPlus rows have no file at all. The baseline "SHA-256
of the file bytes" of ``benchmarks/bench_audit.py`` is the weaker check.

*Near* is ``imagehash.phash(face, hash_size=16)`` (DCT hash, 256 bits) of the grey face
image -- AffectNet original images are cropped to their face box first, since it is the
faces that duplicate (the background around them varies). Two images are near duplicates
when the Hamming distance of their hashes is at most ``max_distance`` (default
:data:`DEFAULT_MAX_DISTANCE` of 256 bits). Measured on the injected set (exact copies, 90 %
resized copies, JPEG quality-60 re-encodes of synthetic faces): with the usual 64-bit hashes
the true pairs reach distance 10 (pHash) / 8 (dHash) while distinct faces already come
within 2 of each other, so no threshold gives both recall and precision; with 256-bit pHash
the true pairs stay at <= 30 and distinct faces at >= 46 (256-bit dHash: 42 vs 25, they
overlap), hence pHash-256 and 36. On a larger set (2,151 images, 2.3 M pairs) a few
distinct faces still come within 30-36, so every near candidate is verified on a 16x16 grey
thumbnail of the face kept per image (256 bytes): the pair stays when the mean absolute
difference is at most :data:`DEFAULT_MAX_PIXEL_DIFF`. The thumbnails are compared after a
*rank transform* of each (every pixel replaced by its rank in its own thumbnail, 0-255):
comparing raw grey levels missed copies whose brightness, contrast or gamma was changed (a
+15 % brightness copy differs by 9-23 grey levels, distinct faces from 5.3), and a per-image
z-score still let distinct faces through at 5.3 while a saturated brightness copy sat at
14; ranks are unchanged by any increasing grey-level map. Measured (seed 0, 2,249 images, 160
injected copies, 5,943 distinct-face pairs within 70 bits): true pairs within the pHash
threshold <= 10.3 but one saturated brightness copy (22.8), distinct faces >= 12.8, hence 11.
A horizontal flip changes the pHash (distance > 70): ``flips=True`` also hashes each mirrored
face and searches every hash against the mirrored ones (``kind="flip"``). A 5 % tighter face
box moves the pHash as far as a different face's: not found. The search
(:mod:`curate.near_search`) is exact all pairs for small sets and bit-sampling LSH as Polars
joins for large ones (``method=``).

Valence/arousal outliers (:func:`va_outliers`): per label, the robust centre is the median
of valence and of arousal and the scale 1.4826·MAD of each (floored at
:data:`VA_MIN_SCALE`); a row's robust distance is the Euclidean norm of its two robust
z-scores. The threshold is learned per label from the same distances:
``median(d) + k · 1.4826 · MAD(d)`` (``k`` = :data:`VA_K`, default 3) -- for a Gaussian
class that flags well under 1 % of the rows, and the median/MAD stay put while fewer than
half the rows are corrupted. Rows without V/A (labels 9 and 10, or nulls) are left out.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from curate import datasets as registry
from curate.exclusions import COLUMNS as EXCLUSION_COLUMNS
from curate.exclusions import exclusion_schema
from curate.near_search import METHODS as SEARCH_METHODS  # noqa: F401 - re-exported
from curate.near_search import near_pairs
from curate.va_audit import VA_K, VA_MIN_ROWS, VA_MIN_SCALE, va_outliers, va_summary  # noqa: F401 - re-exported

#: pHash side: ``HASH_SIZE**2`` bits (16 -> 256 bits, four uint64 words).
HASH_SIZE = 16
HASH_WORDS = HASH_SIZE * HASH_SIZE // 64
#: Default Hamming-distance threshold of :func:`find_duplicates` (of 256 pHash bits).
DEFAULT_MAX_DISTANCE = 36
#: Side of the grey face thumbnail kept per image to verify near pairs (16 -> 256 bytes).
THUMB_SIZE = 16
#: Largest mean absolute difference (0-255 scale) of the normalised thumbnails of a near pair
#: (for ``rank`` thumbnails; the ``raw`` grey levels were checked against 6).
DEFAULT_MAX_PIXEL_DIFF = 11.0
#: How each thumbnail is normalised before two are compared (:func:`normalise_thumbs`).
NORMALISE_METHODS: tuple[str, ...] = ("raw", "zscore", "rank")
DEFAULT_NORMALISE = "rank"
#: Grey levels per standard deviation of a ``zscore`` thumbnail (about a face's grey-level spread).
ZSCORE_SCALE = 50.0
#: Images per task handed to a worker process.
HASH_CHUNK = 256
#: Keep order of :func:`exclusion_ids`: the earlier split in this tuple is kept.
KEEP_ORDER: tuple[str, ...] = ("test", "validation", "train")

PAIR_SCHEMA: dict[str, Any] = {
    "id_a": pl.String,
    "dataset_a": pl.String,
    "split_a": pl.String,
    "id_b": pl.String,
    "dataset_b": pl.String,
    "split_b": pl.String,
    "kind": pl.String,  # "exact" | "near" | "flip" (a horizontal mirror image, pairs_from_hashes(flips=True))
    "distance": pl.Int16,  # pHash Hamming distance (0 for most exact pairs)
    "pixel_diff": pl.Float32,  # mean |difference| of the normalised 16x16 face thumbnails (0-255 scale)
}
IMAGE_COLUMNS = ("id", "dataset", "split", "path", "face_x", "face_y", "face_width", "face_height", "pixels")
DUPLICATE_PAIRS_DDL = """CREATE TABLE IF NOT EXISTS duplicate_pairs (
    id_a VARCHAR, dataset_a VARCHAR, split_a VARCHAR, id_b VARCHAR, dataset_b VARCHAR, split_b VARCHAR,
    kind VARCHAR, distance SMALLINT, pixel_diff FLOAT, created TIMESTAMP)"""


# --------------------------------------------------------------------------------------
# Image lists
# --------------------------------------------------------------------------------------


def load_images(dataset: str, manual_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """The images of one manual dir: ``id, dataset, split, path`` (+ face box, FERPlus ``pixels``).

    ``path`` is absolute (null for FERPlus, whose images are the ``pixels`` text). AffectNet
    original rows carry their face box (the hash is taken on the crop); the cropped layout
    and RAF-DB aligned images are already faces.
    """
    spec = registry.get(dataset)
    root = Path(manual_dir).resolve()
    parsed = spec.read(root, **spec.images_option)
    frame = parsed.annotations
    prefix = str(root) + os.sep
    out = frame.select(
        "id",
        "dataset",
        "split",
        (pl.lit(prefix) + pl.col("source_path")).alias("path"),
        *(pl.col(c) for c in ("face_x", "face_y", "face_width", "face_height")),
        (pl.col("pixels") if "pixels" in frame.columns else pl.lit(None, dtype=pl.String)).alias("pixels"),
    )
    if parsed.layout not in spec.face_box_layouts:  # images that are already faces
        out = out.with_columns(
            pl.lit(None, dtype=pl.Float32).alias(c) for c in ("face_x", "face_y", "face_width", "face_height")
        )
    return out


class RelativeBox(NamedTuple):
    """A face box in fractions of the image's size (a TFDS ``BBoxFeature``: the stored image's box)."""

    ymin: float
    xmin: float
    ymax: float
    xmax: float


def _open_image(task: tuple[Any, ...]) -> Any:
    """The image of one task: a path, the encoded bytes of a built dataset, or FERPlus pixel text."""
    from PIL import Image

    source, _, pixels = task
    if pixels is not None:
        values = np.asarray(pixels.split(), dtype=np.uint8)
        side = int(round(np.sqrt(values.size)))
        return Image.fromarray(values.reshape(side, side), mode="L")
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()
    return image


def _face_crop(image: Any, box: Any) -> Any:
    if isinstance(box, RelativeBox):
        box = (box.xmin * image.width, box.ymin * image.height,
               (box.xmax - box.xmin) * image.width, (box.ymax - box.ymin) * image.height)  # fmt: skip
    if box is None or any(v is None for v in box):
        return image
    x, y, w, h = (float(v) for v in box)
    if w <= 1 or h <= 1:
        return image
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(image.width, int(round(x + w))), min(image.height, int(round(y + h)))
    if right - left < 2 or bottom - top < 2:
        return image
    return image.crop((left, top, right, bottom))


def _hash_chunk(tasks: list[tuple[Any, ...]]) -> list[tuple[bytes, bytes, bytes, bytes] | None]:
    """(exact digest, pHash, grey thumbnail, pHash of the mirrored face) of each image, or None when it
    does not decode."""
    import imagehash
    from PIL import Image

    out: list[tuple[bytes, bytes, bytes, bytes] | None] = []
    for task in tasks:
        try:
            image = _open_image(task)
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
            face = _face_crop(image, task[1]).convert("L")
            # imagehash.phash resizes to 4 x HASH_SIZE with Lanczos first: done here once, the
            # hash of this image is the same, and its mirror image costs one more DCT only
            small = face.resize((4 * HASH_SIZE, 4 * HASH_SIZE), Image.Resampling.LANCZOS)
            bits = np.asarray(imagehash.phash(small, hash_size=HASH_SIZE).hash, dtype=bool).ravel()
            mirrored = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            flip_bits = np.asarray(imagehash.phash(mirrored, hash_size=HASH_SIZE).hash, dtype=bool).ravel()
            thumb = face.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR).tobytes()
            out.append((digest.digest(), np.packbits(bits).tobytes(), thumb, np.packbits(flip_bits).tobytes()))
        except Exception:  # noqa: BLE001 - an undecodable file is reported, not fatal
            out.append(None)
    return out


def hash_chunks(chunks: Iterable[list[tuple[Any, ...]]], *, workers: int | None = None) -> Iterator[list[Any]]:
    """:func:`_hash_chunk` of each chunk of tasks, in order, on ``workers`` processes.

    At most two chunks per worker are in flight, so a stream of encoded images (a built
    dataset) is never all in memory at once.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1:
        yield from map(_hash_chunk, chunks)
        return
    import multiprocessing
    from collections import deque

    context = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_hash_chunk, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def hashed_frame(meta: pl.DataFrame, results: Sequence[tuple[bytes, ...] | None]) -> pl.DataFrame:
    """``meta``'s ``id, dataset, split`` plus the hash columns of :func:`hash_images`."""
    ok = [r is not None for r in results]
    return meta.select("id", "dataset", "split").with_columns(
        pl.Series("ok", ok, dtype=pl.Boolean),
        pl.Series("sha256", [r[0] if r else None for r in results], dtype=pl.Binary),
        pl.Series("phash", [r[1] if r else None for r in results], dtype=pl.Binary),
        pl.Series("thumb", [r[2] if r else None for r in results], dtype=pl.Binary),
        pl.Series("phash_flip", [r[3] if r else None for r in results], dtype=pl.Binary),
    )


def hash_images(images: pl.DataFrame, *, workers: int | None = None) -> pl.DataFrame:
    """Decode and hash every image with a process pool.

    Returns ``images``' ``id, dataset, split`` plus ``ok`` (decoded), ``sha256`` (binary
    digest of the decoded pixels), ``phash`` (binary, ``HASH_SIZE**2 / 8`` bytes),
    ``thumb`` (the grey face at ``THUMB_SIZE`` x ``THUMB_SIZE``, raw bytes) and ``phash_flip``
    (the pHash of the horizontally mirrored face, for ``pairs_from_hashes(flips=True)``).
    """
    box_cols = ("face_x", "face_y", "face_width", "face_height")
    boxes = images.select(box_cols).rows() if all(c in images.columns for c in box_cols) else [None] * images.height
    paths = images["path"].to_list() if "path" in images.columns else [None] * images.height
    pixels = images["pixels"].to_list() if "pixels" in images.columns else [None] * images.height
    tasks = list(zip(paths, boxes, pixels, strict=True))
    chunks = [tasks[i : i + HASH_CHUNK] for i in range(0, len(tasks), HASH_CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    results = [r for part in hash_chunks(chunks, workers=workers) for r in part]
    return hashed_frame(images, results)


# --------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------


def hash_words(hashes: Sequence[bytes]) -> np.ndarray:
    """Binary hashes (equal lengths, multiple of 8 bytes) as an ``(n, words)`` uint64 array."""
    if not len(hashes):
        return np.zeros((0, HASH_WORDS), dtype=np.uint64)
    joined = b"".join(hashes)
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64).reshape(len(hashes), -1)


def pairs_from_hashes(
    hashed: pl.DataFrame,
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_pixel_diff: float | None = DEFAULT_MAX_PIXEL_DIFF,
    method: str = "auto",
    normalise: str = DEFAULT_NORMALISE,
    flips: bool = False,
) -> pl.DataFrame:
    """Duplicate pairs of a :func:`hash_images` frame (rows with ``ok`` false are skipped).

    Near candidates (pHash distance <= ``max_distance``, found by ``method``: one of
    :data:`SEARCH_METHODS`, see :mod:`curate.near_search`) are kept when the mean absolute
    difference of their thumbnails, each normalised by ``normalise`` (one of
    :data:`NORMALISE_METHODS`), is <= ``max_pixel_diff`` (``None``: no check).

    ``flips``: also pairs whose one image is a horizontal mirror of the other (``kind="flip"``):
    each image's pHash is searched against the pHashes of the mirrored faces (``phash_flip``),
    and the candidates are verified on the first thumbnail against the mirrored second. The
    search runs over twice the hashes: about twice the time of the search without it.
    """
    if normalise not in NORMALISE_METHODS:
        raise ValueError(f"thumbnail normalisation {normalise!r}: not one of {', '.join(NORMALISE_METHODS)}")
    frame = hashed.filter(pl.col("ok")).with_row_index("_i")
    # exact: every pair inside a group of equal digests
    groups = frame.group_by("sha256").agg(pl.col("_i")).filter(pl.col("_i").list.len() > 1)
    ex_i: list[int] = []
    ex_j: list[int] = []
    for members in groups["_i"].to_list():  # loops over groups (few, small), not over all pairs
        members = sorted(members)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                ex_i.append(members[a])
                ex_j.append(members[b])
    phash = hash_words(frame["phash"].to_list())
    ni, nj, nd = near_pairs(phash, max_distance, method=method)
    ex_i_arr, ex_j_arr = np.asarray(ex_i, dtype=np.int64), np.asarray(ex_j, dtype=np.int64)
    ex_d = np.bitwise_count(phash[ex_i_arr] ^ phash[ex_j_arr]).sum(axis=1).astype(np.int16)
    n = max(frame.height, 1)
    near_mask = ~np.isin(ni * n + nj, ex_i_arr * n + ex_j_arr)
    thumbs = _thumbs(frame)
    diff_near = _thumb_diff(thumbs, ni, nj, normalise) if thumbs is not None else None
    if diff_near is not None and max_pixel_diff is not None:
        near_mask &= diff_near <= max_pixel_diff
    fi, fj, fd, diff_flip = (np.zeros(0, dtype=np.int64),) * 2 + (np.zeros(0, dtype=np.int16),) + (np.zeros(0),)
    if flips and "phash_flip" in frame.columns:
        known = np.concatenate([ex_i_arr * n + ex_j_arr, ni[near_mask] * n + nj[near_mask]])
        fi, fj, fd = _flip_candidates(phash, hash_words(frame["phash_flip"].to_list()), max_distance, method)
        keep = ~np.isin(fi * n + fj, known)
        if thumbs is not None:
            diff_flip = _thumb_diff(thumbs, fi, fj, normalise, mirror_j=True)
            if max_pixel_diff is not None:
                keep &= diff_flip <= max_pixel_diff
            diff_flip = diff_flip[keep]
        fi, fj, fd = fi[keep], fj[keep], fd[keep]
    i = np.concatenate([ex_i_arr, ni[near_mask], fi])
    j = np.concatenate([ex_j_arr, nj[near_mask], fj])
    kind = ["exact"] * len(ex_i_arr) + ["near"] * int(near_mask.sum()) + ["flip"] * len(fi)
    dist = np.concatenate([ex_d, nd[near_mask].astype(np.int16), fd.astype(np.int16)])
    if thumbs is not None:
        diff_exact = _thumb_diff(thumbs, ex_i_arr, ex_j_arr, normalise)
        pixel_diff = np.concatenate([diff_exact, diff_near[near_mask], diff_flip]).astype(np.float32)
    else:
        pixel_diff = np.full(len(i), np.nan, dtype=np.float32)
    ids, datasets, splits = (frame[c].to_numpy() for c in ("id", "dataset", "split"))
    pairs = pl.DataFrame(
        {
            "id_a": ids[i], "dataset_a": datasets[i], "split_a": splits[i],
            "id_b": ids[j], "dataset_b": datasets[j], "split_b": splits[j],
            "kind": kind, "distance": dist, "pixel_diff": pixel_diff,
        },
        schema=PAIR_SCHEMA,
    )  # fmt: skip
    return _canonical_order(pairs)


def _thumbs(frame: pl.DataFrame) -> np.ndarray | None:
    """The ``thumb`` column as an ``(n, THUMB_SIZE**2)`` uint8 array (None when absent)."""
    if "thumb" not in frame.columns:
        return None
    size = THUMB_SIZE * THUMB_SIZE
    if frame.height == 0:
        return np.zeros((0, size), dtype=np.uint8)
    return np.frombuffer(b"".join(frame["thumb"].to_list()), dtype=np.uint8).reshape(frame.height, size)


def _thumb_diff(
    thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, normalise: str, *, mirror_j: bool = False
) -> np.ndarray:
    """Mean absolute difference of the normalised thumbnails of pairs ``(i, j)`` (``mirror_j``: each
    ``j`` mirrored left to right first); only their rows are normalised."""
    if mirror_j:
        left, right = normalise_thumbs(thumbs[i], normalise), normalise_thumbs(_mirror_thumbs(thumbs[j]), normalise)
        return np.abs(left - right).mean(axis=1) if len(i) else np.zeros(0)
    rows = np.unique(np.concatenate([i, j]))
    normalised = normalise_thumbs(thumbs[rows], normalise)
    return np.abs(normalised[np.searchsorted(rows, i)] - normalised[np.searchsorted(rows, j)]).mean(axis=1)


def _mirror_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """The ``(n, THUMB_SIZE**2)`` thumbnails mirrored left to right."""
    return thumbs.reshape(-1, THUMB_SIZE, THUMB_SIZE)[:, :, ::-1].reshape(len(thumbs), -1)


def _flip_candidates(
    phash: np.ndarray, mirrored: np.ndarray, max_distance: int, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` where one image's pHash is near the other's mirrored pHash (one search over both)."""
    n = len(phash)
    a, b, d = near_pairs(np.vstack([phash, mirrored]), max_distance, method=method)
    cross = (a < n) & (b >= n) & (b - n != a)  # an image against another's mirror image
    i, j = a[cross], b[cross] - n
    low, high = np.minimum(i, j), np.maximum(i, j)
    _, first = np.unique(low * max(n, 1) + high, return_index=True)  # (a, mirror b) and (b, mirror a) are one
    return low[first], high[first], d[cross][first]


def normalise_thumbs(thumbs: np.ndarray, normalise: str = DEFAULT_NORMALISE) -> np.ndarray:
    """``(n, pixels)`` grey thumbnails as float32, each normalised on its own, on a 0-255 scale.

    ``raw``: the grey levels. ``zscore``: ``(x - mean) / std`` of each thumbnail, times
    :data:`ZSCORE_SCALE` (so a typical face spans about the same range as its grey levels),
    invariant to global brightness and contrast (affine) changes; a flat thumbnail becomes 0.
    ``rank``: each pixel's rank in its thumbnail (ties averaged), scaled to 0-255, invariant to
    every increasing grey-level map (brightness, contrast, gamma) short of clipping.
    """
    values = np.asarray(thumbs, dtype=np.float32)
    if normalise == "raw" or values.size == 0:
        return values
    if normalise == "zscore":
        centred = values - values.mean(axis=1, keepdims=True)
        scale = centred.std(axis=1, keepdims=True)
        return np.divide(centred * ZSCORE_SCALE, scale, out=np.zeros_like(centred), where=scale > 1e-6)
    if normalise == "rank":
        # grey levels are 0-255 integers: a per-thumbnail histogram gives each level's mean rank
        levels = np.clip(np.rint(values), 0, 255).astype(np.int64)
        n, size = levels.shape
        counts = np.bincount((np.arange(n)[:, None] * 256 + levels).ravel(), minlength=n * 256).reshape(n, 256)
        below = np.cumsum(counts, axis=1) - counts
        mean_rank = (below + (counts - 1) / 2.0).astype(np.float32)  # ties share their mean rank
        return np.take_along_axis(mean_rank, levels, axis=1) * (255.0 / max(size - 1, 1))
    raise ValueError(f"thumbnail normalisation {normalise!r}: not one of {', '.join(NORMALISE_METHODS)}")


def _canonical_order(pairs: pl.DataFrame) -> pl.DataFrame:
    """Order each pair as (a, b) with a <= b by (dataset, id), then sort the rows."""
    swap = (pl.col("dataset_a") > pl.col("dataset_b")) | (
        (pl.col("dataset_a") == pl.col("dataset_b")) & (pl.col("id_a") > pl.col("id_b"))
    )
    cols = {}
    for side, other in (("a", "b"), ("b", "a")):
        for c in ("id", "dataset", "split"):
            cols[f"{c}_{side}"] = pl.when(swap).then(pl.col(f"{c}_{other}")).otherwise(pl.col(f"{c}_{side}"))
    return pairs.with_columns(**cols).select(list(PAIR_SCHEMA)).sort("dataset_a", "id_a", "dataset_b", "id_b")


def find_duplicates(
    images: pl.DataFrame,
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    max_pixel_diff: float | None = DEFAULT_MAX_PIXEL_DIFF,
    workers: int | None = None,
    method: str = "auto",
    normalise: str = DEFAULT_NORMALISE,
) -> pl.DataFrame:
    """Exact and near-duplicate pairs among ``images``.

    Parameters
    ----------
    images : polars.DataFrame
        ``id, dataset, split, path`` (absolute image path), optionally the face box
        ``face_x, face_y, face_width, face_height`` (crop before the perceptual hash) and
        ``pixels`` (FERPlus text pixels, used instead of ``path``); :func:`load_images` makes it.
    max_distance : int
        Largest pHash Hamming distance (of 256 bits) of a near candidate.
    max_pixel_diff : float or None
        Largest mean absolute difference (0-255 scale) of the two normalised 16x16 face
        thumbnails of a near pair; ``None`` keeps every pHash candidate.
    workers : int, optional
        Decoding/hashing processes (default: every CPU).
    method : str
        Near-candidate search, one of :data:`SEARCH_METHODS` (:func:`curate.near_search.near_pairs`):
        ``auto`` (default: exact all pairs for small sets, a faiss IVF index for large ones),
        ``exact``, ``ivf`` or ``multihash``.
    normalise : str
        Thumbnail normalisation before the comparison (:func:`normalise_thumbs`): ``rank``
        (default), ``zscore`` or ``raw``.

    Returns
    -------
    polars.DataFrame
        :data:`PAIR_SCHEMA`: one row per pair (``a`` before ``b`` by dataset, id), ``kind``
        ``exact`` (equal decoded pixels) or ``near``, ``distance`` the pHash distance,
        ``pixel_diff`` the thumbnail difference.
        Images that do not decode are skipped.
    """
    hashed = hash_images(images, workers=workers)
    return pairs_from_hashes(
        hashed, max_distance=max_distance, max_pixel_diff=max_pixel_diff, method=method, normalise=normalise
    )


def pair_summary(pairs: pl.DataFrame) -> pl.DataFrame:
    """Pairs per (``dataset/split``, ``dataset/split``) and kind: ``group_a, group_b, exact, near, flip, total``."""
    key_a = pl.format("{}/{}", "dataset_a", "split_a")
    key_b = pl.format("{}/{}", "dataset_b", "split_b")
    first = pl.min_horizontal(key_a, key_b)
    second = pl.max_horizontal(key_a, key_b)
    return (
        pairs.select(first.alias("group_a"), second.alias("group_b"), "kind")
        .group_by("group_a", "group_b")
        .agg(
            (pl.col("kind") == "exact").sum().cast(pl.Int64).alias("exact"),
            (pl.col("kind") == "near").sum().cast(pl.Int64).alias("near"),
            (pl.col("kind") == "flip").sum().cast(pl.Int64).alias("flip"),
            pl.len().cast(pl.Int64).alias("total"),
        )
        .sort("group_a", "group_b")
    )


def exclusion_ids(pairs: pl.DataFrame, *, keep_order: Sequence[str] = KEEP_ORDER) -> pl.DataFrame:
    """Ids to drop so each duplicate group (connected pairs) keeps exactly one image.

    The image kept is the one whose split comes first in ``keep_order`` (default test, then
    validation, then train: the evaluation copy stays, the train copy is dropped), ties
    broken by (dataset, id). Returns ``dataset, id, split, group`` (group = the kept image
    as ``dataset:id``) for every dropped image.
    """
    if pairs.height == 0:
        return pl.DataFrame(schema=exclusion_schema())
    nodes = (
        pl.concat(
            [
                pairs.select(
                    pl.col("dataset_a").alias("dataset"), pl.col("id_a").alias("id"), pl.col("split_a").alias("split")
                ),
                pairs.select(
                    pl.col("dataset_b").alias("dataset"), pl.col("id_b").alias("id"), pl.col("split_b").alias("split")
                ),
            ]
        )
        .unique(["dataset", "id"], keep="first")
        .sort("dataset", "id")
    )
    key = nodes.select(pl.format("{}:{}", "dataset", "id"))[:, 0].to_list()
    index = {k: n for n, k in enumerate(key)}
    parent = np.arange(len(key))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    a = [index[f"{d}:{i}"] for d, i in zip(pairs["dataset_a"], pairs["id_a"], strict=True)]
    b = [index[f"{d}:{i}"] for d, i in zip(pairs["dataset_b"], pairs["id_b"], strict=True)]
    for x, y in zip(a, b, strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = [find(x) for x in range(len(key))]
    rank = {s: n for n, s in enumerate(keep_order)}
    ranked = nodes.with_columns(
        pl.Series("root", roots),
        pl.col("split").replace_strict(rank, default=len(rank)).alias("_rank"),
        pl.Series("_key", key),
    ).sort("root", "_rank", "dataset", "id")
    keeper = ranked.group_by("root", maintain_order=True).agg(pl.col("_key").first().alias("group"))
    return (
        ranked.join(keeper, on="root")
        .filter(pl.col("_key") != pl.col("group"))
        .select(EXCLUSION_COLUMNS)
        .sort("dataset", "id")
    )


def write_exclusions(exclusions: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write an :func:`exclusion_ids` frame as Parquet (zstd); :mod:`curate.exclusions` reads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exclusions.write_parquet(path, compression="zstd")
    return path


def store_pairs(workspace: Any, pairs: pl.DataFrame, datasets: Iterable[str]) -> int:
    """Replace the workspace table ``duplicate_pairs`` rows touching ``datasets`` with ``pairs``."""
    import datetime as _dt

    names = list(datasets)
    stamp = _dt.datetime.now().replace(microsecond=0)
    with workspace.connect(write=True) as con:
        con.execute(DUPLICATE_PAIRS_DDL)
        marks = ", ".join("?" for _ in names)
        con.execute(
            f"DELETE FROM duplicate_pairs WHERE dataset_a IN ({marks}) OR dataset_b IN ({marks})", names + names
        )
        con.register("incoming_pairs", pairs.with_columns(pl.lit(stamp).alias("created")).to_arrow())
        con.execute(f"INSERT INTO duplicate_pairs SELECT {', '.join([*PAIR_SCHEMA, 'created'])} FROM incoming_pairs")
        con.unregister("incoming_pairs")
    return pairs.height


# --------------------------------------------------------------------------------------
# Evaluation: injected duplicates (AffectNet original layout)
# --------------------------------------------------------------------------------------

#: The default injected kinds (in turn): exact file copies, 90 % resized PNGs, JPEG quality 60.
INJECT_KINDS: tuple[str, ...] = ("exact", "resized", "jpeg60")
#: Every kind :func:`inject_duplicates` can make: the defaults plus global intensity edits
#: (brightness x1.15, contrast x1.3, gamma 0.8), a small crop (5 % of the image off each side,
#: the face box 5 % tighter on each side, as another face detector would draw it) and a
#: horizontal flip (box and landmarks mirrored).
EDIT_KINDS: tuple[str, ...] = (*INJECT_KINDS, "brightness", "contrast", "gamma", "crop", "flip")


def _edited_copy(image: Any, row: dict[str, Any], kind: str) -> tuple[Any, dict[str, Any]]:
    """The edited RGB image of an injected ``kind`` copy and the row fields it changes (box, landmarks)."""
    from PIL import Image, ImageEnhance, ImageOps

    image = image.convert("RGB")
    box = (row["face_x"], row["face_y"], row["face_width"], row["face_height"])
    landmarks = row["landmarks"]
    if kind == "resized":
        sx = sy = 0.9
        size = (max(1, round(image.width * sx)), max(1, round(image.height * sy)))
        sx, sy = size[0] / image.width, size[1] / image.height
        image = image.resize(size, Image.Resampling.LANCZOS)
        update = {
            "face_x": float(np.floor(box[0] * sx)),
            "face_y": float(np.floor(box[1] * sy)),
            "face_width": float(max(1, round(box[2] * sx))),
            "face_height": float(max(1, round(box[3] * sy))),
            "landmarks": [round(v * (sx if t % 2 == 0 else sy), 2) for t, v in enumerate(landmarks)]
            if landmarks is not None
            else None,
        }
        return image, update
    if kind == "brightness":
        return ImageEnhance.Brightness(image).enhance(1.15), {}
    if kind == "contrast":
        return ImageEnhance.Contrast(image).enhance(1.3), {}
    if kind == "gamma":
        table = [round(255 * (v / 255) ** 0.8) for v in range(256)] * 3
        return image.point(table), {}
    if kind == "crop":
        # 5 % of the image off each side (new pixels), and a face box 5 % tighter on each side
        left, top = int(0.05 * image.width), int(0.05 * image.height)
        left, top = min(left, int(box[0])), min(top, int(box[1]))
        cropped = image.crop((left, top, image.width - left, image.height - top))
        dx, dy = 0.05 * box[2], 0.05 * box[3]
        tight = (box[0] - left + dx, box[1] - top + dy, box[2] - 2 * dx, box[3] - 2 * dy)
        shifted = [round(v - (left if t % 2 == 0 else top), 2) for t, v in enumerate(landmarks or [])]
        update = dict(zip(("face_x", "face_y", "face_width", "face_height"), map(float, tight), strict=True))
        return cropped, {**update, "landmarks": shifted if landmarks is not None else None}
    if kind == "flip":
        width = image.width
        update = {
            "face_x": float(max(0.0, width - box[0] - box[2])),
            "landmarks": [round(width - v, 2) if t % 2 == 0 else v for t, v in enumerate(landmarks)]
            if landmarks is not None
            else None,
        }
        return ImageOps.mirror(image), update
    if kind == "jpeg60":
        return image, {}
    raise ValueError(f"injected duplicate kind {kind!r}: not one of {', '.join(EDIT_KINDS)}")


def _decodable_rows(root: Path, frame: pl.DataFrame, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct rows (shuffled by ``seed``) with a positive face box whose image decodes."""
    from PIL import Image

    candidates = frame.filter((pl.col("face_width") > 1) & (pl.col("face_height") > 1))
    picked: list[dict[str, Any]] = []
    for row in candidates.sample(fraction=1.0, shuffle=True, seed=seed).iter_rows(named=True):
        if len(picked) >= n:
            break
        try:
            with Image.open(root / row["source_path"]) as image:
                image.load()
        except Exception:  # noqa: BLE001 - truncated/missing quirk files are not sources
            continue
        picked.append(row)
    if len(picked) < n:
        raise ValueError(f"{root}: only {len(picked)} decodable images to copy, {n} asked")
    return picked


def inject_duplicates(
    manual_dir: str | os.PathLike[str], n: int, seed: int = 0, *, kinds: Sequence[str] = INJECT_KINDS
) -> pl.DataFrame:
    """Copy ``n`` images of an AffectNet original-layout manual dir across train/validation.

    Each picked image (decodable, positive box; distinct) gets a copy with a new id in the
    other split, of each of ``kinds`` in turn (default :data:`INJECT_KINDS`; any of
    :data:`EDIT_KINDS`): ``exact`` is a file copy, ``jpeg60`` a JPEG quality-60 re-encode, every
    other kind a lossless PNG of the edited image (box and landmarks moved with it); the
    copies' rows (same label and V/A) are appended to ``training.csv`` / ``validation.csv``.
    Changes the dir in place.

    Returns
    -------
    polars.DataFrame
        The truth: ``id_a`` (original), ``split_a``, ``id_b`` (copy), ``split_b``, ``kind``.
    """
    from PIL import Image

    from curate.formats import affectnet as fmt

    unknown = [k for k in kinds if k not in EDIT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"injected duplicate kinds {list(kinds)!r}: give one or more of {', '.join(EDIT_KINDS)}")
    root = Path(manual_dir)
    frame = fmt.read(root, layout="original").annotations
    rng = np.random.default_rng([seed, 9001])
    picked = _decodable_rows(root, frame, n, seed)
    new_rows, truth = [], []
    for k, row in enumerate(picked):
        kind = kinds[k % len(kinds)]
        split_b = "validation" if row["split"] == "train" else "train"
        source = root / row["source_path"]
        folder = row["id"].split("/")[0]
        name = rng.bytes(28).hex()
        copy = dict(row)
        if kind == "exact":
            new_id = f"{folder}/{name}.{row['id'].rsplit('.', 1)[1]}"
            shutil.copyfile(source, root / fmt.IMAGES_DIR / new_id)
        else:
            with Image.open(source) as image:
                edited, update = _edited_copy(image, row, kind)
            copy.update(update)
            jpeg = kind == "jpeg60"
            new_id = f"{folder}/{name}.{'jpg' if jpeg else 'png'}"
            buffer = io.BytesIO()
            edited.save(buffer, format="JPEG" if jpeg else "PNG", **({"quality": 60} if jpeg else {}))
            (root / fmt.IMAGES_DIR / new_id).write_bytes(buffer.getvalue())
        copy.update(id=new_id, split=split_b)
        new_rows.append(copy)
        truth.append({"id_a": row["id"], "split_a": row["split"], "id_b": new_id, "split_b": split_b, "kind": kind})
    added = pl.DataFrame(new_rows, schema=frame.schema, orient="row")
    for split, relative in fmt.ORIGINAL_FILES.items():
        part = added.filter(pl.col("split") == split)
        if part.height:
            text = fmt.original_rows(part)
            with (root / relative).open("ab") as handle:
                text.write_csv(handle, include_header=False, quote_style="never", line_terminator="\n")
    return pl.DataFrame(
        truth,
        schema={"id_a": pl.String, "split_a": pl.String, "id_b": pl.String, "split_b": pl.String, "kind": pl.String},
    )


def score_pairs(pairs: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """Recall and precision of found ``pairs`` against an :func:`inject_duplicates` truth.

    A found pair is true when its two ids are an injected (original, copy) pair; every
    other found pair counts against precision.
    """
    found = {frozenset((a, b)) for a, b in zip(pairs["id_a"], pairs["id_b"], strict=True)}
    real = {frozenset((a, b)) for a, b in zip(truth["id_a"], truth["id_b"], strict=True)}
    hits = len(found & real)
    return {
        "recall": hits / len(real) if real else 1.0,
        "precision": hits / len(found) if found else 1.0,
        "found": float(len(found)),
        "true_pairs": float(len(real)),
        "hits": float(hits),
    }

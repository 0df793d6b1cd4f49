"""Near-duplicate search: every pair of binary hashes within a Hamming radius (a self-join).

Scope
-----
:func:`near_pairs` takes ``n`` hashes of ``bits`` bits as an ``(n, bits / 64)`` uint64 array
(:func:`curate.audit.hash_words`) and returns every ``i < j`` whose Hamming distance is at
most ``max_distance``, with the distance, by one of :data:`METHODS`:

* ``"exact"`` -- all pairs, vectorised NumPy (XOR + ``bitwise_count`` in blocks); about
  ``2 n²`` word popcounts, single-threaded: 50k hashes in seconds, 500k in many minutes.
  The reference: every other method is measured against it.
* ``"lsh"`` -- bit-sampling locality-sensitive hashing run as Polars hash joins: identical
  hashes are collapsed, then each of ``L`` tables keys every hash by ``k`` bits drawn at
  random (seeded) and joins the hashes on that key; the candidates of each table are verified
  at once (XOR + popcount). A pair ``d`` bits apart shares a table's key with probability
  ``C(bits - d, k) / C(bits, k)``; :func:`lsh_shape` picks ``k`` from ``n`` (chance
  candidates stay about ``n / 4`` per table) and ``L`` so that a pair exactly at the radius is
  missed by every table with probability at most :data:`LSH_MISS`. Approximate, never a false pair.
* ``"ivf"`` -- faiss ``IndexBinaryIVF``: inverted lists around ``nlist`` hashes drawn at random;
  each hash looks in the ``nprobe`` lists nearest to it and keeps what is within the radius. Approximate; both
  directions of a pair are searched (``a`` finds ``b`` or ``b`` finds ``a``). Multi-threaded.
* ``"multihash"`` -- faiss ``IndexBinaryMultiHash`` (multi-index hashing): the hash is cut into
  ``nhash`` substrings; a pair within ``r`` bits agrees within ``floor(r / nhash)`` bits on one
  of them (pigeonhole), so probing every substring with that many flipped bits is *exact*.
* ``"auto"`` (default) -- ``exact`` below :data:`AUTO_EXACT_MAX` hashes, else ``lsh``.

Decision
--------
Measured by ``benchmarks/bench_audit.py`` (random 256-bit hashes with planted pairs at 0-36
bits, a fifth exactly at 36; 2 cores; times are indicative, the ratios taken in the same run
are what to read). At a radius of 14 % of the bits, faiss' indexes do a lot of work on
hashes that carry no cluster structure:

* ``IndexBinaryMultiHash`` (16 substrings of 16 bits, 2 flips: exact) took about 2x the time
  of the NumPy blocks at 20k -- it probes 16 x 137 buckets of a ``std::unordered_map`` per query.
* ``IndexBinaryIVF`` (4,096 lists, 128 probed) at 500k on two idle cores: 41 s, 99.2 % of the
  planted pairs but 97.4 % of those exactly at the radius; 192 probes reach 99.0 % in 56 s.
  Profiled: ranking 128 of 4,096 list centres per query alone is 13 s, scanning 15,600
  codes per query the rest -- faiss runs at the popcount's speed, the index just looks at too
  much. Its centres are hashes drawn at random: faiss trains binary k-means on float copies,
  which at 4,096 lists costs more than the search.
* ``lsh`` at 500k: 10-14 s (k 20, 123 tables) with 99.9 % of the pairs exactly at the radius,
  0.05x IVF's work at 50k against exact. Hence ``auto`` = ``lsh`` above :data:`AUTO_EXACT_MAX`.
  The Polars joins (multi-threaded, hashed) do the heavy part; what is ours is drawing the keys.
* An early ``IndexBinaryHNSW`` run (kNN, M 32, ef 64, 50k hashes) reached 99.95 % at 36 bits,
  but its build alone took longer than IVF's build and search together, it grows as
  n log n, and a kNN search needs a ``k`` larger than the largest group of copies.

The near candidates are verified on thumbnails afterwards
(:func:`curate.audit.pairs_from_hashes`), so a search that returns extra candidates would
cost time, not precision (none of these does: each keeps only pairs within the radius).

Memory: :func:`check_memory` estimates what a method needs (bytes per hash x n plus the
index's fixed overhead) and refuses with one line when it exceeds the available memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# OpenMP threads that spin while they wait (the default) turn a faiss search on a busy machine
# into a crawl (measured: 30k hashes, IVF, 2 threads beside other jobs: 21 s spinning, 2.2 s
# passive); it must be set before faiss loads the OpenMP runtime, so here, at import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Search methods of :func:`near_pairs`.
METHODS: tuple[str, ...] = ("auto", "exact", "lsh", "ivf", "multihash")
#: ``auto`` searches all pairs exactly up to this many hashes, above it uses ``lsh``.
AUTO_EXACT_MAX = 20_000
#: ``lsh``: largest chance that a pair exactly at the radius is missed by every table.
LSH_MISS = 0.005
#: ``lsh``: fewest key bits per table (small inputs).
LSH_MIN_KEY_BITS = 8
#: Inverted lists of the ``ivf`` method (capped so each list holds about 100 hashes or more).
IVF_NLIST = 4096
#: Lists probed per query by ``ivf``. Measured at 500k (planted pairs, seed 1): 128 finds
#: 99.2 % of the pairs, 97.4 % of those exactly at 36 bits; 192 finds 99.7 % and 99.0 % in
#: about 1.4x the time. True copies sit well inside the radius (the edits of
#: ``benchmarks/bench_audit.py``: at most 28 bits), hence 128.
IVF_NPROBE = 128
#: Substrings of the ``multihash`` method (16 of 16 bits for 256-bit hashes).
MULTIHASH_NHASH = 16
#: Share of the available memory a search may plan to use.
MEMORY_SHARE = 0.8


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"near-duplicate search method {method!r}: not one of {', '.join(METHODS)}")
    return method


def resolve_method(method: str, n: int) -> str:
    """The concrete method ``method`` means for ``n`` hashes (``auto`` -> ``exact`` or ``ivf``)."""
    if _check_method(method) == "auto":
        return "exact" if n <= AUTO_EXACT_MAX else "lsh"
    return method


def ivf_lists(n: int) -> int:
    """Number of inverted lists for ``n`` hashes: :data:`IVF_NLIST`, fewer for small ``n``."""
    return int(max(1, min(IVF_NLIST, 2 ** int(np.log2(max(n, 2) / 100)))))


def memory_needed(method: str, n: int, bits: int = 256, *, block: int = 512, width: int = 1 << 14) -> int:
    """Bytes a search of ``n`` hashes of ``bits`` bits is estimated to need (index, buffers, a result allowance).

    ``exact``: the hashes plus one block of the distance matrix (uint16) and its XOR temporaries;
    ``ivf``: each hash in an inverted list (code + 8-byte id), the padded query copy and the
    list centres; ``multihash``: the stored codes plus
    one 8-byte id per substring table and the tables' buckets (about 64 bytes each).
    Every method adds 64 bytes per hash for the pairs found.
    """
    method = resolve_method(method, n)
    code = bits // 8
    results = 64 * n
    if method == "exact":
        return code * n + block * min(width, max(n, 1)) * (2 + 8 + 8) + results
    if method == "lsh":
        # the hashes twice (frame + distinct copy), row ids and groups, one table's keys and
        # its join (about n / 4 chance candidates of two uint32 plus their XOR words)
        return n * (2 * code + 8 + 16 + 12) + (n // 4 + 1) * (8 + 2 * code) + results
    if method == "ivf":
        return n * (code + 8) + (n + 1) * code + ivf_lists(n) * code + results
    nhash, b = _multihash_shape(bits)
    buckets = nhash * min(n, 2**b)
    return n * (2 * code + 8 * nhash) + buckets * 64 + results


def check_memory(method: str, n: int, bits: int = 256, *, available: int | None = None) -> int:
    """Raise ``MemoryError`` (one line: needed vs available) when the search would not fit; else the bytes needed."""
    need = memory_needed(method, n, bits)
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    if need > MEMORY_SHARE * available:
        raise MemoryError(
            f"near-duplicate search ({resolve_method(method, n)}) of {n:,} hashes of {bits} bits needs about "
            f"{need / 2**30:.2f} GiB, {available / 2**30:.2f} GiB available ({MEMORY_SHARE:.0%} usable): "
            "audit fewer images at a time or free memory"
        )
    return need


def near_pairs(
    hashes: np.ndarray,
    max_distance: int,
    *,
    method: str = "auto",
    block: int = 512,
    width: int = 1 << 14,
    nprobe: int = IVF_NPROBE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``i < j`` with Hamming distance ``<= max_distance``: (i, j, distance) arrays, sorted by (i, j).

    Parameters
    ----------
    hashes : numpy.ndarray
        ``(n, words)`` uint64 (:func:`curate.audit.hash_words`).
    max_distance : int
        Largest Hamming distance of a pair (negative: no pairs).
    method : str
        One of :data:`METHODS` (default ``auto``).
    block, width : int
        ``exact``: blocks of ``block`` rows against slabs of ``width`` later rows (memory about
        ``block * width * 18`` bytes).
    nprobe : int
        ``ivf``: lists probed per query.
    seed : int
        ``ivf``: draws the list centres; ``lsh``: draws each table's key bits.
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    if h.ndim == 1:
        h = h[:, None]
    n = len(h)
    method = resolve_method(method, n)
    if n < 2 or max_distance < 0:
        return _empty()
    check_memory(method, n, 64 * h.shape[1])
    if method == "exact":
        return _exact_pairs(h, max_distance, block=block, width=width)
    if method == "lsh":
        return _lsh_pairs(h, max_distance, seed=seed)
    return _faiss_pairs(h, max_distance, method=method, nprobe=nprobe, seed=seed)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, empty.astype(np.uint16)


def _exact_pairs(h: np.ndarray, max_distance: int, *, block: int, width: int) -> tuple[np.ndarray, ...]:
    n = len(h)
    out_i, out_j, out_d = [], [], []
    for start in range(0, n, block):
        rows = h[start : start + block]
        for col in range(start, n, width):
            cols = h[col : col + width]
            dist = np.zeros((len(rows), len(cols)), dtype=np.uint16)
            for w in range(h.shape[1]):
                dist += np.bitwise_count(rows[:, w, None] ^ cols[None, :, w])
            ii, jj = np.nonzero(dist <= max_distance)
            i, j = ii + start, jj + col
            keep = j > i
            out_i.append(i[keep])
            out_j.append(j[keep])
            out_d.append(dist[ii[keep], jj[keep]])
    if not out_i:
        return _empty()
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def lsh_shape(n: int, bits: int, max_distance: int) -> tuple[int, int]:
    """(key bits ``k``, tables ``L``) of the ``lsh`` method for ``n`` distinct hashes.

    ``k`` makes a chance collision of two unrelated hashes in one table about ``1 / (2 n)``
    likely (``k = ceil(log2 n) + 1``: about ``n / 4`` chance candidates per table); ``L`` is the
    fewest tables with which a pair exactly ``max_distance`` apart is missed by all of them with
    probability at most :data:`LSH_MISS` (closer pairs are missed less often).
    """
    k = int(min(max(bits - max_distance, 1), max(LSH_MIN_KEY_BITS, int(np.ceil(np.log2(max(n, 2)))) + 1)))
    # the chance that k key bits drawn without replacement avoid all max_distance differing bits
    p = float(np.prod([(bits - max_distance - i) / (bits - i) for i in range(k)]))
    tables = 1 if p >= 1 else int(np.ceil(np.log(LSH_MISS) / np.log1p(-p)))
    return k, tables


def _lsh_pairs(h: np.ndarray, max_distance: int, *, seed: int) -> tuple[np.ndarray, ...]:
    """Bit-sampling LSH as Polars hash joins: distinct hashes agreeing on ``k`` drawn bits, verified.

    Identical hashes are collapsed first (a group of copies would otherwise meet itself in
    every table); each table's candidates are verified at once, so only true pairs are kept.
    """
    import polars as pl

    n, words = h.shape
    bits = 64 * words
    hashes = pl.DataFrame({f"w{w}": h[:, w] for w in range(words)}).with_row_index("row")
    distinct = (
        hashes.group_by([f"w{w}" for w in range(words)])
        .agg(pl.col("row"))
        .with_columns(pl.col("row").list.min().alias("first"))
        .sort("first")
    )  # distinct hashes in order of first appearance: the same tables for the same input
    u = np.ascontiguousarray(distinct.select([f"w{w}" for w in range(words)]).to_numpy(), dtype=np.uint64)
    k, tables = lsh_shape(len(u), bits, max_distance)
    rng = np.random.default_rng([seed, bits, max_distance])
    slot = pl.Series("slot", np.arange(len(u), dtype=np.uint32))
    found = []
    for _ in range(tables if len(u) > 1 else 0):
        key = np.zeros(len(u), dtype=np.uint64)
        for position, bit in enumerate(rng.choice(bits, k, replace=False).tolist()):
            key |= ((u[:, bit // 64] >> np.uint64(bit % 64)) & np.uint64(1)) << np.uint64(position)
        table = pl.DataFrame({"key": key, "slot": slot}).filter(pl.col("key").is_duplicated())
        pairs = table.join(table, on="key", suffix="_b").filter(pl.col("slot") < pl.col("slot_b"))
        a, b = pairs["slot"].to_numpy(), pairs["slot_b"].to_numpy()
        near = np.bitwise_count(u[a] ^ u[b]).sum(axis=1) <= max_distance
        found.append(pl.DataFrame({"a": a[near], "b": b[near]}))
    slot_pairs = pl.concat(found).unique() if found else pl.DataFrame(schema={"a": pl.UInt32, "b": pl.UInt32})
    # back to rows: every member of one hash's group against every member of the other's, and
    # the members of one group among themselves (distance 0)
    members = distinct.select(pl.col("row")).with_columns(slot.alias("a")).explode("row")
    across = (
        slot_pairs.join(members, on="a")
        .join(members.rename({"a": "b", "row": "row_b"}), on="b")
        .select(pl.min_horizontal("row", "row_b").alias("i"), pl.max_horizontal("row", "row_b").alias("j"))
    )
    within = members.join(members, on="a", suffix="_b").filter(pl.col("row") < pl.col("row_b"))
    result = pl.concat([across, within.select(pl.col("row").alias("i"), pl.col("row_b").alias("j"))]).sort("i", "j")
    i, j = result["i"].to_numpy().astype(np.int64), result["j"].to_numpy().astype(np.int64)
    return i, j, np.bitwise_count(h[i] ^ h[j]).sum(axis=1).astype(np.uint16)


def _multihash_shape(bits: int) -> tuple[int, int]:
    """(nhash, b) of the ``multihash`` index: :data:`MULTIHASH_NHASH` substrings of ``bits / nhash`` bits."""
    nhash = min(MULTIHASH_NHASH, bits)
    return nhash, min(bits // nhash, 57)


def _faiss_codes(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hashes as faiss codes (bytes in the hash's own order) and a copy with 8 zero bytes after the last row.

    faiss' hash indexes read each substring as an unaligned 8-byte word, up to 7 bytes past
    the substring: the padded buffer keeps those reads inside memory numpy owns.
    """
    words = h.astype(">u8")
    padded = np.zeros((len(h) + 1, h.shape[1] * 8), dtype=np.uint8)
    padded[:-1] = words.view(np.uint8).reshape(len(h), -1)
    return padded[:-1], padded


def _faiss_index(codes: np.ndarray, method: str, max_distance: int, nprobe: int, seed: int) -> Any:
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise ImportError(f"near-duplicate search method {method!r} needs faiss (pip install faiss-cpu)") from error
    n, code_size = codes.shape
    bits = 8 * code_size
    if method == "multihash":
        nhash, b = _multihash_shape(bits)
        index = faiss.IndexBinaryMultiHash(bits, nhash, b)
        index.nflip = max_distance // nhash  # pigeonhole: one substring is within this many bits
        index.add(codes)
        return index
    nlist = ivf_lists(n)
    # the list centres are ``nlist`` hashes drawn at random (seeded), not k-means centroids:
    # faiss trains binary k-means on float copies of the hashes, which at 4096 lists costs
    # more than the whole search, and drawn centres follow the data's density just the same
    quantizer = faiss.IndexBinaryFlat(bits)
    rng = np.random.default_rng([seed, 36])
    quantizer.add(np.ascontiguousarray(codes[np.sort(rng.choice(n, nlist, replace=False))]))
    index = faiss.IndexBinaryIVF(quantizer, bits, nlist)  # trained: the quantizer holds nlist centres
    index.nprobe = min(nprobe, nlist)
    index.add(codes)
    index.referenced_objects = [quantizer]  # the index points at it; keep it alive
    return index


def _faiss_pairs(h: np.ndarray, max_distance: int, *, method: str, nprobe: int, seed: int) -> tuple[np.ndarray, ...]:
    codes, padded = _faiss_codes(h)
    n = len(codes)
    index = _faiss_index(codes, method, max_distance, nprobe, seed)
    # faiss keeps distances strictly below the radius
    lims, _, found = index.range_search(codes, max_distance + 1)
    query = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims.astype(np.int64)))
    found = found.astype(np.int64)
    keep = query != found
    i = np.minimum(query[keep], found[keep])
    j = np.maximum(query[keep], found[keep])
    key = np.unique(i * n + j)
    i, j = key // n, key % n
    distance = np.bitwise_count(h[i] ^ h[j]).sum(axis=1).astype(np.uint16)
    return i, j, distance


def planted_hashes(
    n: int,
    pairs: int,
    *,
    seed: int = 0,
    distance: int | None = None,
    max_distance: int = 36,
    threshold_share: float = 0.0,
    words: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation data: ``n`` random hashes of ``64 * words`` bits with ``pairs`` planted near pairs.

    Each planted pair copies one row onto another with ``distance`` bits flipped (``None``:
    a uniform draw from 0 to ``max_distance``, except the first ``threshold_share`` of the pairs,
    exactly ``max_distance`` apart). Returns the ``(n, words)`` uint64 hashes and the
    planted ``(pairs, 2)`` int64 array of ``(i, j)``, ``i < j``.
    """
    if 2 * pairs > n:
        raise ValueError(f"planted hashes: {pairs:,} pairs need {2 * pairs:,} rows, {n:,} asked")
    rng = np.random.default_rng([seed, 256])
    hashes = rng.integers(0, 2**64, size=(n, words), dtype=np.uint64, endpoint=False)
    rows = rng.choice(n, size=2 * pairs, replace=False)
    src, dst = rows[:pairs], rows[pairs:]
    bits = np.unpackbits(hashes[src].astype(">u8").view(np.uint8), axis=1)
    flips = np.full(pairs, distance) if distance is not None else rng.integers(0, max_distance + 1, size=pairs)
    if distance is None:
        flips[: int(threshold_share * pairs)] = max_distance
    for r in range(pairs):
        bits[r, rng.choice(bits.shape[1], int(flips[r]), replace=False)] ^= 1
    hashes[dst] = np.packbits(bits, axis=1).view(">u8").astype(np.uint64)
    return hashes, np.sort(np.stack([src, dst], axis=1), axis=1).astype(np.int64)

"""Near-duplicate search: every pair of binary hashes within a Hamming radius (a self-join).

Scope
-----
:func:`near_pairs` takes ``n`` hashes of ``bits`` bits as an ``(n, bits / 64)`` uint64 array
(:func:`curate.audit.hash_words`) and returns every ``i < j`` whose Hamming distance is at
most ``max_distance``, with the distance, by one of :data:`METHODS`:

* ``"exact"`` -- all pairs, vectorised NumPy (XOR + ``bitwise_count`` in blocks); about
  ``2 n²`` word popcounts, single-threaded: 50k hashes in seconds, 500k in many minutes.
  The reference: every other method is measured against it.
* ``"ivf"`` -- faiss ``IndexBinaryIVF``: inverted lists around ``nlist`` hashes drawn at random;
  each hash looks in the ``nprobe`` lists nearest to it and keeps what is within the radius. Approximate; both
  directions of a pair are searched (``a`` finds ``b`` or ``b`` finds ``a``). Multi-threaded.
* ``"multihash"`` -- faiss ``IndexBinaryMultiHash`` (multi-index hashing): the hash is cut into
  ``nhash`` substrings; a pair within ``r`` bits agrees within ``floor(r / nhash)`` bits on one
  of them (pigeonhole), so probing every substring with that many flipped bits is *exact*.
* ``"auto"`` (default) -- ``exact`` below :data:`AUTO_EXACT_MAX` hashes, else ``ivf``.

Decision
--------
Measured by ``benchmarks/bench_audit.py`` (random 256-bit hashes with planted pairs at 0-36
bits, a fifth exactly at 36; 2 cores shared with other jobs, so the times are indicative and
the ratios, taken in the same run, are what to read): at 20k hashes faiss'
``IndexBinaryMultiHash`` (16 substrings of 16 bits, 2 flips: exact) took 3.2x the time of
the NumPy blocks -- at a radius of 14 % of the bits it probes 16 x 137 buckets of a
``std::unordered_map`` per query. ``IndexBinaryIVF`` found every pair at 50k in 0.07x the
exact time, and at 500k 99.2 % of the planted pairs (97.4 % of those exactly at 36 bits) in
0.024x the exact search's extrapolated time (2.4x exact at 50k; 119 s here, about 20 s on two
idle cores by that ratio). Hence ``auto`` = ``ivf`` above :data:`AUTO_EXACT_MAX`. An early run
of ``IndexBinaryHNSW`` (kNN, M 32, ef 64, 50k hashes) reached 99.95 % at 36 bits, but its
build alone took longer than IVF's build and search together, it grows as n log n, and a kNN
search needs a ``k`` larger than the largest group of copies. IVF list centres are hashes
drawn at random rather than k-means centroids: faiss trains binary k-means on float copies
of the hashes, which at 4,096 lists costs more than the search. The near candidates are
verified on thumbnails afterwards (:func:`curate.audit.pairs_from_hashes`), so an index
that returns extra candidates costs time, not precision.

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
METHODS: tuple[str, ...] = ("auto", "exact", "ivf", "multihash")
#: ``auto`` searches all pairs exactly up to this many hashes, above it uses ``ivf``.
AUTO_EXACT_MAX = 20_000
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
        return "exact" if n <= AUTO_EXACT_MAX else "ivf"
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
        ``ivf``: draws the list centres.
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

"""The class-frequency hold-out: one deterministic rule shared by the studies and the trainer.

AffectNet's official validation split is balanced (500 rows per label), so it shows a
model's mean class accuracy. The *class-frequency* view of a model is measured on a hold-out
of the training split that keeps the training class frequencies. Its rule:

    h(id) = int(md5(id.encode("utf-8")).hexdigest()[:8], 16)   (first 32 bits of MD5, big-endian)
    u     = (h(id) + seed * 0x9E3779B9) mod 2**32
    held out  <=>  u < floor(fraction * 2**32)

Every row is decided on its own id alone, so the rule is stable across processes, machines,
library versions, policies and row order, can be applied as a per-example filter, and keeps
each class's share in expectation (a stratified sample: every class loses ``fraction`` of its
rows up to sampling noise, which the remap study reports). MD5 is used only as a well-known
stable hash, not for security. The seed shifts ``u`` by a multiple of the 32-bit golden ratio,
so another seed gives another, equally uniform hold-out while ``h`` stays the same: the
workspace stores ``h`` once per row at ingest (column ``holdout_key``), which makes every
hold-out query integer arithmetic. :func:`class_frequency_holdout` evaluates the rule
vectorised in DuckDB (``md5`` is built in; no Python loop over rows); :func:`holdout_sql`
gives the same predicate for SQL; :func:`in_holdout` is the pure-Python reference.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

DEFAULT_FRACTION = 0.05
DEFAULT_SEED = 0


#: Seed multiplier: 2**32 / golden ratio, odd, so seeds spread over the whole 32-bit range.
SEED_STEP = 0x9E3779B9
_MODULUS = 2**32


def _threshold(fraction: float) -> int:
    if not isinstance(fraction, int | float) or math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hold-out fraction must be between 0 and 1, got {fraction!r}")
    return math.floor(fraction * _MODULUS)


def _offset(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"hold-out seed must be an integer, got {seed!r}")
    return (seed * SEED_STEP) % _MODULUS


def holdout_key_sql(column: str = "id") -> str:
    """DuckDB expression of ``h(id)``: the first 32 bits of the MD5 of the id, as UBIGINT.

    ``md5_number`` is the digest as a little-endian 128-bit integer, so its low 32 bits are the
    first four digest bytes in reverse order; swapping them back with integer arithmetic
    costs about half as much as formatting the hex digest and parsing its first 8 characters
    (the ingest computes this for every row).
    """
    low = f"(md5_number({column}) & 4294967295)::UBIGINT"
    return f"((({low} & 255) << 24) | ((({low} >> 8) & 255) << 16) | ((({low} >> 16) & 255) << 8) | ({low} >> 24))"


def holdout_sql(
    column: str = "id",
    *,
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
    key: str | None = None,
) -> str:
    """A DuckDB boolean expression: true where the row is in the class-frequency hold-out.

    ``key`` names an SQL expression already holding ``h(id)`` (the workspace's
    ``holdout_key`` column); otherwise ``h`` is computed from ``column``.
    """
    key_sql = key if key is not None else holdout_key_sql(column)
    return f"((({key_sql})::UBIGINT + {_offset(seed)}) % {_MODULUS} < {_threshold(fraction)})"


def holdout_key(identifier: str) -> int:
    """``h(id)`` in plain Python."""
    return int(hashlib.md5(identifier.encode("utf-8")).hexdigest()[:8], 16)


def in_holdout(identifier: str, *, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> bool:
    """Reference (pure Python) form of the rule for one id."""
    return (holdout_key(identifier) + _offset(seed)) % _MODULUS < _threshold(fraction)


def class_frequency_holdout(
    ids: Sequence[str] | Any, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED
) -> Any:
    """Boolean mask: which of ``ids`` belong to the class-frequency hold-out.

    Parameters
    ----------
    ids : sequence of str, NumPy array, Polars/pandas Series or Arrow array
        Source ids (``689/abc...jpg`` for AffectNet original, as stored in the workspace).
    fraction : float, default 0.05
        Expected share of rows held out, 0..1.
    seed : int, default 0
        Changes the hold-out; the trainer and the study must use the same value.

    Returns
    -------
    numpy.ndarray of bool, same length and order as ``ids``.

    See Also
    --------
    holdout_sql : the same rule as a DuckDB expression.
    in_holdout : the rule for one id, in plain Python.
    """
    import duckdb
    import numpy as np
    import pyarrow as pa

    _threshold(fraction)
    _offset(seed)
    if isinstance(ids, pa.ChunkedArray | pa.Array):
        array = ids
    elif hasattr(ids, "to_arrow"):  # Polars Series
        array = ids.to_arrow()
    else:
        array = pa.array(np.asarray(ids, dtype=object).tolist() if not isinstance(ids, list) else ids, type=pa.string())
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    if array.null_count:
        raise ValueError("class_frequency_holdout: ids contain nulls")
    table = pa.table({"id": array.cast(pa.string())})
    con = duckdb.connect()
    try:
        con.register("holdout_ids", table)
        result = con.execute(
            f"SELECT {holdout_sql('id', fraction=fraction, seed=seed)} AS held FROM holdout_ids"
        ).fetchnumpy()["held"]
    finally:
        con.close()
    return np.asarray(result, dtype=bool)

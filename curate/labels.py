"""The one label taxonomy and the label-policy registry of the toolkit.

Scope
-----
* The canonical 11-class label space in AffectNet order (0 Neutral ... 10 No-Face) and the
  mappings of FERPlus vote columns, RAF-DB labels and FER2013 labels into it.
* Label policies: a policy maps every canonical label to a class index of its own or drops
  it, and names its output classes. Built-in policies are defined here; users add their
  own in TOML files (see :func:`load_policy_file`) and pass the path wherever a policy name
  is accepted (:func:`get_policy`).
* FER+ vote modes: the FER+ authors' rules that turn ten annotator votes into a hard label or
  a soft target (``majority``, ``probability``, ``crossentropy``, ``multi-target``), plus
  plain ``argmax``. One vectorised implementation serves NumPy and TensorFlow. The names
  (:data:`VOTE_MODES`) and the default (:data:`DEFAULT_VOTE_MODE`) are those of every
  ``--vote-mode`` option; a FERPlus row whose winner is ``unknown`` / ``NF`` (canonical 9 / 10,
  :data:`VOTE_EXCLUDED_LABELS`) is outside the labelled set under every policy.
* Three adapters of one policy -- a Polars expression, a DuckDB mapping table (and SQL CASE),
  and a ``tf.lookup.StaticHashTable`` -- so the studies, the builders' read-time helper, the
  trainer and the review app all apply the same mapping.

Importing this module imports neither TensorFlow nor FiftyOne nor DuckDB; the adapters
import what they need inside their functions.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------
# The taxonomy
# --------------------------------------------------------------------------------------

#: Canonical class names, index = canonical label (AffectNet's ``expression`` codes).
CANONICAL_NAMES: tuple[str, ...] = (
    "Neutral",
    "Happy",
    "Sad",
    "Surprise",
    "Fear",
    "Disgust",
    "Anger",
    "Contempt",
    "None",
    "Uncertain",
    "No-Face",
)
NUM_CANONICAL = len(CANONICAL_NAMES)
#: Labels the AffectNet annotators gave no valence/arousal to (the -2 sentinel).
NOT_ANNOTATED_VA_LABELS = (9, 10)
#: AffectNet's "not annotated" valence/arousal value.
VA_SENTINEL = -2.0

#: FER+ vote columns of ``fer2013new.csv``, in file order.
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
#: Canonical label of each FER+ vote column (unknown -> Uncertain, NF -> No-Face).
FERPLUS_VOTE_TO_CANONICAL: tuple[int, ...] = (0, 1, 3, 2, 6, 5, 4, 7, 9, 10)

#: FER2013 ``emotion`` codes and their canonical labels.
FER2013_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
FER2013_TO_CANONICAL: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 0)

#: RAF-DB basic labels are 1-based; index 0 of these tuples is label 1.
RAFDB_NAMES: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAFDB_TO_CANONICAL: tuple[int, ...] = (3, 4, 5, 1, 2, 6, 0)

class PolicyError(ValueError):
    """A label policy could not be found or is invalid; the message names where and why."""


# --------------------------------------------------------------------------------------
# Label policies
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelPolicy:
    """Maps each canonical label to an output class index, or drops it (``None``).

    Attributes
    ----------
    name : str
        Identifier used on the command line (``merge-to-neutral``).
    description : str
        One line for ``curate policies``.
    classes : tuple of str
        Output class names; class index ``i`` is ``classes[i]``.
    mapping : tuple of (int or None)
        ``mapping[canonical_label]`` is the output class index, or ``None`` to drop the row.
        Always ``NUM_CANONICAL`` long.
    source : str
        ``"built-in"`` or the path of the TOML file it was read from.
    """

    name: str
    description: str
    classes: tuple[str, ...]
    mapping: tuple[int | None, ...]
    source: str = "built-in"

    def __post_init__(self) -> None:
        _validate_policy(self, where=self.source)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def dropped_labels(self) -> tuple[int, ...]:
        return tuple(label for label, target in enumerate(self.mapping) if target is None)

    def lookup_array(self) -> np.ndarray:
        """``int64[NUM_CANONICAL]``: class index per canonical label, -1 where dropped."""
        return np.array([-1 if t is None else t for t in self.mapping], dtype=np.int64)

    def apply(self, labels: Any) -> np.ndarray:
        """NumPy form: class index per canonical label, -1 for dropped or out-of-range labels."""
        labels = np.asarray(labels, dtype=np.int64)
        inside = (labels >= 0) & (labels < NUM_CANONICAL)
        return np.where(inside, self.lookup_array()[np.clip(labels, 0, NUM_CANONICAL - 1)], -1)

    # -- the three adapters ------------------------------------------------------------

    def polars_expr(self, column: str = "label") -> Any:
        """Polars expression giving the class index (``Int8``), null where the policy drops."""
        import polars as pl

        keys = list(range(NUM_CANONICAL))
        return (
            pl.col(column)
            .cast(pl.Int64)
            .replace_strict(keys, list(self.mapping), default=None, return_dtype=pl.Int8)
            .alias(f"{column}_{self.name}" if column == "label" else column)
        )

    def duckdb_rows(self) -> list[tuple[int, int | None, str | None]]:
        """Rows of the DuckDB mapping table: (canonical_label, class_index, class_name)."""
        return [
            (label, target, None if target is None else self.classes[target])
            for label, target in enumerate(self.mapping)
        ]

    def duckdb_table(self, connection: Any, table_name: str | None = None) -> str:
        """Create (or replace) a DuckDB table mapping canonical labels to this policy's classes.

        Columns: ``canonical_label`` TINYINT, ``class_index`` TINYINT (NULL = dropped),
        ``class_name`` VARCHAR. Returns the table name; join on ``canonical_label``.
        """
        table_name = table_name or "policy_" + self.name.replace("-", "_")
        connection.execute(
            f'CREATE OR REPLACE TABLE "{table_name}" '
            "(canonical_label TINYINT PRIMARY KEY, class_index TINYINT, class_name VARCHAR)"
        )
        connection.executemany(f'INSERT INTO "{table_name}" VALUES (?, ?, ?)', self.duckdb_rows())
        return table_name

    def sql_case(self, column: str = "label") -> str:
        """A SQL ``CASE`` expression giving the class index, NULL where dropped."""
        whens = " ".join(
            f"WHEN {label} THEN {'NULL' if target is None else target}"
            for label, target in enumerate(self.mapping)
        )
        return f"(CASE {column} {whens} ELSE NULL END)"

    def tf_lookup(self) -> Any:
        """``tf.lookup.StaticHashTable`` int64 canonical label -> int64 class, -1 = dropped."""
        import tensorflow as tf

        keys = tf.constant(np.arange(NUM_CANONICAL, dtype=np.int64))
        values = tf.constant(self.lookup_array())
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    def describe_mapping(self) -> str:
        """Human summary of the non-identity moves and drops, e.g. ``7-10 -> Neutral``."""
        parts = []
        drops = self.dropped_labels
        if drops:
            parts.append("drops " + ", ".join(CANONICAL_NAMES[d] for d in drops))
        merged = [
            f"{CANONICAL_NAMES[label]}->{self.classes[target]}"
            for label, target in enumerate(self.mapping)
            if target is not None and self.classes[target] != CANONICAL_NAMES[label]
        ]
        if merged:
            parts.append("merges " + ", ".join(merged))
        return "; ".join(parts) or "identity"


def _validate_policy(policy: LabelPolicy, *, where: str) -> None:
    def fail(key: str, reason: str) -> None:
        raise PolicyError(f"{where}: {key}: {reason}")

    if not policy.name or not isinstance(policy.name, str):
        fail("name", "must be a non-empty string")
    if not policy.classes:
        fail("classes", "must list at least one class")
    seen: set[str] = set()
    for class_name in policy.classes:
        if not isinstance(class_name, str) or not class_name:
            fail("classes", f"class names must be non-empty strings, got {class_name!r}")
        if class_name in seen:
            fail("classes", f"duplicate class name {class_name!r}")
        seen.add(class_name)
    if len(policy.mapping) != NUM_CANONICAL:
        fail("mapping", f"must cover all {NUM_CANONICAL} canonical labels, got {len(policy.mapping)}")
    used = set()
    for label, target in enumerate(policy.mapping):
        if target is None:
            continue
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(policy.classes):
            fail(
                f"mapping.{CANONICAL_NAMES[label]}",
                f"class index {target!r} out of range 0..{len(policy.classes) - 1}",
            )
        used.add(target)
    unused = [policy.classes[i] for i in range(len(policy.classes)) if i not in used]
    if unused:
        fail("classes", f"no canonical label maps to {', '.join(map(repr, unused))}")


def _policy(name: str, description: str, classes: Sequence[str], moves: Mapping[int, int | None]) -> LabelPolicy:
    """Build a policy that keeps canonical names where it can; ``moves`` overrides labels."""
    index = {class_name: i for i, class_name in enumerate(classes)}
    mapping = []
    for label, class_name in enumerate(CANONICAL_NAMES):
        if label in moves:
            mapping.append(moves[label])
        else:
            mapping.append(index[class_name])
    return LabelPolicy(name, description, tuple(classes), tuple(mapping))


_SEVEN = CANONICAL_NAMES[:7]
_EIGHT = CANONICAL_NAMES[:8]

#: Built-in policies, in the order ``curate policies`` lists them.
BUILTIN_POLICIES: Mapping[str, LabelPolicy] = MappingProxyType(
    {
        p.name: p
        for p in (
            _policy("keep-all", "All 11 canonical labels, unchanged.", CANONICAL_NAMES, {}),
            _policy(
                "drop-7-plus",
                "Seven basic expressions; rows labelled Contempt, None, Uncertain or No-Face are removed.",
                _SEVEN,
                {7: None, 8: None, 9: None, 10: None},
            ),
            _policy(
                "merge-to-neutral",
                "Seven basic expressions; Contempt, None, Uncertain and No-Face become Neutral.",
                _SEVEN,
                {7: 0, 8: 0, 9: 0, 10: 0},
            ),
            _policy(
                "drop-8-plus",
                "AffectNet-8: seven basic expressions plus Contempt; None, Uncertain, No-Face removed.",
                _EIGHT,
                {8: None, 9: None, 10: None},
            ),
            _policy(
                "merge-8-plus-to-neutral",
                "Eight classes with Contempt; None, Uncertain and No-Face become Neutral.",
                _EIGHT,
                {8: 0, 9: 0, 10: 0},
            ),
            _policy(
                "drop-no-face",
                "Ten classes; only No-Face rows are removed.",
                CANONICAL_NAMES[:10],
                {10: None},
            ),
        )
    }
)


def _resolve_label(value: Any, *, where: str, key: str) -> int:
    """A canonical label given by name (case-insensitive) or index."""
    if isinstance(value, bool):
        raise PolicyError(f"{where}: {key}: expected a label name or index, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < NUM_CANONICAL:
            raise PolicyError(f"{where}: {key}: canonical label {value} out of range 0..{NUM_CANONICAL - 1}")
        return value
    if isinstance(value, str):
        folded = {n.casefold(): i for i, n in enumerate(CANONICAL_NAMES)}
        if value.strip().isdigit():
            return _resolve_label(int(value), where=where, key=key)
        if value.casefold() in folded:
            return folded[value.casefold()]
        raise PolicyError(
            f"{where}: {key}: unknown canonical label {value!r}; known: {', '.join(CANONICAL_NAMES)}"
        )
    raise PolicyError(f"{where}: {key}: expected a label name or index, got {value!r}")


def policy_from_dict(data: Mapping[str, Any], *, where: str = "<policy>") -> LabelPolicy:
    """Build and validate a policy from the TOML document's table.

    Expected keys: ``name`` (str), ``description`` (str, optional), ``classes`` (list of
    output class names), ``mapping`` (table: canonical label name or index -> output class
    name or index) and ``drop`` (list of canonical labels to remove). Every canonical label
    must be either mapped or dropped, exactly once.
    """
    unknown_keys = set(data) - {"name", "description", "classes", "mapping", "drop"}
    if unknown_keys:
        raise PolicyError(f"{where}: {sorted(unknown_keys)[0]}: unknown key (allowed: name, description, classes, mapping, drop)")
    for key in ("name", "classes"):
        if key not in data:
            raise PolicyError(f"{where}: {key}: missing")
    name, classes = data["name"], data["classes"]
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{where}: name: must be a non-empty string")
    if name in BUILTIN_POLICIES:
        raise PolicyError(f"{where}: name: {name!r} is a built-in policy; choose another name")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise PolicyError(f"{where}: classes: must be a list of strings")
    class_index = {c: i for i, c in enumerate(classes)}
    if len(class_index) != len(classes):
        duplicate = next(c for c in classes if classes.count(c) > 1)
        raise PolicyError(f"{where}: classes: duplicate class name {duplicate!r}")
    mapping: list[int | None | str] = ["unset"] * NUM_CANONICAL
    table = data.get("mapping", {})
    if not isinstance(table, Mapping):
        raise PolicyError(f"{where}: mapping: must be a table of label = class")
    for key, target in table.items():
        label = _resolve_label(key, where=where, key=f"mapping.{key}")
        if mapping[label] != "unset":
            raise PolicyError(f"{where}: mapping.{key}: {CANONICAL_NAMES[label]} is mapped twice")
        if isinstance(target, str) and target in class_index:
            mapping[label] = class_index[target]
        elif isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < len(classes):
                raise PolicyError(f"{where}: mapping.{key}: class index {target} out of range 0..{len(classes) - 1}")
            mapping[label] = target
        else:
            raise PolicyError(f"{where}: mapping.{key}: {target!r} is not one of classes {classes}")
    drops = data.get("drop", [])
    if not isinstance(drops, list):
        raise PolicyError(f"{where}: drop: must be a list of canonical labels")
    for value in drops:
        label = _resolve_label(value, where=where, key="drop")
        if mapping[label] != "unset":
            raise PolicyError(f"{where}: drop: {CANONICAL_NAMES[label]} is both mapped and dropped (or dropped twice)")
        mapping[label] = None
    unmapped = [CANONICAL_NAMES[i] for i, m in enumerate(mapping) if m == "unset"]
    if unmapped:
        raise PolicyError(f"{where}: mapping: canonical label(s) {', '.join(unmapped)} neither mapped nor dropped")
    return LabelPolicy(
        name=name,
        description=str(data.get("description", "")).strip() or f"User policy from {where}",
        classes=tuple(classes),
        mapping=tuple(mapping),  # type: ignore[arg-type]
        source=where,
    )


def load_policy_file(path: str | Path) -> LabelPolicy:
    """Read and validate a TOML policy file; errors name the file, key and reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read policy file: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: TOML syntax error: {error}") from None
    return policy_from_dict(data, where=str(path))


def get_policy(name_or_path: str | Path | LabelPolicy) -> LabelPolicy:
    """A built-in policy by name, or a user policy from a ``.toml`` path."""
    if isinstance(name_or_path, LabelPolicy):
        return name_or_path
    text = str(name_or_path)
    if text in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[text]
    if text.endswith(".toml") or Path(text).is_file():
        return load_policy_file(text)
    raise PolicyError(
        f"unknown label policy {text!r}; known policies: {', '.join(BUILTIN_POLICIES)} "
        "(or the path of a .toml policy file)"
    )


# --------------------------------------------------------------------------------------
# FER+ vote modes
# --------------------------------------------------------------------------------------

_UNKNOWN_COLUMN = FERPLUS_VOTE_COLUMNS.index("unknown")  # 8; NF is 9
_NUM_VOTE_COLUMNS = len(FERPLUS_VOTE_COLUMNS)


@dataclasses.dataclass(frozen=True)
class VoteMode:
    """A rule turning ten FER+ votes into a label or a target distribution.

    ``target`` says how a trainer uses the distribution: ``hard`` (one-hot of the winner),
    ``soft`` (the distribution itself, cross-entropy), ``sample`` (draw a one-hot from the
    distribution each time, the authors' *probability* mode) or ``multi`` (every class with
    mass counts as correct).
    """

    name: str
    description: str
    target: str
    rule: str  # the name of the rule in _ferplus_distribution


VOTE_MODES: Mapping[str, VoteMode] = MappingProxyType(
    {
        m.name: m
        for m in (
            VoteMode(
                "majority",
                "FER+ authors: single-vote outliers zeroed; the top emotion if it holds > 50% of votes, else unknown.",
                "hard",
                "majority",
            ),
            VoteMode(
                "probability",
                "FER+ authors: vote distribution of the top emotions (up to 3, >= 75% of votes); sampled per use.",
                "sample",
                "probability",
            ),
            VoteMode(
                "crossentropy",
                "FER+ authors: the same distribution as 'probability', used as a soft cross-entropy target.",
                "soft",
                "probability",
            ),
            VoteMode(
                "multi-target",
                "FER+ authors: every emotion with >= 30% of the remaining votes counts as correct.",
                "multi",
                "multi-target",
            ),
            VoteMode("argmax", "Plain argmax of the raw votes (first on ties), no outlier removal.", "hard", "argmax"),
        )
    }
)


#: The vote mode used wherever none is given: the FER+ papers' protocol. ``curate ingest``,
#: ``remap``, ``balance``, ``study remap``, the trainer (``--vote-mode``), the TFDS builder's
#: ``label`` feature and the review app's ``ground_truth`` all start from it.
DEFAULT_VOTE_MODE = "majority"

#: Canonical labels of the FER+ non-emotion winners: ``unknown`` -> 9 (Uncertain), ``NF`` ->
#: 10 (No-Face). A row *with votes* whose vote-mode label is one of these is outside the
#: labelled set under every label policy, as the FER+ authors leave such images out of
#: training and evaluation (:func:`vote_excluded_sql`, :func:`vote_excluded_polars`).
VOTE_EXCLUDED_LABELS: tuple[int, ...] = FERPLUS_VOTE_TO_CANONICAL[_UNKNOWN_COLUMN:]


def vote_excluded_sql(label: str = "label", votes: str = "votes") -> str:
    """SQL: true where a row has votes and its label is a non-emotion winner (:data:`VOTE_EXCLUDED_LABELS`)."""
    listed = ", ".join(str(v) for v in VOTE_EXCLUDED_LABELS)
    return f"({votes} IS NOT NULL AND {label} IN ({listed}))"


def vote_excluded_polars(label: str = "label", votes: str = "votes") -> Any:
    """Polars form of :func:`vote_excluded_sql` (a boolean expression, never null)."""
    import polars as pl

    return (pl.col(votes).is_not_null() & pl.col(label).cast(pl.Int64).is_in(list(VOTE_EXCLUDED_LABELS))).fill_null(
        False
    )


def get_vote_mode(name: str) -> VoteMode:
    try:
        return VOTE_MODES[name]
    except KeyError:
        raise PolicyError(f"unknown FER+ vote mode {name!r}; known modes: {', '.join(VOTE_MODES)}") from None


def _one_hot(index: Any, xp: Any) -> Any:
    return xp.asarray(xp.arange(_NUM_VOTE_COLUMNS)[None, :] == index[:, None], dtype=xp.float64)


def _ferplus_distribution(votes: Any, rule: str, xp: Any) -> Any:
    """The FER+ authors' processed vote distribution, vectorised over rows.

    ``votes`` is ``(N, 10)`` in FER+ column order; returns ``(N, 10)`` float64 rows summing to
    1, the ``unknown`` column being 1 where the rule rejects the row. ``xp`` is ``numpy`` or
    ``tensorflow.experimental.numpy``: nothing is assigned in place, so both run it.
    """
    raw = xp.asarray(votes, dtype=xp.float64)
    column = xp.arange(_NUM_VOTE_COLUMNS)[None, :]
    # Shapes come from `raw` itself, so a batch of unknown size (tf.data) works too.
    row_zeros = xp.zeros_like(raw[:, 0])
    unknown = _one_hot(xp.asarray(row_zeros, dtype=xp.int64) + _UNKNOWN_COLUMN, xp)
    if rule == "argmax":
        return _one_hot(xp.argmax(raw, axis=1), xp)

    raw = xp.where(raw < 1.0 + np.finfo(np.float64).eps, 0.0, raw)  # single votes are outliers
    total = xp.sum(raw, axis=1)

    if rule == "majority":
        top = xp.max(raw, axis=1)
        wins = top > 0.5 * total
        return xp.where(wins[:, None], _one_hot(xp.argmax(raw, axis=1), xp), unknown)

    if rule == "multi-target":
        kept = xp.where(raw >= 0.3 * total[:, None], raw, 0.0)
        reject = xp.sum(kept, axis=1) <= 0.5 * total
        kept_sum = xp.where(reject, 1.0, xp.sum(kept, axis=1))
        return xp.where(reject[:, None], unknown, kept / kept_sum[:, None])

    if rule != "probability":
        raise PolicyError(f"unknown FER+ rule {rule!r}")
    # Rounds of the authors' loop: each round takes every column equal to the current
    # maximum, left to right, stopping at the first unknown/NF column among them.
    emotion = xp.zeros_like(raw)
    taken_sum = row_zeros
    count = xp.asarray(row_zeros, dtype=xp.int64)
    valid = row_zeros == 0
    for _ in range(_NUM_VOTE_COLUMNS):
        active = (taken_sum < 0.75 * total) & (count < 3) & valid
        top = xp.max(raw, axis=1)
        equal = raw == top[:, None]
        hits_unknown = equal[:, _UNKNOWN_COLUMN]
        # After a tie reaches 'unknown' the loop breaks, so NF is not taken in that round.
        take = equal & active[:, None] & ~((column == _UNKNOWN_COLUMN + 1) & hits_unknown[:, None])
        emotion = xp.where(take, top[:, None], emotion)
        raw = xp.where(take, 0.0, raw)
        n_taken = xp.sum(xp.asarray(take, dtype=xp.int64), axis=1)
        count = count + n_taken
        taken_sum = taken_sum + top * xp.asarray(n_taken, dtype=xp.float64)
        reached_non_emotion = active & (hits_unknown | equal[:, _UNKNOWN_COLUMN + 1])
        non_emotion_column = xp.where(hits_unknown, _UNKNOWN_COLUMN, _UNKNOWN_COLUMN + 1)
        # ... and un-takes it when other emotions were taken before it.
        untake = reached_non_emotion & (xp.sum(emotion, axis=1) > top)
        emotion = xp.where(untake[:, None] & (column == non_emotion_column[:, None]), 0.0, emotion)
        count = count - xp.asarray(untake, dtype=xp.int64)
        valid = valid & ~reached_non_emotion
    emotion_sum = xp.sum(emotion, axis=1)
    reject = (emotion_sum <= 0.5 * total) | (count > 3)
    safe_sum = xp.where(reject | (emotion_sum == 0), 1.0, emotion_sum)
    return xp.where(reject[:, None], unknown, emotion / safe_sum[:, None])


@dataclasses.dataclass(frozen=True)
class VoteTargets:
    """Result of a vote mode over N rows.

    Attributes
    ----------
    label : ndarray of int64, shape (N,)
        Canonical label of the winner (first maximum of the distribution); 9 (Uncertain)
        for the FER+ ``unknown`` column, 10 (No-Face) for ``NF``. This is the *row label* of
        every mode, the one the workspace stores: for ``majority`` and ``argmax`` the winner
        itself; for the soft modes (``probability``, ``crossentropy``) the argmax of the
        authors' distribution after their outlier rule (single votes zeroed) and their
        rejection rule (top emotions below 75% or more than three of them -> unknown); for
        ``multi-target`` the argmax of the emotions with >= 30% of the votes. Ties go to the
        first column in FER+ order.
    keep : ndarray of bool, shape (N,)
        False where the winner is unknown or NF (``label`` in :data:`VOTE_EXCLUDED_LABELS`):
        the FER+ authors leave such rows out.
    distribution : ndarray of float64, shape (N, 11)
        Target distribution in canonical order. For kept rows the unknown/NF mass is
        removed and the rest renormalised, as the authors train on it.
    """

    label: np.ndarray
    keep: np.ndarray
    distribution: np.ndarray


def ferplus_vote_targets(votes: Any, mode: str | VoteMode) -> VoteTargets:
    """Apply a FER+ vote mode to a ``(N, 10)`` array of votes (FER+ column order)."""
    vote_mode = mode if isinstance(mode, VoteMode) else get_vote_mode(mode)
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != _NUM_VOTE_COLUMNS:
        raise ValueError(f"votes must have shape (N, {_NUM_VOTE_COLUMNS}), got {votes.shape}")
    processed = _ferplus_distribution(votes, vote_mode.rule, np)
    return _targets_from_processed(processed, np)


def _targets_from_processed(processed: Any, xp: Any) -> Any:
    winner = xp.argmax(processed, axis=1)
    keep = winner < _UNKNOWN_COLUMN
    emotions = processed[:, :_UNKNOWN_COLUMN]
    emotion_sum = xp.sum(emotions, axis=1)
    trimmed = emotions / xp.where(emotion_sum > 0, emotion_sum, 1.0)[:, None]
    vote_distribution = xp.concatenate(
        [xp.where(keep[:, None], trimmed, emotions), xp.where(keep[:, None], 0.0, processed[:, _UNKNOWN_COLUMN:])],
        axis=1,
    )
    # Reorder FER+ columns into canonical order; canonical 8 (None) has no vote column.
    order = [FERPLUS_VOTE_TO_CANONICAL.index(c) if c in FERPLUS_VOTE_TO_CANONICAL else -1 for c in range(NUM_CANONICAL)]
    zeros = xp.zeros_like(vote_distribution[:, 0])
    distribution = xp.stack([vote_distribution[:, j] if j >= 0 else zeros for j in order], axis=1)
    label = xp.take(xp.asarray(FERPLUS_VOTE_TO_CANONICAL, dtype=xp.int64), winner)
    if xp is np:
        return VoteTargets(label=label.astype(np.int64), keep=keep, distribution=distribution)
    return label, keep, distribution


def ferplus_vote_targets_tf(votes: Any, mode: str | VoteMode) -> tuple[Any, Any, Any]:
    """TensorFlow form of :func:`ferplus_vote_targets`: ``(label, keep, distribution)`` tensors.

    Works on a batch ``(N, 10)`` inside ``tf.data`` maps; same numbers as the NumPy form.
    """
    import tensorflow.experimental.numpy as tnp

    vote_mode = mode if isinstance(mode, VoteMode) else get_vote_mode(mode)
    processed = _ferplus_distribution(votes, vote_mode.rule, tnp)
    label, keep, distribution = _targets_from_processed(processed, tnp)
    return label, keep, distribution

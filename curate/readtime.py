"""Apply a label policy to TFDS examples at read time, inside ``tf.data``.

Scope
-----
The TFDS builders store every dataset in its own raw label space (AffectNet ``expression``,
FERPlus ten ``votes``, RAF-DB ``label`` already mapped to canonical). Policies are never
baked into storage: this module applies one while reading, with the same mapping as the
studies (``LabelPolicy.tf_lookup``) and the FER+ vote rules (``ferplus_vote_targets_tf``).

* :func:`policy_dataset` -- the contract of ``docs/contracts.md``: a dataset of builder
  examples becomes ``(image, label)`` or ``(image, {"label", "valence", "arousal",
  "va_mask"})``; rows the policy or the vote mode drops are filtered out.
* :func:`policy_targets` -- the same mapping on a *batch* of examples (rank-1 labels,
  ``(N, 10)`` votes), returning a dict with ``keep``; the trainer's pre-pass and the
  per-row map both use it.
* :func:`target_kind` -- ``"hard"`` (int64 class index) or ``"soft"`` (float32
  distribution over the policy's classes) for a dataset / vote mode pair.

Labels
------
* Hard targets are int64 class indices of the policy. FER+ modes whose ``target`` is
  ``hard`` (``majority``, ``argmax``) give hard targets; ``soft``, ``sample`` and ``multi``
  (``crossentropy``, ``probability``, ``multi-target``) give the vote distribution mapped
  onto the policy's classes (mass of dropped canonical labels removed, renormalised). A
  trainer draws a one-hot per use for ``sample``; this module does not sample.
* A FER+ row is kept when the vote mode keeps it (winner not unknown/NF) *and* the policy
  keeps the canonical winner.
* ``with_va`` (AffectNet): valence/arousal as float32 and ``va_mask`` 1.0 where annotated.
  Datasets without V/A give zeros and mask 0.

TensorFlow is imported inside the functions, never at module import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate import datasets as _datasets
from curate import labels as _labels

#: The FER+ vote mode used when none is given (the FER+ papers' protocol).
DEFAULT_VOTE_MODE = _labels.DEFAULT_VOTE_MODE


class ReadTimeError(ValueError):
    """The dataset / policy / vote-mode combination cannot be applied."""


def _spec(dataset_name: str) -> Any:
    try:
        return _datasets.get(dataset_name)
    except _datasets.UnknownDatasetError as error:
        raise ReadTimeError(str(error)) from None


def label_feature(dataset_name: str) -> str:
    """The TFDS feature holding a dataset's label (its registry entry's ``label_feature``)."""
    return _spec(dataset_name).label_feature


def resolve_vote_mode(dataset_name: str, vote_mode: str | _labels.VoteMode | None) -> _labels.VoteMode | None:
    """The vote mode for a dataset: FERPlus defaults to majority; others must not set one."""
    if not _spec(dataset_name).votes:
        if vote_mode is not None:
            with_votes = ", ".join(_datasets.having("votes"))
            raise ReadTimeError(f"a vote mode applies to {with_votes} only, not {dataset_name!r}")
        return None
    if isinstance(vote_mode, _labels.VoteMode):
        return vote_mode
    return _labels.get_vote_mode(vote_mode or DEFAULT_VOTE_MODE)


def target_kind(dataset_name: str, vote_mode: str | _labels.VoteMode | None = None) -> str:
    """``"hard"`` (int64 class index) or ``"soft"`` (float32 distribution over classes)."""
    mode = resolve_vote_mode(dataset_name, vote_mode)
    return "soft" if mode is not None and mode.target in ("soft", "sample", "multi") else "hard"


def policy_distribution_matrix(policy: _labels.LabelPolicy) -> np.ndarray:
    """``float32[NUM_CANONICAL, C]``: row ``c`` is the one-hot of the class canonical ``c`` maps to.

    Rows of dropped labels are zero, so ``canonical_distribution @ M`` removes their mass.
    """
    matrix = np.zeros((_labels.NUM_CANONICAL, policy.num_classes), dtype=np.float32)
    for canonical, target in enumerate(policy.mapping):
        if target is not None:
            matrix[canonical, target] = 1.0
    return matrix


def policy_targets(
    examples: dict[str, Any],
    dataset_name: str,
    policy: str | _labels.LabelPolicy,
    *,
    vote_mode: str | _labels.VoteMode | None = None,
    with_va: bool = False,
    lookup: Any = None,
) -> dict[str, Any]:
    """Targets of a *batch* of builder examples under a policy (and a FER+ vote mode).

    Parameters
    ----------
    examples : dict of tensors
        Builder features with a leading batch axis; only the label feature (``expression``,
        ``votes`` or ``label``) and, for ``with_va``, ``valence`` / ``arousal`` /
        ``va_annotated`` are read.
    dataset_name : {"affectnet", "ferplus", "rafdb"}
    policy : str or LabelPolicy
        Built-in name, TOML path or policy object.
    vote_mode : str, optional
        FERPlus only; default ``majority``.
    with_va : bool
        Add ``valence``, ``arousal`` (float32) and ``va_mask`` (float32, 1 = annotated).
    lookup : tf.lookup table, optional
        A prebuilt ``policy.tf_lookup()`` to reuse (tables are cheap but not free).

    Returns
    -------
    dict
        ``keep`` (bool, N), ``canonical`` (int64, N), ``label`` (int64 N for hard targets,
        float32 (N, C) for soft ones), plus the V/A keys when asked.
    """
    import tensorflow as tf

    policy = _labels.get_policy(policy)
    mode = resolve_vote_mode(dataset_name, vote_mode)
    table = lookup if lookup is not None else policy.tf_lookup()
    feature = label_feature(dataset_name)
    if feature not in examples:
        raise ReadTimeError(f"{dataset_name} examples have no {feature!r} feature (got {sorted(examples)})")

    out: dict[str, Any] = {}
    if mode is None:
        canonical = tf.cast(examples[feature], tf.int64)
        keep_votes = tf.ones_like(canonical, dtype=tf.bool)
        distribution = None
    else:
        canonical, keep_votes, distribution = _vote_targets(examples[feature], mode)
        canonical = tf.cast(canonical, tf.int64)
    class_index = table.lookup(canonical)
    keep = tf.logical_and(keep_votes, class_index >= 0)
    out["canonical"] = canonical
    if target_kind(dataset_name, mode) == "soft":
        matrix = tf.constant(policy_distribution_matrix(policy))
        soft = tf.matmul(tf.cast(distribution, tf.float32), matrix)
        total = tf.reduce_sum(soft, axis=-1, keepdims=True)
        keep = tf.logical_and(keep, total[:, 0] > 0)
        out["label"] = soft / tf.where(total > 0, total, tf.ones_like(total))
    else:
        out["label"] = tf.maximum(class_index, 0)
    out["keep"] = keep
    if with_va:
        out.update(_va(examples, tf.shape(canonical)[0]))
    return out


def policy_targets_numpy(
    examples: dict[str, Any],
    dataset_name: str,
    policy: str | _labels.LabelPolicy,
    *,
    vote_mode: str | _labels.VoteMode | None = None,
    with_va: bool = False,
) -> dict[str, np.ndarray]:
    """NumPy twin of :func:`policy_targets`: ``keep``, ``canonical``, ``label`` (and the V/A keys).

    For pre-passes over ids and labels and for ``curate.data_source`` (no TensorFlow at
    all); gives the same numbers (``curate.labels`` implements the vote rules once for both).
    """
    policy = _labels.get_policy(policy)
    mode = resolve_vote_mode(dataset_name, vote_mode)
    feature = label_feature(dataset_name)
    if feature not in examples:
        raise ReadTimeError(f"{dataset_name} examples have no {feature!r} feature (got {sorted(examples)})")
    if mode is None:
        canonical = np.asarray(examples[feature], dtype=np.int64)
        keep = np.ones(canonical.shape, dtype=bool)
        distribution = None
    else:
        votes = np.asarray(examples[feature])
        targets = _labels.ferplus_vote_targets(votes.reshape(-1, votes.shape[-1]), mode)
        canonical, keep, distribution = targets.label, targets.keep, targets.distribution
    class_index = policy.apply(canonical)
    keep = keep & (class_index >= 0)
    if target_kind(dataset_name, mode) == "soft":
        soft = distribution.astype(np.float32) @ policy_distribution_matrix(policy)
        total = soft.sum(axis=-1, keepdims=True)
        keep = keep & (total[:, 0] > 0)
        label = soft / np.where(total > 0, total, 1.0)
    else:
        label = np.maximum(class_index, 0)
    out = {"canonical": canonical, "keep": keep, "label": label}
    if with_va:
        out.update(_va_numpy(examples, len(canonical)))
    return out


def _va_numpy(examples: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """NumPy twin of :func:`_va`."""
    if "valence" not in examples or "arousal" not in examples:
        zeros = np.zeros(n, np.float32)
        return {"valence": zeros, "arousal": zeros.copy(), "va_mask": zeros.copy()}
    valence = np.asarray(examples["valence"], dtype=np.float32)
    arousal = np.asarray(examples["arousal"], dtype=np.float32)
    if "va_annotated" in examples:
        mask = np.asarray(examples["va_annotated"]).astype(np.float32)
    else:  # the raw -2 sentinel marks "not annotated"
        mask = ((valence > _labels.VA_SENTINEL + 0.5) & (arousal > _labels.VA_SENTINEL + 0.5)).astype(np.float32)
    return {"valence": valence * mask, "arousal": arousal * mask, "va_mask": mask}


def _vote_targets(votes: Any, mode: _labels.VoteMode) -> tuple[Any, Any, Any]:
    """``ferplus_vote_targets_tf`` on a batch; rows one by one when the batch size is not
    static (the vectorised form needs a known number of rows in graph mode)."""
    import tensorflow as tf

    votes = tf.convert_to_tensor(votes)
    if votes.shape.rank == 2 and votes.shape[0] is not None:
        return _labels.ferplus_vote_targets_tf(votes, mode)

    def one(row: Any) -> tuple[Any, Any, Any]:
        label, keep, distribution = _labels.ferplus_vote_targets_tf(row[None], mode)
        return tf.cast(label[0], tf.int64), keep[0], tf.cast(distribution[0], tf.float64)

    return tf.map_fn(one, votes, fn_output_signature=(tf.int64, tf.bool, tf.float64))


def _va(examples: dict[str, Any], batch: Any) -> dict[str, Any]:
    import tensorflow as tf

    if "valence" not in examples or "arousal" not in examples:
        zeros = tf.zeros([batch], tf.float32)
        return {"valence": zeros, "arousal": zeros, "va_mask": zeros}
    valence = tf.cast(examples["valence"], tf.float32)
    arousal = tf.cast(examples["arousal"], tf.float32)
    if "va_annotated" in examples:
        mask = tf.cast(examples["va_annotated"], tf.float32)
    else:  # the raw -2 sentinel marks "not annotated"
        mask = tf.cast((valence > _labels.VA_SENTINEL + 0.5) & (arousal > _labels.VA_SENTINEL + 0.5), tf.float32)
    return {"valence": valence * mask, "arousal": arousal * mask, "va_mask": mask}


def row_targets(
    example: dict[str, Any],
    dataset_name: str,
    policy: str | _labels.LabelPolicy,
    *,
    vote_mode: str | _labels.VoteMode | None = None,
    with_va: bool = False,
    lookup: Any = None,
) -> dict[str, Any]:
    """:func:`policy_targets` for one unbatched example (adds and removes a batch axis)."""
    import tensorflow as tf

    feature = label_feature(dataset_name)
    batched = {
        key: tf.expand_dims(value, 0)
        for key, value in example.items()
        if key in (feature, "valence", "arousal", "va_annotated")
    }
    targets = policy_targets(batched, dataset_name, policy, vote_mode=vote_mode, with_va=with_va, lookup=lookup)
    return {key: value[0] for key, value in targets.items()}


def policy_dataset(
    ds: Any,
    dataset_name: str,
    policy: str | _labels.LabelPolicy,
    *,
    vote_mode: str | _labels.VoteMode | None = None,
    with_va: bool = False,
) -> Any:
    """Map a ``tf.data.Dataset`` of builder examples to policy targets, dropping removed rows.

    Parameters
    ----------
    ds : tf.data.Dataset
        Unbatched examples as ``tfds.load`` yields them (a dict with ``image`` and the label
        features). The image passes through untouched (decoded or, with ``SkipDecoding``,
        encoded bytes).
    dataset_name : {"affectnet", "ferplus", "rafdb"}
    policy : str or LabelPolicy
    vote_mode : str, optional
        FERPlus vote mode (default ``majority``); soft targets for ``crossentropy``,
        ``probability`` and ``multi-target``.
    with_va : bool
        Return ``(image, {"label", "valence", "arousal", "va_mask"})`` instead of
        ``(image, label)``.

    Returns
    -------
    tf.data.Dataset
        ``(image, label)`` or ``(image, dict)``; see the module docstring for label types.

    See Also
    --------
    policy_targets : the batched mapping underneath.
    """
    import tensorflow as tf

    policy = _labels.get_policy(policy)
    mode = resolve_vote_mode(dataset_name, vote_mode)
    lookup = policy.tf_lookup()

    def with_targets(example: dict[str, Any]) -> tuple[Any, Any, Any]:
        targets = row_targets(example, dataset_name, policy, vote_mode=mode, with_va=with_va, lookup=lookup)
        if with_va:
            label = {key: targets[key] for key in ("label", "valence", "arousal", "va_mask")}
        else:
            label = targets["label"]
        return example["image"], label, targets["keep"]

    mapped = ds.map(with_targets, num_parallel_calls=tf.data.AUTOTUNE)
    mapped = mapped.filter(lambda image, label, keep: keep)
    return mapped.map(lambda image, label, keep: (image, label), num_parallel_calls=tf.data.AUTOTUNE)

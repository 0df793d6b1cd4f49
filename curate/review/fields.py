"""Names of everything the review package writes: sample fields, run fields, the info record.

The leaf of :mod:`curate.review`: it imports only :mod:`curate.labels` and the standard
library, so every other review module (sources, documents, runs, scores, views,
corrections) can name fields without importing each other.

* :data:`GROUND_TRUTH_FIELD`, :func:`policy_field` -- the raw canonical label and one
  ground-truth field per label policy (``gt_merge_to_neutral``, FER+ vote modes add
  ``_<mode>``);
* :class:`RunFields` -- every field, evaluation and Brain key of one run, derived from its
  identifier-style key (:func:`identifier`);
* :data:`VA_OUTLIER_FIELD`, :data:`VA_DISTANCE_FIELD` -- the V/A consistency audit's fields
  (and its :data:`VA_OUTLIER_K`);
* :data:`INFO_KEY` -- this package's record in ``dataset.info``; :data:`LAYOUT_VERSION` --
  the version of the sample layout (a change forces a rebuild);
* :data:`OUT_OF_SAMPLE_VIEWS` -- the prediction views of ``predictions.parquet`` that hold
  out-of-sample predictions;
* :class:`ReviewLoadError` -- the error every review step raises for input it cannot load
  (here, in the leaf, because :func:`identifier` raises it too).
"""

from __future__ import annotations

import dataclasses
import re

from curate import labels

#: Field holding the raw canonical label.
GROUND_TRUTH_FIELD = "ground_truth"
#: Key of this package's record in ``dataset.info``.
INFO_KEY = "curate"
#: Version of the sample layout written by :func:`curate.review.documents.ingest_table`; a
#: change forces a rebuild. 2: FERPlus ``ground_truth`` is the FER+ majority label (was
#: FER2013's, now in ``fer2013_label``); unknown / NF winners are in no policy field.
LAYOUT_VERSION = 2
#: Sample fields of the V/A consistency audit (AffectNet): the flag and the robust distance.
VA_OUTLIER_FIELD = "va_outlier"
VA_DISTANCE_FIELD = "va_distance"
#: ``k`` of :func:`curate.audit.va_outliers` used on every load (the saved view's description
#: shows it where ``dataset.info`` does not record one).
VA_OUTLIER_K = 3.0
#: Prediction views of ``predictions.parquet`` that hold out-of-sample predictions, in the
#: order of preference when an id appears in several.
OUT_OF_SAMPLE_VIEWS: tuple[str, ...] = ("class_frequency", "train_oof", "balanced")


class ReviewLoadError(ValueError):
    """A dataset or run cannot be loaded; the message says what, where and what to do."""


def identifier(text: str) -> str:
    """A lower-case Python identifier from a run or policy name (``merge-to-neutral`` -> ``merge_to_neutral``)."""
    value = re.sub(r"[^0-9a-zA-Z_]+", "_", str(text)).strip("_").lower()
    if not value:
        raise ReviewLoadError(f"cannot make a field name from {text!r}")
    return value if not value[0].isdigit() else f"r{value}"


def policy_field(policy: str | labels.LabelPolicy, vote_mode: str | None = None) -> str:
    """Ground-truth field of a policy, e.g. ``gt_merge_to_neutral`` (FER+ vote modes add ``_<mode>``)."""
    name = policy.name if isinstance(policy, labels.LabelPolicy) else str(policy)
    suffix = f"_{identifier(vote_mode)}" if vote_mode else ""
    return f"gt_{identifier(name)}{suffix}"


@dataclasses.dataclass(frozen=True)
class RunFields:
    """Field names of one run, all derived from its identifier-style ``key``."""

    key: str

    @classmethod
    def for_run(cls, run_name: str) -> RunFields:
        return cls(identifier(run_name))

    @property
    def pred(self) -> str:
        return f"pred_{self.key}"

    @property
    def valence(self) -> str:
        return f"pred_{self.key}_valence"

    @property
    def arousal(self) -> str:
        return f"pred_{self.key}_arousal"

    @property
    def mistakenness(self) -> str:
        return f"mistakenness_{self.key}"

    @property
    def hardness(self) -> str:
        return f"hardness_{self.key}"

    @property
    def label_quality(self) -> str:
        return f"label_quality_{self.key}"

    @property
    def fused_pred(self) -> str:
        """The run's out-of-sample prediction fused with the landmark model (``curate.review.label_scores``)."""
        return f"pred_{self.key}_fused"

    @property
    def fused_mistakenness(self) -> str:
        return f"mistakenness_{self.key}_fused"

    @property
    def label_issue(self) -> str:
        return f"label_issue_{self.key}"

    def eval_key(self, policy: str | labels.LabelPolicy) -> str:
        name = policy.name if isinstance(policy, labels.LabelPolicy) else str(policy)
        return f"eval_{self.key}_{identifier(name)}"

    def sample_fields(self) -> tuple[str, ...]:
        return (
            self.pred,
            self.valence,
            self.arousal,
            self.mistakenness,
            self.hardness,
            self.label_quality,
            self.label_issue,
            self.fused_pred,
            self.fused_mistakenness,
        )

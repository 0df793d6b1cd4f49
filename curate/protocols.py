"""Protocol cards: named, versioned descriptions of how a number is measured.

A card fixes what the literature usually leaves implicit and what most wrong comparisons
come from: the dataset and release layout, the label policy and FER+ vote mode, the split
used for training, the split used for model selection (a hashed hold-out carved from train,
never the test split), the test split and its view (balanced, class-frequency or the natural
split), the metric set and the preprocessing contract (colour order, crop, resize, input
size, normalisation).

Every run records the card it ran under together with a *data fingerprint* -- a hash of the
dataset version, the annotation files' SHA-256, the policy's mapping and the vote mode -- so
a number in a table can be traced to the exact data it came from. Tables refuse to put two
protocols' numbers in one column (:func:`check_comparable`).

This module imports no heavy library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from curate import labels

#: Fraction of train carved out (by hashed id) for model selection and the class-frequency view.
HOLDOUT_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The preprocessing contract a number depends on (each moves results by points)."""

    colour_order: str = "RGB"
    crop: str = "face box + 20% margin (affectnet crop224)"
    resize_method: str = "bilinear"
    input_size: int = 96
    normalisation: str = "uint8 0-255 in; the model rescales internally"


@dataclasses.dataclass(frozen=True)
class ProtocolCard:
    """A named, versioned evaluation protocol. See the module docstring."""

    name: str
    version: str
    description: str
    dataset: str
    release_layout: str
    policy: str
    vote_mode: str | None
    train_split: str
    selection_split: str
    test_split: str
    test_view: str
    metrics: tuple[str, ...]
    preprocessing: Preprocessing = Preprocessing()
    task: str = "classification"

    @property
    def label_policy(self) -> labels.LabelPolicy:
        return labels.get_policy(self.policy)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """``name@version``: what tables print beside every number."""
        return f"{self.name}@{self.version}"


_CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
_VA_METRICS = ("rmse", "ccc", "pcc", "sagr")
_HOLDOUT = f"train hold-out ({HOLDOUT_FRACTION:.0%} of train by hashed id)"


def _affectnet(name: str, policy: str, description: str) -> ProtocolCard:
    return ProtocolCard(
        name=name,
        version="1",
        description=description,
        dataset="affectnet",
        release_layout="original or cropped (recorded in the fingerprint)",
        policy=policy,
        vote_mode=None,
        train_split="train",
        selection_split=_HOLDOUT,
        test_split="validation",
        test_view="balanced",
        metrics=_CLASSIFICATION_METRICS,
    )


def _ferplus(name: str, vote_mode: str, description: str) -> ProtocolCard:
    return ProtocolCard(
        name=name,
        version="1",
        description=description,
        dataset="ferplus",
        release_layout="fer2013.csv + fer2013new.csv",
        policy="drop-8-plus",
        vote_mode=vote_mode,
        train_split="train",
        selection_split="validation (PublicTest)",
        test_split="test",
        test_view="natural",
        metrics=_CLASSIFICATION_METRICS,
        preprocessing=Preprocessing(crop="whole 48x48 grey image, tiled to 3 channels"),
    )


#: The shipped protocol cards, in the order ``curate protocols`` lists them.
PROTOCOLS: Mapping[str, ProtocolCard] = MappingProxyType(
    {
        card.name: card
        for card in (
            _affectnet(
                "affectnet-7",
                "drop-7-plus",
                "AffectNet-7: official validation set as test (balanced); Contempt and labels 8-10 dropped.",
            ),
            _affectnet(
                "affectnet-8",
                "drop-8-plus",
                "AffectNet-8: official validation set as test (balanced); labels 8-10 dropped.",
            ),
            _affectnet(
                "affectnet-7-merge",
                "merge-to-neutral",
                "Seven classes with Contempt and labels 8-10 merged into Neutral; balanced validation as test.",
            ),
            _affectnet(
                "affectnet-8-merge",
                "merge-8-plus-to-neutral",
                "Eight classes with labels 8-10 merged into Neutral; balanced validation as test.",
            ),
            _ferplus(
                "ferplus-8-majority",
                "majority",
                "FERPlus 8 classes by majority vote, unknown/NF removed; accuracy on PrivateTest.",
            ),
            _ferplus(
                "ferplus-8-probability",
                "probability",
                "FERPlus 8 classes trained on the vote distribution; majority labels on PrivateTest.",
            ),
            ProtocolCard(
                name="rafdb-7",
                version="1",
                description="RAF-DB basic, 7 classes on the test split; mean class accuracy beside accuracy.",
                dataset="rafdb",
                release_layout="basic, aligned 100x100",
                policy="drop-7-plus",
                vote_mode=None,
                train_split="train",
                selection_split=_HOLDOUT,
                test_split="test",
                test_view="natural",
                metrics=_CLASSIFICATION_METRICS,
                preprocessing=Preprocessing(crop="RAF-DB aligned face"),
            ),
            ProtocolCard(
                name="affectnet-va",
                version="1",
                description="AffectNet valence/arousal on the official validation set; rows without V/A excluded.",
                dataset="affectnet",
                release_layout="original or cropped (recorded in the fingerprint)",
                policy="drop-no-face",
                vote_mode=None,
                train_split="train",
                selection_split=_HOLDOUT,
                test_split="validation",
                test_view="natural",
                metrics=_VA_METRICS,
                task="valence-arousal",
            ),
        )
    }
)


class ProtocolError(ValueError):
    """Unknown protocol, or numbers of different protocols put side by side."""


def get_protocol(name: str) -> ProtocolCard:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ProtocolError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}") from None


def card_for_training(
    name: str, *, dataset: str | None = None, policy: str | None = None, vote_mode: str | None = None
) -> ProtocolCard:
    """The card a classification run under protocol ``name`` trains by: it fixes the run's
    dataset, label policy and FER+ vote mode.

    ``dataset``, ``policy`` and ``vote_mode`` are what the user gave besides the protocol
    (``None``: not given); each must equal the card's.

    Raises
    ------
    ProtocolError
        Unknown card, a card of another task (valence/arousal), or a given value that
        contradicts the card.
    """
    card = get_protocol(name)
    if card.task != "classification":
        raise ProtocolError(f"protocol {card.key} is a {card.task} protocol; train it with --va-head on {card.dataset}")
    for option, given, fixed in (
        ("--dataset", dataset, card.dataset),
        ("--policy", policy, card.policy),
        ("--vote-mode", vote_mode, card.vote_mode),
    ):
        if given is not None and given != fixed:
            raise ProtocolError(f"{option} {given} contradicts protocol {card.key}, which fixes {fixed}")
    return card


def data_fingerprint(
    *,
    dataset: str,
    dataset_version: str,
    annotation_sha256: Mapping[str, str],
    policy: labels.LabelPolicy | str,
    vote_mode: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A short hash naming the exact data a number was computed on.

    It covers the dataset name and version, the SHA-256 of every annotation file read (the
    builders store these in their metadata), the policy's classes and mapping (not just its
    name: a TOML policy can change under the same name) and the FER+ vote mode.
    """
    policy = labels.get_policy(policy)
    document = {
        "dataset": dataset,
        "dataset_version": dataset_version,
        "annotation_sha256": dict(sorted(annotation_sha256.items())),
        "policy": {"classes": list(policy.classes), "mapping": list(policy.mapping)},
        "vote_mode": vote_mode,
        "extra": dict(sorted((extra or {}).items())),
    }
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


def check_comparable(protocol_keys: Iterable[str | None], *, what: str = "column") -> str | None:
    """Raise unless all non-null protocol keys in one table column are the same."""
    keys = sorted({key for key in protocol_keys if key})
    if len(keys) > 1:
        raise ProtocolError(
            f"refusing to put numbers of different protocols in one {what}: {', '.join(keys)}; "
            "compare runs of one protocol, or print them in separate columns"
        )
    return keys[0] if keys else None

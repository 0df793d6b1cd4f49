"""What one ``curate train`` (``python -m train``) invocation runs, resolved from its options.

:func:`plan_training` turns the command's options into a :class:`TrainingPlan` before
anything is written: a protocol card (``--protocol``, :func:`curate.protocols.card_for_training`)
fixes the dataset, policy and vote mode; conflicting options are refused; the
:class:`train.config.TrainConfig` is built (which validates every option); and whether the
runs are registered in the workspace is decided. :func:`run_plan` then trains one run
(:func:`train.loop.train_run`), or one run per policy and seed followed by the comparison
(:func:`train.loop.train_policies`). Every user mistake is a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate import protocols
from train import config as train_config
from train import loop


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """A resolved ``curate train``: the configuration of the (first) run, the policies of a
    comparison (empty: a single run), seeds per policy and where the runs go."""

    config: train_config.TrainConfig
    policies: tuple[str, ...]
    seeds: int
    runs_dir: Path | None
    workspace: Path | None
    register: bool
    overwrite: bool
    verbose: int

    @property
    def compares(self) -> bool:
        """Several runs and a comparison table (``--policies`` or ``--seeds`` above 1)."""
        return bool(self.policies) or self.seeds > 1


@dataclasses.dataclass
class TrainingOutcome:
    """The finished runs, and the comparison's ``markdown`` and ``json`` paths when one was written."""

    runs: list[loop.RunResult]
    comparison: dict[str, Path] | None = None


def plan_training(
    *,
    dataset: str | None = None,
    protocol: str | None = None,
    policy: str | None = None,
    policies: Sequence[str] = (),
    vote_mode: str | None = None,
    seeds: int = 1,
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    register: bool = True,
    overwrite: bool = False,
    verbose: int = 1,
    **options: Any,
) -> TrainingPlan:
    """Resolve the options of ``curate train`` into a :class:`TrainingPlan`.

    Parameters
    ----------
    dataset, policy, vote_mode : str, optional
        As :class:`train.config.TrainConfig`; with ``protocol`` they may be left out (the card
        fixes them) and must not contradict it. ``policy`` defaults to the first of ``policies``.
    protocol : str, optional
        A protocol card's name (``curate protocols``).
    policies : sequence of str
        One run per policy (and seed), then a comparison; not with ``policy`` or ``protocol``.
    seeds : int
        Runs per policy (seeds ``seed`` .. ``seed + seeds - 1``); above 1, a comparison.
    runs_dir : path, optional
        Folder of the run folders (``--out``; default ``<workspace>/runs``). With it, runs are
        registered only when ``workspace`` is given too.
    workspace, register, overwrite, verbose
        As :func:`train.loop.train_run`.
    **options
        The other :class:`train.config.TrainConfig` fields (``model``, ``epochs``, ``config``
        (the TFDS builder config), ``data_dir``, ``exclude``, ...); paths may be ``Path``.

    Raises
    ------
    ValueError
        ``TrainError``, ``PolicyError`` or ``ProtocolError`` naming the option to change.
    """
    policies = tuple(policies)
    if protocol is not None:
        card = protocols.card_for_training(protocol, dataset=dataset, policy=policy, vote_mode=vote_mode)
        if policies:
            raise protocols.ProtocolError(
                f"--policies cannot be combined with --protocol ({card.key} fixes the policy {card.policy})"
            )
        dataset, policy, vote_mode = card.dataset, card.policy, card.vote_mode
    if dataset is None:
        raise train_config.TrainError("--dataset is required (affectnet, ferplus or rafdb)")
    if policy and policies:
        raise train_config.TrainError("give either --policy or --policies, not both")
    train_config.check_number("seeds", seeds)
    for key in ("data_dir", "exclude"):
        if options.get(key) is not None:
            options[key] = str(options[key])
    config = train_config.TrainConfig(
        dataset=dataset,
        policy=policy or (policies[0] if policies else None),
        vote_mode=vote_mode,
        runs_dir=str(runs_dir) if runs_dir else None,
        **options,
    )
    return TrainingPlan(
        config=config,
        policies=policies,
        seeds=seeds,
        runs_dir=Path(runs_dir) if runs_dir else None,
        workspace=Path(workspace) if workspace else None,
        register=register and (runs_dir is None or workspace is not None),
        overwrite=overwrite,
        verbose=verbose,
    )


def run_plan(plan: TrainingPlan) -> TrainingOutcome:
    """Train what ``plan`` says: one run, or every policy x seed and their comparison."""
    common: dict[str, Any] = {
        "runs_dir": plan.runs_dir,
        "workspace": plan.workspace,
        "register": plan.register,
        "overwrite": plan.overwrite,
        "verbose": plan.verbose,
    }
    if not plan.compares:
        return TrainingOutcome(runs=[loop.train_run(plan.config, **common)])
    chosen = list(plan.policies) or [str(plan.config.policy)]
    results, paths = loop.train_policies(plan.config, chosen, seeds=plan.seeds, **common)
    return TrainingOutcome(runs=results, comparison=paths)

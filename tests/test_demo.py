"""End to end: the small demo runs the whole chain, and a second run reuses every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from curate.demo import DEMO_POLICIES, DemoSettings, plan


def test_plan_runs_every_stage_in_dependency_order(tmp_path):
    steps = plan(DemoSettings.small(tmp_path / "out"))
    names = [step.name for step in steps]
    for step in steps:
        for upstream in step.after:
            assert names.index(upstream) < names.index(step.name), (upstream, step.name)
    commands = [" ".join(step.command) for step in steps]
    assert sum(" tfds" in c or c.split()[0].endswith("tfds") for c in commands) == 4
    assert any("--policies " + ",".join(DEMO_POLICIES) + " --seeds 2" in c for c in commands)
    assert any(f"--run {DemoSettings.small(tmp_path).run_names()[0]}" in c for c in commands)
    assert any(" review load affectnet" in c for c in commands)


@pytest.mark.slow
def test_small_demo_end_to_end_and_reuse(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "curate", "demo", "--small", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for dataset in ("affectnet", "ferplus", "rafdb"):
        assert (out / "tfds" / dataset).is_dir()
    report = json.loads((out / "reports" / "affectnet" / "study.json").read_text())
    assert report  # the study wrote its numbers
    runs = out / "workspace" / "runs"
    settings = DemoSettings.small(out)
    assert len(settings.run_names()) == len(DEMO_POLICIES) * settings.seeds
    for name in settings.run_names():
        metrics = json.loads((runs / name / "metrics.json").read_text())
        assert "balanced" in metrics and "class_frequency" in metrics
    comparison = (runs / "comparisons" / "demo.md").read_text()
    assert all(policy in comparison for policy in DEMO_POLICIES)
    assert "## Common ground: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger" in comparison
    assert "majority class" in comparison and "no detectable difference" in first.stdout + comparison
    # Off a terminal (as here) every table is printed whole: Markdown rows, no cell cut to "…".
    assert "…" not in first.stdout and "| model or rule | rows | seeds |" in first.stdout
    assert "likely-label-errors" in first.stdout

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    steps = plan(DemoSettings.small(out))
    assert second.stdout.count("up to date") == len(steps), second.stdout

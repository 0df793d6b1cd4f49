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
    assert any(" train export --run " in c and "--format onnx" in c for c in commands)
    assert any(" predict " in c and "--backend onnx" in c for c in commands)
    assert any(" train cross " in c and "--on affectnet,ferplus,rafdb" in c for c in commands)


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
    # a baseline used: exported to ONNX and applied to a real photograph (one face found)
    assert (runs / settings.run_names()[0] / "model.onnx").is_file()
    photo_rows = (out / "reports" / "predict_photos.csv").read_text().splitlines()
    assert len(photo_rows) == 2 and ",ok," in photo_rows[1]
    assert "What the exports cost" in comparison and "## Calibration" in comparison
    cross = json.loads((out / "reports" / "cross.json").read_text())
    assert cross["targets"] == ["affectnet:validation", "ferplus:test", "rafdb:test"]
    assert len(cross["cells"]) == len(settings.run_names())

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    steps = plan(DemoSettings.small(out))
    assert second.stdout.count("up to date") == len(steps), second.stdout


def _script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait_for(path: str) -> str:
    """Python source that waits (at most 30 s) for a file, else exits 3."""
    return (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({path!r})\n"
        "for _ in range(300):\n"
        "    if p.exists(): break\n"
        "    time.sleep(0.1)\n"
        "else: sys.exit(3)\n"
    )


def test_steps_run_two_at_once_and_print_whole(tmp_path):
    from curate.demo import Step, run_steps

    a_started, b_started = str(tmp_path / "a-started"), str(tmp_path / "b-started")
    # Each of a and b waits for the other to have started: they finish only when run side by side.
    a = Step("a", _script(f"import pathlib; pathlib.Path({a_started!r}).touch()\n" + _wait_for(b_started)
                          + "import time\nfor i in range(3): print('a', i, flush=True); time.sleep(0.05)"),
             [], workspace=False)  # fmt: skip
    b = Step("b", _script(f"import pathlib; pathlib.Path({b_started!r}).touch()\n" + _wait_for(a_started)
                          + "import time\nfor i in range(3): print('b', i, flush=True); time.sleep(0.05)"),
             [], workspace=False)  # fmt: skip
    c = Step("c", _script("print('c after a and b')"), [], after=["a", "b"])
    lines: list[str] = []
    timings = run_steps([a, b, c], tmp_path, dict(os.environ), jobs=2, echo=lines.append)
    assert list(timings) == ["a", "b", "c"]  # in plan order, whichever finished first
    text = [line.strip() for line in lines]
    # a started first: its header and lines come first, then b's whole block, then c.
    assert text[0].startswith("[1/3] a:") and text[1:4] == ["a 0", "a 1", "a 2"], text
    assert text[4].startswith("[2/3] b:") and text[5:8] == ["b 0", "b 1", "b 2"], text
    assert text[8].startswith("[3/3] c:") and text[9] == "c after a and b", text


def test_workspace_steps_run_one_at_a_time(tmp_path):
    from curate.demo import Step, run_steps

    busy = str(tmp_path / "workspace-busy")
    # Each holds a marker for a while and fails if it finds the other's: never side by side.
    hold = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({busy!r})\n"
        "if p.exists(): sys.exit(4)\n"
        "p.touch(); time.sleep(0.5); p.unlink()\n"
    )
    steps = [Step(name, _script(hold), []) for name in ("ingest", "study")]
    run_steps(steps, tmp_path, dict(os.environ), jobs=2, echo=lambda line: None)


def test_a_failed_step_stops_what_depends_on_it(tmp_path):
    from curate.demo import DemoError, Step, run_steps

    steps = [
        Step("broken", _script("import sys; print('bad input'); sys.exit(2)"), [], workspace=False),
        Step("independent", _script(f"open({str(tmp_path / 'ran')!r}, 'w')"), [], workspace=False),
        Step("downstream", _script(f"open({str(tmp_path / 'downstream')!r}, 'w')"), [], after=["broken"]),
    ]
    with pytest.raises(DemoError, match=r"step 'broken' failed \(exit 2\); full log: .*broken\.log"):
        run_steps(steps, tmp_path, dict(os.environ), jobs=2, echo=lambda line: None)
    assert (tmp_path / "ran").exists() and not (tmp_path / "downstream").exists()
    assert "bad input" in (tmp_path / "logs" / "broken.log").read_text()


def test_background_steps_yield_the_cores_to_the_training_chain(tmp_path):
    from curate.demo import Step, run_steps

    probe = "import os; print('niceness', os.nice(0))"
    steps = [
        Step("chain", _script(probe), [], workspace=False),
        Step("side", _script(probe), [], workspace=False, background=True),
    ]
    lines: list[str] = []
    run_steps(steps, tmp_path, dict(os.environ), jobs=2, echo=lines.append)
    base = os.nice(0)
    assert f"niceness {base}" in (tmp_path / "logs" / "chain.log").read_text()
    assert f"niceness {min(base + 10, 19)}" in (tmp_path / "logs" / "side.log").read_text()


def test_demo_plan_keeps_the_training_chain_in_front():
    steps = {step.name: step for step in plan(DemoSettings())}
    chain = {"synth affectnet", "tfds build affectnet", "ingest affectnet", "train affectnet baselines"}
    after_training = {"study remap affectnet (with runs)", "review load affectnet"}
    assert {name for name, step in steps.items() if not step.background} == chain | after_training
    assert not steps["train affectnet baselines"].workspace  # ingests and studies run beside it

"""The end-to-end demo: synthetic data -> TFDS -> studies -> baselines -> FiftyOne review.

Every step is the real command a user would type (``curate synth``, ``tfds build``,
``curate ingest``, ``curate study remap``, ``curate train``, ``curate review load``), run
as a subprocess so its output streams to the console; two run at once where their inputs
allow (``DemoSettings.jobs``), and a step's lines are never interleaved with another's.
Everything goes under one folder
(default ``demo_output/``). A step is skipped when its stamp file records the same command
and the same upstream stamps, so a second run reuses what is up to date; delete the folder
(or ``make clean``) to start over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from curate import __version__

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Policies the demo trains, in the order of the comparison table.
DEMO_POLICIES = ("merge-to-neutral", "drop-7-plus")


def default_votes_file() -> Path | None:
    """The real FER+ vote file when the project's ``../shared`` (or $FERPLUS_LABELS_CSV) has it."""
    candidate = Path(os.environ.get("FERPLUS_LABELS_CSV", REPO_ROOT.parent / "shared/data/ferplus/fer2013new.csv"))
    return candidate if candidate.is_file() else None


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo makes; ``small()`` is the version the end-to-end test runs."""

    out: Path = Path("demo_output")
    affectnet_scale: float = 0.008
    #: The balanced view needs images per class: 0.1 gives 50 per class (500 at scale 1), so
    #: its balanced accuracy has a standard error near 3 points.
    affectnet_validation_scale: float = 0.1
    ferplus_scale: float = 0.05
    rafdb_scale: float = 0.1
    label_noise: float = 0.05
    votes_file: Path | None = dataclasses.field(default_factory=default_votes_file)
    # The trainer's recipe for small data (docs/training.md): faces aligned by their eyes
    # (the default for AffectNet), grey, balanced sampler, 64 px to fit the demo's time.
    epochs: int = 12
    image_size: int = 64
    batch_size: int = 32
    colour: str = "grey"
    #: Each policy is trained with seeds 0 .. seeds-1. One seed keeps the demo within 8 minutes
    #: from nothing on 2 cores (`make demo` on a fresh clone: 457 s, of which 347 s of demo; two seeds doubled
    #: the training step); its comparison then says that its intervals cover the evaluation
    #: rows, not the training run's luck.
    seeds: int = 1
    #: Share of train held out (by hashed id) to select epochs and report the class-frequency
    #: view: 20% of the demo's ~3,300 rows keeps the standard error of its balanced accuracy
    #: near 5 points (5% would leave ~150 rows and 10 points). The studies use the same.
    holdout_fraction: float = 0.2
    seed: int = 0
    with_review: bool = True
    #: Steps run at once (two cores: one worker synthesises and builds while the other trains).
    jobs: int = 2

    @classmethod
    def small(cls, out: Path) -> DemoSettings:
        return cls(
            out=out,
            affectnet_scale=0.0015,
            affectnet_validation_scale=0.01,
            ferplus_scale=0.01,
            rafdb_scale=0.02,
            votes_file=None,
            epochs=1,
            image_size=32,
            batch_size=32,
            seeds=2,
        )

    def run_names(self) -> list[str]:
        """The training runs the demo makes, as ``curate train --policies --seeds`` names them."""
        suffixes = [f"-s{s}" for s in range(self.seed, self.seed + self.seeds)] if self.seeds > 1 else [""]
        return [f"demo-{policy}{suffix}" for policy in DEMO_POLICIES for suffix in suffixes]


@dataclasses.dataclass
class Step:
    name: str
    command: list[str]
    outputs: list[Path]
    after: Sequence[str] = ()
    #: Steps that open the workspace's DuckDB file (ingest, studies, training, review) run one
    #: at a time: DuckDB lets one process write a database file. Synthesis and `tfds build`
    #: write only their own folders, so they run beside them.
    workspace: bool = True
    #: Steps off the chain to the training run (the longest) run at a lower CPU priority
    #: (nice 10): they fill the cores the trainer leaves idle instead of slowing it down.
    background: bool = False


class DemoError(RuntimeError):
    """A demo step failed; the message names the step and its log."""


def _tool(name: str) -> str:
    """An executable installed beside this interpreter (the venv's `tfds`), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise DemoError(f"cannot find the `{name}` command; run `make setup` first")
    return found


def plan(settings: DemoSettings) -> list[Step]:
    """The demo's steps, in order."""
    out = settings.out.resolve()
    raw, tfds_dir, runs = out / "raw", out / "tfds", out / "workspace" / "runs"
    curate = [sys.executable, "-m", "curate"]
    tfds = [_tool("tfds"), "build", "--imports", "tfds_builders", "--data_dir"]
    seed = ["--seed", str(settings.seed)]
    noise = ["--label-noise", str(settings.label_noise)]
    fraction = ["--holdout-fraction", str(settings.holdout_fraction)]
    # Synthesis beside the training run draws with one process: a second would take the
    # trainer's other core (TensorFlow's two threads wait for the slower one).
    one_worker = ["--workers", "1"]
    ferplus_source = (
        ["--votes-from", str(settings.votes_file)]
        if settings.votes_file
        else ["--scale", str(settings.ferplus_scale), *noise]
    )
    # Listed in the order they start: the chain to the training run (the longest step) first, so
    # the second worker synthesises and builds FERPlus, RAF-DB and the cropped release meanwhile.
    steps = [
        Step("synth affectnet", [*curate, "synth", "affectnet", "--out", str(raw / "affectnet"),
                                 "--scale", str(settings.affectnet_scale),
                                 "--validation-scale", str(settings.affectnet_validation_scale), *noise, *seed],
             [raw / "affectnet"], workspace=False),
        Step("synth ferplus", [*curate, "synth", "ferplus", "--out", str(raw / "ferplus"), *ferplus_source, *seed,
                                 *one_worker],
             [raw / "ferplus"], workspace=False, background=True),
        Step("tfds build affectnet", [*tfds, str(tfds_dir), "affectnet", "--config", "crop224",
                                      "--manual_dir", str(raw / "affectnet")], [tfds_dir / "affectnet"],
             after=["synth affectnet"], workspace=False),
        Step("ingest affectnet", [*curate, "ingest", "affectnet", "--manual-dir", str(raw / "affectnet")], [],
             after=["synth affectnet"]),
        Step("train affectnet baselines", [*curate, "train", "--dataset", "affectnet", "--data-dir", str(tfds_dir),
                                           "--policies", ",".join(DEMO_POLICIES), "--seeds", str(settings.seeds),
                                           "--epochs", str(settings.epochs), "--image-size", str(settings.image_size),
                                           "--batch-size", str(settings.batch_size), "--colour", settings.colour,
                                           "--holdout-fraction", str(settings.holdout_fraction), "--no-progress",
                                           *seed, "--name", "demo", "--overwrite"],
             [runs / name / "COMPLETE" for name in settings.run_names()],
             # The trainer opens the database only to register its runs (waiting out a writer,
             # see CURATE_WORKSPACE_TIMEOUT), so ingests and studies run beside it.
             after=["tfds build affectnet", "ingest affectnet"], workspace=False),
        Step("synth affectnet (cropped)", [*curate, "synth", "affectnet", "--layout", "cropped",
                                           "--out", str(raw / "affectnet_cropped"),
                                           "--scale", str(settings.affectnet_scale), *seed, *one_worker],
             [raw / "affectnet_cropped"], workspace=False, background=True),
        Step("synth rafdb", [*curate, "synth", "rafdb", "--out", str(raw / "rafdb"),
                             "--scale", str(settings.rafdb_scale), *noise, *seed, *one_worker], [raw / "rafdb"], workspace=False, background=True),
        Step("tfds build ferplus", [*tfds, str(tfds_dir), "ferplus", "--manual_dir", str(raw / "ferplus")],
             [tfds_dir / "ferplus"], after=["synth ferplus"], workspace=False, background=True),
        Step("tfds build affectnet (cropped release)", [*tfds, str(out / "tfds_cropped"), "affectnet", "--config",
                                                        "crop224", "--manual_dir", str(raw / "affectnet_cropped")],
             [out / "tfds_cropped" / "affectnet"], after=["synth affectnet (cropped)"], workspace=False,
             background=True),
        Step("tfds build rafdb", [*tfds, str(tfds_dir), "rafdb", "--manual_dir", str(raw / "rafdb")],
             [tfds_dir / "rafdb"], after=["synth rafdb"], workspace=False, background=True),
        Step("ingest ferplus", [*curate, "ingest", "ferplus", "--manual-dir", str(raw / "ferplus")], [],
             after=["synth ferplus"], background=True),
        Step("ingest rafdb", [*curate, "ingest", "rafdb", "--manual-dir", str(raw / "rafdb")], [],
             after=["synth rafdb"], background=True),
        Step("study remap affectnet", [*curate, "study", "remap", "--dataset", "affectnet", *fraction,
                                       "--out", str(out / "reports" / "affectnet")],
             [out / "reports" / "affectnet" / "report.md"], after=["ingest affectnet"], background=True),
        Step("study remap ferplus", [*curate, "study", "remap", "--dataset", "ferplus", *fraction,
                                     "--out", str(out / "reports" / "ferplus")],
             [out / "reports" / "ferplus" / "report.md"], after=["ingest ferplus"], background=True),
        Step("study remap all", [*curate, "study", "remap", "--dataset", "all", *fraction,
                                 "--out", str(out / "reports" / "all")],
             [out / "reports" / "all" / "report.md"], after=["ingest affectnet", "ingest ferplus", "ingest rafdb"],
             background=True),
        # The same report, now with the registered runs: it must come after the first.
        Step("study remap affectnet (with runs)", [*curate, "study", "remap", "--dataset", "affectnet", *fraction,
                                                   "--out", str(out / "reports" / "affectnet")],
             [out / "reports" / "affectnet" / "report.md"],
             after=["train affectnet baselines", "study remap affectnet"]),
    ]
    # A baseline used: the ONNX export with every backend measured on the evaluation rows, then
    # `curate predict` on a real photograph (scikit-image's astronaut) through that file.
    first_run, photos = settings.run_names()[0], out / "photos"
    steps += [
        Step("export onnx", [*curate, "train", "export", "--run", first_run, "--format", "onnx"],
             [runs / first_run / "model.onnx"], after=["train affectnet baselines"], workspace=False,
             background=True),
        Step("photo", [sys.executable, "-c", "import sys, pathlib; from PIL import Image; from skimage import data; "
                                             "path = pathlib.Path(sys.argv[1]); path.parent.mkdir(exist_ok=True); "
                                             "Image.fromarray(data.astronaut()).save(path)",
                       str(photos / "astronaut.png")],
             [photos / "astronaut.png"], workspace=False, background=True),
        Step("predict photo", [*curate, "predict", str(photos), "--run", first_run, "--backend", "onnx",
                               "--out", str(out / "reports" / "predict_photos.csv")],
             [out / "reports" / "predict_photos.csv"], after=["export onnx", "photo"], workspace=False,
             background=True),
        # every run scored on the three built datasets through the one taxonomy
        Step("cross-dataset table", [*curate, "train", "cross", *settings.run_names(), "--on",
                                     "affectnet,ferplus,rafdb", "--out", str(out / "reports" / "cross")],
             [out / "reports" / "cross.md"],
             after=["train affectnet baselines", "tfds build ferplus", "tfds build rafdb"], workspace=False,
             background=True),
    ]
    if settings.with_review:
        steps.append(
            Step("review load affectnet", [*curate, "review", "load", "affectnet", "--manual-dir", str(raw / "affectnet"),
                                           "--run", settings.run_names()[0], "--name", "demo-affectnet"], [],
                 after=["train affectnet baselines"])
        )
    return steps


def _key(step: Step, stamps: dict[str, str]) -> str:
    document = {"command": step.command[1:], "after": [stamps.get(name, "") for name in step.after], "v": __version__}
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()


def environment(settings: DemoSettings) -> dict[str, str]:
    out = settings.out.resolve()
    return {
        **os.environ,
        "CURATE_WORKSPACE": str(out / "workspace"),
        "FIFTYONE_DATABASE_DIR": str(out / "fiftyone-db"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Steps that write the workspace at once wait for each other rather than fail.
        "CURATE_WORKSPACE_TIMEOUT": "300",
        "COLUMNS": os.environ.get("COLUMNS", "120"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
    }


class _Console:
    """Output of steps that run at once, never interleaved: the step that started first streams
    its lines as they come; the others' lines wait and follow, each step's in one block."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self._lock = threading.Lock()
        self._queue: list[dict[str, object]] = []

    def start(self, header: str) -> dict[str, object]:
        entry: dict[str, object] = {"lines": [header], "done": False}
        with self._lock:
            self._queue.append(entry)
            self._flush()
        return entry

    def write(self, entry: dict[str, object], line: str) -> None:
        with self._lock:
            entry["lines"].append(line)  # type: ignore[union-attr]
            self._flush()

    def finish(self, entry: dict[str, object]) -> None:
        with self._lock:
            entry["done"] = True
            self._flush()

    def _flush(self) -> None:
        while self._queue:
            head = self._queue[0]
            lines: list[str] = head["lines"]  # type: ignore[assignment]
            for line in lines:
                self._echo(line)
            lines.clear()
            if not head["done"]:
                return
            self._queue.pop(0)


def _run_step(step: Step, header: str, env: dict[str, str], cwd: Path, log_path: Path, console: _Console) -> int:
    entry = console.start(header)
    try:
        with log_path.open("w") as log:
            process = subprocess.Popen(
                step.command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                preexec_fn=(lambda: os.nice(10)) if step.background else None,
            )  # fmt: skip
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if line.strip() and not line.startswith(("I0000", "W0000", "E0000", "WARNING: All log")):
                    console.write(entry, "    " + line.rstrip())
            return process.wait()
    finally:
        console.finish(entry)


def run_demo(settings: DemoSettings, *, echo: Callable[[str], None] = print) -> dict[str, object]:
    """Run (or reuse) every step of ``plan``; returns the summary that ``curate demo`` prints."""
    started = time.perf_counter()
    out = settings.out.resolve()
    timings = run_steps(plan(settings), out, environment(settings), jobs=settings.jobs, echo=echo)
    return summary(settings, timings, time.perf_counter() - started)


def run_steps(
    steps: Sequence[Step], out: Path, env: dict[str, str], *, jobs: int = 2, echo: Callable[[str], None] = print
) -> dict[str, float]:
    """Run (or reuse) ``steps`` in ``out``, up to ``jobs`` at once, each as soon as its upstream
    steps are done (in list order among those ready; workspace steps one at a time). Returns
    the seconds of each step run, in the order of ``steps``; raises ``DemoError`` after the
    running steps end when one fails."""
    stamps_dir = out / ".stamps"
    stamps_dir.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    console = _Console(echo)
    stamps: dict[str, str] = {}
    timings: dict[str, float] = {}
    pending = list(enumerate(steps, 1))
    running: dict[Future[int], tuple[Step, str, Path, float]] = {}
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while (pending and not failures) or running:
            progressed = False
            workspace_busy = any(step.workspace for step, *_ in running.values())
            for item in list(pending if not failures else []):
                index, step = item
                if len(running) >= max(1, jobs):
                    break
                if any(name not in stamps for name in step.after) or (step.workspace and workspace_busy):
                    continue
                pending.remove(item)
                key = _key(step, stamps)
                stamp = stamps_dir / (step.name.replace(" ", "_").replace("(", "").replace(")", "") + ".json")
                done = stamp.is_file() and json.loads(stamp.read_text()).get("key") == key
                if done and all(path.exists() for path in step.outputs):
                    console.finish(console.start(f"[{index}/{len(steps)}] {step.name}: up to date"))
                    stamps[step.name] = key
                    progressed = True
                    continue
                for path in step.outputs:  # a step's outputs are rebuilt whole
                    if path.is_dir():
                        shutil.rmtree(path)
                command = " ".join(Path(step.command[0]).name if i == 0 else a for i, a in enumerate(step.command))
                log_path = logs / stamp.with_suffix(".log").name
                future = pool.submit(_run_step, step, f"[{index}/{len(steps)}] {step.name}: {command}", env, out,
                                     log_path, console)  # fmt: skip
                running[future] = (step, key, stamp, time.perf_counter())
                workspace_busy = workspace_busy or step.workspace
            if not running:
                if pending and not failures and not progressed:  # an upstream step that is not in `steps`
                    raise DemoError(f"no step can start: {', '.join(step.name for _, step in pending)}")
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                step, key, stamp, start = running.pop(future)
                timings[step.name] = time.perf_counter() - start
                code = future.result()
                if code != 0:
                    failures.append(f"step '{step.name}' failed (exit {code}); full log: {logs / stamp.with_suffix('.log').name}")
                    continue
                stamp.write_text(json.dumps({"key": key, "seconds": round(timings[step.name], 1)}))
                stamps[step.name] = key
    if failures:
        raise DemoError("; ".join(failures))
    return {step.name: timings[step.name] for step in steps if step.name in timings}  # in plan order


def summary(settings: DemoSettings, timings: dict[str, float], wall_seconds: float) -> dict[str, object]:
    out = settings.out.resolve()
    runs = out / "workspace" / "runs"
    comparison = runs / "comparisons" / "demo.md"
    return {
        "output": str(out),
        "raw datasets": str(out / "raw"),
        "tfds data_dir": str(out / "tfds"),
        "workspace": str(out / "workspace"),
        "reports": [str(p) for p in sorted((out / "reports").glob("*/report.md"))],
        "runs": [str(runs / name) for name in settings.run_names()],
        "comparison table": comparison.read_text() if comparison.is_file() else "(no comparison table)",
        "open the app": (
            f"CURATE_WORKSPACE={out / 'workspace'} FIFTYONE_DATABASE_DIR={out / 'fiftyone-db'} "
            "curate review app --name demo-affectnet --port 5151"
        ),
        "wall seconds": round(wall_seconds, 1),
        "seconds per step": {name: round(seconds, 1) for name, seconds in timings.items()},
    }

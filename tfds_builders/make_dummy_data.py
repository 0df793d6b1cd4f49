"""Regenerate the builders' ``dummy_data/`` folders from the synthetic generator.

Run ``python -m tfds_builders.make_dummy_data [affectnet|ferplus|rafdb ...]``.

The generator (:mod:`curate.synth`) writes a manual dir with every quirk of a release;
even at its smallest scale that is a few MB of images, so this script keeps a handful of
rows (the quirk rows plus the smallest images) and drops the other rows and files. Rows are
kept verbatim -- whole lines of the generated annotation files and the generated image
bytes -- so the dummy data is still the generator's output, only fewer rows of it. Each
folder stays under ~300 KB. The expected split sizes are printed: copy them into ``SPLITS``
of the ``*_dataset_builder_test.py`` files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 7


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _smallest(candidates: Iterable[str], size_of: Callable[[str], int], count: int, exclude: set[str]) -> list[str]:
    ranked = sorted((c for c in candidates if c not in exclude and size_of(c) > 0), key=lambda c: (size_of(c), c))
    return ranked[:count]


def _replace(target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    return target


def make_affectnet(target: Path) -> dict[str, int]:
    """Original layout: every quirk (bad box, truncated, missing, LZW TIFF) + small images."""
    from curate.formats import affectnet as fmt
    from curate.synth.affectnet import generate_affectnet

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "affectnet"
        generate_affectnet(out, layout="original", scale=0.003, seed=SEED, workers=1)
        manifest = json.loads((Path(tmp) / "affectnet.synth_manifest.json").read_text())
        quirks = manifest["quirks"]
        images = out / fmt.IMAGES_DIR

        def size_of(row_id: str) -> int:
            return _size(images / row_id)

        files = {split: out / rel for split, rel in fmt.ORIGINAL_FILES.items()}
        lines = {split: _lines(path) for split, path in files.items()}
        ids = {split: [line.split(",", 1)[0] for line in body[1:]] for split, body in lines.items()}
        keep: dict[str, list[str]] = {"train": [], "validation": []}
        train_ids = set(ids["train"])
        bad_box = [i for i in quirks["non_positive_box"]["ids"] if i in train_ids]
        keep["train"] += sorted(bad_box, key=size_of)[:1] if any(size_of(i) for i in bad_box) else bad_box[:1]
        keep["train"] += quirks["missing_image"]["ids"][:1] + quirks["truncated_image"]["ids"][:1]
        chosen = set(keep["train"])
        keep["train"] += _smallest(quirks["tif_lzw"]["ids"], size_of, 1, chosen)
        for extension in ("png", "jpeg", "JPG", "jpg"):
            candidates = [i for i in ids["train"] if i.endswith("." + extension)]
            keep["train"] += _smallest(candidates, size_of, 2 if extension == "jpg" else 1, set(keep["train"]))
        keep["validation"] = _smallest(ids["validation"], size_of, 3, set())

        target = _replace(target)
        for split in files:
            wanted = set(keep[split])
            body = [line for line, row_id in zip(lines[split][1:], ids[split], strict=True) if row_id in wanted]
            destination = target / fmt.ORIGINAL_FILES[split]
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(lines[split][0] + "".join(body), encoding="utf-8")
            for row_id in keep[split]:
                if (images / row_id).exists():
                    (target / fmt.IMAGES_DIR / row_id).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(images / row_id, target / fmt.IMAGES_DIR / row_id)
    failing = 3  # one non-positive box (reader), one missing and one truncated image (builder)
    return {"train": len(keep["train"]) - failing, "validation": len(keep["validation"])}


def make_ferplus(target: Path) -> dict[str, int]:
    """A few aligned rows of each split, including an empty ``Image name`` (NF votes)."""
    from curate.formats import ferplus as fmt
    from curate.synth.ferplus import generate_ferplus

    per_split = {"Training": 5, "PublicTest": 3, "PrivateTest": 3}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ferplus"
        generate_ferplus(out, scale=0.02, seed=SEED, workers=1)
        pixels = _lines(out / fmt.FER2013_FILE)
        votes = _lines(out / fmt.FERPLUS_FILE)
        usage = [line.split(",", 1)[0] for line in votes[1:]]
        empty_name = [line.split(",")[1] == "" for line in votes[1:]]
        keep: list[int] = []
        for split_usage, count in per_split.items():
            rows = [i for i, u in enumerate(usage) if u == split_usage]
            named = [i for i in rows if not empty_name[i]]
            unnamed = [i for i in rows if empty_name[i]]
            chosen = (unnamed[:1] if split_usage == "Training" else []) + named
            keep += sorted(chosen[:count])
        keep.sort()
        target = _replace(target)
        (target / fmt.FER2013_FILE).write_text(pixels[0] + "".join(pixels[i + 1] for i in keep), encoding="utf-8")
        (target / fmt.FERPLUS_FILE).write_text(votes[0] + "".join(votes[i + 1] for i in keep), encoding="utf-8")
    return {"train": per_split["Training"], "validation": per_split["PublicTest"], "test": per_split["PrivateTest"]}


def make_rafdb(target: Path) -> dict[str, int]:
    """The label-list lines and all files of the rows with the smallest original images."""
    from curate.formats import rafdb as fmt
    from curate.synth.rafdb import generate_rafdb

    per_split = {"train": 4, "test": 2}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rafdb"
        generate_rafdb(out, scale=0.003, seed=SEED, workers=1)
        lines = _lines(out / fmt.LABEL_FILE)
        stems = [line.split()[0].rsplit(".", 1)[0] for line in lines]

        def size_of(stem: str) -> int:
            return _size(out / fmt.original_path(stem)) + _size(out / fmt.aligned_path(stem))

        keep: set[str] = set()
        for split, count in per_split.items():
            keep |= set(_smallest([s for s in stems if s.startswith(split + "_")], size_of, count, set()))
        target = _replace(target)
        (target / fmt.LABEL_FILE).parent.mkdir(parents=True)
        (target / fmt.LABEL_FILE).write_text(
            "".join(line for line, stem in zip(lines, stems, strict=True) if stem in keep)
        )
        for stem in sorted(keep):
            relatives = [fmt.aligned_path(stem), fmt.original_path(stem)]
            relatives += [fmt.annotation_path(kind, stem) for kind in fmt.ANNOTATION_DIRS]
            for relative in relatives:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / relative, target / relative)
    return dict(per_split)


MAKERS: dict[str, Callable[[Path], dict[str, int]]] = {
    "affectnet": make_affectnet,
    "ferplus": make_ferplus,
    "rafdb": make_rafdb,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"any of {', '.join(MAKERS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.datasets) - set(MAKERS))
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(MAKERS)}")
    for name in args.datasets or list(MAKERS):
        target = HERE / name / "dummy_data"
        expected = MAKERS[name](target)
        total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"{name}: {target} ({total / 1024:.0f} KB), expected examples {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

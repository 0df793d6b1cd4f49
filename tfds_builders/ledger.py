"""The rejects ledger of a build: every input row that did not become an example, per split.

Reader rejects (``curate.formats``) and builder rejects (missing or undecodable images,
boxes outside the image, duplicate ids) are JSON lines ``rejects-<split>.jsonl`` in the
dataset's data dir; :class:`Ledger` counts rows in, examples and rejects per split, checks
``rows_in == examples + rejects`` and writes the summary that goes into the dataset metadata.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from etils import epath

#: Fields of a ledger record, in file order (REJECT_SCHEMA plus ``stage``).
LEDGER_FIELDS: tuple[str, ...] = ("dataset", "split", "source_file", "source_row", "id", "reason", "detail", "stage")
#: Ledger file of a split, relative to the dataset's data dir.
LEDGER_TEMPLATE = "rejects-{split}.jsonl"
#: Ledger of reader rejects whose split could not be read.
UNASSIGNED_SPLIT = "unassigned"


def reject_record(row: Mapping[str, Any], reason: str, detail: str, *, stage: str = "builder") -> dict[str, Any]:
    """A ledger record for an annotation row the builder could not turn into an example."""
    return {
        "dataset": row.get("dataset"),
        "split": row.get("split"),
        "source_file": row.get("source_file"),
        "source_row": row.get("source_row"),
        "id": row.get("id"),
        "reason": reason,
        "detail": detail,
        "stage": stage,
    }


def _ledger_sort_key(record: Mapping[str, Any]) -> tuple:
    return (
        record.get("source_file") or "",
        record.get("source_row") if record.get("source_row") is not None else -1,
        record.get("id") or "",
        record.get("reason") or "",
        record.get("stage") or "",
    )


def write_json_lines(records: Iterable[Mapping[str, Any]], path: epath.PathLike) -> int:
    """Write ledger records, sorted by source file and row, one JSON object a line."""
    ordered = sorted(records, key=_ledger_sort_key)
    text = "".join(json.dumps({f: r.get(f) for f in LEDGER_FIELDS}, ensure_ascii=False) + "\n" for r in ordered)
    epath.Path(path).write_text(text, encoding="utf-8")
    return len(ordered)


def read_json_lines(path: epath.PathLike) -> list[dict[str, Any]]:
    """Records of a ledger file (``[]`` when it does not exist)."""
    path = epath.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_ledger(data_dir: epath.PathLike, split: str) -> list[dict[str, Any]]:
    """The rejects ledger of ``split`` of a built dataset (``builder.data_dir``)."""
    return read_json_lines(epath.Path(data_dir) / LEDGER_TEMPLATE.format(split=split))


class Ledger:
    """Row accounting of one build: rows in, reader rejects and builder rejects per split."""

    def __init__(self, dataset: str, tables: Any, splits: Sequence[str]) -> None:
        self.dataset = dataset
        self.splits = tuple(splits)
        self.files = dict(sorted(tables.files.items()))
        self.layout = tables.layout
        self.rows_in: collections.Counter[str] = collections.Counter()
        self.records: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for split in tables.annotations.get_column("split").to_list():
            self.rows_in[split if split in self.splits else UNASSIGNED_SPLIT] += 1
        for row in tables.rejects.iter_rows(named=True):
            split = row.get("split") if row.get("split") in self.splits else UNASSIGNED_SPLIT
            self.rows_in[split] += 1
            self.records[split].append(
                reject_record(row, row.get("reason") or "unknown", row.get("detail") or "", stage="reader")
            )

    def add(self, record: Mapping[str, Any]) -> None:
        split = record.get("split") if record.get("split") in self.splits else UNASSIGNED_SPLIT
        self.records[split].append(dict(record))

    def reject_count(self, split: str) -> int:
        return len(self.records.get(split, ()))

    def reasons(self, split: str) -> dict[str, int]:
        counts = collections.Counter(r["reason"] for r in self.records.get(split, ()))
        return dict(sorted(counts.items()))

    def all_splits(self) -> list[str]:
        extra = [UNASSIGNED_SPLIT] if self.rows_in.get(UNASSIGNED_SPLIT) or self.records.get(UNASSIGNED_SPLIT) else []
        return list(self.splits) + extra

    def write(self, data_dir: epath.PathLike) -> dict[str, str]:
        """Write ``rejects-<split>.jsonl`` for every split (empty files too); name -> split."""
        written = {}
        for split in self.all_splits():
            name = LEDGER_TEMPLATE.format(split=split)
            write_json_lines(self.records.get(split, ()), epath.Path(data_dir) / name)
            written[split] = name
        return written

    def metadata(self, examples: Mapping[str, int], ledger_files: Mapping[str, str]) -> dict[str, Any]:
        """The JSON-able summary stored in ``DatasetInfo.metadata``."""
        counts = {}
        for split in self.all_splits():
            records = self.records.get(split, ())
            counts[split] = {
                "rows_in": self.rows_in.get(split, 0),
                "examples": int(examples.get(split, 0)),
                "rejects": len(records),
                "reader_rejects": sum(1 for r in records if r["stage"] == "reader"),
                "builder_rejects": sum(1 for r in records if r["stage"] == "builder"),
            }
        return {
            "dataset": self.dataset,
            "layout": self.layout,
            "annotation_files_sha256": self.files,
            "counts": counts,
            "reject_reasons": {split: self.reasons(split) for split in self.all_splits()},
            "rejects_ledger": dict(ledger_files),
            "totals": {
                "rows_in": sum(c["rows_in"] for c in counts.values()),
                "examples": sum(c["examples"] for c in counts.values()),
                "rejects": sum(c["rejects"] for c in counts.values()),
            },
        }

    def check(self, examples: Mapping[str, int]) -> None:
        """Raise ``AssertionError`` unless every split satisfies rows_in == examples + rejects."""
        problems = []
        for split in self.all_splits():
            rows_in, done, rejected = self.rows_in.get(split, 0), int(examples.get(split, 0)), self.reject_count(split)
            if rows_in != done + rejected:
                problems.append(f"{split}: rows_in {rows_in} != examples {done} + rejects {rejected}")
        if problems:
            raise AssertionError(f"{self.dataset}: row accounting failed: " + "; ".join(problems))

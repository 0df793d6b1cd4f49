"""Review facial-expression datasets in FiftyOne: load, find label errors, correct.

Everything that imports FiftyOne lives in this package, and FiftyOne is imported inside the
functions, so ``import curate.review`` stays cheap.

* :mod:`curate.review.db` -- FiftyOne / MongoDB configuration; a clear error without MongoDB.
* :mod:`curate.review.fields` -- names of the fields, runs and info record the package
  writes (the leaf: imports only :mod:`curate.labels`).
* :mod:`curate.review.sources` -- manual dirs and built TFDS datasets read into a table
  (images materialised where needed).
* :mod:`curate.review.documents` -- the samples: fields per row, bulk insert, App defaults.
* :mod:`curate.review.runs` -- a run's predictions and evaluation on a dataset.
* :mod:`curate.review.label_scores` -- mistakenness, hardness (FiftyOne Brain) and
  confident learning (cleanlab) scores, with the landmark model's second opinion.
* :mod:`curate.review.audit_fields` -- V/A outliers and duplicate groups on the samples.
* :mod:`curate.review.duplicates` -- duplicate pairs of the workspace joined into groups.
* :mod:`curate.review.load` -- the whole load: source, samples, runs, audits, saved views.
* :mod:`curate.review.views` -- saved views and the plain-text report.
* :mod:`curate.review.corrections` -- tags set in the App -> corrections Parquet
  (applied with :func:`curate.corrections.apply_corrections`, which needs no FiftyOne).
* :mod:`curate.review.app` -- the App on 127.0.0.1.
"""

from __future__ import annotations

__all__ = [
    "app",
    "audit_fields",
    "corrections",
    "db",
    "documents",
    "duplicates",
    "fields",
    "label_scores",
    "load",
    "runs",
    "sources",
    "views",
]

"""Review facial-expression datasets in FiftyOne: load, find label errors, correct.

Everything that imports FiftyOne lives in this package, and FiftyOne is imported inside the
functions, so ``import curate.review`` stays cheap.

* :mod:`curate.review.db` -- FiftyOne / MongoDB configuration; a clear error without MongoDB.
* :mod:`curate.review.load` -- datasets (manual dir or TFDS) and runs into FiftyOne.
* :mod:`curate.review.errors` -- mistakenness, hardness (FiftyOne Brain) and confident
  learning (cleanlab) scores.
* :mod:`curate.review.views` -- saved views and the plain-text report.
* :mod:`curate.review.corrections` -- tags set in the App -> corrections Parquet
  (applied with :func:`curate.corrections.apply_corrections`, which needs no FiftyOne).
* :mod:`curate.review.app` -- the App on 127.0.0.1.
"""

from __future__ import annotations

__all__ = ["app", "corrections", "db", "errors", "load", "views"]

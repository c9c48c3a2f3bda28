"""The names inside a RUN folder: one place that every part of the run core reads them from.

RUN/
  config.yaml            the effective config
  results.csv/.parquet   one row per catalog row (paths relative to RUN)
  report.html            the contact sheet
  run.log                the model residency lines of the run
  <sku>/manifest.json    stage → cache key, seconds, flags; and the SKU's result
  <sku>/<stage>/         each stage's files and its stage.json
  <sku>/best.png         the best candidate
  <sku>/log.txt          what happened, with full tracebacks
"""

from __future__ import annotations

import hashlib
import re

MANIFEST = "manifest.json"
CHECK_CACHE = ".image-checks.json"
TRASH_MARK = ".trash-"
RUN_LOG = "run.log"
NOT_RUN = "not run:"  # the reason of a valid row that an interruption left for the next run

# the RUN folder's own files: a SKU folder must never take one of these names
RUN_FILES = frozenset(
    {
        "config.yaml",
        "results.csv",
        "results.parquet",
        "report.html",
        "run.log",
        "decisions.csv",  # the review loop (autoshoot.review)
        "review.json",
    }
)
MAX_SKU_FOLDER = 100  # characters; file systems allow 255 bytes per name


def sku_folder_name(sku: str) -> str:
    """A file-system-safe folder name; a short hash keeps distinct SKUs distinct.

    The SKU itself is used when it is short, plain and not one of the RUN folder's own file
    names (compared without case, for case-insensitive file systems); otherwise a cut-down
    version with a hash of the SKU.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", sku).strip("._") or "sku"
    if safe != sku or len(safe) > MAX_SKU_FOLDER or safe.lower() in RUN_FILES:
        safe = f"{safe[:80]}-{hashlib.sha1(sku.encode()).hexdigest()[:8]}"
    return safe

"""RUN/results.csv and RUN/results.parquet: one row per catalog row, the run's table of outcomes."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from autoshoot.io import atomic_write, atomic_write_text
from autoshoot.types import ShotResult

RESULT_COLUMNS = (
    "row",
    "sku",
    "status",
    "reason",
    "best_image",
    "hand_score",
    "n_candidates",
    "seconds",
    "flags",
    "reused",  # empty when this run rendered the row, else the run it was reused from
)


def result_record(result: ShotResult) -> dict[str, Any]:
    data = result.to_json()
    record = {k: data[k] for k in RESULT_COLUMNS}
    record["hand_score"] = None if record["hand_score"] is None else round(float(record["hand_score"]), 4)
    return record


def write_results(run_dir: Path, results: list[ShotResult]) -> None:
    """RUN/results.csv and RUN/results.parquet, one row per catalog row, written atomically."""
    records = [result_record(r) for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    atomic_write_text(run_dir / "results.csv", buffer.getvalue())

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("row", pa.int64()),
            ("sku", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("best_image", pa.string()),
            ("hand_score", pa.float64()),
            ("n_candidates", pa.int64()),
            ("seconds", pa.float64()),
            ("flags", pa.string()),
            ("reused", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(records, schema=schema)
    atomic_write(run_dir / "results.parquet", lambda tmp: pq.write_table(table, tmp))


def change_counts(results: list[ShotResult]) -> dict[str, int]:
    """How many rows this run rendered anew, re-rendered (changed), took from an earlier run
    (reused), and failed."""
    counts = {"new": 0, "changed": 0, "reused": 0, "failed": 0}
    for r in results:
        kind = "failed" if r.status == "failed" else (r.change if r.change in counts else "new")
        counts[kind] += 1
    return counts

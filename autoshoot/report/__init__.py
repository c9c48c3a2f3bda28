"""What a run leaves for people to read, and the loop that lets them answer.

- ``results``: ``RUN/results.csv`` and ``RUN/results.parquet``, one row per catalog row.
- ``html``: ``RUN/report.html``, the static contact sheet, built from per-SKU blocks.
- ``review``: the review loop: decisions, the next night's verdicts, the server, export.

``from autoshoot.report import write_report`` and the other names below keep working.
"""

from autoshoot.report.html import (
    BLOCK_FILE,
    BLOCK_VERSION,
    FLAG_TEXT,
    block_is_current,
    cached_sku_block,
    candidate_figures,
    flag_chip,
    sku_block,
    write_report,
    write_sku_block,
)
from autoshoot.report.results import RESULT_COLUMNS, change_counts, result_record, write_results

__all__ = [
    "BLOCK_FILE",
    "BLOCK_VERSION",
    "FLAG_TEXT",
    "RESULT_COLUMNS",
    "block_is_current",
    "cached_sku_block",
    "candidate_figures",
    "change_counts",
    "flag_chip",
    "result_record",
    "sku_block",
    "write_report",
    "write_results",
    "write_sku_block",
]

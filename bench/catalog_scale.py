"""How the catalog and runner scale: validation and resume-skip speed on a large catalog.

    .venv/bin/python bench/catalog_scale.py [--rows 10000] [--keep DIR]

1. Writes a catalog of ROWS small JPEG packshots (256x320, distinct pixels).
2. Times ``load_catalog`` (read + hash + decode every image): rows/s and peak memory.
3. Runs the catalog once through the runner with stages that do no model work (the runner's
   own bookkeeping only: temp folders, atomic renames, manifests), so that every SKU is done.
4. Times a rerun, which validates again and must skip every SKU: rows/s and peak memory.
5. Times ``autoshoot --help`` (median of 5 runs).

Targets on a 2-core machine: validating 10,000 rows <= 10 s; a rerun skipping 10,000
finished SKUs <= 10 s; ``autoshoot --help`` <= 0.5 s.
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoshoot.catalog import load_catalog
from autoshoot.config import Config
from autoshoot.run.recipe import run_catalog
from autoshoot.stages import STAGE_ORDER
from autoshoot.stages.base import Job, Stage


class BookkeepingStage(Stage):
    """Writes the fields the runner and report read, and nothing else: no model work."""

    def __init__(self, name: str):
        self.name = name  # type: ignore[misc]

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        if self.name == "composite":
            (out / "none.png").write_bytes(b"")  # the runner copies the best image to best.png
            return {"candidates": [{"index": 0, "seed": job.seed, "image": "none.png"}]}
        if self.name == "score":
            return {"candidates": [{"index": 0, "image": "none.png", "hand_score": 0.8, "reasons": []}]}
        if self.name == "rank":
            return {"status": "accepted", "reason": "", "best_index": 0, "hand_score": 0.8, "n_candidates": 1}
        return {}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_catalog(folder: Path, rows: int) -> Path:
    images = folder / "img"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (320, 256, 3), dtype=np.uint8)
    with open(folder / "catalog.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "image", "title"])
        for i in range(rows):
            arr = base.copy()
            arr[0, 0] = (i % 256, (i // 256) % 256, i // 65536)  # distinct bytes, distinct hashes
            Image.fromarray(arr).save(images / f"{i:05d}.jpg", quality=80)
            writer.writerow([f"SKU-{i:05d}", f"img/{i:05d}.jpg", f"bag {i}"])
    return folder / "catalog.csv"


def help_seconds() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "autoshoot", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, default=None, help="work here instead of a temp folder")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="autoshoot-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    stages: list[Stage] = [BookkeepingStage(name) for name in STAGE_ORDER]

    start = time.perf_counter()
    catalog = make_catalog(root, args.rows)
    print(f"wrote {args.rows} rows and images in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    parsed = load_catalog(catalog)
    validate_s = time.perf_counter() - start
    assert len(parsed.valid_rows) == args.rows, parsed.messages()[:3]
    validate_peak = peak_mib()

    start = time.perf_counter()
    first = run_catalog(catalog, root / "run", Config(), quiet=True, stages=stages)
    first_s = time.perf_counter() - start
    assert first.processed == args.rows and first.counts["accepted"] == args.rows

    start = time.perf_counter()
    again = run_catalog(catalog, root / "run", Config(), quiet=True, stages=stages)
    skip_s = time.perf_counter() - start
    assert again.processed == 0 and again.counts["accepted"] == args.rows
    skip_peak = peak_mib()
    help_s = help_seconds()

    rows = [
        ("validate", args.rows, validate_s, validate_peak, 10.0),
        ("first run (bookkeeping only)", args.rows, first_s, peak_mib(), None),
        ("rerun, all skipped (incl. validation)", args.rows, skip_s, skip_peak, 10.0),
    ]
    print(f"\n{'phase':<40} {'rows':>7} {'seconds':>8} {'rows/s':>8} {'peak MiB':>9}  target")
    for name, n, seconds, peak, target in rows:
        verdict = (
            "" if target is None else (f"<= {target:.0f} s " + ("ok" if seconds <= target else "MISSED"))
        )
        print(f"{name:<40} {n:>7} {seconds:>8.2f} {n / seconds:>8.0f} {peak:>9.0f}  {verdict}")
    print(
        f"{'autoshoot --help (median of 5)':<40} {'':>7} {help_s:>8.3f} {'':>8} {'':>9}  <= 0.5 s "
        + ("ok" if help_s <= 0.5 else "MISSED")
    )
    print(f"\nwork folder: {root}")


if __name__ == "__main__":
    main()

"""What a finished RUN folder holds per SKU, as the review page and ``export`` need it.

Read from ``results.csv`` and each SKU's stage files (``composite``, ``score``, ``rank``,
``analyze``/``prepare`` for the prompt); paths are relative to RUN.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoshoot.errors import AutoshootError
from autoshoot.report.review.decisions import read_review_index, run_is_writing


@dataclass(frozen=True)
class CandidateView:
    index: int
    image: str  # relative to RUN
    score: float | None = None


@dataclass(frozen=True)
class SkuView:
    sku: str
    folder: str  # RUN/<folder>
    status: str  # accepted | review | failed
    reason: str = ""
    best_index: int | None = None
    hand_score: float | None = None
    candidates: dict[int, CandidateView] = field(default_factory=dict)
    prompt: str = ""
    photo_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "status": self.status,
            "reason": self.reason,
            "best_index": self.best_index,
            "candidates": [
                {"index": c.index, "image": c.image, "score": c.score} for c in self.candidates.values()
            ],
        }


def check_run_folder(run_dir: Path, allow_writing: bool = False) -> None:
    """Stop with a clear message when RUN is not a finished run folder (or a run writes it)."""
    if not (run_dir / "results.csv").is_file():
        raise AutoshootError(
            f"{run_dir} has no results.csv: it is not a RUN folder, or its run has not finished; "
            "pass the folder given to `autoshoot shoot --out`"
        )
    holder = run_is_writing(run_dir)
    if holder and not allow_writing:
        raise AutoshootError(
            f"{run_dir} is being written by an autoshoot run ({holder}); wait for it to finish, then try again"
        )


def load_run(run_dir: Path) -> dict[str, SkuView]:
    """SKU → what the run made for it, in results.csv's order."""
    from autoshoot.run.layout import sku_folder_name

    run_dir = Path(run_dir)
    with open(run_dir / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    recorded = read_review_index(run_dir)
    out: dict[str, SkuView] = {}
    for row in rows:
        sku = row.get("sku") or ""
        if not sku:
            continue
        folder = sku_folder_name(sku)
        sku_dir = run_dir / folder
        composite = _read(sku_dir / "composite" / "stage.json") or {}
        scored = _read(sku_dir / "score" / "stage.json") or {}
        rank = _read(sku_dir / "rank" / "stage.json") or {}
        scores = {int(c["index"]): float(c["hand_score"]) for c in scored.get("candidates", [])}
        candidates = {}
        for cand in composite.get("candidates", []):
            index = int(cand["index"])
            if (sku_dir / "composite" / cand["image"]).is_file():
                image = f"{folder}/composite/{cand['image']}"
                candidates[index] = CandidateView(index, image, scores.get(index))
        best = rank.get("best_index")
        score = row.get("hand_score") or ""
        out[sku] = SkuView(
            sku=sku,
            folder=folder,
            status=row.get("status") or "",
            reason=row.get("reason") or "",
            best_index=None if best is None else int(best),
            hand_score=float(score) if score else None,
            candidates=dict(sorted(candidates.items())),
            prompt=prompt_of(sku_dir),
            photo_sha256=str(recorded.get(sku, {}).get("photo_sha256", "")),
        )
    return out


def prompt_of(sku_dir: Path) -> str:
    """The prompt the models used: the geometry's final one, else the brief's."""
    for stage in ("prepare", "analyze"):
        data = _read(sku_dir / stage / "stage.json") or {}
        if data.get("prompt"):
            return str(data["prompt"])
    return ""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

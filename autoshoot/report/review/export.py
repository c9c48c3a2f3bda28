"""``autoshoot export RUN --to DIR``: the approved pictures, with a manifest for upload.

    DIR/<sku>.png         the approved (or picked) candidate of each SKU; with
                          ``include_accepted`` also the best pick of SKUs the scorer accepted
                          and nobody rejected
    DIR/<sku>.txt         (``kohya`` format) the caption: the prompt the brief gave the models
    DIR/manifest.csv      sku, file, size (WxH pixels), bytes, score, decision, candidate, reviewer

Every file is written atomically, the manifest last. A decision made on another photo than
the run's, or for a SKU the run does not have, is skipped with a message.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from autoshoot.io import atomic_write, atomic_write_text
from autoshoot.report.review.decisions import read_decisions
from autoshoot.report.review.runview import check_run_folder, load_run

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("sku", "file", "size", "bytes", "score", "decision", "candidate", "reviewer")
FORMATS = ("files", "kohya")


@dataclass
class ExportSummary:
    to: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per SKU left out, with the fix

    def text(self) -> str:
        lines = [f"{len(self.rows)} pictures written to {self.to} (manifest: {self.to / MANIFEST})"]
        lines += [f"skipped: {message}" for message in self.skipped]
        return "\n".join(lines)


def export_run(run_dir: Path, to: Path, include_accepted: bool = False, fmt: str = "files") -> ExportSummary:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    run_dir, to = Path(run_dir), Path(to)
    check_run_folder(run_dir)
    views = load_run(run_dir)
    decisions = read_decisions(run_dir)
    summary = ExportSummary(to)
    for sku in decisions:
        if sku not in views:
            summary.skipped.append(
                f"{sku}: decided in {run_dir / 'decisions.csv'} but not in this run's results.csv; delete that row"
            )
    to.mkdir(parents=True, exist_ok=True)
    for sku, view in views.items():
        decision = decisions.get(sku)
        if decision is not None and decision.approved:
            if decision.photo_sha256 and view.photo_sha256 and decision.photo_sha256 != view.photo_sha256:
                summary.skipped.append(f"{sku}: approved on another photo than this run's; review it again")
                continue
            index, kind, reviewer = decision.candidate, decision.decision, decision.reviewer
        elif decision is None and include_accepted and view.status == "accepted":
            index, kind, reviewer = view.best_index, "accepted", ""
        else:
            continue
        cand = view.candidates.get(index) if index is not None else None
        if cand is None:
            summary.skipped.append(
                f"{sku}: candidate {index}'s picture is missing from {run_dir / view.folder}"
            )
            continue
        caption = ""
        if fmt == "kohya":
            caption = view.prompt.strip()
            if not caption:
                summary.skipped.append(f"{sku}: no prompt in its brief to caption it with; run the SKU again")
                continue
        source = run_dir / cand.image
        target = to / f"{view.folder}{source.suffix.lower()}"
        atomic_write(target, lambda tmp, source=source: shutil.copyfile(source, tmp))
        if fmt == "kohya":
            atomic_write_text(target.with_suffix(".txt"), caption + "\n")
        summary.rows.append(
            {
                "sku": sku,
                "file": target.name,
                "size": image_size(target),
                "bytes": str(target.stat().st_size),
                "score": "" if cand.score is None else f"{cand.score:.4f}",
                "decision": kind,
                "candidate": str(index),
                "reviewer": reviewer,
            }
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary.rows)
    atomic_write_text(to / MANIFEST, buffer.getvalue())
    return summary


def image_size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        return f"{im.width}x{im.height}"

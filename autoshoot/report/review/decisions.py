"""``RUN/decisions.csv``: what reviewers decided per SKU, and what the next run does about it.

One row per SKU; the last decision for a SKU replaces the one before (last write wins). Every
write happens under an exclusive lock (``RUN/.decisions.lock``) and replaces the file
atomically, so two reviewers at once never lose or tear it. Columns:

    sku           the catalog's SKU
    decision      approved (the ranker's best) | picked (another candidate) | rejected
    candidate     the candidate index that was approved or picked; empty for rejected
    reason        why it was rejected (bad hand, wrong product, bad scene, ...); may be empty otherwise
    reviewer      who decided
    decided_at    when, UTC, ISO 8601 (2026-12-04T06:30:00Z)
    photo_sha256  the SKU's input photo the decision was made on (from RUN/review.json)
    carried_from  empty, or the earlier RUN folder a frozen approval was carried over from

This module is pure (no model, no runner import): ``verdict_for`` says what a new run should do
with a SKU given the decisions of earlier runs; ``autoshoot.report.review.nightly`` applies it.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from autoshoot.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

DECISIONS = "decisions.csv"
LOCK = ".decisions.lock"
REVIEW_FILE = "review.json"  # RUN/review.json: per SKU, the photo's hash and what the run did
COLUMNS = ("sku", "decision", "candidate", "reason", "reviewer", "decided_at", "photo_sha256", "carried_from")
KINDS = ("approved", "picked", "rejected")
# the reasons the review page offers (a reviewer may also type another)
REASONS = ("bad hand", "wrong product", "bad scene", "bad crop", "other")

Action = Literal["frozen", "rerender", "pending", "new"]


class DecisionError(ValueError):
    """A decision that cannot be recorded; the message names the value and the fix."""


@dataclass(frozen=True)
class Decision:
    sku: str
    decision: str
    candidate: int | None = None
    reason: str = ""
    reviewer: str = ""
    decided_at: str = ""
    photo_sha256: str = ""
    carried_from: str = ""

    @property
    def approved(self) -> bool:
        return self.decision in ("approved", "picked")

    def row(self) -> dict[str, str]:
        data = asdict(self)
        data["candidate"] = "" if self.candidate is None else str(self.candidate)
        return data


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_decision(
    sku: str,
    decision: str,
    candidate: int | None = None,
    reason: str = "",
    reviewer: str = "",
    photo_sha256: str = "",
) -> Decision:
    """A checked decision, stamped now. Raises DecisionError naming what is wrong."""
    decision = decision.strip().lower()
    if decision not in KINDS:
        raise DecisionError(f"decision {decision!r} for SKU {sku!r} is not one of {', '.join(KINDS)}")
    reason = " ".join(reason.split())
    if decision == "rejected":
        if not reason:
            raise DecisionError(f"rejecting SKU {sku!r} needs a reason (e.g. {', '.join(REASONS[:3])})")
        candidate = None
    elif candidate is None:
        raise DecisionError(f"{decision} for SKU {sku!r} needs the candidate index it approves")
    reviewer = " ".join(reviewer.split()) or "unknown"
    return Decision(sku, decision, candidate, reason, reviewer, now_utc(), photo_sha256)


# ---------------------------------------------------------------------------------------
# the file


def read_decisions(run_dir: Path) -> dict[str, Decision]:
    """SKU → its decision; an absent file is no decisions. A bad row is skipped with a warning
    that names the row and the file."""
    path = Path(run_dir) / DECISIONS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out: dict[str, Decision] = {}
    for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            kind = (row.get("decision") or "").strip()
            if not row.get("sku") or kind not in KINDS:
                raise ValueError(f"sku {row.get('sku')!r}, decision {kind!r}")
            cand = (row.get("candidate") or "").strip()
            out[row["sku"]] = Decision(
                sku=row["sku"],
                decision=kind,
                candidate=int(cand) if cand else None,
                **{k: row.get(k) or "" for k in COLUMNS[3:]},
            )
        except (ValueError, TypeError) as err:
            logger.warning("%s row %d is not a decision (%s); fix or delete that row", path, n, err)
    return out


@contextmanager
def decisions_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on RUN's decisions, across threads and processes (blocking)."""
    with open(Path(run_dir) / LOCK, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def record_decisions(run_dir: Path, decisions: list[Decision]) -> None:
    """Add these decisions to RUN/decisions.csv; each replaces that SKU's row (last write wins)."""
    with decisions_lock(run_dir):
        current = read_decisions(run_dir)
        for decision in decisions:
            current.pop(decision.sku, None)  # the newest last: the file reads as a log
            current[decision.sku] = decision
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for decision in current.values():
            writer.writerow(decision.row())
        atomic_write_text(Path(run_dir) / DECISIONS, buffer.getvalue())


def record_decision(run_dir: Path, decision: Decision) -> Decision:
    record_decisions(run_dir, [decision])
    return decision


def read_review_index(run_dir: Path) -> dict[str, dict[str, Any]]:
    """SKU → what the run recorded for the review (``photo_sha256``, ``action``, ``decision``,
    ``source``, ``attempt``); empty for a run made before the review loop."""
    try:
        skus = json.loads((Path(run_dir) / REVIEW_FILE).read_text(encoding="utf-8")).get("skus")
    except (OSError, ValueError, AttributeError):
        return {}
    return skus if isinstance(skus, dict) else {}


def write_review_index(run_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Add these SKUs' entries to RUN/review.json (kept: the SKUs of earlier runs on RUN)."""
    merged = {**read_review_index(run_dir), **entries}
    atomic_write_json(Path(run_dir) / REVIEW_FILE, {"version": 1, "skus": merged})


# ---------------------------------------------------------------------------------------
# the next night


@dataclass(frozen=True)
class Verdict:
    """What a new run does with one SKU.

    frozen:   approved earlier on this very photo: copy that run's outputs, render nothing
    rerender: rejected earlier on this very photo: render again with a new seed (``attempt``)
    pending:  no decision yet: run as usual (it stays in review if the ranker says so)
    new:      decided earlier, but on another photo: run as usual
    """

    action: Action
    decision: Decision | None = None
    source: Path | None = None  # the RUN folder whose decisions.csv holds ``decision``
    attempt: int = 0  # how many times this photo was rejected: the seed offset

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "decision": self.decision.row() if self.decision else None,
            "source": self.source.name if self.source else "",
            "attempt": self.attempt,
        }


def previous_runs(run_dir: Path) -> list[Path]:
    """The other RUN folders beside ``run_dir`` (runs/<date>/ …) that hold decisions."""
    run_dir = Path(run_dir).resolve()
    try:
        siblings = list(run_dir.parent.iterdir())
    except OSError:
        return []
    return sorted(p for p in siblings if p != run_dir and (p / DECISIONS).is_file())


History = list[tuple[Path, dict[str, Decision]]]  # (RUN folder, its decisions), read once per run


def load_history(runs: list[Path]) -> History:
    return [(run, read_decisions(run)) for run in runs]


def verdict_for(history: History, sku: str, photo: str) -> Verdict:
    """The verdict for ``sku`` with photo hash ``photo`` given earlier runs' decisions.

    The newest decision for the SKU (by ``decided_at``) rules; a decision made on another photo
    (or on an unknown one) does not freeze or re-seed anything. ``attempt`` counts the runs
    that rejected this photo, so each rejection gives a new seed.
    """
    found = [(d.decided_at, run, d) for run, decisions in history if (d := decisions.get(sku)) is not None]
    if not found:
        return Verdict("pending")
    _, source, latest = max(found, key=lambda item: (item[0], item[1].name))
    if not photo or latest.photo_sha256 != photo:
        return Verdict("new", latest, source)
    if latest.approved:
        return Verdict("frozen", latest, source)
    attempt = sum(1 for _, _, d in found if d.decision == "rejected" and d.photo_sha256 == photo)
    return Verdict("rerender", latest, source, attempt)


def rerender_seed(seed: int, attempt: int) -> int:
    """A new 32-bit seed for the ``attempt``-th re-render of a rejected SKU (0: ``seed``)."""
    if attempt <= 0:
        return seed
    digest = hashlib.sha256(f"{seed}:rejected:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def carried(decision: Decision, source: Path) -> Decision:
    """The approval as the new run records it: same reviewer and time, and where it came from."""
    return replace(decision, carried_from=decision.carried_from or Path(source).name)


def run_is_writing(run_dir: Path) -> str:
    """ "" when no run holds RUN's lock; else who holds it ("pid 123")."""
    path = Path(run_dir) / ".lock"
    if not path.is_file():
        return ""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            return fh.read().strip() or "another process"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return ""


__all__ = [
    "COLUMNS",
    "DECISIONS",
    "REASONS",
    "Decision",
    "DecisionError",
    "History",
    "Verdict",
    "carried",
    "load_history",
    "make_decision",
    "read_review_index",
    "previous_runs",
    "read_decisions",
    "record_decision",
    "record_decisions",
    "rerender_seed",
    "run_is_writing",
    "verdict_for",
    "write_review_index",
]

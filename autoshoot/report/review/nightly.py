"""The runner's hook: a new run honours the decisions of earlier runs beside it.

``honour_review(run_dir, plans, replan, seed_of)`` is called once per run, after planning and
before any SKU runs (``autoshoot.run.recipe._run_catalog``). It records every planned SKU's photo
hash and verdict in ``RUN/review.json`` (decisions made on this run carry the hash) and, by the
verdict of ``autoshoot.report.review.decisions.verdict_for``:

- frozen: the approving run's SKU folder is copied (hard links where possible) into this run,
  its result marked accepted, and the approval carried into this run's decisions.csv; no stage
  runs for it, whatever the config says.
- rerender: the SKU is planned again with a new seed (``rerender_seed``); the rejection and
  its reason stay in ``RUN/review.json`` and on the review page.
- pending / new: the plan is kept as it is.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoshoot.io import TMP_MARK, atomic_write_json, make_temp_dir
from autoshoot.report.review.decisions import (
    Verdict,
    carried,
    load_history,
    previous_runs,
    record_decisions,
    rerender_seed,
    verdict_for,
    write_review_index,
)

logger = logging.getLogger(__name__)

FROZEN_FLAG = "review_approved"


def honour_review(
    run_dir: Path, plans: list[Any], replan: Callable[[Any], Any], seed_of: Callable
) -> list[Any]:
    """The plans, with approved SKUs frozen and rejected ones re-seeded (see the module doc).

    ``plans``: the runner's ``Plan`` objects (``row``, ``keys``, ``todo``, ``result``);
    ``replan(row)`` plans a row again; ``seed_of(row)`` is the seed the row renders with.
    """
    from autoshoot.run.layout import sku_folder_name

    run_dir = Path(run_dir)
    history = load_history(previous_runs(run_dir))
    out: list[Any] = []
    carried_over = []
    index: dict[str, dict[str, Any]] = {}
    for plan in plans:
        row = plan.row
        verdict = verdict_for(history, row.sku, row.image_sha256) if history else Verdict("pending")
        try:
            if verdict.action == "frozen":
                result = freeze(run_dir, verdict, sku_folder_name(row.sku), plan)
                out.append(replace(plan, todo=[], result=result))
                carried_over.append(carried(verdict.decision, verdict.source))  # type: ignore[arg-type]
            elif verdict.action == "rerender":
                new_row = replace(row, seed=rerender_seed(seed_of(row), verdict.attempt))
                out.append(replan(new_row))
            else:
                out.append(plan)
        except OSError as err:  # an earlier run's folder that cannot be read: run the SKU as usual
            logger.warning(
                "%s: cannot honour the review of %s (%s); running it as usual", row.sku, verdict.source, err
            )
            verdict = Verdict("pending")
            out.append(plan)
        index[row.sku] = {"photo_sha256": row.image_sha256, **verdict.to_json()}
    write_review_index(run_dir, index)
    if carried_over:
        record_decisions(run_dir, carried_over)
    return out


def freeze(run_dir: Path, verdict: Verdict, folder: str, plan: Any) -> dict[str, Any]:
    """Copy the approved SKU folder into this run and return its result, marked accepted."""
    assert verdict.source is not None and verdict.decision is not None
    source = verdict.source / folder
    manifest = _read_json(source / "manifest.json")
    if not manifest.get("result"):
        raise OSError(f"{source} has no finished result to carry over")
    target = run_dir / folder
    tmp = make_temp_dir(f".{folder}{TMP_MARK}", run_dir)
    try:
        leftovers = shutil.ignore_patterns(f"*{TMP_MARK}*", "*.trash-*")  # of a killed run there
        shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=link_or_copy, ignore=leftovers)
        picked = verdict.decision.candidate
        composite = _read_json(tmp / "composite" / "stage.json")
        best_rel = str(manifest["result"].get("best_image", ""))
        for cand in composite.get("candidates", []):
            if int(cand["index"]) == picked:  # the reviewer's pick is this run's best picture
                image = tmp / "composite" / cand["image"]
                for old in tmp.glob("best.*"):
                    old.unlink()
                shutil.copyfile(image, tmp / f"best{image.suffix}")
                best_rel = f"{folder}/best{image.suffix}"
        (tmp / "report_block.html").unlink(missing_ok=True)  # made afresh for the new result
        flags = [f for f in str(manifest["result"].get("flags", "")).split(";") if f]
        result = {
            **manifest["result"],
            "row": plan.row.row_number,
            "status": "accepted",
            "reason": "",
            "best_image": best_rel,
            "flags": ";".join(sorted({*flags, FROZEN_FLAG})),
            "seconds": 0.0,
            "reused": Path(verdict.source).name,  # the run it was approved in (results.csv)
            "change": "reused",
        }
        manifest["result"] = result
        atomic_write_json(tmp / "manifest.json", manifest)
        if target.exists():
            trash = run_dir / f".{folder}.trash-{os.getpid()}"
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("%s: frozen, approved in %s by %s", plan.row.sku, verdict.source, verdict.decision.reviewer)
    return result


def link_or_copy(src: str, dst: str) -> str:
    """A hard link (no bytes copied) where the file system allows, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise OSError(f"{path} is not JSON: {err}") from err
    return data if isinstance(data, dict) else {}

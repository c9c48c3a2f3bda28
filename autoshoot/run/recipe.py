"""The recipe: a catalog in, a RUN folder out.

    RUN/
      config.yaml            the effective config
      results.csv/.parquet   one row per catalog row (paths relative to RUN)
      report.html            the contact sheet
      <sku>/manifest.json    stage → cache key, seconds, flags; and the SKU's result
      <sku>/<stage>/         each stage's files and its stage.json
      <sku>/best.png         the best candidate
      <sku>/log.txt          what happened, with full tracebacks

Every stage folder is written under a temp name and renamed into place, and manifest.json is
replaced atomically, so a run killed at any moment resumes with nothing lost or corrupt. A
stage's cache key chains the image bytes, the stage's config sections and version, and the
key of the stage before it: changing one stage's config redoes that stage and those after it."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoshoot.budget import fit_to_budget
from autoshoot.catalog import Catalog, ImageCheckCache, load_catalog
from autoshoot.config import Config, save_config
from autoshoot.errors import ModelMissingError
from autoshoot.io import TMP_MARK
from autoshoot.report.html import write_report
from autoshoot.report.results import write_results
from autoshoot.report.review.nightly import honour_review
from autoshoot.run.engines.local import make_engine
from autoshoot.run.folder import LocalRunFolder, RunFolder, open_run
from autoshoot.run.keys import sku_seed
from autoshoot.run.layout import (
    CHECK_CACHE,
    NOT_RUN,
    RUN_LOG,
)
from autoshoot.run.worker import Plan, SkuWorker
from autoshoot.stages.base import Stage
from autoshoot.storage import RemoteRun
from autoshoot.types import ShotResult

# the run's progress lines ("BAG-0: render done in 2.69 s") keep the channel users and the
# benchmarks read, whichever module of the run core writes them
logger = logging.getLogger("autoshoot.runner")


@dataclass
class RunSummary:
    run_dir: Path | str  # a URI for a RUN folder on an object store
    results: list[ShotResult]
    counts: dict[str, int]
    seconds: float
    processed: int  # SKUs whose stages ran in this run (not skipped)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    done_before: int = 0  # SKUs finished by an earlier run on this folder
    reused: int = 0  # SKUs taken whole from other runs (the reuse index) in this run

    @property
    def changes(self) -> dict[str, int]:
        """Tonight's head counts: rows new, changed, reused (from other runs) and failed."""
        from autoshoot.report.results import change_counts

        return change_counts(self.results)

    @property
    def not_run(self) -> int:
        """Valid SKUs left for the next run (an interruption); results.csv marks them failed."""
        return sum(1 for r in self.results if r.status == "failed" and r.reason.startswith(NOT_RUN))

    @property
    def vlm_failed_all(self) -> bool:
        """Every SKU with a brief got it from the rules fallback (the VLM failed for all)."""
        briefed = [r for r in self.results if r.status != "failed" or "brief_fallback" in r.flags.split(";")]
        return bool(briefed) and all("brief_fallback" in r.flags.split(";") for r in briefed)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts.get("failed", 0) or self.vlm_failed_all else 0

    def text(self) -> str:
        failed = self.counts.get("failed", 0) - self.not_run
        counts = f"{self.counts.get('accepted', 0)} accepted, {self.counts.get('review', 0)} review, {failed} failed"
        if self.not_run:
            counts += f", {self.not_run} not run (interrupted)"
        runs = f"{self.processed} run now" + (f", {self.done_before} done before" if self.done_before else "")
        if self.reused:
            runs += f", {self.reused} reused from earlier runs"
        lines = [f"{len(self.results)} SKUs: {counts}  ({runs})"]
        changes = self.changes
        if changes["changed"] or changes["reused"]:
            lines.append(", ".join(f"{n} {kind}" for kind, n in changes.items()))
        if self.processed:
            lines.append(f"{self.seconds:.1f} s in all, {self.seconds / self.processed:.2f} s per SKU run")
        if self.stage_seconds:
            parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
            lines.append(f"time per stage: {parts}")
        lines.append(f"results: {self.run_dir}/results.csv  report: {self.run_dir}/report.html")
        if self.vlm_failed_all:
            lines.append(
                "the VLM failed for every SKU: all briefs fell back to the rules (flag brief_fallback; "
                "its answers are in <sku>/analyze/vlm_answer.txt); check analyze.vlm and its model"
            )
        if self.interrupted:
            lines.append("interrupted: finished SKUs are saved; run the same command again to resume")
        return "\n".join(lines)


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """RUN/run.log keeps the run's model residency lines (load, move, release, with sizes and
    devices; the budget; out-of-memory failures), whatever the verbosity, so someone who hits
    out-of-memory can see what was resident. ``-v`` shows the same lines on stderr."""
    residency = logging.getLogger("autoshoot.residency")
    handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8", delay=True)  # made at the first line
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = residency.level
    if residency.getEffectiveLevel() > logging.INFO:
        residency.setLevel(logging.INFO)  # without -v (no stderr handler) only the file has them
    residency.addHandler(handler)
    try:
        yield
    finally:
        residency.removeHandler(handler)
        residency.setLevel(level)
        handler.close()


class _Interrupt:
    """SIGINT sets a flag; the run finishes the SKU in hand, writes results and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nInterrupted: finishing the current SKU, then stopping (Ctrl-C again to stop now)",
            file=sys.stderr,
        )

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def validate_for_run(
    catalog_path: str | Path, config: Config, run_dir: str | Path | RemoteRun | RunFolder | None = None
) -> Catalog:
    """Validate the catalog; with a RUN folder, reuse its record of images already checked.

    ``catalog_path`` and ``run_dir`` may be object-store URIs. A remote run keeps that record
    on this machine (it names local files), keyed by the run's URI.
    """
    cache = None
    if run_dir is not None:
        folder = open_run(run_dir)
        try:
            cache = ImageCheckCache(folder.check_cache_path())
        finally:
            if folder is not run_dir:
                folder.close()
    catalog = load_catalog(
        catalog_path,
        min_side=config.run.min_image_side,
        max_pixels=config.run.max_image_pixels,
        download_timeout_s=config.run.download_timeout_s,
        check_cache=cache,
    )
    catalog.check_cache = cache
    return catalog


def make_worker(
    config: Config,
    run: str | Path | RemoteRun | RunFolder,
    stages: list[Stage] | None = None,
    run_id: str = "",
) -> SkuWorker:
    """The worker for a RUN folder: local files as they are, or staged for an object store.

    Given a path or URI (a Ray worker), the worker owns what it opens and frees it on close.
    """
    owns = not isinstance(run, (RunFolder, RemoteRun))
    return open_run(run).make_worker(config, stages, run_id=run_id, owns=owns)


def forced(force: bool | frozenset[str], sku: str) -> bool:
    """``force``: True redoes every SKU (``--force``), a set of SKUs only those (``--redo``)."""
    return force if isinstance(force, bool) else sku in force


def plan_run(
    catalog: Catalog,
    config: Config,
    run_dir: str | Path | RemoteRun | RunFolder,
    force: bool | frozenset[str] = False,
    stages: list[Stage] | None = None,
) -> tuple[SkuWorker, list[Plan]]:
    worker = make_worker(config, run_dir, stages)
    rows = catalog.valid_rows
    worker.prefetch([row.sku for row in rows])
    unforced = [row for row in rows if not forced(force, row.sku)]
    if unforced:
        worker.preload_reuse(unforced)
    return worker, [worker.plan(row, forced(force, row.sku)) for row in rows]


def take_reused_work(
    worker: SkuWorker, plans: list[Plan], should_stop: Callable[[], bool], on_done: Callable[[Plan], None]
) -> list[Plan]:
    """Copy in what other runs finished with the same keys; the plans of what is left to run.

    ``on_done`` is called for each SKU completed this way (its result is recorded). A stop
    leaves the SKUs not yet looked at as they were planned: the next run takes them then.
    """
    out = []
    for plan in plans:
        if plan.reuse and not should_stop():
            plan = worker.take_reused(plan)
            if not plan.todo:
                on_done(plan)
        out.append(plan)
    return out


def dry_run_text(
    catalog: Catalog, config: Config, run_dir: str | Path | RemoteRun, stages: list[Stage] | None = None
) -> str:
    """The plan, without loading any model or importing torch."""
    worker, plans = plan_run(catalog, config, run_dir, stages=stages)
    worker.close()
    lines = [f"catalog: {catalog.path} ({len(catalog.rows)} rows, {len(catalog.invalid_rows)} invalid)"]
    lines.append(f"run folder: {run_dir}   profile: {config.run.profile}")
    lines.append("stages: " + " → ".join(s.name for s in worker.stages))
    lines.append("models:")
    for stage in worker.stages:
        for spec in stage.models(config):
            lines.append(f"  {stage.name:<9} {spec.role}: {spec.source}")
    lines.append("SKUs:")
    for row in catalog.rows:
        if not row.ok:
            lines.append(f"  {row.sku or '(no sku)'}: invalid, will be marked failed ({row.errors[0]})")
    for plan in plans:
        if not plan.todo:
            lines.append(
                f"  {plan.row.sku}: done ({plan.result.get('status') if plan.result else ''}), skipped"
            )
            continue
        run = [name for name in plan.todo if name not in plan.reuse]
        parts = []
        if plan.reuse:
            origins = sorted({p.get("origin", "?") for p in plan.reuse.values()})
            parts.append(f"reuse from {', '.join(origins)}: {', '.join(plan.reuse)}")
        if run:
            parts.append(f"to do: {', '.join(run)}")
        lines.append(f"  {plan.row.sku}: " + "; ".join(parts))
    todo = sum(1 for p in plans if p.todo and len(p.reuse) < len(p.todo))
    reused = sum(1 for p in plans if p.todo and len(p.reuse) == len(p.todo))
    reuse = f"{reused} to reuse, " if reused else ""
    lines.append(
        f"{todo} SKUs to do, {reuse}{len(plans) - todo - reused} done, {len(catalog.invalid_rows)} invalid"
    )
    return "\n".join(lines)


def run_catalog(
    catalog_path: str | Path,
    run_dir: str | Path,
    config: Config,
    *,
    force: bool | frozenset[str] = False,
    quiet: bool = False,
    catalog: Catalog | None = None,
    stages: list[Stage] | None = None,
) -> RunSummary:
    """Run every row of the catalog into ``run_dir``; see the module docstring for the layout.

    ``force``: True redoes every stage of every SKU, a set of SKUs those SKUs only (neither
    their finished stages nor other runs' are taken).

    ``catalog_path`` and ``run_dir`` may be object-store URIs (``s3://…``); a RUN folder there
    is written through a local staging folder (``autoshoot.run.staged``), a local one directly.
    """
    run = open_run(run_dir)
    fresh = run.is_new()
    try:
        return _run_catalog(catalog_path, run, config, force, quiet, catalog, stages)
    except ModelMissingError:
        if fresh:  # "nothing was run": leave no folder behind either
            run.remove_if_unused(BEFORE_ANY_SKU)
        raise
    finally:
        if run is not run_dir:
            run.close()


def remove_stray_temp_files(run_dir: Path) -> None:
    """Remove the temp files of RUN's own files (``.report.html.tmp-…``) that a killed run left.

    Called while holding the run's lock, so no live writer owns them.
    """
    for child in run_dir.iterdir():
        if child.name.startswith(".") and TMP_MARK in child.name and child.is_file():
            child.unlink(missing_ok=True)


BEFORE_ANY_SKU = {"config.yaml", ".lock", CHECK_CACHE, RUN_LOG}  # what a run writes before its first SKU


def remove_unused_run_folder(run_dir: Path) -> None:
    """Remove a RUN folder that holds only what a run writes before its first SKU."""
    LocalRunFolder(run_dir).remove_if_unused(BEFORE_ANY_SKU)


def _run_catalog(
    catalog_path: str | Path,
    run: RunFolder,
    config: Config,
    force: bool | frozenset[str],
    quiet: bool,
    catalog: Catalog | None,
    stages: list[Stage] | None,
) -> RunSummary:
    started = time.perf_counter()
    local_dir = run.local_dir  # where the local code writes (a staging folder for an object store)
    # 1. validate every row before any model loads
    catalog = catalog or validate_for_run(catalog_path, config, run)
    with run.lock() as held, _Interrupt() as interrupt, run_log(local_dir):
        # 2. fit the run to the GPU budget (--vram); save the effective config and plan: which
        #    SKUs and stages are still to do
        remove_stray_temp_files(local_dir)  # a run killed while writing the top-level files
        config = fit_to_budget(config)
        save_config(config, local_dir / "config.yaml")
        run.publish(["config.yaml"])
        if catalog.check_cache is not None:
            catalog.check_cache.save()
        worker, plans = plan_run(catalog, config, run, force, stages)
        done_before = sum(1 for p in plans if p.result)

        def should_stop() -> bool:
            return interrupt.requested or bool(held is not None and held.lost)

        # 3. stop before the first SKU when a model that some work needs is missing (the
        #    stages that other runs finished need none)
        worker.check_models({name for p in plans for name in p.todo if name not in p.reuse})
        # the review loop (autoshoot.review.nightly): SKUs approved in an earlier run are
        # frozen (carried over, nothing runs or is reused), rejected ones planned again with a
        # new seed, whose models are checked too
        frozen: list[str] = []
        if run.reviewable:
            before = {p.row.sku for p in plans if p.result}
            plans = honour_review(
                local_dir,
                plans,
                lambda row: worker.plan(row, forced(force, row.sku)),
                lambda row: sku_seed(config, row),
            )
            frozen = [p.row.sku for p in plans if p.result and p.row.sku not in before]
            plans = [dataclasses.replace(p, reuse={}) if p.row.sku in frozen else p for p in plans]
            worker.check_models({name for p in plans for name in p.todo if name not in p.reuse})
        # 4. take the stages other runs finished with the same keys (autoshoot.run.reuse)
        reused_now: list[str] = list(frozen)
        plans = take_reused_work(worker, plans, should_stop, lambda p: reused_now.append(p.row.sku))
        todo = [p for p in plans if p.todo]
        # 5. run the rest on the configured engine (local: chunks of SKUs, the brief batched)
        results: dict[str, ShotResult] = {
            p.row.sku: ShotResult.from_json(p.result) for p in plans if p.result
        }
        counts = {"accepted": 0, "review": 0, "failed": len(catalog.invalid_rows)}
        for r in results.values():
            counts[r.status] += 1
        bar = progress_bar(
            len(plans) + len(catalog.invalid_rows), quiet, initial=len(results) + counts["failed"]
        )
        bar.set_postfix(counts)
        engine = None
        processed = 0
        try:
            engine = make_engine(config, worker)
            for result in engine.run(todo, should_stop):
                results[result.sku] = result
                counts[result.status] += 1
                processed += 1
                bar.update(1)
                bar.set_postfix(counts)
        finally:
            bar.close()
            (engine or worker).close()
            # 6. results and report, also after an interruption
            ordered = collect_results(catalog, results)
            write_results(local_dir, ordered)
            run.fetch_report_blocks(ordered)  # those other processes wrote (object stores)
            write_report(local_dir, ordered, config)
            run.publish(["results.csv", "results.parquet", "report.html"])
    return RunSummary(
        run_dir=run.summary_name,
        results=ordered,
        counts={k: sum(1 for r in ordered if r.status == k) for k in ("accepted", "review", "failed")},
        done_before=done_before,
        reused=len(reused_now),
        seconds=time.perf_counter() - started,
        processed=processed,
        stage_seconds=engine.stage_seconds,  # set: a failed start raised above
        interrupted=interrupt.requested or bool(held is not None and held.lost),
    )


def collect_results(catalog: Catalog, results: dict[str, ShotResult]) -> list[ShotResult]:
    ordered: list[ShotResult] = []
    for row in catalog.rows:
        if not row.ok:
            ordered.append(ShotResult(row=row.row_number, sku=row.sku, status="failed", reason=row.errors[0]))
        elif row.sku in results:
            ordered.append(results[row.sku])
        else:
            ordered.append(
                ShotResult(
                    row=row.row_number,
                    sku=row.sku,
                    status="failed",
                    reason=f"{NOT_RUN} the run was interrupted; run the same command again to resume",
                )
            )
    return ordered


def progress_bar(total: int, quiet: bool, initial: int = 0):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="SKUs",
        unit="sku",
        file=sys.stderr,
        disable=quiet,
        dynamic_ncols=True,
        smoothing=0.1,
    )

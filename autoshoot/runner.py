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
key of the stage before it: changing one stage's config redoes that stage and those after it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoshoot.budget import fit_to_budget, is_out_of_memory, out_of_memory_fix
from autoshoot.catalog import Catalog, ImageCheckCache, Row, allow_image_pixels, load_catalog
from autoshoot.config import Config, save_config
from autoshoot.errors import ModelMissingError, RunLockedError
from autoshoot.io import TMP_MARK, atomic_write_json, make_temp_dir, read_json
from autoshoot.report import write_report, write_results, write_sku_block
from autoshoot.residency import GIB
from autoshoot.review.nightly import honour_review
from autoshoot.stages import STAGE_ORDER, STAGES
from autoshoot.stages.base import Job, Sessions, Stage
from autoshoot.storage import RemoteRun, close_run_folder, is_uri, local_path, open_run_folder
from autoshoot.types import ShotResult

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# GPU memory the per-SKU stages need before their models are measured: SDXL with the union
# ControlNet (6.6 GiB in fp16) and 4 candidates' activations (7 GiB), BiRefNet and OWLv2 (1 GiB)
PER_SKU_MODELS_GIB = 15.0
CHECK_CACHE = ".image-checks.json"
TRASH_MARK = ".trash-"
NOT_RUN = "not run:"  # the reason of a valid row that an interruption left for the next run


# ---------------------------------------------------------------------------------------
# stages and keys


def build_stages(names: tuple[str, ...] = STAGE_ORDER) -> list[Stage]:
    stages = []
    for name in names:
        module_name, _, cls_name = STAGES[name].partition(":")
        stages.append(getattr(importlib.import_module(module_name), cls_name)())
    return stages


# the RUN folder's own files: a SKU folder must never take one of these names
RUN_FILES = frozenset(
    {
        "config.yaml",
        "results.csv",
        "results.parquet",
        "report.html",
        "run.log",
        "decisions.csv",
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


def sku_seed(config: Config, row: Row) -> int:
    if row.seed is not None:
        return row.seed
    digest = hashlib.sha256(f"{config.run.seed}:{row.sku}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def stage_keys(
    stages: list[Stage], config: Config, job: Job, section_hashes: dict[str, str] | None = None
) -> dict[str, str]:
    """The cache key of every stage for ``job``: chained, so a change flows downstream.

    ``section_hashes`` (stage name → hash of its config sections) can be computed once per
    run with ``config_hashes``; it is the same for every SKU.
    """
    section_hashes = section_hashes or config_hashes(stages, config)
    keys: dict[str, str] = {}
    previous = job.image_sha256
    for stage in stages:
        params = {name: getattr(job, name) for name in stage.job_params}
        material = [
            previous,
            stage.name,
            stage.version,
            section_hashes[stage.name],
            stage.extra_key(job),
            params,
        ]
        previous = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        keys[stage.name] = previous
    return keys


def config_hashes(stages: list[Stage], config: Config) -> dict[str, str]:
    return {s.name: config.section_hash(*s.config_sections) if s.config_sections else "" for s in stages}


# ---------------------------------------------------------------------------------------
# one SKU's folder: manifest, atomic stage commits, cleanup


class SkuStore:
    """The files of one SKU: ``RUN/<sku>/``. Only this class writes the manifest."""

    def __init__(self, run_dir: Path, sku: str):
        self.dir = run_dir / sku_folder_name(sku)
        self.sku = sku
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            path = self.dir / MANIFEST
            try:
                self._manifest = read_json(path) if path.is_file() else {}
            except (OSError, ValueError):
                logger.warning("%s is unreadable; the SKU is redone", path)
                self._manifest = {}
            self._manifest.setdefault("sku", self.sku)
            self._manifest.setdefault("stages", {})
        return self._manifest

    def save(self) -> None:
        atomic_write_json(self.dir / MANIFEST, self.manifest)

    def stage_dir(self, name: str) -> Path:
        return self.dir / name

    def is_done(self, name: str, key: str) -> bool:
        entry = self.manifest["stages"].get(name)
        return bool(entry and entry.get("key") == key and self.stage_dir(name).is_dir())

    def finished_result(self, final_key: str) -> dict[str, Any] | None:
        result = self.manifest.get("result")
        if result and result.get("key") == final_key and result.get("status") in ("accepted", "review"):
            return result
        return None

    def new_stage_dir(self, name: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return make_temp_dir(f".{name}{TMP_MARK}", self.dir)

    def commit_stage(self, name: str, tmp: Path, entry: dict[str, Any]) -> Path:
        """Move ``tmp`` into place as ``<stage>/`` and record it; safe against SIGKILL anywhere.

        The manifest first forgets the stage, then the folder is swapped, then the manifest
        records the new key. A crash in between leaves no claim that is untrue.
        """
        stages = self.manifest["stages"]
        if name in stages or "result" in self.manifest:
            stages.pop(name, None)
            self.manifest.pop("result", None)
            self.save()
        final = self.swap_in(name, tmp)
        stages[name] = entry
        self.save()
        return final

    def swap_in(self, name: str, tmp: Path) -> Path:
        """Rename ``tmp`` to ``<stage>/``, replacing the old folder."""
        final = self.stage_dir(name)
        if final.exists():
            trash = self.dir / f".{name}{TRASH_MARK}{os.getpid()}-{time.monotonic_ns()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def record_result(self, result: dict[str, Any]) -> None:
        self.manifest["result"] = result
        self.save()

    def clean_partial(self) -> None:
        """Remove temp folders and files left by a killed run."""
        if not self.dir.is_dir():
            return
        for child in self.dir.iterdir():
            if child.name.startswith(".") and (TMP_MARK in child.name or TRASH_MARK in child.name):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def log(self, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text.rstrip()}\n")

    def flush(self) -> None:
        """Make what was written visible where the RUN folder lives: here it already is."""

    def stage_committed_since(self, name: str, since: Any) -> bool:
        """Whether the stage's folder was committed after ``since`` (the run's start marker)."""
        return mtime(self.stage_dir(name) / "stage.json") >= since

    def result_recorded_since(self, since: Any) -> bool:
        return mtime(self.dir / MANIFEST) >= since


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -math.inf


# ---------------------------------------------------------------------------------------
# the worker: runs the stages of one SKU (the local engine and the Ray actors both use it)


@dataclass
class Plan:
    row: Row
    keys: dict[str, str]
    todo: list[str]  # stages to (re)run, in order; empty when the SKU is complete
    result: dict[str, Any] | None = None  # the stored result of a complete SKU
    seconds_before: float = 0.0  # spent on this SKU in this run elsewhere (the Ray VLM pool)


class SkuWorker:
    """Holds the stages and the model sessions; turns a planned row into a ShotResult."""

    def __init__(self, config: Config, run_dir: Path, stages: list[Stage] | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.stages = stages if stages is not None else build_stages()
        self.sessions = Sessions.for_config(config)
        self.stage_seconds: dict[str, float] = {}
        self.seconds_lock = threading.Lock()
        self.section_hashes = config_hashes(self.stages, config)
        allow_image_pixels(config.run.max_image_pixels)  # a Ray worker opens photos too

    @property
    def run_location(self) -> str:
        """The RUN folder as another process (a Ray worker) is given it."""
        return str(self.run_dir.resolve())

    def make_store(self, sku: str) -> SkuStore:
        return SkuStore(self.run_dir, sku)

    def prefetch(self, skus: list[str]) -> None:
        """Read ahead what ``plan`` will read for these SKUs (nothing to do for a local RUN)."""

    def make_job(self, row: Row) -> Job:
        assert row.image_path is not None  # only valid rows are planned
        store = self.make_store(row.sku)
        return Job(
            row=row,
            image_path=row.image_path,
            image_sha256=row.image_sha256,
            seed=sku_seed(self.config, row),
            candidates=row.candidates or self.config.run.candidates,
            work_dir=store.dir,
            config=self.config,
            sessions=self.sessions,
        )

    def plan(self, row: Row, force: bool = False) -> Plan:
        job = self.make_job(row)
        keys = stage_keys(self.stages, self.config, job, self.section_hashes)
        store = self.make_store(row.sku)
        if not force:
            result = store.finished_result(keys[self.stages[-1].name])
            if result is not None:
                return Plan(row, keys, [], result)
        todo: list[str] = []
        for stage in self.stages:
            if force or todo or not store.is_done(stage.name, keys[stage.name]):
                todo.append(stage.name)
        if not todo:  # every stage committed, but the run died before it recorded the result
            todo = [self.stages[-1].name]
        return Plan(row, keys, todo)

    def check_models(self, stage_names: set[str]) -> None:
        """Stop before the first SKU when a model that the work needs is absent: first those
        that may not be fetched (offline, local paths), then those that fail to download."""
        for method in ("check_models", "fetch_models"):
            missing: list[tuple[str, str, str]] = []
            for stage in self.stages:
                if stage.name in stage_names:
                    missing += [m for m in getattr(stage, method)(self.config) if m not in missing]
            if missing:
                raise ModelMissingError(missing)

    def process(
        self, plans: list[Plan], should_stop: Callable[[], bool] = lambda: False
    ) -> Iterator[ShotResult]:
        """Run the planned stages for several SKUs, yielding each SKU's result as it finishes.

        Batchable stages (the VLM brief) run first across all of them. ``should_stop`` is asked
        between SKUs: when it says yes, the SKUs not yet started are left for the next run
        (their finished stages are kept).
        """
        started = time.perf_counter()
        jobs, stores, failed, per_sku_seconds = self._start(plans)

        # 1. batchable stages first, across the SKUs that need them (the VLM brief); then their
        #    models (the VLM) leave the GPU, so that the render has the budget to itself
        self._run_batchable(plans, jobs, stores, failed, per_sku_seconds)
        self.release_batchable_models()

        # 2. the other stages, SKU by SKU: while SKU i renders, SKU i+1 is prepared and SKU i-1
        #    composited and scored in threads (run.overlap), so the GPU does not wait on them
        state = (jobs, stores, failed, per_sku_seconds)
        pre, gpu, post = self.lanes()
        if self.overlap_enabled() and gpu and len(plans) > 1:
            yield from self._process_overlapped(plans, state, (pre, gpu, post), should_stop)
        else:
            for n, plan in enumerate(plans):
                if n and should_stop():
                    break
                self._run_lane(plan, self.stages, state)
                yield self._finish_lane(plan, state)
        logger.debug("processed %d SKUs in %.2f s", len(plans), time.perf_counter() - started)

    # -- the per-SKU stages, and their overlap ------------------------------------------

    def lanes(self) -> tuple[list[Stage], list[Stage], list[Stage]]:
        """The per-SKU stages split around the GPU-bound ones (``Stage.uses_gpu``): before
        (prepare), the GPU lane (render, refine) and after (composite, score, rank)."""
        heavy = [i for i, stage in enumerate(self.stages) if getattr(stage, "uses_gpu", False)]
        if not heavy:
            return list(self.stages), [], []
        first, last = heavy[0], heavy[-1]
        return self.stages[:first], self.stages[first : last + 1], self.stages[last + 1 :]

    def overlap_enabled(self) -> bool:
        """run.overlap: on, off, or auto (on when this process renders on a CUDA GPU)."""
        mode = str(getattr(self.config.run, "overlap", "auto"))
        if mode in ("on", "off"):
            return mode == "on"
        if str(self.config.run.device) == "cpu":
            return False
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())

    def _run_lane(self, plan: Plan, stages: list[Stage], state: tuple) -> None:
        """These stages of one SKU, in order, until one fails."""
        jobs, stores, failed, per_sku_seconds = state
        sku = plan.row.sku
        job, store = jobs[sku], stores[sku]
        for stage in stages:
            if sku in failed:
                return
            if stage.batchable:  # ran across the chunk first (or was already done)
                job.inputs.setdefault(stage.name, store.stage_dir(stage.name))
                continue
            if stage.name not in plan.todo:
                job.inputs[stage.name] = store.stage_dir(stage.name)
                continue
            self._run_stage_batch(stage, [plan], jobs, stores, failed, per_sku_seconds)

    def _finish_lane(self, plan: Plan, state: tuple) -> ShotResult:
        jobs, stores, failed, per_sku_seconds = state
        sku = plan.row.sku
        return self._finish_safely(plan, jobs[sku], stores[sku], failed.get(sku), per_sku_seconds[sku])

    def _process_overlapped(
        self,
        plans: list[Plan],
        state: tuple,
        lanes: tuple[list[Stage], list[Stage], list[Stage]],
        should_stop: Callable[[], bool],
    ) -> Iterator[ShotResult]:
        """Step i: the GPU lane of SKU i here, the stages before it for SKU i+1 and those after
        it for SKU i-1 in two threads (MediaPipe, OpenCV and torch release the GIL). Results
        are yielded in order, each as soon as its SKU's last stage is done."""
        from concurrent.futures import Future, ThreadPoolExecutor

        pre, gpu, post = lanes
        n = len(plans)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="autoshoot-lane") as pool:
            ready: Future = pool.submit(self._run_lane, plans[0], pre, state)
            for i in range(n + 1):
                stopping = 0 < i < n and should_stop()
                after = pool.submit(self._run_lane_and_finish, plans[i - 1], post, state) if i else None
                nxt = None
                if i < n and not stopping:
                    ready.result()  # SKU i is prepared
                    if i + 1 < n:
                        nxt = pool.submit(self._run_lane, plans[i + 1], pre, state)
                    self._run_lane(plans[i], gpu, state)
                if after is not None:
                    yield after.result()
                if stopping:
                    ready.result()  # a prepared SKU keeps its committed stages for the next run
                    return
                if nxt is not None:
                    ready = nxt

    def _run_lane_and_finish(self, plan: Plan, stages: list[Stage], state: tuple) -> ShotResult:
        self._run_lane(plan, stages, state)
        return self._finish_lane(plan, state)

    def release_batchable_models(self) -> None:
        """After the brief phase of a chunk: move its models (the VLM) off the GPU when the
        other stages' models would not fit beside them; they stay where everything fits (no
        budget, or a large one), which saves moving 15 GiB each way per chunk."""
        if self.sessions.budget is None:
            return
        keys = [k for stage in self.stages if stage.batchable for k in self.sessions.used_by(stage.name)]
        others = [e for e in self.sessions.entries.values() if e.key not in keys and e.size + e.work]
        # the per-SKU stages' models and activations: as measured, or an estimate before they load
        need = sum(e.size + e.work for e in others) if others else int(PER_SKU_MODELS_GIB * GIB)
        if keys and not self.sessions.fits(need):
            self.sessions.release(*keys)

    def process_batchable(self, plans: list[Plan]) -> Iterator[tuple[Plan, ShotResult | None, float]]:
        """Only the batchable stages (the VLM brief) of these SKUs, batched across all of them.

        Yields ``(plan, result, seconds)`` per SKU: ``result`` is None when its batchable stages
        are committed (the rest is still to do), or its failed result when one of them failed.
        """
        jobs, stores, failed, per_sku_seconds = self._start(plans)
        self._run_batchable(plans, jobs, stores, failed, per_sku_seconds)
        for plan in plans:
            sku = plan.row.sku
            if sku in failed:
                result = self._finish_safely(plan, jobs[sku], stores[sku], failed[sku], per_sku_seconds[sku])
                yield plan, result, per_sku_seconds[sku]
            else:
                yield plan, None, per_sku_seconds[sku]

    def _start(
        self, plans: list[Plan]
    ) -> tuple[dict[str, Job], dict[str, SkuStore], dict[str, str], dict[str, float]]:
        """Jobs and stores of these SKUs, partial stage folders cleaned, input thumbnails saved;
        an empty failures dict and each SKU's seconds so far."""
        jobs = {p.row.sku: self.make_job(p.row) for p in plans}
        stores = {p.row.sku: self.make_store(p.row.sku) for p in plans}
        for sku, store in stores.items():
            store.clean_partial()
            save_input_thumbnail(jobs[sku], store)
        return jobs, stores, {}, {p.row.sku: p.seconds_before for p in plans}

    def _run_batchable(
        self,
        plans: list[Plan],
        jobs: dict[str, Job],
        stores: dict[str, SkuStore],
        failed: dict[str, str],
        per_sku_seconds: dict[str, float],
    ) -> None:
        for stage in self.stages:
            if not stage.batchable:
                break
            group = [p for p in plans if stage.name in p.todo and p.row.sku not in failed]
            self._attach_inputs(plans, jobs, stores, upto=stage.name)
            if group:
                self._run_stage_batch(stage, group, jobs, stores, failed, per_sku_seconds)

    def _finish_safely(
        self, plan: Plan, job: Job, store: SkuStore, failure: str | None, seconds: float
    ) -> ShotResult:
        try:
            result = self._finish(plan, job, store, failure, seconds)
        except Exception as err:  # a broken stage output must not stop the run
            store.log("finish failed:\n" + "".join(traceback.format_exception(err)))
            result = self._finish(plan, job, store, one_line_reason("finish", err), seconds)
        self.write_block(result)
        return result

    def write_block(self, result: ShotResult) -> None:
        write_sku_block(self.run_dir, result)

    def _attach_inputs(
        self, plans: list[Plan], jobs: dict[str, Job], stores: dict[str, SkuStore], upto: str
    ) -> None:
        for plan in plans:
            for stage in self.stages:
                if stage.name == upto:
                    break
                jobs[plan.row.sku].inputs.setdefault(stage.name, stores[plan.row.sku].stage_dir(stage.name))

    def _run_stage_batch(
        self,
        stage: Stage,
        group: list[Plan],
        jobs: dict[str, Job],
        stores: dict[str, SkuStore],
        failed: dict[str, str],
        per_sku_seconds: dict[str, float],
    ) -> None:
        batch_jobs = [jobs[p.row.sku] for p in group]
        outs = [stores[p.row.sku].new_stage_dir(stage.name) for p in group]
        flags_before = [list(j.flags) for j in batch_jobs]
        started = time.perf_counter()
        try:
            with self.sessions.stage(stage.name):
                outcomes = stage.run_batch(batch_jobs, outs)
        except Exception as err:  # the whole batch failed: every SKU in it fails
            outcomes = [err] * len(group)
        oom = [o for o in outcomes if isinstance(o, BaseException) and is_out_of_memory(o)]
        resident_at_oom = self.sessions.describe() if oom else ""
        if oom:  # start the next SKU from a clean GPU: every model not in use off it, cache emptied
            self.sessions.release()
        seconds = (time.perf_counter() - started) / max(1, len(group))
        with self.seconds_lock:  # lanes of several SKUs run at once (run.overlap)
            self.stage_seconds[stage.name] = self.stage_seconds.get(stage.name, 0.0) + seconds * len(group)
        for plan, job, out, outcome, before in zip(group, batch_jobs, outs, outcomes, flags_before):
            sku = plan.row.sku
            store = stores[sku]
            per_sku_seconds[sku] += seconds
            if isinstance(outcome, BaseException):
                shutil.rmtree(out, ignore_errors=True)
                if is_out_of_memory(outcome):
                    failed[sku] = f"{stage.name}: " + out_of_memory_fix(
                        self.sessions.label, self.sessions.budget and self.sessions.budget / GIB
                    )
                    store.log(f"{stage.name}: GPU memory when it failed: {resident_at_oom}")
                    logger.warning("%s: %s failed: %s (%s)", sku, stage.name, failed[sku], resident_at_oom)
                else:
                    failed[sku] = one_line_reason(stage.name, outcome)
                    logger.info("%s: %s failed: %s", sku, stage.name, failed[sku])
                store.log(
                    f"{stage.name} failed: {failed[sku]}\n" + "".join(traceback.format_exception(outcome))
                )
                continue
            atomic_write_json(out / "stage.json", outcome)
            new_flags = [f for f in job.flags if f not in before]
            entry = {"key": plan.keys[stage.name], "seconds": round(seconds, 3), "flags": new_flags}
            job.inputs[stage.name] = store.commit_stage(stage.name, out, entry)
            store.log(f"{stage.name} done in {seconds:.2f} s")
            logger.info("%s: %s done in %.2f s", sku, stage.name, seconds)

    def _finish(
        self, plan: Plan, job: Job, store: SkuStore, failure: str | None, seconds: float
    ) -> ShotResult:
        row = plan.row
        flags = sorted({f for entry in store.manifest["stages"].values() for f in entry.get("flags", [])})
        stage_seconds = {k: v.get("seconds", 0.0) for k, v in store.manifest["stages"].items()}
        if failure:
            return ShotResult(
                row=row.row_number,
                sku=row.sku,
                status="failed",
                reason=failure,
                seconds=round(seconds, 3),
                flags=";".join(flags),
                stage_seconds=stage_seconds,
            )
        rank = job.input_json("rank")
        composite = job.input_json("composite")
        best_index = int(rank["best_index"])
        best_rel = ""
        by_index = {int(c["index"]): c for c in composite.get("candidates", [])}
        if best_index in by_index:
            source = job.input_dir("composite") / by_index[best_index]["image"]
            target = store.dir / ("best" + source.suffix)
            copy_atomic(source, target)
            best_rel = f"{store.dir.name}/{target.name}"
        result = ShotResult(
            row=row.row_number,
            sku=row.sku,
            status=rank["status"],
            reason=rank.get("reason", ""),
            best_image=best_rel,
            hand_score=rank.get("hand_score"),
            n_candidates=int(rank.get("n_candidates", len(by_index))),
            seconds=round(seconds, 3),
            flags=";".join(flags),
            stage_seconds=stage_seconds,
        )
        store.record_result({**result.to_json(), "key": plan.keys[self.stages[-1].name]})
        return result

    def close(self) -> None:
        self.sessions.close()


def save_input_thumbnail(job: Job, store: SkuStore, size: int = 512) -> None:
    """RUN/<sku>/input.jpg for the report; a problem here never fails the SKU."""
    target = store.dir / "input.jpg"
    if target.is_file():
        return
    try:
        from PIL import Image, ImageOps

        from autoshoot.io import save_image

        with Image.open(job.image_path) as im:
            im = ImageOps.exif_transpose(im)
            im.thumbnail((size, size))
            if im.mode in ("RGBA", "LA", "PA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            save_image(target, im.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - a thumbnail is cosmetic
        logger.warning("no input thumbnail for %s: %s", job.sku, err)


def one_line_reason(stage: str, err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    name = type(err).__name__
    return f"{stage}: {text}" if text and name in ("StageError",) else f"{stage}: {name}: {text}".rstrip(": ")


def copy_atomic(source: Path, target: Path) -> None:
    from autoshoot.io import atomic_write

    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


# ---------------------------------------------------------------------------------------
# the run


# ---------------------------------------------------------------------------------------
# engines: where the SKUs run. Each yields ShotResults as SKUs finish.


class LocalEngine:
    """This process: chunks of ``analyze.batch_size`` SKUs (the VLM batches across a chunk)."""

    def __init__(self, config: Config, worker: SkuWorker):
        self.worker = worker
        self.chunk = max(1, int(getattr(config.analyze, "batch_size", 1)))

    def run(self, plans: list[Plan], should_stop: Callable[[], bool]) -> Iterator[ShotResult]:
        for start in range(0, len(plans), self.chunk):
            if should_stop():
                return
            yield from self.worker.process(plans[start : start + self.chunk], should_stop)

    @property
    def stage_seconds(self) -> dict[str, float]:
        return self.worker.stage_seconds

    def close(self) -> None:
        self.worker.close()


def make_engine(config: Config, worker: SkuWorker):  # type: ignore[no-untyped-def]
    from autoshoot.registry import Registry

    engines = Registry("engine")
    engines.register("local", LocalEngine)
    engines.register("ray", "autoshoot.engines.ray_engine:RayEngine")
    return engines.create(config.run.engine, config, worker)


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
        lines = [f"{len(self.results)} SKUs: {counts}  ({runs})"]
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
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on RUN: a second run on the same folder stops at once."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunLockedError(
                f"{run_dir} is in use by another autoshoot run ({holder}); wait for it to finish, "
                "or pass another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()


RUN_LOG = "run.log"


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
    catalog_path: str | Path, config: Config, run_dir: str | Path | RemoteRun | None = None
) -> Catalog:
    """Validate the catalog; with a RUN folder, reuse its record of images already checked.

    ``catalog_path`` and ``run_dir`` may be object-store URIs. A remote run keeps that record
    on this machine (it names local files), keyed by the run's URI.
    """
    cache = None
    if isinstance(run_dir, RemoteRun) or (run_dir is not None and is_uri(run_dir)):
        from autoshoot.catalog import default_cache_dir
        from autoshoot.storage import check_cache_path

        cache = ImageCheckCache(check_cache_path(str(run_dir), lambda: default_cache_dir().parent))
    elif run_dir is not None:
        cache = ImageCheckCache(Path(run_dir) / CHECK_CACHE)
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
    config: Config, run: str | Path | RemoteRun, stages: list[Stage] | None = None, run_id: str = ""
) -> SkuWorker:
    """The worker for a RUN folder: local files as they are, or staged for an object store."""
    if not isinstance(run, RemoteRun) and not is_uri(run):
        return SkuWorker(config, local_path(run), stages)
    from autoshoot.staged import StagedSkuWorker

    owns = not isinstance(run, RemoteRun)
    remote = run if isinstance(run, RemoteRun) else RemoteRun(str(run))
    return StagedSkuWorker(config, remote, stages, run_id=run_id, owns_run=owns)


def plan_run(
    catalog: Catalog,
    config: Config,
    run_dir: str | Path | RemoteRun,
    force: bool = False,
    stages: list[Stage] | None = None,
) -> tuple[SkuWorker, list[Plan]]:
    worker = make_worker(config, run_dir, stages)
    rows = catalog.valid_rows
    worker.prefetch([row.sku for row in rows])
    return worker, [worker.plan(row, force) for row in rows]


def dry_run_text(catalog: Catalog, config: Config, run_dir: str | Path | RemoteRun) -> str:
    """The plan, without loading any model or importing torch."""
    worker, plans = plan_run(catalog, config, run_dir)
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
        else:
            lines.append(f"  {plan.row.sku}: to do: {', '.join(plan.todo)}")
    todo = sum(1 for p in plans if p.todo)
    lines.append(f"{todo} SKUs to do, {len(plans) - todo} done, {len(catalog.invalid_rows)} invalid")
    return "\n".join(lines)


def run_catalog(
    catalog_path: str | Path,
    run_dir: str | Path,
    config: Config,
    *,
    force: bool = False,
    quiet: bool = False,
    catalog: Catalog | None = None,
    stages: list[Stage] | None = None,
) -> RunSummary:
    """Run every row of the catalog into ``run_dir``; see the module docstring for the layout.

    ``catalog_path`` and ``run_dir`` may be object-store URIs (``s3://…``); a RUN folder there
    is written through a local staging folder (``autoshoot.staged``), a local one directly.
    """
    run = open_run_folder(run_dir)
    fresh = isinstance(run, Path) and not run.exists()
    try:
        return _run_catalog(catalog_path, run, config, force, quiet, catalog, stages)
    except ModelMissingError:
        if fresh:  # "nothing was run": leave no folder behind either
            remove_unused_run_folder(run)
        raise
    finally:
        close_run_folder(run)


def remove_stray_temp_files(run_dir: Path) -> None:
    """Remove the temp files of RUN's own files (``.report.html.tmp-…``) that a killed run left.

    Called while holding the run's lock, so no live writer owns them.
    """
    for child in run_dir.iterdir():
        if child.name.startswith(".") and TMP_MARK in child.name and child.is_file():
            child.unlink(missing_ok=True)


def remove_unused_run_folder(run_dir: Path) -> None:
    """Remove a RUN folder that holds only what a run writes before its first SKU."""
    before_any_sku = {"config.yaml", ".lock", CHECK_CACHE, RUN_LOG}
    try:
        if {p.name for p in run_dir.iterdir()} <= before_any_sku:
            shutil.rmtree(run_dir)
    except OSError:
        pass


def _run_catalog(
    catalog_path: str | Path,
    run: Path | RemoteRun,
    config: Config,
    force: bool,
    quiet: bool,
    catalog: Catalog | None,
    stages: list[Stage] | None,
) -> RunSummary:
    started = time.perf_counter()
    remote = run if isinstance(run, RemoteRun) else None
    local_dir = remote.staging if remote else run  # where the local code writes
    # 1. validate every row before any model loads
    catalog = catalog or validate_for_run(catalog_path, config, run)
    lock = remote.lock() if remote else run_lock(local_dir)
    with lock as held, _Interrupt() as interrupt, run_log(local_dir):
        # 2. fit the run to the GPU budget (--vram); save the effective config and plan: which
        #    SKUs and stages are still to do
        remove_stray_temp_files(local_dir)  # a run killed while writing the top-level files
        config = fit_to_budget(config)
        save_config(config, local_dir / "config.yaml")
        if remote:
            remote.put([(local_dir / "config.yaml", "config.yaml")])
        if catalog.check_cache is not None:
            catalog.check_cache.save()
        worker, plans = plan_run(catalog, config, run, force, stages)
        todo = [p for p in plans if p.todo]
        # 3. stop before the first SKU when a model that some work needs is missing
        worker.check_models({name for p in todo for name in p.todo})
        if not remote:  # the review loop: approved SKUs frozen, rejected ones re-seeded
            replan = lambda row: worker.plan(row, force)  # noqa: E731
            plans = honour_review(local_dir, plans, replan, lambda row: sku_seed(config, row))
            todo = [p for p in plans if p.todo]
        # 4. run on the configured engine (local: chunks of SKUs, batchable stages across a chunk)
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

        def should_stop() -> bool:
            return interrupt.requested or bool(held is not None and held.lost)

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
            # 5. results and report, also after an interruption
            ordered = collect_results(catalog, results)
            write_results(local_dir, ordered)
            if remote:
                from autoshoot.staged import pull_report_blocks

                pull_report_blocks(remote, ordered)
            write_report(local_dir, ordered, config)
            if remote:
                names = ("results.csv", "results.parquet", "report.html")
                remote.put([(local_dir / name, name) for name in names])
    return RunSummary(
        run_dir=remote.uri if remote else run,
        results=ordered,
        counts={k: sum(1 for r in ordered if r.status == k) for k in ("accepted", "review", "failed")},
        done_before=sum(1 for p in plans if p.result),
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

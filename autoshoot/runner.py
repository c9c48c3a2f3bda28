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

import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
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

from autoshoot.budget import fit_to_budget, is_out_of_memory, out_of_memory_fix, uses_gpu
from autoshoot.catalog import Catalog, ImageCheckCache, Row, allow_image_pixels, load_catalog
from autoshoot.config import Config, save_config
from autoshoot.errors import ModelMissingError
from autoshoot.io import TMP_MARK, atomic_write_json, make_temp_dir, read_json
from autoshoot.report.html import write_report, write_sku_block
from autoshoot.report.results import write_results
from autoshoot.report.review.nightly import honour_review
from autoshoot.run.folder import LocalRunFolder, RunFolder, open_run, run_lock  # noqa: F401
from autoshoot.run.layout import (  # noqa: F401 - re-exported: the names' old home
    CHECK_CACHE,
    MANIFEST,
    MAX_SKU_FOLDER,
    NOT_RUN,
    RUN_FILES,
    RUN_LOG,
    TRASH_MARK,
    sku_folder_name,
)
from autoshoot.run.models import GIB
from autoshoot.run.reuse import ReuseIndex
from autoshoot.stages import STAGE_ORDER, STAGES
from autoshoot.stages.base import Job, Sessions, Stage
from autoshoot.storage import RemoteRun
from autoshoot.types import ShotResult

logger = logging.getLogger(__name__)

# GPU memory the per-SKU stages need before their models are measured: SDXL with the union
# ControlNet (6.6 GiB in fp16) and 4 candidates' activations (7 GiB), BiRefNet and OWLv2 (1 GiB)
PER_SKU_MODELS_GIB = 15.0


# ---------------------------------------------------------------------------------------
# stages and keys


def build_stages(names: tuple[str, ...] = STAGE_ORDER) -> list[Stage]:
    stages = []
    for name in names:
        module_name, _, cls_name = STAGES[name].partition(":")
        stages.append(getattr(importlib.import_module(module_name), cls_name)())
    return stages


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

    def ensure_open(self) -> None:
        """Ready for writes (an object store's copy is fetched first; a local folder always is)."""

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
    # stage → pointer of the leading stages of ``todo`` that an earlier run finished with the
    # same key (autoshoot.run.reuse): taken from there by ``SkuWorker.take_reused``, not run
    reuse: dict[str, dict[str, Any]] = field(default_factory=dict)
    change: str = ""  # new | changed | reused: what tonight's work on the SKU is


class SkuWorker:
    """Holds the stages and the model sessions; turns a planned row into a ShotResult."""

    def __init__(self, config: Config, run_dir: Path, stages: list[Stage] | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.folder: RunFolder = LocalRunFolder(self.run_dir)  # markers, shared images (Ray)
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

    @property
    def reuse(self) -> ReuseIndex | None:
        """The index of stages finished by other runs (``run.reuse``), or None when off."""
        if not hasattr(self, "_reuse"):
            self._reuse = ReuseIndex.for_run(self.config, self.run_location)
        return self._reuse

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
        """What one SKU needs: done here already, taken from an earlier run, or run.

        The one place that decides, per SKU, between the RUN folder's own committed stages,
        the reuse index (stages other runs finished with the same keys) and running them.
        """
        job = self.make_job(row)
        keys = stage_keys(self.stages, self.config, job, self.section_hashes)
        store = self.make_store(row.sku)
        if not force:
            result = store.finished_result(keys[self.stages[-1].name])
            if result is not None:
                return Plan(row, keys, [], result, change=result.get("change", ""))
        todo: list[str] = []
        for stage in self.stages:
            if force or todo or not store.is_done(stage.name, keys[stage.name]):
                todo.append(stage.name)
        if not todo:  # every stage committed, but the run died before it recorded the result
            todo = [self.stages[-1].name]
        plan = Plan(row, keys, todo)
        if not force and self.reuse is not None:
            for name in todo:  # the leading stages only: each key chains the one before
                pointer = self.reuse.stage(keys[name])
                if pointer is None:
                    break
                plan.reuse[name] = pointer
            if len(plan.reuse) == len(todo):
                plan.change = "reused"
            else:
                plan.change = "changed" if self.reuse.seen_before(row.sku) else "new"
        return plan

    def preload_reuse(self, rows: list[Row]) -> None:
        """Read the reuse index's pointers for these SKUs in one batch (on an object store)."""
        if self.reuse is None:
            return
        keys = []
        for row in rows:
            keys += stage_keys(self.stages, self.config, self.make_job(row), self.section_hashes).values()
        self.reuse.preload(keys, [row.sku for row in rows])

    def take_reused(self, plan: Plan) -> Plan:
        """Copy the stages ``plan.reuse`` names into this RUN folder and commit them as if run.

        Returns the plan of what is left: nothing (with the SKU's result, recorded here) when
        every stage was taken, else the stages still to run. A stage that cannot be taken
        (its run was deleted or redone) is run instead, with those after it.
        """
        assert self.reuse is not None
        sku = plan.row.sku
        store = self.make_store(sku)
        store.clean_partial()
        store.ensure_open()
        taken: list[str] = []
        for name in plan.todo:
            pointer = plan.reuse.get(name)
            if pointer is None:
                break
            tmp = store.new_stage_dir(name)
            try:
                self.reuse.copy_stage(pointer, tmp)
            except (OSError, ValueError, KeyError) as err:
                shutil.rmtree(tmp, ignore_errors=True)
                logger.info("%s: %s not reused (%s); it is run", sku, name, err)
                break
            entry = {**pointer.get("entry", {}), "key": plan.keys[name], "reused": pointer.get("origin", "")}
            store.commit_stage(name, tmp, entry)
            self.publish_stage(plan, name, store, entry)
            taken.append(name)
        todo = [name for name in plan.todo if name not in taken]
        if taken:
            store.log(f"reused from {plan.reuse[taken[-1]].get('origin', '?')}: {', '.join(taken)}")
        if todo:
            self.after_sku(sku)
            change = plan.change if plan.change != "reused" else "changed"
            return dataclasses.replace(plan, todo=todo, reuse={}, change=change)
        job = self.make_job(plan.row)
        for stage in self.stages:
            job.inputs.setdefault(stage.name, store.stage_dir(stage.name))
        save_input_thumbnail(job, store)
        result = self._finish_safely(plan, job, store, None, 0.0)
        self.after_sku(sku)
        if result.status == "failed":  # a broken stage output: redo the last stage here
            return dataclasses.replace(plan, todo=[self.stages[-1].name], reuse={}, change="changed")
        return dataclasses.replace(plan, todo=[], reuse={}, result=result.to_json())

    def publish_stage(self, plan: Plan, name: str, store: SkuStore, entry: dict[str, Any]) -> None:
        if self.reuse is not None:
            self.reuse.publish_stage(plan.keys[name], name, store.dir.name, entry)

    def after_sku(self, sku: str) -> None:
        """A SKU is finished in this process: push and free what it holds (object stores)."""

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

    # an object store's worker opens and pushes its SKUs chunk by chunk (staged.py)
    streams_chunks = True

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
        return uses_gpu(self.config)

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
        plans: list[Plan] | Callable[[Callable[[], None]], Iterator[Plan]],
        state: tuple,
        lanes: tuple[list[Stage], list[Stage], list[Stage]],
        should_stop: Callable[[], bool],
    ) -> Iterator[ShotResult]:
        """A pipeline of three pools: one thread prepares, ``run.lanes`` threads run the GPU lane
        (render, refine) and as many composite and score. Several SKUs in the GPU lane at once keep
        the GPU fed: each GPU model call holds its model's lock, so one SKU's model runs while
        the other's CPU work (reading and saving pictures, the hand geometry) is done; MediaPipe,
        OpenCV, zlib and torch release the GIL. Results are yielded in catalog order, each as
        soon as its SKU's last stage is done; ``should_stop`` is asked before each SKU is queued and
        before its GPU lane starts (a SKU stopped there keeps its prepare for the next run).

        ``plans`` may also be a function that makes them from ``drain``, which waits until every
        SKU queued so far is done (``process_chunks``: the next chunk is briefed then)."""
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        pre, gpu, post = lanes
        width = max(1, int(getattr(self.config.run, "lanes", 2)))

        stop = threading.Event()

        def stopping() -> bool:
            if not stop.is_set() and should_stop():
                stop.set()
            return stop.is_set()

        def gpu_lane(plan: Plan, prepared: Future) -> bool:
            prepared.result()  # a prepared SKU keeps its committed stages for the next run
            if stopping():
                return False
            self._run_lane(plan, gpu, state)
            return True

        def post_lane(plan: Plan, rendered: Future) -> ShotResult | None:
            if not rendered.result():
                return None  # left for the next run
            return self._run_lane_and_finish(plan, post, state)

        pools = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoshoot-pre"),
            ThreadPoolExecutor(max_workers=width, thread_name_prefix="autoshoot-gpu"),
            ThreadPoolExecutor(max_workers=width, thread_name_prefix="autoshoot-post"),
        ]
        pre_pool, gpu_pool, post_pool = pools
        in_flight: deque[Future] = deque()  # each SKU's post-lane future, in catalog order

        def drain() -> None:
            for future in list(in_flight):
                future.result()

        try:
            for i, plan in enumerate(plans(drain) if callable(plans) else plans):
                if i and stopping():
                    break
                # at most one SKU per GPU and post thread, and one being prepared, in flight
                while len(in_flight) > 2 * width:
                    result = in_flight.popleft().result()
                    if result is not None:
                        yield result
                prepared = pre_pool.submit(self._run_lane, plan, pre, state)
                rendered = gpu_pool.submit(gpu_lane, plan, prepared)
                in_flight.append(post_pool.submit(post_lane, plan, rendered))
            while in_flight:
                result = in_flight.popleft().result()
                if result is not None:
                    yield result
        finally:
            for pool in pools:  # a consumer that stops early still waits for the SKUs in hand
                pool.shutdown(wait=True)

    def process_chunks(
        self, chunks: list[list[Plan]], should_stop: Callable[[], bool] = lambda: False
    ) -> Iterator[ShotResult]:
        """Chunks of SKUs through one overlapped pipeline (``run.overlap`` on), instead of
        chunk after chunk with the GPU idle at each chunk's end and start.

        Each chunk is briefed as a batch, as ``process`` does. Where the VLM stays on the GPU
        beside the render (``batchable_models_stay``), the next chunk is briefed in a thread
        while this one renders, and its SKUs follow this chunk's into the lanes. Where it does
        not stay, the pipeline drains first, the VLM leaves after each brief, and the order is
        ``process``'s: brief, release, render.
        """
        state: tuple = ({}, {}, {}, {})  # jobs, stores, failures, seconds: every chunk's
        lanes = self.lanes()

        def brief(chunk: list[Plan]) -> tuple:
            part = self._start(chunk)
            self._run_batchable(chunk, *part)
            return part

        def stream(drain: Callable[[], None], pool: Any) -> Iterator[Plan]:
            ahead = None  # the next chunk's brief, in the pool's thread
            for k, chunk in enumerate(chunks):
                if k and should_stop():
                    return  # a brief ahead is kept (its stages are committed)
                if ahead is not None:
                    part = ahead.result()
                else:
                    drain()  # the VLM comes back only to an idle GPU lane
                    part = brief(chunk)
                ahead = None
                for whole, new in zip(state, part):
                    whole.update(new)
                # the VLM would otherwise be loaded back into the render's memory
                if k + 1 < len(chunks) and self.batchable_models_stay():
                    ahead = pool.submit(brief, chunks[k + 1])
                else:
                    self.release_batchable_models()
                yield from chunk

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoshoot-brief") as pool:
            yield from self._process_overlapped(lambda drain: stream(drain, pool), state, lanes, should_stop)

    def _run_lane_and_finish(self, plan: Plan, stages: list[Stage], state: tuple) -> ShotResult:
        self._run_lane(plan, stages, state)
        return self._finish_lane(plan, state)

    def release_batchable_models(self) -> None:
        """After the brief phase of a chunk: move its models (the VLM) off the GPU when the
        other stages' models would not fit beside them; they stay where everything fits (no
        budget, or a large one), which saves moving 15 GiB each way per chunk."""
        keys = self._batchable_keys()
        if keys and not self.batchable_models_stay():
            self.sessions.release(*keys)

    def _batchable_keys(self) -> list[str]:
        return [k for stage in self.stages if stage.batchable for k in self.sessions.used_by(stage.name)]

    def batchable_models_stay(self) -> bool:
        """Whether the batchable stages' models (the VLM) stay on the GPU beside the others:
        no budget, or the per-SKU stages' models and activations fit beside them."""
        if self.sessions.budget is None:
            return True
        with self.sessions.lock:  # asked while the GPU lanes load models (process_chunks)
            keys = self._batchable_keys()
            others = [e for e in self.sessions.entries.values() if e.key not in keys and e.size + e.work]
            # the per-SKU stages' models and activations: as measured, or an estimate before they load
            need = sum(e.size + e.work for e in others) if others else int(PER_SKU_MODELS_GIB * GIB)
            return self.sessions.fits(need)

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
            self.publish_stage(plan, stage.name, store, entry)
            store.log(f"{stage.name} done in {seconds:.2f} s")
            logger.info("%s: %s done in %.2f s", sku, stage.name, seconds)

    def _finish(
        self, plan: Plan, job: Job, store: SkuStore, failure: str | None, seconds: float
    ) -> ShotResult:
        row = plan.row
        entries = store.manifest["stages"]
        flags = sorted({f for entry in entries.values() for f in entry.get("flags", [])})
        stage_seconds = {k: v.get("seconds", 0.0) for k, v in entries.items()}
        if self.reuse is not None:
            self.reuse.publish_sku(row.sku)
        if failure:
            return ShotResult(
                row=row.row_number,
                sku=row.sku,
                status="failed",
                reason=failure,
                seconds=round(seconds, 3),
                flags=";".join(flags),
                stage_seconds=stage_seconds,
                change=plan.change,
            )
        # reused: no stage of the SKU ran in this RUN folder; it names the run of the result
        last = entries.get(self.stages[-1].name, {})
        reused = last.get("reused", "") if all(e.get("reused") for e in entries.values()) else ""
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
            reused=reused,
            change="reused" if reused else (plan.change if plan.change != "reused" else "changed"),
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
        """Chunk by chunk; with the overlap on, through one pipeline (``process_chunks``: the
        next chunk is briefed while this one renders where the VLM stays on the GPU)."""
        chunks = [plans[i : i + self.chunk] for i in range(0, len(plans), self.chunk)]
        worker = self.worker
        if worker.streams_chunks and worker.overlap_enabled() and worker.lanes()[1] and len(plans) > 1:
            yield from worker.process_chunks(chunks, should_stop)
            return
        for chunk in chunks:
            if should_stop():
                return
            yield from worker.process(chunk, should_stop)

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
    is written through a local staging folder (``autoshoot.staged``), a local one directly.
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

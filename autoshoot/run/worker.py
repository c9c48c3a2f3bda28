"""The worker: runs the stages of one SKU (the local engine and the Ray actors both use it)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoshoot.budget import is_out_of_memory, out_of_memory_fix, uses_gpu
from autoshoot.catalog import Row, allow_image_pixels
from autoshoot.config import Config
from autoshoot.errors import ModelMissingError
from autoshoot.io import atomic_write_json
from autoshoot.report.html import write_sku_block
from autoshoot.run.folder import LocalRunFolder, RunFolder
from autoshoot.run.keys import build_stages, config_hashes, sku_seed, stage_keys
from autoshoot.run.models import GIB
from autoshoot.run.reuse import ReuseIndex
from autoshoot.run.store import SkuStore
from autoshoot.stages.base import Job, Sessions, Stage
from autoshoot.types import ShotResult

# the run's progress lines ("BAG-0: render done in 2.69 s") keep the channel users and the
# benchmarks read, whichever module of the run core writes them
logger = logging.getLogger("autoshoot.runner")


# GPU memory the per-SKU stages need before their models are measured: SDXL with the union
# ControlNet (6.6 GiB in fp16) and 4 candidates' activations (7 GiB), BiRefNet and OWLv2 (1 GiB)
PER_SKU_MODELS_GIB = 15.0


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

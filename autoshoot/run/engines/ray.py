"""The Ray engine: one long-lived worker per GPU, SKUs dispatched to them as tasks.

    driver (autoshoot shoot --engine ray)               Ray cluster
      holds the RUN lock, plans every SKU          ──►  SkuActor × N: one per GPU (num_gpus=1),
      queues chunks of analyze.batch_size SKUs          or CPU workers when the cluster has none;
      re-queues the SKUs of a worker that died          each builds one SkuWorker (stages and
      writes results.csv and the report                 model sessions) and keeps it for its life

Every worker writes into the same RUN folder through the same ``SkuWorker``/``SkuStore`` as
the local engine (atomic stage commits, one manifest per SKU), so resume, per-SKU isolation
and the results.csv schema do not change. The RUN folder and the catalog's image files must
be the same paths on every node (a shared filesystem); images the catalog gave as URLs were
downloaded by the driver, so on a cluster of several nodes it copies them into
``RUN/.inputs/`` as their SKUs are dispatched.

Fault tolerance: the actors restart when their process dies (OOM kill, preemption,
``ray.kill``). Each worker streams back every SKU's result as it finishes, so only the SKUs
in flight on that worker and not yet reported are lost; each is queued again, alone,
on the first free worker (another one when there is a choice), up to ``run.retries`` times,
after which it is marked failed. A retried SKU is re-planned from its manifest right before it
runs: the stages the dead worker already committed in this run are kept, and a SKU it finished
without reporting is not recomputed, so no SKU is processed twice to completion. "In this run"
is judged against the modification time of ``RUN/.ray-run-started``, which the driver writes
when the run starts (both times come from the shared filesystem's clock).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoshoot.errors import AutoshootError, ConfigError, ModelMissingError
from autoshoot.io import atomic_write_text

if TYPE_CHECKING:
    from autoshoot.catalog import Row
    from autoshoot.config import Config
    from autoshoot.run.worker import Plan, SkuWorker
    from autoshoot.stages.base import Stage
    from autoshoot.types import ShotResult

logger = logging.getLogger(__name__)

RAY_MISSING = "the ray engine needs Ray, which is not installed here: pip install 'autoshoot[ray]'"
STARTED_MARKER = ".ray-run-started"
STOP_MARKER = ".ray-stop"  # written by the driver on Ctrl-C: workers stop after the SKU in hand
INPUTS_DIR = ".inputs"
WAIT_S = 0.5  # how often the driver looks at should_stop while workers are busy
STALL_WARNING_S = 60.0  # warn when no worker has started for this long


def import_ray() -> Any:
    """``ray``, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(RAY_MISSING) from err
    return ray


# ---------------------------------------------------------------------------------------
# the worker side: one SkuWorker per actor process


class SkuActor:
    """Runs inside a Ray worker process. Wrapped with ``ray.remote`` by the driver.

    ``stages`` are the stage objects to use (pickled by Ray; the tests pass fakes), or None to
    build the real stages here. Models load lazily, once, on the first SKU that needs them.
    """

    def __init__(self, config: Config, run_dir: str, stages: list[Stage] | None, started_at: float | str):
        from autoshoot.run.recipe import make_worker

        # a RUN folder on an object store (a URI) gets a staged worker, stamped with this run's id
        run_id = started_at if isinstance(started_at, str) else ""
        self.worker = make_worker(config, run_dir, stages, run_id=run_id)
        self.started_at = started_at
        self.markers = RunMarkers(self.worker)

    def ping(self, stage_names: list[str]) -> tuple[int, str, list[tuple[str, str, str]]]:
        """Ready: the process id, the node's name, and the models of ``stage_names`` missing here."""
        import socket

        from autoshoot.errors import ModelMissingError

        try:
            self.worker.check_models(set(stage_names))
            missing: list[tuple[str, str, str]] = []
        except ModelMissingError as err:
            missing = err.missing
        return os.getpid(), socket.gethostname(), missing

    def process(self, items: list[tuple[Plan, bool]]) -> Iterator[tuple[ShotResult, dict[str, float]]]:
        """Run ``(plan, is_retry)`` items, yielding each SKU's result as it finishes.

        Called as a Ray streaming generator: the driver gets every result the moment it is
        made, so a worker that dies later in the chunk loses only the SKUs not yet reported.
        Each result comes with the seconds per stage spent since the previous one.
        """
        from autoshoot.types import ShotResult

        plans: list[Plan] = []
        for plan, is_retry in items:
            if is_retry:
                plan = replan_after_death(self.worker, plan, self.started_at)
            if plan.todo:
                plans.append(plan)
            else:  # finished by a worker that died before it could report it
                assert plan.result is not None
                yield ShotResult.from_json(plan.result), {}
        last = dict(self.worker.stage_seconds)
        stop = self.markers.stop_requested
        for result in self.worker.process(plans, stop) if plans else ():
            now = self.worker.stage_seconds
            yield result, {k: v - last.get(k, 0.0) for k, v in now.items() if v != last.get(k, 0.0)}
            last = dict(now)

    def analyze(
        self, items: list[tuple[Plan, bool]]
    ) -> tuple[list[tuple[Plan, ShotResult | None, float]], dict[str, float]]:
        """The VLM pool's task: the batchable stages (the brief) of ``(plan, is_retry)`` items,
        batched across all of them and committed per SKU as the local engine does.

        Returns, per SKU, ``(plan, result, seconds)``: ``result`` is None when its brief is
        committed and the rest is still to do, or its final result (a failed brief, or a SKU
        that a dead worker had finished); and the seconds per stage spent.
        """
        from autoshoot.types import ShotResult

        names = batchable_stage_names(self.worker.stages)
        plans: list[Plan] = []
        out: list[tuple[Plan, ShotResult | None, float]] = []
        for plan, is_retry in items:
            if is_retry:
                plan = replan_after_death(self.worker, plan, self.started_at)
            if any(name in plan.todo for name in names):
                plans.append(plan)
            elif plan.todo:  # a worker that died had committed its brief in this run
                out.append((plan, None, 0.0))
            else:
                assert plan.result is not None
                out.append((plan, ShotResult.from_json(plan.result), 0.0))
        last = dict(self.worker.stage_seconds)
        out += list(self.worker.process_batchable(plans)) if plans else []
        now = self.worker.stage_seconds
        return out, {k: v - last.get(k, 0.0) for k, v in now.items() if v != last.get(k, 0.0)}


def batchable_stage_names(stages: list[Stage]) -> list[str]:
    """The leading stages that batch across SKUs (the VLM brief): what the VLM pool runs."""
    names = []
    for stage in stages:
        if not stage.batchable:
            break
        names.append(stage.name)
    return names


def replan_after_death(worker: SkuWorker, plan: Plan, started_at: float | str) -> Plan:
    """The plan of a SKU whose worker died: keep what was committed in this run, redo the rest.

    A stage is kept when it was planned and its folder holds the planned key and a
    ``stage.json`` written after ``started_at`` (or when it was not planned at all). The SKU is
    complete when every stage is kept and its manifest records the final result. In a RUN
    folder on an object store, ``started_at`` is the run's id, which every commit records.
    """
    from autoshoot.run.worker import Plan

    store = worker.make_store(plan.row.sku)
    stage_names = [s.name for s in worker.stages]

    def committed_now(name: str) -> bool:
        if not store.is_done(name, plan.keys[name]):
            return False
        if name not in plan.todo:
            return True
        return store.stage_committed_since(name, started_at)

    todo = stage_names
    for i, name in enumerate(stage_names):
        if not committed_now(name):
            todo = stage_names[i:]
            break
    else:
        result = store.finished_result(plan.keys[stage_names[-1]])
        if result is not None and store.result_recorded_since(started_at):
            return Plan(plan.row, plan.keys, [], result)
        todo = stage_names[-1:]  # everything is committed but the result: redo the last stage
    logger.info("%s: retried after a worker died; to do: %s", plan.row.sku, ", ".join(todo))
    return Plan(plan.row, plan.keys, list(todo), change=plan.change)


class RunMarkers:
    """The marker files of a Ray run in RUN, through the worker's RUN folder (local or object store)."""

    def __init__(self, worker: SkuWorker):
        self.folder = worker.folder

    def write(self, name: str, text: str) -> None:
        self.folder.write_marker(name, text)

    def exists(self, name: str) -> bool:
        return self.folder.marker_exists(name)

    def remove(self, name: str) -> None:
        self.folder.remove_marker(name)

    def stop_requested(self) -> bool:
        return self.exists(STOP_MARKER)

    def mark_start(self) -> float | str:
        """A mark that commits of this run can be told by: a file time, or a run id."""
        return self.folder.mark_start(STARTED_MARKER)


# ---------------------------------------------------------------------------------------
# the driver side


@dataclass
class Chunk:
    plans: list[Plan]
    retry: bool = False
    avoid: int = -1  # the worker it died on, when it is a retry


@dataclass
class Running:
    index: int  # the actor
    chunk: Chunk
    reported: set[str] = field(default_factory=set)  # SKUs whose result came back

    def in_flight(self) -> list[Plan]:
        return [p for p in self.chunk.plans if p.row.sku not in self.reported]


@dataclass
class Pool:
    """The actors by index, in the states the dispatch loop moves them through."""

    kind: str  # "render" (whole SKUs) or "vlm" (briefs, batched across the catalog)
    actors: list[Any]
    stage_names: list[str]  # the stages some SKU still needs: their models are checked per node
    starting: dict[Any, int] = field(default_factory=dict)  # ping ref → actor index
    idle: list[int] = field(default_factory=list)
    busy: dict[Any, Running] = field(default_factory=dict)  # result stream → what it runs
    dead: set[int] = field(default_factory=set)
    ever_ready: bool = False  # some worker has started: later failures fail SKUs, not the run

    @property
    def alive(self) -> int:
        return len(self.actors) - len(self.dead)


class RayEngine:
    """Runs the planned SKUs on a pool of Ray actors; see the module docstring."""

    def __init__(self, config: Config, worker: SkuWorker):
        self.ray = import_ray()
        self.config = config
        self.worker = worker
        self.run_dir = worker.run_dir.resolve()  # the staging folder when RUN is on an object store
        self.markers = RunMarkers(worker)
        self.retries = max(0, int(config.run.retries))
        self.batch_size = max(1, int(getattr(config.analyze, "batch_size", 1)))
        self.started_ray = False
        self.single_node = True
        self.pool: Pool | None = None
        self.vlm_pool: Pool | None = None  # run.vlm_workers > 0: workers that write the briefs
        self.vlm_names: list[str] = []  # the stages the VLM pool runs (analyze)
        self._stage_seconds: dict[str, float] = {}

    @property
    def stage_seconds(self) -> dict[str, float]:
        return dict(self._stage_seconds)

    def run(self, plans: list[Plan], should_stop: Callable[[], bool]) -> Iterator[ShotResult]:
        if not plans:
            return
        # 1. connect to Ray (or start a local one) and mark the start of this run
        self.connect()
        self.markers.remove(STOP_MARKER)
        started_at = self.markers.mark_start()
        self.single_node = sum(1 for node in self.ray.nodes() if node.get("Alive")) <= 1
        # 2. the pools: one worker per GPU (or CPU workers), and optionally VLM workers
        vlm_names = batchable_stage_names(self.worker.stages) if self.config.run.vlm_workers > 0 else []
        briefs = [p for p in plans if any(name in p.todo for name in vlm_names)]
        n_workers, n_vlm, options = self.pool_sizes(len(plans), math.ceil(len(briefs) / self.batch_size))
        if n_vlm:
            # the VLM pool batches briefs across the whole catalog; SKUs reach the render
            # workers one by one as their briefs are committed (or at once when already done)
            self.vlm_names = vlm_names
            vlm_queue = deque(
                Chunk(briefs[i : i + self.batch_size]) for i in range(0, len(briefs), self.batch_size)
            )
            queue = deque(Chunk([p]) for p in plans if not any(name in p.todo for name in vlm_names))
            stage_names = sorted({name for p in plans for name in p.todo} - set(vlm_names))
            self.vlm_pool = self.start_pool("vlm", n_vlm, options, started_at, vlm_names)
        else:
            # chunks balanced over the workers; the VLM batches within a chunk
            chunk_size = min(self.batch_size, math.ceil(len(plans) / n_workers))
            queue = deque(Chunk(plans[i : i + chunk_size]) for i in range(0, len(plans), chunk_size))
            vlm_queue = deque()
            stage_names = sorted({name for p in plans for name in p.todo})
        self.pool = self.start_pool("render", n_workers, options, started_at, stage_names)
        pools = [pool for pool in (self.pool, self.vlm_pool) if pool is not None]
        deaths = {p.row.sku: 0 for p in plans}
        # 3. dispatch to free workers; collect results; re-queue the SKUs of a dead worker
        last_progress = time.monotonic()
        while queue or vlm_queue or any(pool.busy for pool in pools):
            stopping = should_stop()
            if stopping and not self.markers.exists(STOP_MARKER):
                self.markers.write(STOP_MARKER, "stop\n")  # workers finish the SKU in hand
            if not stopping:
                self.dispatch(self.pool, queue, "process")
                if self.vlm_pool is not None:
                    self.dispatch(self.vlm_pool, vlm_queue, "analyze")
            busy = any(pool.busy for pool in pools)
            if stopping and not busy:
                return
            if not (self.pool.busy or self.pool.starting or self.pool.idle):  # every worker is dead
                reason = "no Ray worker is left to run it (see the Ray logs)"
                yield from self.fail_all(queue, reason)
                yield from self.fail_all(vlm_queue, reason)
                return
            vlm = self.vlm_pool
            if vlm is not None and vlm_queue and not (vlm.busy or vlm.starting or vlm.idle):
                yield from self.fail_all(
                    vlm_queue, "no Ray VLM worker is left to write its brief (see the Ray logs)"
                )
            waiting = [ref for pool in pools for ref in (*pool.busy, *([] if stopping else pool.starting))]
            if not waiting:  # nothing in flight and nothing to hand out yet
                time.sleep(WAIT_S)
                continue
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=WAIT_S)
            if not ready and not busy and time.monotonic() - last_progress > STALL_WARNING_S:
                logger.warning("no Ray worker has started yet: the cluster may lack a free GPU/CPU")
                last_progress = time.monotonic()
            for ref in ready:
                last_progress = time.monotonic()
                pool = next(pool for pool in pools if ref in pool.starting or ref in pool.busy)
                if ref in pool.starting:
                    self.collect_ping(pool, ref)
                elif pool.kind == "vlm":
                    yield from self.collect_briefs(ref, queue, vlm_queue, deaths)
                else:
                    yield from self.collect_task(ref, queue, deaths)

    # -- setup ------------------------------------------------------------------------

    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        address = self.config.run.ray_address
        if address:
            logger.info("joining the Ray cluster at %s", address)
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as err:
                raise AutoshootError(
                    f"cannot join the Ray cluster at {address!r}: {first_line(err)}\n"
                    "Start one with `ray start --head` (on this machine, or pass --address HEAD_IP:6379), "
                    "or leave --address out to start a local Ray"
                ) from err
        else:
            num_cpus = max(os.cpu_count() or 1, self.config.run.gpus + self.config.run.vlm_workers)
            logger.info("starting a local Ray with %d CPUs", num_cpus)
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            self.started_ray = True

    def pool_sizes(self, n_skus: int, n_brief_batches: int) -> tuple[int, int, dict[str, Any]]:
        """Render workers, VLM workers, and the Ray resources of each: one GPU, or one CPU
        without GPUs. Without ``--gpus`` the render workers take the GPUs the VLM pool leaves."""
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        wanted = int(self.config.run.gpus)
        vlm = int(self.config.run.vlm_workers) if n_brief_batches else 0
        if gpus:
            n, have, what = wanted or max(1, gpus - vlm), gpus, "GPUs"
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": cpus_per_gpu(self.ray)}
        else:
            n, have, what = wanted or 1, int(resources.get("CPU", 1)), "CPUs"
            options = {"num_cpus": 1}
            if not wanted:
                logger.warning("the Ray cluster has no GPU: running 1 CPU worker (--gpus N for N workers)")
        if n + vlm > have:
            if self.started_ray and not vlm:
                raise ConfigError(
                    f"--gpus {n} asks for {n} workers but this machine has {have} {what}; "
                    f"pass --gpus {have} or fewer, or join a larger cluster with --address"
                )
            if self.started_ray:
                raise ConfigError(
                    f"{n} workers and {vlm} VLM workers need {n + vlm} {what} but this machine has {have}; "
                    "pass --gpus and --vlm-gpus that add up to no more, or join a larger cluster with --address"
                )
            logger.warning(
                "%d workers and %d VLM workers asked for, the cluster has %d %s now: the rest wait for nodes",
                n,
                vlm,
                have,
                what,
            )
        return max(1, min(n, n_skus)), min(vlm, n_brief_batches), options

    def start_pool(
        self, kind: str, n: int, options: dict[str, Any], started_at: float | str, stage_names: list[str]
    ) -> Pool:
        stages = stages_for_actors(self.worker.stages)
        config = config_for_actors(self.config, gpu="num_gpus" in options)
        remote = self.ray.remote(SkuActor).options(max_restarts=-1, max_task_retries=0, **options)
        location = self.worker.run_location  # a path on the shared filesystem, or the URI
        actors = [remote.remote(config, location, stages, started_at) for _ in range(n)]
        pool = Pool(kind, actors, stage_names)
        for i, actor in enumerate(actors):
            pool.starting[actor.ping.remote(stage_names)] = i
        logger.info(
            "started %d Ray %s workers (%s)", n, kind, ", ".join(f"{k}={v}" for k, v in options.items())
        )
        return pool

    def shared_row(self, row: Row) -> Row:
        """The row with an absolute image path that every node can read.

        An image the catalog gave as a URL (or an object-store URI) was downloaded into this
        machine's cache: on a cluster of several nodes it is copied into ``RUN/.inputs/``
        (shared) first. With a RUN folder on an object store, workers fetch an image from its
        URI themselves, and an http(s) image is uploaded to ``RUN/.inputs/`` for them.
        """
        assert row.image_path is not None
        path = Path(row.image_path).resolve()
        if self.single_node:
            return dataclasses.replace(row, image_path=path)
        return self.worker.folder.shared_image(row, path, INPUTS_DIR)

    # -- the dispatch loop -------------------------------------------------------------

    def dispatch(self, pool: Pool, queue: deque[Chunk], method: str) -> None:
        """Hand chunks to idle workers: ``process`` streams SKU results, ``analyze`` returns briefs."""
        while queue and pool.idle:
            chunk = queue.popleft()
            others = [i for i in pool.idle if i != chunk.avoid]
            index = others[0] if others else pool.idle[0]
            pool.idle.remove(index)
            items = [(dataclasses.replace(p, row=self.shared_row(p.row)), chunk.retry) for p in chunk.plans]
            task = getattr(pool.actors[index], method)
            if method == "process":
                task = task.options(num_returns="streaming")
            pool.busy[task.remote(items)] = Running(index, chunk)

    def collect_ping(self, pool: Pool, ref: Any) -> None:
        index = pool.starting.pop(ref)
        try:
            pid, host, missing = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:  # still restarting: ask again
            pool.starting[pool.actors[index].ping.remote(pool.stage_names)] = index
            return
        except self.ray.exceptions.RayError as err:
            pool.dead.add(index)
            logger.error("Ray %s worker %d could not start: %s", pool.kind, index, err)
            if not pool.alive and not pool.ever_ready:  # else the loop fails what is left
                raise AutoshootError(
                    f"no Ray {'VLM ' if pool.kind == 'vlm' else ''}worker could start: {last_line(err)}\n"
                    "Every node needs autoshoot installed (the same version) and the RUN folder "
                    "on a shared filesystem at the same path; see docs/scale-out.md"
                ) from err
            return
        if missing:  # this node lacks models: its worker would fail every SKU
            pool.dead.add(index)
            self.ray.kill(pool.actors[index], no_restart=True)
            problem = ModelMissingError(missing)
            logger.error("Ray worker %d on %s stops: %s", index, host, problem)
            if not pool.alive and not pool.ever_ready:
                raise AutoshootError(f"on the Ray node {host}: {problem}")
            return
        logger.info("Ray %s worker %d is ready (pid %d on %s)", pool.kind, index, pid, host)
        pool.ever_ready = True
        pool.idle.append(index)

    def collect_task(self, stream: Any, queue: deque[Chunk], deaths: dict[str, int]) -> Iterator[ShotResult]:
        """The next result of a worker's stream; its end frees the worker; its death re-queues."""
        ray = self.ray
        pool = self.pool
        assert pool is not None
        running = pool.busy[stream]
        index = running.index
        try:
            result, spent = ray.get(next(stream))
        except StopIteration:
            del pool.busy[stream]
            pool.idle.append(index)
            return
        except ray.exceptions.RayActorError as err:
            # the worker process died: its unreported SKUs go back to the queue, one by one, first
            del pool.busy[stream]
            lost = running.in_flight()
            logger.warning(
                "Ray worker %d died with %d SKU(s) in flight: %s", index, len(lost), first_line(err)
            )
            pool.starting[pool.actors[index].ping.remote(pool.stage_names)] = (
                index  # back in the pool once restarted
            )
            yield from self.requeue(running, queue, deaths, err)
            return
        except ray.exceptions.RayTaskError as err:
            # a bug outside the stages (which are isolated per SKU): fail the rest of this chunk
            del pool.busy[stream]
            pool.idle.append(index)
            logger.error("Ray worker %d failed a chunk: %s", index, err)
            cause = getattr(err, "cause", None) or err
            for plan in running.in_flight():
                yield self.failed(plan, f"worker error: {first_line(cause)}", err)
            return
        running.reported.add(result.sku)
        for name, seconds in spent.items():
            self._stage_seconds[name] = self._stage_seconds.get(name, 0.0) + seconds
        yield result

    def collect_briefs(
        self, ref: Any, queue: deque[Chunk], vlm_queue: deque[Chunk], deaths: dict[str, int]
    ) -> Iterator[ShotResult]:
        """A VLM worker's batch: SKUs with a committed brief go to the render queue; a dead VLM
        worker's batch goes back, SKU by SKU, like the SKUs of a dead render worker."""
        ray = self.ray
        pool = self.vlm_pool
        assert pool is not None
        running = pool.busy.pop(ref)
        try:
            outcomes, spent = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            logger.warning(
                "Ray VLM worker %d died with a batch of %d: %s",
                running.index,
                len(running.chunk.plans),
                first_line(err),
            )
            pool.starting[pool.actors[running.index].ping.remote(pool.stage_names)] = running.index
            yield from self.requeue(running, vlm_queue, deaths, err)
            return
        except ray.exceptions.RayTaskError as err:
            pool.idle.append(running.index)
            logger.error("Ray VLM worker %d failed a batch: %s", running.index, err)
            cause = getattr(err, "cause", None) or err
            for plan in running.chunk.plans:
                yield self.failed(plan, f"worker error: {first_line(cause)}", err)
            return
        pool.idle.append(running.index)
        for name, seconds in spent.items():
            self._stage_seconds[name] = self._stage_seconds.get(name, 0.0) + seconds
        ours = {p.row.sku: p for p in running.chunk.plans}
        for done, result, seconds in outcomes:
            plan = ours[done.row.sku]
            if (
                result is not None
            ):  # its brief failed (the SKU fails, as on the local engine), or it is complete
                yield result
                continue
            todo = [name for name in done.todo if name not in self.vlm_names] or done.todo[-1:]
            queue.append(Chunk([dataclasses.replace(plan, todo=todo, seconds_before=seconds)]))

    def requeue(
        self, running: Running, queue: deque[Chunk], deaths: dict[str, int], err: BaseException
    ) -> Iterator[ShotResult]:
        """The unreported SKUs of a dead worker go back to the front of ``queue``, one by one."""
        for plan in reversed(running.in_flight()):
            sku = plan.row.sku
            deaths[sku] += 1
            if deaths[sku] > self.retries:
                yield self.failed(
                    plan,
                    f"the worker died {deaths[sku]} times while running it ({type(err).__name__}); see the Ray logs",
                )
            else:
                queue.appendleft(Chunk([plan], retry=True, avoid=running.index))

    def failed(self, plan: Plan, reason: str, err: BaseException | None = None) -> ShotResult:
        from autoshoot.types import ShotResult

        detail = "".join(traceback.format_exception(err)) if err is not None else ""
        store = self.worker.make_store(plan.row.sku)
        store.log(f"failed: {reason}\n{detail}")
        store.flush()
        return ShotResult(row=plan.row.row_number, sku=plan.row.sku, status="failed", reason=reason)

    def fail_all(self, queue: deque[Chunk], reason: str) -> Iterator[ShotResult]:
        while queue:
            for plan in queue.popleft().plans:
                yield self.failed(plan, reason)

    def close(self) -> None:
        try:
            for pool in (self.pool, self.vlm_pool):
                for actor in pool.actors if pool is not None else ():
                    try:
                        self.ray.kill(actor, no_restart=True)
                    except Exception as err:  # noqa: BLE001 - already gone
                        logger.debug("kill: %s", err)
            self.pool = self.vlm_pool = None
            if self.started_ray:
                self.ray.shutdown()
                self.started_ray = False
            self.markers.remove(STOP_MARKER)
        finally:
            self.worker.close()


def write_start_marker(run_dir: Path) -> float:
    """Write ``RUN/.ray-run-started`` and return its mtime: the filesystem's "now"."""
    path = atomic_write_text(run_dir / STARTED_MARKER, f"{time.time()}\n")
    return path.stat().st_mtime


def stages_for_actors(stages: list[Stage]) -> list[Stage] | None:
    """None when ``stages`` are the real stages (each actor builds its own); else the objects."""
    from autoshoot.run.keys import build_stages

    real = [type(s) for s in build_stages()]
    return None if [type(s) for s in stages] == real else list(stages)


def config_for_actors(config: Config, gpu: bool) -> Config:
    """On a GPU worker Ray shows the actor only its own GPU: ``cuda:N`` becomes ``cuda``.

    ``run`` is in no stage's cache key, so the keys do not change.
    """
    if gpu and config.run.device.startswith("cuda:"):
        return dataclasses.replace(config, run=dataclasses.replace(config.run, device="cuda"))
    return config


def cpus_per_gpu(ray: Any) -> int:
    """CPUs for each GPU worker: the smallest CPUs-per-GPU ratio over the GPU nodes (>= 1)."""
    ratios = []
    for node in ray.nodes():
        res = node.get("Resources", {})
        if node.get("Alive") and res.get("GPU"):
            ratios.append(int(res.get("CPU", 1) // res["GPU"]))
    return max(1, min(ratios)) if ratios else 1


def last_line(err: BaseException) -> str:
    """The last line of a remote traceback: the exception that ended it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

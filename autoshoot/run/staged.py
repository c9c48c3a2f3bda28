"""A RUN folder on an object store: the local code, run in a staging folder, pushed stage by stage.

Object stores cannot rename a folder atomically, but one object PUT is atomic. So:

    RUN (s3://bucket/runs/x)                      this process's staging folder
      <sku>/manifest.json   ◄── pushed last ───     <sku>/manifest.json
      <sku>/<stage>/…       ◄── pushed first ──     <sku>/<stage>/… (renamed into place locally)
      <sku>/log.txt, best.png, input.jpg, report_block.html
      results.csv, results.parquet, report.html, config.yaml   (written by the driver)

- Each SKU is processed by the unchanged local code (``SkuWorker``/``SkuStore``) in a local
  folder that mirrors ``RUN/<sku>/``. Before a SKU starts, that folder is emptied and refilled
  from the store: the manifest, the log and the input thumbnail. Nothing else is fetched until
  a stage reads an earlier stage's output (``job.input_dir``): only what later stages need is
  downloaded, and only for SKUs resumed part-way.
- A stage commits locally as before (a temp folder renamed into place); then its files are
  uploaded, stale files of an older version of that stage are deleted, and only then the
  manifest that records it. The manifest is the commit marker: a run killed at any moment
  leaves at most unclaimed files, never a claim without its files. When a stage is redone,
  the manifest that forgets it (and the SKU's result) is uploaded before its new files.
- The result is recorded the same way: ``best.png`` first, then the manifest.
- Each stage entry and result carries the id of the run that wrote it, so the Ray engine can
  tell what a dead worker committed in this run without comparing clocks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoshoot.run.folder import ObjectStoreRunFolder
from autoshoot.run.layout import MANIFEST, sku_folder_name
from autoshoot.run.store import SkuStore
from autoshoot.run.worker import Plan, SkuWorker
from autoshoot.storage import RemoteRun

if TYPE_CHECKING:
    from autoshoot.catalog import Row
    from autoshoot.config import Config
    from autoshoot.stages.base import Job, Stage
    from autoshoot.types import ShotResult

logger = logging.getLogger(__name__)

LOG = "log.txt"
THUMBNAIL = "input.jpg"
ROOT_FILES = (THUMBNAIL, LOG, "report_block.html")  # besides the manifest and best.*
REPORT_STAGES = ("analyze", "prepare", "composite", "score", "rank")  # what report blocks show
KEEP_AFTER_SKU = (MANIFEST, "report_block.html")  # small files the driver's report reads


class StagedSkuStore(SkuStore):
    """``SkuStore`` in a local staging folder, pushing each commit to ``RUN/<sku>/``."""

    def __init__(self, run: RemoteRun, sku: str, run_id: str):
        super().__init__(run.staging, sku)
        self.remote = run
        self.rel = self.dir.name
        self.run_id = run_id
        self.remote_files: dict[str, dict[str, Any]] | None = None  # set by open(): name → info
        self._log_changed = False

    # -- reading the SKU from the store ---------------------------------------------------

    def preset(self, manifest: dict[str, Any]) -> None:
        """Use a manifest read ahead in bulk (planning), without opening the SKU."""
        self._manifest = manifest
        self._manifest.setdefault("sku", self.sku)
        self._manifest.setdefault("stages", {})

    def open(self) -> None:
        """Empty the local folder and refill it from the store: manifest, log and thumbnail."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.remote_files = self.remote.listing(self.rel)
        wanted = [name for name in (MANIFEST, LOG, THUMBNAIL) if name in self.remote_files]
        self.remote.get([(f"{self.rel}/{name}", self.dir / name) for name in wanted])
        self._manifest = None  # read from the copy just fetched
        self._log_changed = False

    @property
    def opened(self) -> bool:
        return self.remote_files is not None

    def ensure_open(self) -> None:
        if not self.opened:
            self.open()

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None and not self.opened:
            self.open()
        return SkuStore.manifest.fget(self)  # type: ignore[attr-defined]

    def is_done(self, name: str, key: str) -> bool:
        """The manifest is the commit marker; once open, the stage's files must be listed too."""
        entry = self.manifest["stages"].get(name)
        if not entry or entry.get("key") != key:
            return False
        return self.remote_files is None or f"{name}/stage.json" in self.remote_files

    def fetch_stage(self, name: str) -> None:
        """Download a committed stage's folder unless it is here already."""
        if (self.stage_dir(name) / "stage.json").is_file():
            return
        if not self.opened:
            self.open()
        assert self.remote_files is not None
        files = [f for f in self.remote_files if f.startswith(name + "/")]
        if f"{name}/stage.json" not in files:
            from autoshoot.errors import StageError

            if self.manifest["stages"].pop(name, None) is not None:
                self.save()  # the manifest no longer claims it: the next run redoes it
            raise StageError(
                f"{self.remote.uri_of(self.rel)}/{name} is missing from the store although it was "
                "recorded as done; it is redone on the next run"
            )
        self.remote.get([(f"{self.rel}/{f}", self.dir / f) for f in files])

    # -- writing: stage files first, the manifest last ---------------------------------

    def save(self) -> None:
        super().save()
        self.remote.put([(self.dir / MANIFEST, f"{self.rel}/{MANIFEST}")])

    def commit_stage(self, name: str, tmp: Path, entry: dict[str, Any]) -> Path:
        if not self.opened:
            self.open()
        return super().commit_stage(name, tmp, {**entry, "run": self.run_id})

    def swap_in(self, name: str, tmp: Path) -> Path:
        final = super().swap_in(name, tmp)
        self.push_folder(name, final)
        return final

    def push_folder(self, name: str, folder: Path) -> None:
        """Upload ``<stage>/`` and delete what an older version of it left in the store."""
        assert self.remote_files is not None
        new = {f"{name}/{p.relative_to(folder).as_posix()}": p for p in folder.rglob("*") if p.is_file()}
        self.remote.put([(path, f"{self.rel}/{rel}") for rel, path in new.items()])
        stale = [rel for rel in self.remote_files if rel.startswith(name + "/") and rel not in new]
        self.remote.remove([f"{self.rel}/{rel}" for rel in stale])
        for rel in stale:
            del self.remote_files[rel]
        self.remote_files.update({rel: {"size": path.stat().st_size} for rel, path in new.items()})

    def record_result(self, result: dict[str, Any]) -> None:
        self.push_root([p.name for p in self.dir.glob("best.*")], always=True)
        self.push_root([THUMBNAIL])
        super().record_result({**result, "run": self.run_id})

    def push_root(self, names: list[str], always: bool = False) -> None:
        """Upload files at the SKU's top level that are new here (or ``always``)."""
        if not self.opened:
            self.open()
        assert self.remote_files is not None
        pairs = [
            (self.dir / name, f"{self.rel}/{name}")
            for name in names
            if (self.dir / name).is_file() and (always or name not in self.remote_files)
        ]
        self.remote.put(pairs)
        for _, rel in pairs:
            self.remote_files[rel.split("/", 1)[1]] = {}

    def log(self, text: str) -> None:
        if not self.opened:
            self.open()  # appends go after what the store's log.txt already holds
        super().log(text)
        self._log_changed = True

    def flush(self) -> None:
        """Upload the log and the report block (the stage files and manifest went at commit)."""
        if not self.opened:
            return
        self.push_root([THUMBNAIL])
        self.push_root(["report_block.html"] + ([LOG] if self._log_changed else []), always=True)
        self._log_changed = False

    def prune(self, keep: tuple[str, ...] = KEEP_AFTER_SKU) -> None:
        """Free the local copy of a finished SKU, but for the small files the driver's report reads."""
        if not self.dir.is_dir():
            return
        for child in self.dir.iterdir():
            if child.name in keep:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    # -- what the Ray engine asks after a worker died --------------------------------------

    def stage_committed_since(self, name: str, since: Any) -> bool:
        return self.manifest["stages"].get(name, {}).get("run") == since

    def result_recorded_since(self, since: Any) -> bool:
        return (self.manifest.get("result") or {}).get("run") == since


class StageInputs(dict):
    """``job.inputs`` that downloads a committed stage's folder the first time a stage reads it."""

    def __init__(self, store: StagedSkuStore):
        super().__init__()
        self.store = store

    def __getitem__(self, name: str) -> Path:
        path = super().__getitem__(name)
        self.store.fetch_stage(name)
        return path


class StagedSkuWorker(SkuWorker):
    """``SkuWorker`` for a RUN folder on an object store; see the module docstring."""

    def __init__(
        self,
        config: Config,
        run: RemoteRun,
        stages: list[Stage] | None = None,
        run_id: str = "",
        owns_run: bool = False,
    ):
        super().__init__(config, run.staging, stages)
        self.remote = run
        self.folder = ObjectStoreRunFolder(run, owns=False)
        self.run_id = run_id or uuid.uuid4().hex
        self.owns_run = owns_run  # close() removes the staging folder
        self.stores: dict[str, StagedSkuStore] = {}

    @property
    def run_location(self) -> str:
        return self.remote.uri

    def make_store(self, sku: str) -> StagedSkuStore:
        store = self.stores.get(sku)
        if store is None:
            store = self.stores[sku] = StagedSkuStore(self.remote, sku, self.run_id)
        return store

    def prefetch(self, skus: list[str]) -> None:
        """Every SKU's manifest in one concurrent batch, for planning."""
        rels = {sku: f"{sku_folder_name(sku)}/{MANIFEST}" for sku in skus}
        found = self.remote.cat(list(rels.values()))
        for sku, rel in rels.items():
            try:
                manifest = json.loads(found[rel]) if rel in found else {}
            except ValueError:
                logger.warning("%s is unreadable; the SKU is redone", self.remote.uri_of(rel))
                manifest = {}
            self.make_store(sku).preset(manifest)

    def make_job(self, row: Row) -> Job:
        job = super().make_job(row)
        job.inputs = StageInputs(self.make_store(row.sku))
        return job

    streams_chunks = False  # each chunk's SKUs are opened, and pushed, as one

    def process(
        self, plans: list[Plan], should_stop: Callable[[], bool] = lambda: False
    ) -> Iterator[ShotResult]:
        ready, failed = self._open_all(plans)
        for _, result in failed:
            yield result
        try:
            for result in super().process(ready, should_stop):
                self._close_sku(result.sku)
                yield result
        finally:
            for plan in ready:  # not started (a stop), or the chunk broke off
                self.stores.pop(plan.row.sku, None)

    def process_batchable(self, plans: list[Plan]) -> Iterator[tuple[Plan, ShotResult | None, float]]:
        ready, failed = self._open_all(plans)
        for plan, result in failed:
            yield plan, result, 0.0
        for plan, result, seconds in super().process_batchable(ready):
            self._close_sku(plan.row.sku)
            yield plan, result, seconds

    def write_block(self, result: ShotResult) -> None:
        """The report block reads a few stages' files: fetch those a resumed SKU lacks."""
        store = self.make_store(result.sku)
        for name in REPORT_STAGES:
            if name in store.manifest["stages"] and not (store.stage_dir(name) / "stage.json").is_file():
                try:
                    store.fetch_stage(name)
                except Exception as err:  # noqa: BLE001 - a report block is cosmetic
                    logger.warning("%s: no %s files for the report: %s", result.sku, name, err)
        super().write_block(result)

    def _open_all(self, plans: list[Plan]) -> tuple[list[Plan], list[tuple[Plan, ShotResult]]]:
        """Open each plan's SKU: (the plans ready to run, (plan, failed result) for the others)."""
        ready, failed = [], []
        for plan in plans:
            opened = self._open(plan)
            if isinstance(opened, Plan):
                ready.append(opened)
            else:
                failed.append((plan, opened))
        return ready, failed

    def _open(self, plan: Plan) -> Plan | ShotResult:
        """Open the SKU's store and make its image readable here; a failed result if it is not."""
        store = self.make_store(plan.row.sku)
        store.open()
        try:
            return dataclasses.replace(plan, row=self.local_row(plan.row))
        except Exception as err:  # noqa: BLE001 - this SKU fails, the others go on
            from autoshoot.types import ShotResult

            reason = f"image: {type(err).__name__}: {err}"
            store.log(f"failed: {reason}\n" + "".join(traceback.format_exception(err)))
            store.flush()
            self.stores.pop(plan.row.sku, None)
            return ShotResult(row=plan.row.row_number, sku=plan.row.sku, status="failed", reason=reason)

    def after_sku(self, sku: str) -> None:
        self._close_sku(sku)

    def _close_sku(self, sku: str) -> None:
        store = self.stores.pop(sku, None)
        if store is not None:
            store.flush()
            # a Ray worker's staging folder is its own: nothing in it is read after the SKU
            store.prune(keep=() if self.owns_run else KEEP_AFTER_SKU)

    def local_row(self, row: Row) -> Row:
        """The row with a local image file: on another machine than the driver's, fetched by URI."""
        if row.image_path is not None and Path(row.image_path).is_file():
            return row
        if not row.image_uri:
            raise FileNotFoundError(
                f"{row.image_path} is not on this machine; give images as s3:// or gs:// URIs, or put "
                "them at the same path on every node"
            )
        from autoshoot.catalog import default_cache_dir
        from autoshoot.storage import fetch_verified

        path = fetch_verified(row.image_uri, row.image_sha256, default_cache_dir())
        return dataclasses.replace(row, image_path=path)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.owns_run:
                self.remote.close()


def pull_report_blocks(run: RemoteRun, results: list[ShotResult]) -> None:
    """Fetch the report blocks that this process does not have up to date (other workers' SKUs)."""
    ObjectStoreRunFolder(run, owns=False).fetch_report_blocks(results)

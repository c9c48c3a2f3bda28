"""A folder the run core reads and writes: a local directory or a prefix on an object store.

One small interface, two implementations, so that code above it (the reuse index, the Ray
engine's run markers) never asks which kind it was given:

    folder = open_folder("runs/.autoshoot-reuse")        # LocalFolder
    folder = open_folder("s3://bucket/runs/2026-12-04")  # ObjectFolder (fsspec)
    folder.write_bytes("a/b.json", data)   # atomic: a reader sees the old or the new bytes
    folder.cat(["a/b.json", "c.json"])     # the bytes of those that exist, fetched concurrently
    folder.copy_tree("sku/render", Path("tmp"))  # every file under a sub-folder, to a local folder

Paths given to the methods are relative to the folder, with ``/`` separators.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoshoot.io import atomic_write_bytes
from autoshoot.storage import get_fs, is_uri, local_path


class Folder:
    """What both kinds of folder offer; see the module docstring."""

    location: str  # a resolved local path or a URI: what another process is given

    @property
    def name(self) -> str:
        return posixpath.basename(self.location.rstrip("/"))

    def parent_location(self) -> str:
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def remove(self, rel: str) -> None:
        """Remove one file; a missing one is not an error."""
        raise NotImplementedError

    def cat(self, rels: list[str]) -> dict[str, bytes]:
        """The bytes of each file that exists (missing ones are left out)."""
        out: dict[str, bytes] = {}
        for rel in rels:
            try:
                out[rel] = self.read_bytes(rel)
            except FileNotFoundError:
                continue
        return out

    def copy_tree(self, rel: str, target: Path) -> int:
        """Copy every file under the sub-folder ``rel`` into the local folder ``target``.

        Returns how many files were copied. Raises FileNotFoundError when ``rel`` holds none.
        """
        raise NotImplementedError


class LocalFolder(Folder):
    def __init__(self, path: str | os.PathLike[str]):
        self.path = local_path(path).resolve()
        self.location = str(self.path)

    def __repr__(self) -> str:
        return f"LocalFolder({self.location!r})"

    def parent_location(self) -> str:
        return str(self.path.parent)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except IsADirectoryError:
            raise FileNotFoundError(str(self.path / rel)) from None

    def write_bytes(self, rel: str, data: bytes) -> None:
        atomic_write_bytes(self.path / rel, data)

    def exists(self, rel: str) -> bool:
        return (self.path / rel).exists()

    def remove(self, rel: str) -> None:
        (self.path / rel).unlink(missing_ok=True)

    def copy_tree(self, rel: str, target: Path) -> int:
        """Hard links where the file system allows (the same disk: no space, no time), else copies.

        Safe because nothing in a RUN folder is ever rewritten in place: every file is written
        under a temp name and renamed, so a linked file never changes under the other run.
        """
        source = self.path / rel
        files = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else []
        if not files:
            raise FileNotFoundError(f"{source} holds no files")
        for path in files:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)
        return len(files)


class ObjectFolder(Folder):
    """A prefix on an object store, through fsspec (s3://, gs://, memory:// …)."""

    def __init__(self, uri: str):
        self.location = uri.rstrip("/")
        # no listing cache: other processes (Ray workers, other runs) write here too
        self.fs, root = get_fs(self.location, use_listings_cache=False, skip_instance_cache=True)
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"ObjectFolder({self.location!r})"

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def parent_location(self) -> str:
        from autoshoot.storage import parent_uri

        return parent_uri(self.location)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.full(rel), data)  # one PUT: whole or nothing

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.full(rel)))

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.full(rel))
        except FileNotFoundError:
            pass

    def cat(self, rels: list[str]) -> dict[str, bytes]:
        if not rels:
            return {}
        found: dict[str, Any] = self.fs.cat([self.full(r) for r in rels], on_error="return")
        out = {}
        for rel in rels:
            value = found.get(self.full(rel))
            if isinstance(value, bytes):
                out[rel] = value
            elif isinstance(value, BaseException) and not isinstance(value, FileNotFoundError):
                raise value
        return out

    def copy_tree(self, rel: str, target: Path) -> int:
        base = self.full(rel)
        try:
            found = [p for p in self.fs.find(base) if p.startswith(base + "/")]
        except FileNotFoundError:
            found = []
        if not found:
            raise FileNotFoundError(f"{self.location}/{rel} holds no files")
        locals_ = [str(target / p[len(base) + 1 :]) for p in found]
        for path in locals_:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.fs.get(found, locals_)  # concurrent on async stores
        return len(found)


def open_folder(location: str | os.PathLike[str]) -> Folder:
    """A local path (or ``file://`` URI) as a LocalFolder, any other URI as an ObjectFolder."""
    return ObjectFolder(str(location)) if is_uri(location) else LocalFolder(location)


# ---------------------------------------------------------------------------------------
# a RUN folder: the run core's one seam between a local folder and an object store


class RunFolder:
    """A RUN folder as the recipe, the SKU worker and the Ray engine use it.

    The local code always writes into ``local_dir``: the folder itself, or this process's
    staging folder for a RUN on an object store. Everything that differs between the two lives
    in the two subclasses, so no caller asks which one it holds.
    """

    local_dir: Path
    location: str  # what another process (a Ray worker) is given: a resolved path or a URI
    worker_factory: str  # "module:Class" of the SKU worker that writes here
    # the review loop (autoshoot.review.nightly) reads the decisions of the RUN folders beside
    # this one on disk; a RUN on an object store does not take part
    reviewable: bool = False

    def __str__(self) -> str:
        return self.location

    @property
    def summary_name(self) -> Path | str:
        """How the run's summary names the folder."""
        return self.location

    def is_new(self) -> bool:
        """Nothing is there yet (a run that stops before its first SKU then leaves nothing)."""
        return False

    def lock(self) -> Any:
        """A context manager holding the run's exclusive lock; it yields an object whose ``lost``
        turns true if another run takes the lock over (or None where that cannot happen)."""
        raise NotImplementedError

    def publish(self, names: list[str]) -> None:
        """Make the top-level files just written in ``local_dir`` visible in the RUN folder."""

    def fetch_report_blocks(self, results: list[Any]) -> None:
        """Bring the report blocks other processes wrote into ``local_dir`` (object stores)."""

    def check_cache_path(self) -> Path:
        """Where the record of images already checked lives (a local file)."""
        raise NotImplementedError

    def make_worker(self, config: Any, stages: list[Any] | None, run_id: str = "", owns: bool = False) -> Any:
        """The SKU worker that writes here; ``owns``: the worker closes what the folder holds."""
        raise NotImplementedError

    # -- small marker files of a run (the Ray engine's start and stop marks) ---------------

    def write_marker(self, name: str, text: str) -> None:
        raise NotImplementedError

    def marker_exists(self, name: str) -> bool:
        raise NotImplementedError

    def remove_marker(self, name: str) -> None:
        raise NotImplementedError

    def mark_start(self, name: str) -> float | str:
        """A mark that this run's commits can be told by: a file time, or a run id."""
        raise NotImplementedError

    def shared_image(self, row: Any, path: Path, inputs_dir: str) -> Any:
        """The row with an image that workers on other nodes can reach; see RayEngine.shared_row."""
        raise NotImplementedError

    def remove_if_unused(self, before_any_sku: set[str]) -> None:
        """Remove the folder when it holds only what a run writes before its first SKU."""

    def close(self) -> None:
        """Free what this process holds for the folder (a staging folder)."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on a local RUN: a second run on the same folder stops at once."""
    import fcntl

    from autoshoot.errors import RunLockedError

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


def _load(factory: str) -> Any:
    import importlib

    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)


class LocalRunFolder(RunFolder):
    worker_factory = "autoshoot.run.worker:SkuWorker"
    reviewable = True

    def __init__(self, path: str | os.PathLike[str]):
        self.path = local_path(path)
        self.local_dir = self.path
        self.location = str(self.path.resolve())

    def __repr__(self) -> str:
        return f"LocalRunFolder({str(self.path)!r})"

    @property
    def summary_name(self) -> Path:
        return self.path

    def is_new(self) -> bool:
        return not self.path.exists()

    def lock(self) -> Any:
        return run_lock(self.path)

    def check_cache_path(self) -> Path:
        from autoshoot.run.layout import CHECK_CACHE

        return self.path / CHECK_CACHE

    def make_worker(self, config: Any, stages: list[Any] | None, run_id: str = "", owns: bool = False) -> Any:
        return _load(self.worker_factory)(config, self.path, stages)

    def write_marker(self, name: str, text: str) -> None:
        from autoshoot.io import atomic_write_text

        atomic_write_text(self.path / name, text)

    def marker_exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def remove_marker(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def mark_start(self, name: str) -> float:
        """The marker file's modification time: the (shared) file system's clock."""
        import time

        self.write_marker(name, f"{time.time()}\n")
        return (self.path / name).stat().st_mtime

    def shared_image(self, row: Any, path: Path, inputs_dir: str) -> Any:
        """An image downloaded by this machine (a URL or URI) is copied into ``RUN/<inputs_dir>/``."""
        import dataclasses

        if row.image.startswith(("http://", "https://")) or row.image_uri:
            target = self.path.resolve() / inputs_dir / f"{row.image_sha256}{path.suffix}"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            path = target
        return dataclasses.replace(row, image_path=path)

    def remove_if_unused(self, before_any_sku: set[str]) -> None:
        try:
            if {p.name for p in self.path.iterdir()} <= before_any_sku:
                shutil.rmtree(self.path)
        except OSError:
            pass


class ObjectStoreRunFolder(RunFolder):
    """A RUN folder on an object store, written through a local staging folder (autoshoot.run.staged)."""

    worker_factory = "autoshoot.run.staged:StagedSkuWorker"

    def __init__(self, remote: Any, owns: bool = True):
        self.remote = remote  # autoshoot.storage.RemoteRun
        self.owns = owns  # close() removes the staging folder
        self.local_dir = remote.staging
        self.location = remote.uri

    def __repr__(self) -> str:
        return f"ObjectStoreRunFolder({self.location!r})"

    def lock(self) -> Any:
        return self.remote.lock()

    def publish(self, names: list[str]) -> None:
        self.remote.put([(self.local_dir / name, name) for name in names])

    def fetch_report_blocks(self, results: list[Any]) -> None:
        """Fetch the report blocks that this process does not have up to date (other workers' SKUs)."""
        from autoshoot.report.html import BLOCK_FILE, block_is_current
        from autoshoot.run.layout import sku_folder_name

        wanted = {}
        for result in results:
            if result.sku and not block_is_current(self.local_dir, result):
                folder = self.local_dir / sku_folder_name(result.sku)
                wanted[f"{sku_folder_name(result.sku)}/{BLOCK_FILE}"] = folder
        for rel, data in self.remote.cat(list(wanted)).items():
            folder = wanted[rel]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / BLOCK_FILE).write_bytes(data)

    def check_cache_path(self) -> Path:
        """This machine's record for the run (it names local files), keyed by the run's URI."""
        from autoshoot.catalog import default_cache_dir
        from autoshoot.storage import check_cache_path

        return check_cache_path(self.location, lambda: default_cache_dir().parent)

    def make_worker(self, config: Any, stages: list[Any] | None, run_id: str = "", owns: bool = False) -> Any:
        return _load(self.worker_factory)(config, self.remote, stages, run_id=run_id, owns_run=owns)

    def write_marker(self, name: str, text: str) -> None:
        self.remote.write_bytes(name, text.encode())

    def marker_exists(self, name: str) -> bool:
        return self.remote.exists(name)

    def remove_marker(self, name: str) -> None:
        self.remote.remove([name])

    def mark_start(self, name: str) -> str:
        """A fresh run id, which every commit of this run records."""
        import uuid

        run_id = uuid.uuid4().hex
        self.write_marker(name, f"{run_id}\n")
        return run_id

    def shared_image(self, row: Any, path: Path, inputs_dir: str) -> Any:
        """Workers fetch an image from its URI themselves; an http(s) image is uploaded for them."""
        import dataclasses

        if not row.image_uri and row.image.startswith(("http://", "https://")):
            rel = f"{inputs_dir}/{row.image_sha256}{path.suffix}"
            if not self.remote.exists(rel):
                self.remote.put([(path, rel)])
            return dataclasses.replace(row, image_path=path, image_uri=self.remote.uri_of(rel))
        return dataclasses.replace(row, image_path=path)

    def close(self) -> None:
        if self.owns:
            self.remote.close()


def open_run(run: Any) -> RunFolder:
    """A RunFolder for a path, a URI, a RemoteRun (not owned: its opener closes it) or a RunFolder."""
    from autoshoot.storage import RemoteRun

    if isinstance(run, RunFolder):
        return run
    if isinstance(run, RemoteRun):
        return ObjectStoreRunFolder(run, owns=False)
    if is_uri(run):
        return ObjectStoreRunFolder(RemoteRun(str(run)), owns=True)
    return LocalRunFolder(run)

"""Object-store URIs for catalogs, images and RUN folders, through fsspec.

    s3://bucket/catalogs/nightly.csv     a catalog (relative image paths start at its folder)
    gs://bucket/photos/bag-01.jpg        an image cell
    s3://bucket/runs/2026-11-24          a RUN folder (see ``RemoteRun``)

Any fsspec URL works (``memory://``, ``az://`` …) when its filesystem package is installed;
``s3://`` and ``gs://`` come with ``pip install 'autoshoot[cloud]'``. A ``file://`` URI, or a
plain path, is a local path and never goes through this module.

``RemoteRun`` is what a RUN folder on an object store needs beside the local code: bulk
get/put/list with the store's own concurrency, and a lock object. Object stores have no
atomic rename of folders, but a single object PUT is atomic: the staged SKU store
(``autoshoot.run.staged``) builds every guarantee of the local RUN folder on that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from autoshoot.errors import ConfigError, RunLockedError

logger = logging.getLogger(__name__)

CLOUD_EXTRA = "pip install 'autoshoot[cloud]'"
CLOUD_PROTOCOLS = ("s3", "s3a", "gs", "gcs")  # the filesystems that the [cloud] extra installs
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
CONCURRENCY = 32  # requests in flight at once for bulk get/put/cat
LOCK = ".lock"
LOCK_HEARTBEAT_S = 30.0  # the holder rewrites the lock object this often
LOCK_STALE_S = 120.0  # a lock not rewritten for this long belongs to a dead run


def is_uri(value: str | os.PathLike[str]) -> bool:
    """True for ``scheme://…`` other than ``file://`` (a local path)."""
    match = _URI.match(str(value))
    return bool(match) and match.group(1).lower() != "file"


def local_path(value: str | os.PathLike[str]) -> Path:
    """A local path from a path or a ``file://`` URI."""
    text = str(value)
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    return Path(text)


def protocol(uri: str) -> str:
    match = _URI.match(uri)
    return match.group(1).lower() if match else ""


class StorageUnavailable(ConfigError):
    """A URI this machine cannot open: its filesystem package is missing, or fsspec knows no such protocol."""

    def __init__(self, uri: str, problem: str, fix: str):
        super().__init__(f"{uri}: {problem}; fix: {fix}")
        self.uri, self.problem, self.fix = uri, problem, fix


def get_fs(uri: str, **options: Any) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it; a missing package names what to install."""
    scheme = protocol(uri)
    try:
        import fsspec
    except ImportError as err:
        raise StorageUnavailable(
            uri, f"{scheme}:// needs fsspec, which is not installed here", CLOUD_EXTRA
        ) from err
    try:
        return fsspec.core.url_to_fs(uri, **options)
    except ImportError as err:
        from fsspec.registry import known_implementations

        module = known_implementations.get(scheme, {}).get("class", "").split(".")[0] or "its package"
        fix = CLOUD_EXTRA if scheme in CLOUD_PROTOCOLS else f"pip install {module}"
        raise StorageUnavailable(
            uri, f"{scheme}:// needs {module}, which is not installed here", fix
        ) from err
    except ValueError as err:
        if "protocol" not in str(err).lower():
            raise
        raise StorageUnavailable(
            uri,
            f"{scheme}:// is not a storage protocol that fsspec knows",
            "use a local path, an http(s) URL, or an fsspec URI such as s3://bucket/path or gs://bucket/path",
        ) from err


def join_uri(folder: str, relative: str) -> str:
    """``relative`` (a POSIX path, may hold ``..``) against the URI of a folder."""
    scheme, _, rest = folder.partition("://")
    joined = posixpath.normpath(posixpath.join(rest, relative))
    return f"{scheme}://{joined}"


def parent_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    return fs.cat_file(path)


def info_mtime(info: dict[str, Any]) -> float | None:
    """The modification time in an fsspec ``info`` dict (keys differ per store), as epoch seconds."""
    for key in ("LastModified", "mtime", "updated", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def info_version(info: dict[str, Any]) -> str:
    """What changes when the object changes: its ETag/generation/checksum, else size and time."""
    for key in ("ETag", "etag", "generation", "md5Hash", "crc32c"):
        if info.get(key):
            return f"{key}={info[key]}"
    return f"size={info.get('size')},mtime={info_mtime(info)}"


# ---------------------------------------------------------------------------------------
# images given as URIs


class UriImages:
    """Fetches image URIs into a local cache, once per version of each object.

    A cached copy is named after the URI and the object's version (ETag, generation…), so a
    photo replaced in the bucket is fetched and hashed afresh. The first image of a folder is
    looked up alone; from the second on, the folder is listed once, so a catalog of many
    images in few folders costs a listing per folder rather than a request per image.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self._folders: dict[str, dict[str, dict[str, Any]] | None] = {}  # folder uri → name → info

    def fetch(self, uri: str) -> Path:
        """The local copy of ``uri``. Raises FileNotFoundError, OSError or ConfigError."""
        fs, path = get_fs(uri, use_listings_cache=False)  # a listing from an earlier run may be stale
        info = self._info(uri, fs, path)
        if info.get("type") == "directory":
            raise IsADirectoryError(f"{uri} is a folder, not an image")
        name = hashlib.sha256(f"{uri}\n{info_version(info)}".encode()).hexdigest()[:32]
        suffix = posixpath.splitext(path)[1].lower()
        target = self.cache_dir / (name + (suffix if suffix in IMAGE_SUFFIXES else ".img"))
        if not target.is_file():
            download(fs, path, target)
        return target

    def _info(self, uri: str, fs: Any, path: str) -> dict[str, Any]:
        folder = parent_uri(uri)
        if folder in self._folders and self._folders[folder] is None:  # second image here: list
            try:
                entries = fs.ls(posixpath.dirname(path), detail=True)
                self._folders[folder] = {posixpath.basename(i["name"].rstrip("/")): i for i in entries}
            except OSError:
                self._folders[folder] = {}
        listed = self._folders.get(folder)
        self._folders.setdefault(folder, None)
        if listed and posixpath.basename(path) in listed:
            return listed[posixpath.basename(path)]
        return fs.info(path)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


def download(fs: Any, path: str, target: Path) -> Path:
    """``fs``'s ``path`` into ``target``, atomically (a temp name, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    from autoshoot.io import honour_umask

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        honour_umask(tmp)
        fs.get_file(path, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def fetch_verified(uri: str, sha256: str, cache_dir: Path) -> Path:
    """The image at ``uri`` with exactly the bytes the catalog validated (by SHA-256).

    Used by workers on other machines than the driver: a copy named after the hash is kept,
    so each node fetches each image once. Raises ValueError when the object has changed.
    """
    suffix = posixpath.splitext(uri.split("?", 1)[0])[1].lower()
    target = Path(cache_dir) / "by-sha256" / (sha256 + (suffix if suffix in IMAGE_SUFFIXES else ".img"))
    if target.is_file():
        return target
    fs, path = get_fs(uri)
    tmp = download(fs, path, target.with_name(target.name + f".part-{os.getpid()}"))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{uri} changed after the catalog was validated; run the same command again")
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------------
# a RUN folder on an object store


class RemoteRun:
    """A RUN folder at ``uri`` and this process's local staging folder for it.

    Paths given to the methods are relative to the RUN folder, with ``/`` separators. The
    staging folder is private to this process and removed by ``close``.
    """

    def __init__(self, uri: str, staging: Path | None = None):
        self.uri = uri.rstrip("/")
        # no listing cache: other processes (Ray workers, a later run) write here too
        self.fs, self.root = get_fs(self.uri, use_listings_cache=False, skip_instance_cache=True)
        self.root = self.root.rstrip("/")
        self.staging = Path(staging) if staging else new_staging_folder()
        self.staging.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RemoteRun({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def uri_of(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    # -- single objects -----------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.full(rel)))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.full(rel), data)

    def info(self, rel: str) -> dict[str, Any]:
        return self.fs.info(self.full(rel))

    def remove(self, rels: list[str]) -> None:
        paths = [self.full(r) for r in rels]
        for outcome in self._many("rm_file", [(p,) for p in paths]):
            if isinstance(outcome, BaseException) and not isinstance(outcome, FileNotFoundError):
                raise outcome

    # -- many objects at once ----------------------------------------------------------

    def put(self, pairs: list[tuple[Path, str]]) -> None:
        """Upload ``(local file, rel)`` pairs, concurrently; each object lands whole or not at all."""
        for outcome in self._many("put_file", [(str(local), self.full(rel)) for local, rel in pairs]):
            if isinstance(outcome, BaseException):
                raise outcome

    def get(self, pairs: list[tuple[str, Path]]) -> None:
        """Download ``(rel, local file)`` pairs, concurrently."""
        for _, local in pairs:
            local.parent.mkdir(parents=True, exist_ok=True)
        for outcome in self._many("get_file", [(self.full(rel), str(local)) for rel, local in pairs]):
            if isinstance(outcome, BaseException):
                raise outcome

    def cat(self, rels: list[str]) -> dict[str, bytes]:
        """The bytes of each object that exists (missing ones are left out)."""
        out: dict[str, bytes] = {}
        for rel, outcome in zip(rels, self._many("cat_file", [(self.full(r),) for r in rels])):
            if isinstance(outcome, FileNotFoundError):
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            out[rel] = outcome
        return out

    def listing(self, rel: str) -> dict[str, dict[str, Any]]:
        """Every object under the folder ``rel``: path relative to that folder → info."""
        base = self.full(rel)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        names = {}
        for path, info in found.items():
            path = path.rstrip("/")
            if path.startswith(base + "/") and info.get("type", "file") == "file":
                names[path[len(base) + 1 :]] = info
        return names

    def _many(self, method: str, calls: list[tuple[Any, ...]]) -> list[Any]:
        """``fs.<method>(*args)`` for each call: concurrent on async stores; outcomes or exceptions."""
        if not calls:
            return []
        fs = self.fs
        if getattr(fs, "async_impl", False) and hasattr(fs, f"_{method}"):
            import asyncio

            from fsspec.asyn import sync

            coroutine = getattr(fs, f"_{method}")

            async def gather() -> list[Any]:
                limit = asyncio.Semaphore(CONCURRENCY)

                async def one(args: tuple[Any, ...]) -> Any:
                    async with limit:
                        return await coroutine(*args)

                return await asyncio.gather(*(one(args) for args in calls), return_exceptions=True)

            return sync(fs.loop, gather)
        outcomes: list[Any] = []
        for args in calls:
            try:
                outcomes.append(getattr(fs, method)(*args))
            except Exception as err:  # noqa: BLE001 - handed back like the async path
                outcomes.append(err)
        return outcomes

    # -- the run lock -------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunLock]:
        """An exclusive lock object ``RUN/.lock``; see ``RunLock``."""
        held = RunLock(self)
        held.acquire()
        try:
            yield held
        finally:
            held.release()

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


class RunLock:
    """``RUN/.lock`` on an object store: created only if absent, kept fresh by a heartbeat.

    - Creation is a conditional PUT (``If-None-Match: *``) where the store supports it (AWS
      S3, GCS through gcsfs, and the local/memory filesystems); elsewhere it is a check then
      a write, which two runs starting in the same instant could both pass.
    - There is no process to outlive: a killed run leaves its lock behind. The holder
      rewrites it every ``LOCK_HEARTBEAT_S``; a lock the store's own clock says is older than
      ``LOCK_STALE_S`` is taken over, and so is one left on this host by a process that is
      gone. Taking over is a delete then a conditional create: of two runs taking over the
      same stale lock at once, the second's delete can remove the first's fresh lock.
    - Each heartbeat rewrites the lock only if it is still the holder's own: on S3 in one
      conditional PUT (``If-Match`` on the ETag it wrote), elsewhere a read then a write. When it
      is not, ``lost`` turns true and the run stops as if interrupted.
    """

    def __init__(self, run: RemoteRun):
        self.run = run
        self.token = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex, "since": time.time()}
        )
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag: str | None = None  # of our lock object, where the store gives one (S3)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def acquire(self) -> None:
        if not self._create():
            holder = self._read()
            if holder is not None and not self._is_stale(holder):
                raise RunLockedError(
                    f"{self.run.uri} is in use by another autoshoot run ({describe_holder(holder[0])}); "
                    f"wait for it to finish, or pass another --out (a lock left by a killed run expires "
                    f"{LOCK_STALE_S:.0f} s after its last heartbeat; or delete {self.run.uri_of(LOCK)})"
                )
            logger.warning(
                "taking over the stale lock of %s (%s)",
                self.run.uri,
                describe_holder(holder[0]) if holder else "gone",
            )
            if holder is not None:
                self.run.remove([LOCK])
            if not self._create():
                raise RunLockedError(
                    f"{self.run.uri} was locked by another run at the same moment; try again"
                )
        self._thread = threading.Thread(target=self._heartbeat, name="autoshoot-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            if self.run.read_bytes(LOCK).decode() == self.token:
                self.run.remove([LOCK])
        except (OSError, UnicodeDecodeError):
            pass

    def _create(self) -> bool:
        path = self.run.full(LOCK)
        try:
            response = self.run.fs.pipe_file(path, self.token.encode(), mode="create")
            self._etag = response.get("ETag") if isinstance(response, dict) else None
            return True
        except FileExistsError:
            return False
        except TypeError:  # this filesystem has no exclusive create: check, then write
            if self.run.fs.exists(path):
                return False
            self.run.fs.pipe_file(path, self.token.encode())
            return True
        except OSError as err:  # some stores answer a failed precondition with a generic error
            if precondition_failed(err):
                return False
            raise

    def _read(self) -> tuple[str, dict[str, Any]] | None:
        try:
            return self.run.read_bytes(LOCK).decode(errors="replace"), self.run.info(LOCK)
        except FileNotFoundError:
            return None

    def _is_stale(self, holder: tuple[str, dict[str, Any]]) -> bool:
        text, info = holder
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        data = data if isinstance(data, dict) else {}
        same_host = data.get("host") == socket.gethostname() and isinstance(data.get("pid"), int)
        if same_host and not pid_alive(data["pid"]):
            return True
        written = info_mtime(info)
        now = self._store_now()
        return written is not None and now is not None and now - written > LOCK_STALE_S

    def _store_now(self) -> float | None:
        """The store's clock: the time it stamps on a probe object (our clock may be off)."""
        probe = f".lock-probe-{uuid.uuid4().hex}"
        try:
            self.run.write_bytes(probe, b"")
            return info_mtime(self.run.info(probe))
        finally:
            self.run.remove([probe])

    def _heartbeat(self) -> None:
        while not self._stop.wait(LOCK_HEARTBEAT_S):
            if self._etag and protocol(self.run.uri) in ("s3", "s3a"):
                self._refresh_if_ours()
                if self.lost:
                    return
                continue
            try:
                current = self.run.read_bytes(LOCK).decode(errors="replace")
            except FileNotFoundError:
                current = ""
            except OSError as err:  # a network blip: try again at the next beat
                logger.warning("cannot check the run lock: %s", err)
                continue
            if current != self.token:
                logger.error("another run took the lock of %s; stopping after the SKUs in hand", self.run.uri)
                self._lost.set()
                return
            try:
                self.run.write_bytes(LOCK, self.token.encode())
            except OSError as err:
                logger.warning("cannot refresh the run lock: %s", err)

    def _refresh_if_ours(self) -> None:
        """Rewrite the lock only if it is still the object we wrote (``If-Match``): one atomic step."""
        try:
            response = self.run.fs.pipe_file(self.run.full(LOCK), self.token.encode(), IfMatch=self._etag)
            self._etag = response.get("ETag", self._etag) if isinstance(response, dict) else self._etag
        except (FileNotFoundError, OSError) as err:
            if isinstance(err, FileNotFoundError) or precondition_failed(err):
                logger.error("another run took the lock of %s; stopping after the SKUs in hand", self.run.uri)
                self._lost.set()
            else:  # a network blip: try again at the next beat
                logger.warning("cannot refresh the run lock: %s", err)


def precondition_failed(err: BaseException) -> bool:
    """A conditional write refused (HTTP 412), as the store's client words it."""
    return "precondition" in str(err).lower().replace("-", "")


def describe_holder(text: str) -> str:
    try:
        data = json.loads(text)
        return f"pid {data['pid']} on {data['host']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_staging_folder() -> Path:
    """A private staging folder; those left on this host by processes that are gone are removed.

    A process killed outright (SIGKILL, ``ray.kill``) cannot remove its own: the next one does.
    Folders are named ``<host>-<pid>-…`` so that only this host's dead processes are judged.
    """
    root = Path(tempfile.gettempdir()) / "autoshoot-staging"
    root.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())
    for old in root.iterdir():
        owner, _, rest = old.name.rpartition("-")[0].rpartition("-")
        if owner == host and rest.isdigit() and not pid_alive(int(rest)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{host}-{os.getpid()}-", dir=root))


def open_run_folder(run_dir: str | os.PathLike[str]) -> Path | RemoteRun:
    """A local RUN folder as a Path (the fast path, untouched), or a ``RemoteRun`` for a URI."""
    return RemoteRun(str(run_dir)) if is_uri(run_dir) else local_path(run_dir)


def close_run_folder(run: Path | RemoteRun) -> None:
    if isinstance(run, RemoteRun):
        run.close()


def check_cache_path(uri: str, cache_root: Callable[[], Path]) -> Path:
    """Where a remote run's record of checked images lives on this machine."""
    return cache_root() / "image-checks" / (hashlib.sha256(uri.encode()).hexdigest()[:16] + ".json")

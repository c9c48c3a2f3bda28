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

import os
import posixpath
import shutil
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

"""Reuse across runs: a new night's RUN folder takes the stages earlier nights finished.

A stage's cache key already chains everything its output depends on: the image's SHA-256,
the stage's config sections, its version, its job parameters (seed, candidates) and the key
of the stage before it. So the key is a content address: two runs that compute the same key
would write the same files. The reuse index maps keys to where such files already are:

    runs/                                  (the RUN folder's parent, by default)
      .autoshoot-reuse/                    the index: small JSON pointers, no images
        stages/<k[:2]>/<key>.json          {"run", "sku_dir", "stage", "origin", "entry"}
        skus/<h[:2]>/<sha256(sku)>.json    {"run", "origin"}: the last run that finished the SKU
      2026-12-03/<sku>/<stage>/…           the files the pointers name
      2026-12-04/…

- Every stage a run commits is published (one small file per stage; one PUT on an object
  store). A stage the run took from an earlier one is published again, pointing at the new
  copy, so deleting old nights never strands the index.
- Planning a SKU looks its keys up. The stages found are copied into the new RUN folder (hard
  links on a local disk) and committed as if run, with ``"reused": <origin run>`` in the
  manifest entry; only the rest is run. A pointer is trusted only when the manifest of the run
  it names still records that key for that stage, so a pointer to a deleted or redone folder
  is ignored and the stage is simply run.
- ``run.reuse``: ``auto`` (the index beside the RUN folder, as above; also on object stores:
  ``s3://bucket/runs/.autoshoot-reuse``), ``off``, or a path/URI of an index to share between
  RUN folders that are not siblings. Deleting the index folder forgets every earlier run (the
  next night renders everything); the RUN folders stay valid on their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoshoot.run.folder import Folder, open_folder
from autoshoot.run.layout import MANIFEST
from autoshoot.storage import is_uri, join_uri

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger(__name__)

INDEX_NAME = ".autoshoot-reuse"


def index_location(config: Config, run_location: str) -> str | None:
    """Where the reuse index of a RUN folder lives, or None when reuse is off (``run.reuse``)."""
    setting = str(getattr(config.run, "reuse", "auto")).strip()
    if setting.lower() in ("off", "false", "no", "0"):
        return None
    if setting.lower() in ("", "auto", "on", "true", "yes"):
        parent = open_folder(run_location).parent_location()
        return join_uri(parent, INDEX_NAME) if is_uri(parent) else str(Path(parent) / INDEX_NAME)
    return setting


class ReuseIndex:
    """The index (see the module docstring) as seen from one RUN folder (``run_location``)."""

    def __init__(self, location: str, run_location: str):
        self.folder: Folder = open_folder(location)
        self.run = open_folder(run_location)
        self.run_name = self.run.name
        self._pointers: dict[str, dict[str, Any] | None] = {}  # rel → pointer, read ahead
        self._sources: dict[str, Folder] = {}
        self._manifests: dict[tuple[str, str], dict[str, Any] | None] = {}

    @classmethod
    def for_run(cls, config: Config, run_location: str) -> ReuseIndex | None:
        location = index_location(config, run_location)
        return cls(location, run_location) if location else None

    def __repr__(self) -> str:
        return f"ReuseIndex({self.folder.location!r})"

    # -- where a run is named in a pointer -----------------------------------------------

    def run_ref(self) -> str:
        """This RUN folder as a pointer names it: its name when it sits beside the index (so the
        whole runs/ folder can be moved), else its full path or URI."""
        if self.run.parent_location() == self.folder.parent_location():
            return self.run_name
        return self.run.location

    def resolve(self, ref: str) -> str:
        if "/" in ref or "\\" in ref or is_uri(ref):
            return ref
        parent = self.folder.parent_location()
        return join_uri(parent, ref) if is_uri(parent) else str(Path(parent) / ref)

    def is_this_run(self, pointer: dict[str, Any]) -> bool:
        ref = self.resolve(str(pointer.get("run", "")))
        location = ref.rstrip("/") if is_uri(ref) else str(Path(ref).resolve())
        return location == self.run.location

    # -- lookups ----------------------------------------------------------------------------

    @staticmethod
    def stage_rel(key: str) -> str:
        return f"stages/{key[:2]}/{key}.json"

    @staticmethod
    def sku_rel(sku: str) -> str:
        digest = hashlib.sha256(sku.encode()).hexdigest()
        return f"skus/{digest[:2]}/{digest}.json"

    def preload(self, keys: list[str], skus: list[str]) -> None:
        """Read many pointers in one concurrent batch (an object store); later lookups hit memory."""
        rels = [self.stage_rel(k) for k in keys] + [self.sku_rel(s) for s in skus]
        rels = [r for r in dict.fromkeys(rels) if r not in self._pointers]
        try:
            found = self.folder.cat(rels)
        except Exception as err:  # noqa: BLE001 - any store error: nothing is reused
            logger.warning("cannot read the reuse index %s: %s; nothing is reused", self.folder.location, err)
            found = {}
        for rel in rels:
            self._pointers[rel] = _parse(found.get(rel))

    def _pointer(self, rel: str) -> dict[str, Any] | None:
        if rel not in self._pointers:
            try:
                self._pointers[rel] = _parse(self.folder.read_bytes(rel))
            except FileNotFoundError:
                self._pointers[rel] = None
            except Exception as err:  # noqa: BLE001 - any store error: the stage is run
                logger.warning("cannot read %s/%s: %s", self.folder.location, rel, err)
                self._pointers[rel] = None
        return self._pointers[rel]

    def stage(self, key: str) -> dict[str, Any] | None:
        """Where another run committed a stage with this key, or None."""
        pointer = self._pointer(self.stage_rel(key))
        if pointer is None or pointer.get("key") != key or self.is_this_run(pointer):
            return None
        return pointer

    def seen_before(self, sku: str) -> bool:
        """Whether another run finished (or failed) this SKU: then tonight's work is a change."""
        pointer = self._pointer(self.sku_rel(sku))
        return pointer is not None and not self.is_this_run(pointer)

    # -- taking a stage from another run -------------------------------------------------

    def copy_stage(self, pointer: dict[str, Any], target: Path) -> None:
        """Copy the stage's files from the run the pointer names into the local ``target``.

        Raises FileNotFoundError when that run no longer records this key for the stage
        (deleted, or redone since): the caller runs the stage instead.
        """
        ref = self.resolve(pointer["run"])
        source = self._sources.get(ref)
        if source is None:
            source = self._sources[ref] = open_folder(ref)
        manifest_key = (ref, pointer["sku_dir"])
        if manifest_key not in self._manifests:
            try:
                self._manifests[manifest_key] = json.loads(
                    source.read_bytes(f"{pointer['sku_dir']}/{MANIFEST}")
                )
            except (FileNotFoundError, ValueError):
                self._manifests[manifest_key] = None
        manifest = self._manifests[manifest_key] or {}
        entry = manifest.get("stages", {}).get(pointer["stage"]) or {}
        if entry.get("key") != pointer["key"]:
            raise FileNotFoundError(
                f"{ref}/{pointer['sku_dir']} no longer records {pointer['stage']} with this key"
            )
        source.copy_tree(posixpath.join(pointer["sku_dir"], pointer["stage"]), target)
        if not (target / "stage.json").is_file():
            raise FileNotFoundError(f"{ref}/{pointer['sku_dir']}/{pointer['stage']}/stage.json is missing")

    # -- publishing ---------------------------------------------------------------------------

    def publish_stage(self, key: str, stage: str, sku_dir: str, entry: dict[str, Any]) -> None:
        """Record that this run holds a committed stage with this key (never fails the SKU)."""
        origin = entry.get("reused") or self.run_name
        pointer = {
            "key": key,
            "stage": stage,
            "run": self.run_ref(),
            "sku_dir": sku_dir,
            "origin": origin,
            "entry": {k: v for k, v in entry.items() if k not in ("key", "run", "reused")},
        }
        self._write(self.stage_rel(key), pointer)

    def publish_sku(self, sku: str) -> None:
        self._write(self.sku_rel(sku), {"sku": sku, "run": self.run_ref(), "origin": self.run_name})

    def _write(self, rel: str, data: dict[str, Any]) -> None:
        try:
            self.folder.write_bytes(rel, json.dumps(data, sort_keys=True).encode())
            self._pointers[rel] = data
        except Exception as err:  # noqa: BLE001 - the index is an optimisation: the run goes on without it
            logger.warning("cannot write the reuse index %s/%s: %s", self.folder.location, rel, err)


def _parse(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

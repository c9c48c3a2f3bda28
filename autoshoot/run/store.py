"""One SKU's folder, ``RUN/<sku>/``: its manifest, atomic stage commits and cleanup."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from autoshoot.io import TMP_MARK, atomic_write_json, make_temp_dir, read_json
from autoshoot.run.layout import (
    MANIFEST,
    TRASH_MARK,
    sku_folder_name,
)

# the run's progress lines ("BAG-0: render done in 2.69 s") keep the channel users and the
# benchmarks read, whichever module of the run core writes them
logger = logging.getLogger("autoshoot.runner")


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

"""Fake stages for runner tests: the real stage contract, tiny real files, recorded calls.

They stand in for the model stages only in tests of the runner's own duties (resume,
isolation, atomicity, reporting); the model stages have their own tests with real code.
``RecordingBagDetector`` stands in for the bag detector in tests of the scene rule; the real
detector has its own tests (tests/test_bag_detector.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoshoot.stages import STAGE_ORDER
from autoshoot.stages.base import Job, Stage


class Crash(BaseException):
    """Escapes every ``except Exception``: stands for the process dying at that point."""


class FakeStage(Stage):
    calls: list[tuple[str, str]]  # (stage, sku), shared across the fake stages of a run

    def __init__(self, name: str, calls: list, fail_sku: str = "", crash_sku: str = "", sleep: float = 0.0):
        self.name = name  # type: ignore[misc]
        self.config_sections = {"analyze": ("analyze",), "prepare": ("prepare",), "score": ("score",)}.get(
            name, ("render",)
        )
        self.job_params = ("seed", "candidates") if name == "render" else ()
        self.calls = calls
        self.fail_sku = fail_sku
        self.crash_sku = crash_sku
        self.sleep = sleep

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        self.calls.append((self.name, job.sku))
        if self.sleep:
            time.sleep(self.sleep)
        if job.sku == self.crash_sku:
            (out / "partial.bin").write_bytes(b"half")
            raise Crash(f"killed during {self.name}")
        if job.sku == self.fail_sku:
            raise ValueError(f"cannot handle {job.sku}\nsecond line of detail")
        n = job.candidates
        if self.name == "analyze":
            return {"brief": {"product": {"category": "tote"}}, "prompt": f"a person holding {job.sku}"}
        if self.name in ("render", "refine", "composite"):
            cands = []
            for i in range(n):
                rng = np.random.default_rng(job.seed + i)
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(out / f"c{i}.png")
                cands.append({"index": i, "seed": job.seed + i, "image": f"c{i}.png"})
            return {"candidates": cands}
        if self.name == "score":
            comp = job.input_json("composite")["candidates"]
            return {
                "candidates": [
                    {
                        "index": c["index"],
                        "image": c["image"],
                        "hand_score": 0.3 + 0.2 * c["index"],
                        "reasons": [f"fake reason {c['index']}"],
                        "components": {},
                        "hands": [],
                    }
                    for c in comp
                ]
            }
        if self.name == "rank":
            scored = job.input_json("score")["candidates"]
            best = max(scored, key=lambda c: c["hand_score"])
            status = "accepted" if best["hand_score"] >= 0.5 else "review"
            return {
                "status": status,
                "reason": "" if status == "accepted" else "low hand score",
                "best_index": best["index"],
                "hand_score": best["hand_score"],
                "n_candidates": len(scored),
            }
        (out / "prepare.json").write_text("{}")
        job.flags.append(f"{self.name}_flag")
        return {"ok": True}


class FakeBatchStage(FakeStage):
    batches: list[int]

    def run_batch(self, jobs, outs):  # type: ignore[no-untyped-def]
        self.calls.append((self.name, f"batch of {len(jobs)}"))
        return [self._one(j, o) for j, o in zip(jobs, outs)]

    def _one(self, job, out):  # type: ignore[no-untyped-def]
        try:
            return self.run(job, out)
        except Exception as err:
            return err


def fake_stages(calls: list, **kwargs: Any) -> list[Stage]:
    stages: list[Stage] = []
    for name in STAGE_ORDER:
        per_stage = {k: v for k, v in kwargs.items() if not isinstance(v, dict)}
        for key, value in kwargs.items():
            if isinstance(value, dict):  # {"stage": value} targets one stage
                per_stage[key] = value.get(name, "" if key != "sleep" else 0.0)
        cls = FakeBatchStage if name == "analyze" else FakeStage
        stages.append(cls(name, calls, **per_stage))
    return stages


def write_catalog(folder: Path, rows: list[dict[str, str]], name: str = "catalog.csv") -> Path:
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_photo(path: Path, size: tuple[int, int] = (300, 300), mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


class RecordingBagDetector:
    """A bag detector that reports the given boxes on every image and records each image's
    shape and dtype. ``boxes``: [(x0, y0, x1, y1, score)] in pixels of the image."""

    def __init__(
        self, config: Any = None, boxes: list[tuple[float, float, float, float, float]] | None = None
    ):
        self.boxes = list(boxes if boxes is not None else RecordingBagDetector.default_boxes)
        self.calls: list[tuple[tuple[int, ...], str]] = []
        RecordingBagDetector.instances.append(self)

    default_boxes: list[tuple[float, float, float, float, float]] = []
    instances: list[RecordingBagDetector] = []

    def detect(self, image: np.ndarray) -> list:
        from autoshoot.backends.bag_detector import BagDetection

        self.calls.append((tuple(image.shape), str(image.dtype)))
        return [BagDetection((x0, y0, x1, y1), score, "a bag") for x0, y0, x1, y1, score in self.boxes]

    def close(self) -> None:
        pass


def local_reference(
    catalog: Path, out: Path, sets: list[str] | tuple[str, ...] = (), exit_code: int = 0
) -> None:
    """The local engine on the tiny profile, in a subprocess with one thread: the reference a
    Ray run is compared with. Some stages' float results depend on the thread count, and each
    Ray CPU worker has one CPU (Ray sets OMP_NUM_THREADS=1 in it). ``exit_code``: what the run
    must exit with (1 when a random-weight VLM fails every brief)."""
    args = [
        sys.executable,
        "-m",
        "autoshoot",
        "shoot",
        str(catalog),
        "--profile",
        "tiny",
        "--out",
        str(out),
        "-q",
    ]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(
        args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == exit_code, proc.stderr[-3000:]

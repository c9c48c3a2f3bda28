"""What every stage implements, and the ``Job`` it is handed for one SKU.

A stage writes its outputs into ``out`` (a fresh, private folder) and returns a JSON-able
dict, which the runner saves as ``out/stage.json``. The runner then moves the folder into
place and records it in the SKU's manifest in one atomic step, so a stage never needs to
care about partial writes, resume or caching.

A stage reads what earlier stages produced through ``job.input_dir(name)`` and
``job.input_json(name)``. Models come from ``job.sessions.get(key, factory)``, which builds
each model once per run (and only if some SKU actually needs it) and keeps the run's models
inside its GPU budget (``autoshoot.run.models``): ``size_gib=`` and ``work_gib=`` declare a
model's size and the activations its use needs, when they are known before it is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.run.models import Residency

if TYPE_CHECKING:
    from autoshoot.catalog import Row
    from autoshoot.config import Config


@dataclass(frozen=True)
class ModelSpec:
    """A model a stage would load: shown by ``--dry-run`` and checked before the first SKU."""

    role: str  # e.g. "vlm", "sdxl base", "controlnet", "lora: people holding bags"
    source: str  # hub id or local path
    how_to_get: str = ""  # the command or step that provides it


class Sessions(Residency):
    """The run's models, built once, lazily, keyed by name, inside one GPU budget.

    ``Sessions()`` has no budget (nothing is evicted): the CPU path and tests. The runner builds
    ``Sessions.for_config(config)``, whose budget is ``run.vram`` (resolved at the run's start).
    """

    @classmethod
    def for_config(cls, config: Config) -> Sessions:
        from autoshoot.run.models import GIB, parse_vram

        budget = parse_vram(getattr(config.run, "vram", "auto"))
        device = config.run.device if str(config.run.device).startswith("cuda") else "cuda"
        if not budget or str(config.run.device) == "cpu":  # no limit, or "auto" left unresolved
            return cls(None, device)
        return cls(int(budget * GIB), device, label=f"{budget:g} GiB")


@dataclass
class Job:
    """One SKU's work, as a stage sees it."""

    row: Row
    image_path: Path  # a local, readable file (a URL was already downloaded)
    image_sha256: str
    seed: int
    candidates: int
    work_dir: Path  # RUN/<sku>
    config: Config
    sessions: Sessions
    inputs: dict[str, Path] = field(default_factory=dict)  # stage name → committed folder
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("autoshoot.job"))
    flags: list[str] = field(default_factory=list)  # stages append notes, e.g. "no_handle"

    @property
    def sku(self) -> str:
        return self.row.sku

    def input_dir(self, stage: str) -> Path:
        try:
            return self.inputs[stage]
        except KeyError:
            raise RuntimeError(f"stage {stage!r} has not run for SKU {self.sku!r}") from None

    def input_json(self, stage: str) -> dict[str, Any]:
        from autoshoot.io import read_json

        return read_json(self.input_dir(stage) / "stage.json")


class Stage:
    name: ClassVar[str]
    version: ClassVar[str] = "1"  # bump when the stage's output changes for the same config
    config_sections: ClassVar[tuple[str, ...]] = ()  # dotted config sections it depends on
    job_params: ClassVar[tuple[str, ...]] = ()  # Job attributes that change the output, e.g. ("seed",)
    # GPU-bound (render, refine): the runner runs the stages before and after these for the
    # neighbouring SKUs in threads meanwhile (run.overlap)
    uses_gpu: ClassVar[bool] = False

    @property
    def batchable(self) -> bool:
        """True when the stage overrides ``run_batch``: the runner then batches it across SKUs."""
        return type(self).run_batch is not Stage.run_batch

    def models(self, config: Config) -> list[ModelSpec]:
        """The models this stage would load under ``config`` (no imports of heavy libraries)."""
        return []

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        """Models that are absent and cannot be fetched: (what, where, how to provide it)."""
        return []

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        """Fetch the hub models this stage needs that are not cached yet (never when offline).

        Called once before the first SKU, so downloads show their progress up front and a
        machine that cannot reach the hub stops before any work. Returns the models that
        could not be fetched: (what, where and why, how to provide it).
        """
        return []

    def extra_key(self, job: Job) -> str:
        """Anything besides the image, config and upstream that changes the output (row overrides)."""
        return ""

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        raise NotImplementedError

    def run_batch(self, jobs: list[Job], outs: list[Path]) -> list[dict[str, Any] | BaseException]:
        """Several SKUs at once (the VLM batches across SKUs). Default: one by one."""
        results: list[dict[str, Any] | BaseException] = []
        for job, out in zip(jobs, outs):
            try:
                results.append(self.run(job, out))
            except Exception as err:  # the runner marks this SKU failed
                results.append(err)
        return results

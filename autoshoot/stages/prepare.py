"""The ``prepare`` stage: the geometry of one SKU (segment, handle, grip gap, placement).

Reads the brief from ``analyze`` (``{"brief": {"product": {"category", "size_cm",
"handle", "handle_box"}, "hold_pose", "shot"}}``; any key may be missing) and writes the
``autoshoot prepare`` folder: prepare.json, mask.png, canvas.png, inpaint_mask.png,
control_canny.png and debug.png. Returns prepare.json's content (all coordinates in INPUT
pixels except ``canvas_size``, ``canvas_grip`` and ``placement``).

A product without a handle gets ``handle: none``, ``grip: null``, nothing erased, a
non-grip hold pose, and the job flag ``no_handle``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.stages.base import Job, ModelSpec, Stage

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger(__name__)


class PrepareStage(Stage):
    name: ClassVar[str] = "prepare"
    version: ClassVar[str] = "1"
    config_sections: ClassVar[tuple[str, ...]] = ("prepare",)

    def models(self, config: Config) -> list[ModelSpec]:
        pc = config.prepare
        name = pc.model_segmenter if pc.segmenter == "auto" else pc.segmenter
        if name == "plain":
            return []
        role = "segmenter" if pc.segmenter != "auto" else "segmenter (photos whose border is not uniform)"
        source = pc.birefnet_model if name == "birefnet" else pc.rembg_model
        return [
            ModelSpec(
                f"{role}: {name}", source, "see `autoshoot models` or prepare.birefnet_model / rembg_model"
            )
        ]

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        # ``auto`` needs the model only for photographic backgrounds: those SKUs fail with the
        # how-to message, packshots on white still run.
        pc = config.prepare
        if pc.segmenter in ("auto", "plain"):
            return []
        from autoshoot.backends.segmenters import missing_segmenter_models

        return missing_segmenter_models(config, pc.segmenter)

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        # only for an explicit ``birefnet``: ``auto`` needs it for some photos only (see above)
        if config.prepare.segmenter != "birefnet":
            return []
        from autoshoot.backends.segmenters import birefnet_missing, segmenter_model_entries
        from autoshoot.stages.render import fetch_missing_entries

        entries = segmenter_model_entries(config)
        return fetch_missing_entries(config, entries, lambda e: birefnet_missing(e.source, config=config)[2])

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        from autoshoot.geometry.pipeline import hints_from_brief, run_prepare

        # 1. the brief's hints (tolerant: missing keys fall back to per-category defaults)
        try:
            brief = job.input_json("analyze").get("brief") or {}
        except (RuntimeError, FileNotFoundError):
            logger.warning("SKU %s: no analyze output; geometry uses defaults", job.sku)
            brief = {}
        hints = hints_from_brief(brief)
        # 2. the geometry, segmenters built once per run
        prepared = run_prepare(job.image_path, out, job.config, hints, job.sessions.get)
        # 3. flags for results.csv
        for flag in prepared.flags:
            if flag not in job.flags:
                job.flags.append(flag)
        for warning in prepared.info["warnings"] + prepared.info["fallbacks"]:
            job.log.info("SKU %s prepare: %s", job.sku, warning)
        return prepared.info

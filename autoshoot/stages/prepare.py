"""The ``prepare`` stage: the geometry of one SKU (segment, handle, grip gap, placement).

Reads the brief from ``analyze`` (``{"brief": {"product": {"category", "size_cm",
"handle", "handle_box"}, "hold_pose", "shot"}}``; any key may be missing) and writes the
``autoshoot prepare`` folder: prepare.json, mask.png, canvas.png, inpaint_mask.png,
control_canny.png and debug.png. Returns prepare.json's content (all coordinates in INPUT
pixels except ``canvas_size``, ``canvas_grip`` and ``placement``).

A product without a handle gets ``handle: none``, ``grip: null``, nothing erased, a
non-grip hold pose, and the job flag ``no_handle``.

One truth for the prompt: after the geometry, the brief's prompt is rendered again with the
final handle, hold pose and shot (geometry may switch a pose to ``cradled`` or fall back to
another shot). prepare.json and stage.json carry it as ``prompt``, ``negative_prompt`` and
``prompt_changes``; stage 1, stage 2, the ranking and the report use it (``final_prompt``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.stages.base import Job, ModelSpec, Stage

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger(__name__)


class PrepareStage(Stage):
    name: ClassVar[str] = "prepare"
    version: ClassVar[str] = "4"
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
        from autoshoot.geometry.pipeline import hints_from_brief, prepare_product, write_prepared

        # 1. the brief's hints (tolerant: missing keys fall back to per-category defaults)
        try:
            brief = job.input_json("analyze").get("brief") or {}
        except (RuntimeError, FileNotFoundError):
            logger.warning("SKU %s: no analyze output; geometry uses defaults", job.sku)
            brief = {}
        hints = hints_from_brief(brief)
        # 2. the geometry, segmenters built once per run
        prepared = prepare_product(job.image_path, hints, job.config, job.sessions.get)
        # 3. the prompt, from the final handle, pose and shot
        prepared.info.update(render_final_prompt(brief, prepared.info))
        for change in prepared.info["prompt_changes"]:
            prepared.info["warnings"].append(f"prompt: {change}")
        write_prepared(prepared, out)
        # 4. flags for results.csv
        for flag in prepared.flags:
            if flag not in job.flags:
                job.flags.append(flag)
        for warning in prepared.info["warnings"] + prepared.info["fallbacks"]:
            job.log.info("SKU %s prepare: %s", job.sku, warning)
        return prepared.info


def render_final_prompt(brief: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``{"prompt", "negative_prompt", "prompt_changes"}`` rendered from ``brief`` with the
    geometry's final handle, hold pose and shot (``info`` is prepare.json's content).

    Empty prompts when there is no brief, or when the brief does not validate (the render
    stage then says so).
    """
    from autoshoot.brief import Brief
    from autoshoot.brief.prompt import render_negative_prompt, render_prompt

    out: dict[str, Any] = {"prompt": "", "negative_prompt": "", "prompt_changes": []}
    if not brief:
        return out
    data = copy.deepcopy(brief)
    product = data.setdefault("product", {})
    final = {"handle": info["handle"], "hold_pose": info["hold_pose"], "shot": info["shot"]}
    changes = []
    for key, value in final.items():
        before = product.get(key) if key == "handle" else data.get(key)
        if before != value:
            changes.append(f"{key} {before} -> {value} (geometry)")
        if key == "handle":
            product[key] = value
        else:
            data[key] = value
    if product.get("handle") == "none":
        product["handle_box"] = None
    try:
        final_brief = Brief.from_data(data)
    except ValueError as err:
        logger.warning("the brief does not validate with the geometry's choices: %s", err)
        out["prompt_changes"] = [f"not rendered: {err}"]
        return out
    out.update(
        prompt=render_prompt(final_brief),
        negative_prompt=render_negative_prompt(final_brief),
        prompt_changes=changes,
    )
    return out


def final_prompt(job: Job) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` for the models: the prepare stage's (rendered after the
    geometry), else the analyze stage's."""
    for stage in ("prepare", "analyze"):
        if stage in job.inputs:
            try:
                data = job.input_json(stage)
            except (OSError, ValueError):  # a folder without stage.json: no prompt there
                continue
            if data.get("prompt"):
                return str(data["prompt"]), str(data.get("negative_prompt", ""))
    return "", ""

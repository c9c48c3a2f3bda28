"""Stage 1: the person and the grip. Inpaint everything but the (erased) product, N candidates
in one batched SDXL call, canny control at 0.4 for the first 20% of the steps and 0.9 after.

Reads ``prepare``'s canvas.png, inpaint_mask.png (255 = inpaint), control_canny.png and
``analyze``'s prompt; writes c<i>.png at the canvas size and returns each candidate's seed,
so any candidate can be re-rendered alone (``autoshoot shoot --set run.candidates=1`` with
the catalog's ``seed`` column, or ``render_candidates(..., seeds=[seed])``).

This module also holds the model bookkeeping shared with refine and ``autoshoot models``:
``model_specs`` (what a config loads) and ``missing_models`` (what is absent and unfetchable).
It imports no heavy library at import time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from autoshoot.hub import is_local_source, is_offline
from autoshoot.stages.base import ModelSpec, Stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from autoshoot.config import Config
    from autoshoot.stages.base import Job

logger = logging.getLogger(__name__)


class RenderStage(Stage):
    uses_gpu: ClassVar[bool] = True  # the runner's GPU lane (run.overlap)
    name = "render"
    version = "1"
    config_sections = ("render",)
    job_params = ("seed", "candidates")

    def models(self, config: Config) -> list[ModelSpec]:
        return model_specs(config)

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        return missing_models(config)

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        return fetch_missing_models(config)

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        from PIL import Image

        from autoshoot.io import read_json, save_image

        rc = job.config.render
        # 1. read the geometry's canvas, inpaint mask and canny control
        prep_dir = job.input_dir("prepare")
        prep = read_json(prep_dir / "prepare.json")
        canvas = np.asarray(Image.open(prep_dir / "canvas.png").convert("RGB"))
        inpaint = np.asarray(Image.open(prep_dir / "inpaint_mask.png").convert("L"))
        canny = np.asarray(Image.open(prep_dir / "control_canny.png").convert("L"))
        # 2. the final prompt: rendered after the geometry from its handle, pose and shot
        from autoshoot.stages.prepare import final_prompt

        prompt, negative = final_prompt(job)
        if not prompt:
            raise ValueError("the analyze stage gave no prompt; rerun analyze for this SKU")
        # 3. one seed per candidate, derived from the SKU's seed
        seeds = candidate_seeds(job.seed, job.candidates)
        # 4. render in batches
        renderer = get_renderer(job)
        images, info = render_candidates(renderer, rc, canvas, inpaint, canny, prompt, negative, seeds)
        # 5. save c<i>.png at the canvas size
        candidates = []
        for i, (seed, image) in enumerate(zip(seeds, images, strict=False)):
            save_image(out / f"c{i}.png", image, fast=True)
            candidates.append({"index": i, "seed": seed, "image": f"c{i}.png", "notes": list(info["notes"])})
        if rc.model_set == "tiny":
            job.flags.append("tiny_models_noise")  # the report says these pictures are noise
        return {
            "candidates": candidates,
            "canvas_size": [int(canvas.shape[1]), int(canvas.shape[0])],
            "model_size": info["model_size"],
            "steps": rc.steps,
            "sampler": rc.sampler,
            "control_scales_seen": info["scales_seen"],
            "seconds": info["seconds"],
            "handle": prep.get("handle"),
        }


def candidate_seeds(seed: int, n: int) -> list[int]:
    """Candidate i renders from seed + i (kept in 31 bits)."""
    return [int(seed + i) & 0x7FFFFFFF for i in range(n)]


def get_renderer(job: Job) -> Any:
    """The run's SDXL renderer, built once (``job.sessions``)."""
    from autoshoot.backends import RENDERERS

    config = job.config
    return job.sessions.get(
        f"renderer:{config.render.backend}",
        lambda: RENDERERS.create(config.render.backend, config),
        work_gib=render_work_gib(config.render),
    )


def render_work_gib(rc: Any) -> float:
    """GPU memory a render call needs besides the weights: about 1.75 GiB per candidate in a UNet
    call at 1024² (7 GiB for 4, measured by bench/render_gpu.py), scaling with the pixels."""
    batch = rc.low_vram_batch_size if 0 < rc.vram <= 8 else rc.batch_size
    return 1.75 * max(1, batch) * (rc.long_side / 1024) ** 2


def render_candidates(
    renderer: Any,
    rc: Any,
    canvas: np.ndarray,
    inpaint: np.ndarray,
    canny: np.ndarray,
    prompt: str,
    negative: str,
    seeds: list[int],
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Stage 1 for N seeds.

    canvas: (H, W, 3) uint8 RGB; inpaint: (H, W) uint8, 255 = inpaint; canny: (H, W) uint8 edges.
    Returns N × (H, W, 3) uint8 RGB at the canvas size, and info (scales seen, seconds, notes).
    """
    from autoshoot.backends.sdxl import DenoiseRequest, control_schedule

    # 1. to the model resolution: SDXL's ~1 MP bucket of the canvas's shape
    h, w = canvas.shape[:2]
    mw, mh = model_size(w, h, rc.long_side)
    canvas_m = resize(canvas, (mw, mh))
    mask_m = resize(inpaint, (mw, mh), nearest=True)
    canny_m = resize_edges(canny, (mw, mh))
    # 2. the per-step scale: 0.4 for the first 20% of the steps, 0.9 after
    scales = [
        [s]
        for s in control_schedule(
            rc.steps, rc.control_scale_early, rc.control_scale_late, rc.control_switch_at
        )
    ]
    n = len(seeds)
    req = DenoiseRequest(
        images=[canvas_m] * n,
        masks=[mask_m] * n,
        controls=[[(rc.control_mode, canny_m)]] * n,
        prompt=prompt,
        negative_prompt=negative,
        seeds=list(seeds),
        steps=rc.steps,
        scales=scales,
        cfg=rc.cfg,
    )
    # 3. denoise, batched
    res = renderer.denoise(req)
    # 4. back to the canvas size
    images = [resize(im, (w, h)) for im in res.images]
    steps_seen = [s[0] for s in res.scales_seen[: rc.steps]]
    info = {"model_size": [mw, mh], "scales_seen": steps_seen, "seconds": res.seconds, "notes": res.notes}
    return images, info


def model_size(width: int, height: int, long_side: int = 1024) -> tuple[int, int]:
    """Stage 1's (w, h): the SDXL training bucket (about 1 MP: 1024x1024, 896x1152, 832x1216,
    768x1344, 640x1536 and their landscape forms) nearest the canvas's aspect ratio, scaled by
    ``long_side`` / 1024 (1024 is SDXL's own scale; the tiny profile uses 256), each side a
    multiple of 64. A canvas made from a bucket renders at its own size, not squeezed to a
    1024-px long side (a 832x1216 canvas used to render at 704x1024: 0.72 MP)."""
    import math

    from autoshoot.config.render import SDXL_BUCKETS

    aspect = math.log(width / height)
    bw, bh = min(SDXL_BUCKETS, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))
    s = long_side / 1024
    return max(64, int(round(bw * s / 64)) * 64), max(64, int(round(bh * s / 64)) * 64)


def resize(image: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an (H, W[, C]) uint8 array to size (w, h): area when shrinking, Lanczos when growing."""
    import cv2

    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if size[0] < image.shape[1] else cv2.INTER_LANCZOS4
    return cv2.resize(image, size, interpolation=interp)


def resize_edges(edges: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a thin-line edge map without losing its lines (area, then re-binarised)."""
    out = resize(edges, size)
    if out is edges:
        return edges
    return np.where(out > 24, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# models: what a config loads, and what is missing (shared with refine and `autoshoot models`)


@dataclass(frozen=True)
class ModelEntry:
    role: str
    source: str  # hub id, local folder or local file; "tiny" for the built-in random set
    kind: str  # "pipeline" | "single_file" | "config_only" | "union" | "controlnet" | "vae" | "lora" | "upscaler" | "tiny"
    files: tuple[str, ...] = ()  # files that must be there (a hub repo: in the cache)
    patterns: tuple[str, ...] = ()  # what `models download` fetches from a hub repo
    subfolder: str = ""

    @property
    def local(self) -> bool:
        return is_local_source(self.source)


def model_entries(config: Config) -> list[ModelEntry]:
    """Every model the render, refine and composite stages load under ``config``."""
    from autoshoot.backends.sdxl import resolve_model_set

    ms = resolve_model_set(config.render)
    if ms.tiny:
        return [
            ModelEntry("SDXL tiny random components (built in code, no download)", "tiny", "tiny"),
            *upscaler_entries(config),
        ]
    out: list[ModelEntry] = []
    base = ms.base
    if base.endswith((".safetensors", ".ckpt")):
        out.append(ModelEntry("SDXL base (single file)", base, "single_file", files=("",)))
        if ms.base_config:
            out.append(
                ModelEntry(
                    "SDXL configs and tokenizers for the single file",
                    ms.base_config,
                    "config_only",
                    files=("model_index.json", "unet/config.json"),
                    patterns=("*.json", "*.txt", "tokenizer*/*"),
                )
            )
    else:
        suffix = f".{ms.variant}" if ms.variant else ""
        out.append(
            ModelEntry(
                "SDXL base",
                base,
                "pipeline",
                files=(
                    "model_index.json",
                    "unet/config.json",
                    f"unet/diffusion_pytorch_model{suffix}.safetensors",
                ),
                patterns=("*.json", "*.txt", "tokenizer*/*", f"*/*{suffix}.safetensors"),
            )
        )
    if ms.controlnet_kind == "union":
        if ms.controlnet_weights:
            files = (ms.controlnet_config or "config.json", ms.controlnet_weights)
        else:
            files = ("config.json", "diffusion_pytorch_model.safetensors")
        out.append(
            ModelEntry("ControlNet union (promax)", ms.controlnet, "union", files=files, patterns=files)
        )
    else:
        for mode, source in sorted(ms.controlnets.items()):
            files = ("config.json", "diffusion_pytorch_model.safetensors")
            out.append(ModelEntry(f"ControlNet ({mode})", source, "controlnet", files=files, patterns=files))
    if ms.vae:
        files = ("config.json", "diffusion_pytorch_model.safetensors")
        out.append(ModelEntry("VAE override", ms.vae, "vae", files=files, patterns=files))
    for i, lora in enumerate(ms.loras):
        out.append(ModelEntry(f"LoRA {i + 1} (weight {lora.weight})", lora.path, "lora", files=("",)))
    return out + upscaler_entries(config)


def upscaler_entries(config: Config) -> list[ModelEntry]:
    """The composite's upscaler weights (``render.upscaler`` esrgan); the others load nothing."""
    rc = config.render
    if rc.upscaler != "esrgan":
        return []
    role = "upscaler (ESRGAN family, through spandrel)"
    if is_local_source(rc.upscaler_model):
        return [ModelEntry(role, rc.upscaler_model, "upscaler", files=("",))]
    files = (rc.upscaler_file,)
    return [ModelEntry(role, rc.upscaler_model, "upscaler", files=files, patterns=files)]


def download_command(config: Config) -> str:
    from autoshoot.hub import models_download_command

    return models_download_command(config)


def model_specs(config: Config) -> list[ModelSpec]:
    return [ModelSpec(e.role, e.source, how_to_get(e, config)) for e in model_entries(config)]


def how_to_get(entry: ModelEntry, config: Config) -> str:
    if entry.kind == "tiny":
        return "nothing to fetch"
    from autoshoot.hub import download_hint

    return download_hint(entry.source, config)


def entry_missing_files(entry: ModelEntry) -> list[str]:
    """The files of ``entry`` that are absent: on disk for a local path, in the HF cache for a hub id."""
    if entry.kind == "tiny":
        return []
    if entry.local:
        root = Path(os.path.expanduser(entry.source))
        return [
            str(root / f) if f else str(root) for f in entry.files if not (root / f if f else root).exists()
        ]
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for f in entry.files:
        hit = try_to_load_from_cache(entry.source, f)
        if not isinstance(hit, str):
            missing.append(f)
    return missing


def fetch_entry(entry: ModelEntry) -> str:
    """snapshot_download with the entry's file patterns: tqdm progress, resumes partial files."""
    from huggingface_hub import snapshot_download

    return snapshot_download(entry.source, allow_patterns=list(entry.patterns) or None)


def fetch_missing_models(config: Config) -> list[tuple[str, str, str]]:
    """Fetch the render models that are not in the cache yet (never offline); return those that
    could not be fetched, as (what, where and why, how to fix)."""
    return fetch_missing_entries(config, model_entries(config), lambda entry: how_to_get(entry, config))


def fetch_missing_entries(
    config: Config, entries: list[ModelEntry], fix: Callable[[ModelEntry], str]
) -> list[tuple[str, str, str]]:
    """Fetch the hub entries not in the cache yet (nothing when offline); return those that
    could not be fetched, as (what, where and why, ``fix(entry)``)."""
    if is_offline(config):
        return []
    failed = []
    for entry in entries:
        if entry.kind == "tiny" or entry.local or not entry_missing_files(entry):
            continue
        try:
            fetch_entry(entry)
        except Exception as err:  # no network, a wrong id, a gated repo
            from autoshoot.hub import fetch_problem

            failed.append((entry.role, f"{entry.source}: not fetched: {fetch_problem(err)}", fix(entry)))
    return failed


def missing_models(config: Config) -> list[tuple[str, str, str]]:
    """(what, where, how to fix) for each model that is absent and cannot be fetched now.

    A local path must exist. A hub model must be in the cache when fetching is forbidden
    (``--offline`` / HF_HUB_OFFLINE=1); otherwise it is fetched on first use.
    """
    return missing_entries(config, model_entries(config), lambda entry: how_to_get(entry, config))


def missing_entries(
    config: Config, entries: list[ModelEntry], fix: Callable[[ModelEntry], str]
) -> list[tuple[str, str, str]]:
    """(what, where, ``fix(entry)``) for each entry that is absent and cannot be fetched now: a
    local path that does not exist, or a hub model not in the cache while fetching is forbidden."""
    offline = is_offline(config)
    out = []
    for entry in entries:
        if not entry.local and not offline:
            continue
        gone = entry_missing_files(entry)  # never any for a tiny model (built in code)
        if gone:
            where = entry.source if entry.local else f"{entry.source} (not in the cache: {', '.join(gone)})"
            out.append((entry.role, where, fix(entry)))
    return out

"""Composite: upscale every refined candidate to the final size, then paste the product's
ORIGINAL pixels back at that size.

1. The final size is the canvas scaled so that its long side is ``render.output_long_side``
   (default 2048). Each candidate is upscaled to it by the run's upscaler
   (``render.upscaler``: autoshoot.backends.UPSCALERS).
2. The product (prepare's mask.png minus the erased grip gap) is mapped from the INPUT photo to
   the final picture in ONE resampling: the placement (canvas = input × scale + offset), the
   canvas → final scale, and ×1.01 about the product's centre (as in the reference workflow: it
   hides the thin segmentation seam) are composed into one affine map, and the photo is
   resampled once under it (area when shrinking, Lanczos-3 when growing:
   autoshoot.geometry.resample). Inside the placed mask the pixels are exactly those; only a
   1-2 px band outside the outline is feathered.

Writes final<i>.png; returns {"candidates": [{"index", "seed", "image", "notes"}], "final_size",
"canvas_size"}, which the score stage reads (it maps canvas coordinates to the final size).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoshoot.stages.base import Stage

if TYPE_CHECKING:
    from autoshoot.stages.base import Job

logger = logging.getLogger(__name__)


class CompositeStage(Stage):
    name = "composite"
    version = "2"
    config_sections = (
        "render.composite_scale",
        "render.composite_feather_px",
        "render.output_long_side",
        "render.upscaler",
        "render.upscaler_model",
        "render.upscaler_file",
        "render.upscaler_tile",
    )

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        from PIL import Image

        from autoshoot.catalog import load_product_image
        from autoshoot.io import read_json, save_image

        rc = job.config.render
        # 1. the input photo, the product mask without the erased gap, the placement
        prep_dir = job.input_dir("prepare")
        prep = read_json(prep_dir / "prepare.json")
        image, _ = load_product_image(job.image_path)
        mask = np.asarray(Image.open(prep_dir / "mask.png").convert("L"))
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"prepare's mask.png is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}; rerun prepare for this SKU"
            )
        keep = product_keep_mask(mask, prep.get("erase_polygon") or [])
        canvas_w, canvas_h = (int(v) for v in prep["canvas_size"])
        # 2. the final size and the one map input px → final px
        final_w, final_h = final_size((canvas_w, canvas_h), rc.output_long_side)
        matrix = composite_matrix(
            prep["placement"],
            prep["product_bbox"],
            rc.composite_scale,
            (final_w / canvas_w, final_h / canvas_h),
        )
        # 3. place the product once, at the final size, straight from the input photo
        placed, inside, band_rgb, band_alpha = place_product(
            image, keep, matrix, (final_w, final_h), rc.composite_feather_px
        )
        # 4. upscale every candidate to the final size, paste the product on it
        upscaler = get_upscaler(job)
        brief = job.input_json("analyze") if "analyze" in job.inputs else {}  # sdxl-tile's prompt
        refine = job.input_json("refine")
        refine_dir = job.input_dir("refine")
        candidates = []
        seconds = {"upscale": 0.0, "paste": 0.0, "save": 0.0}  # summed over the candidates
        # each final is saved in a thread while the next one is upscaled: a 2048-px PNG takes
        # about a second of zlib, which releases the GIL
        from concurrent.futures import ThreadPoolExecutor

        saver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="autoshoot-save")
        saves = []
        try:
            for c in refine["candidates"]:
                cand = np.asarray(Image.open(refine_dir / c["image"]).convert("RGB"))
                if cand.shape[:2] != (canvas_h, canvas_w):
                    raise ValueError(
                        f"candidate {c['index']} is {cand.shape[1]}x{cand.shape[0]}, not the canvas size"
                    )
                t0 = time.perf_counter()
                big = upscaler.upscale(
                    cand,
                    (final_w, final_h),
                    prompt=brief.get("prompt", ""),
                    negative_prompt=brief.get("negative_prompt", ""),
                    seed=int(c["seed"]),
                )
                t1 = time.perf_counter()
                final = paste_product(big, placed, inside, band_rgb, band_alpha)
                t2 = time.perf_counter()
                name = f"final{int(c['index'])}.png"
                saves.append(saver.submit(save_image, out / name, final))
                for key, dt in (("upscale", t1 - t0), ("paste", t2 - t1)):
                    seconds[key] += dt
                candidates.append(
                    {
                        "index": int(c["index"]),
                        "seed": int(c["seed"]),
                        "image": name,
                        "notes": c.get("notes", []),
                    }
                )
            t3 = time.perf_counter()
        finally:  # no write is left running when the stage ends, also when it fails
            saver.shutdown(wait=True)
        for save in saves:
            save.result()  # a failed write fails the stage
        seconds["save"] = time.perf_counter() - t3  # what the saving added after the last paste
        return {
            "candidates": candidates,
            "canvas_size": [canvas_w, canvas_h],
            "final_size": [final_w, final_h],
            "upscaler": rc.upscaler,
            "matrix": [[round(float(v), 6) for v in row] for row in matrix],
            "product_pixels": int(inside.sum()),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        }


def final_size(canvas_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(w, h) of the delivered picture: the canvas scaled to ``long_side`` on its long side."""
    w, h = canvas_size
    s = long_side / max(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def get_upscaler(job: Job) -> Any:
    """The run's upscaler, built once (``job.sessions``); ``sdxl-tile`` shares the run's renderer."""
    from autoshoot.backends import UPSCALERS
    from autoshoot.stages.render import get_renderer

    config = job.config
    name = config.render.upscaler
    return job.sessions.get(
        f"upscaler:{name}", lambda: UPSCALERS.create(name, config, renderer=lambda: get_renderer(job))
    )


def product_keep_mask(mask: np.ndarray, erase_polygon: list[list[float]]) -> np.ndarray:
    """(H, W) uint8 255 = product, with the erased grip gap (input px polygon) set to 0."""
    import cv2

    keep = np.where(mask >= 128, 255, 0).astype(np.uint8)
    if len(erase_polygon) >= 3:
        cv2.fillPoly(keep, [np.round(np.asarray(erase_polygon, dtype=np.float64)).astype(np.int32)], 0)
    return keep


def composite_matrix(
    placement: dict[str, Any],
    product_bbox: list[float],
    extra_scale: float,
    final_scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """2x3 affine input px → final px (pixel centres at integers): the placement (input →
    canvas), the canvas → final resize (``final_scale`` = final / canvas size per axis; a resize
    maps pixel EDGES to edges, so centres move by (c + 0.5)·f - 0.5), then ×``extra_scale``
    about the placed product's bbox centre."""
    s = float(placement["scale"])
    ox, oy = (float(v) for v in placement["offset"])
    fx, fy = (float(v) for v in final_scale)
    # input → final, before the extra scale
    sx, tx = s * fx, (ox + 0.5) * fx - 0.5
    sy, ty = s * fy, (oy + 0.5) * fy - 0.5
    x0, y0, x1, y1 = (float(v) for v in product_bbox)
    cx, cy = (x0 + x1) / 2 * sx + tx, (y0 + y1) / 2 * sy + ty
    k = float(extra_scale)
    return np.array([[sx * k, 0.0, k * tx + (1 - k) * cx], [0.0, sy * k, k * ty + (1 - k) * cy]])


def warp_product(
    image: np.ndarray, keep: np.ndarray, matrix: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The input placed on the final picture, in one resampling.

    image: (H, W, 3) uint8 RGB input; keep: (H, W) uint8 255 = product; matrix: 2x3 scale and
    shift, input px → output px; size: output (w, h). Returns the placed image (h, w, 3) uint8 RGB
    (area-averaged when shrinking, Lanczos-3 when growing) and ``inside`` (h, w) bool, where the
    placed mask covers at least half of the pixel.
    """
    placed, soft = resample_product(image, keep, matrix, size, [image, keep.astype(np.float32) / 255.0])
    return np.clip(np.rint(placed), 0, 255).astype(np.uint8), soft >= 0.5


def resample_product(
    image: np.ndarray, keep: np.ndarray, matrix: np.ndarray, size: tuple[int, int], arrays: list[np.ndarray]
) -> list[np.ndarray]:
    """``resample_affine`` of each input-size array, computed only around the product: the input
    is cropped to the product's box plus the reach of one output pixel's footprint (and the
    feather band), and the output to where that crop lands; elsewhere the result is 0. Inside
    the product and its band this equals resampling the whole photo."""
    from autoshoot.geometry.resample import resample_affine

    w_out, h_out = int(size[0]), int(size[1])
    ys, xs = np.nonzero(keep)
    if len(xs) == 0:
        return [np.zeros((h_out, w_out, *a.shape[2:]), np.float32) for a in arrays]
    kx, ky = float(matrix[0, 0]), float(matrix[1, 1])
    pad = int(np.ceil(4.0 / min(kx, ky, 1.0))) + 4  # input px: a 2-px band's footprint, and Lanczos' 3
    h, w = keep.shape[:2]
    x0, x1 = max(0, int(xs.min()) - pad), min(w, int(xs.max()) + 1 + pad)
    y0, y1 = max(0, int(ys.min()) - pad), min(h, int(ys.max()) + 1 + pad)
    # where the crop's pixel edges land in the output
    ox0 = max(0, int(np.floor(kx * (x0 - 0.5) + matrix[0, 2] + 0.5)))
    ox1 = min(w_out, int(np.ceil(kx * (x1 - 0.5) + matrix[0, 2] + 0.5)))
    oy0 = max(0, int(np.floor(ky * (y0 - 0.5) + matrix[1, 2] + 0.5)))
    oy1 = min(h_out, int(np.ceil(ky * (y1 - 0.5) + matrix[1, 2] + 0.5)))
    out = [np.zeros((h_out, w_out, *a.shape[2:]), np.float32) for a in arrays]
    if ox1 <= ox0 or oy1 <= oy0:
        return out
    m = np.array(
        [[kx, 0.0, matrix[0, 2] + kx * x0 - ox0], [0.0, ky, matrix[1, 2] + ky * y0 - oy0]], np.float64
    )
    for dst, a in zip(out, arrays, strict=True):
        dst[oy0:oy1, ox0:ox1] = resample_affine(a[y0:y1, x0:x1], m, (ox1 - ox0, oy1 - oy0))
    return out


def place_product(
    image: np.ndarray, keep: np.ndarray, matrix: np.ndarray, size: tuple[int, int], feather_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The placed product, its inside mask, and the outline band's colours and alpha.

    The band (outside ``inside``, within ``feather_px``) takes the product's own colours
    (premultiplied resampling, so no background halo) at alpha 1 - distance / feather_px.
    """
    import cv2

    w = keep.astype(np.float32) / 255.0
    placed, soft, premult = resample_product(image, keep, matrix, size, [image, w, image * w[..., None]])
    placed = np.clip(np.rint(placed), 0, 255).astype(np.uint8)
    inside = soft >= 0.5
    weight = np.clip(soft, 0.0, None)
    band_rgb = np.clip(premult / np.maximum(weight, 1e-3)[..., None], 0.0, 255.0)
    if feather_px > 0:
        dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
        band_alpha = np.clip(1.0 - dist / float(feather_px), 0.0, 1.0) * (~inside)
        band_alpha = band_alpha * (weight > 1e-3)
    else:
        band_alpha = np.zeros(inside.shape, np.float32)
    return placed, inside, band_rgb, band_alpha.astype(np.float32)


def paste_product(
    candidate: np.ndarray,
    placed: np.ndarray,
    inside: np.ndarray,
    band_rgb: np.ndarray,
    band_alpha: np.ndarray,
) -> np.ndarray:
    """candidate (h, w, 3) uint8 RGB with the product pasted: exact inside, feathered band outside.
    Only the band and the inside are touched (a 2048-px frame is 12 MB per float channel set)."""
    out = candidate.copy()
    band = band_alpha > 0
    a = band_alpha[band][:, None]
    mixed = candidate[band].astype(np.float32) * (1 - a) + band_rgb[band] * a
    out[band] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    out[inside] = placed[inside]
    return out

"""Composite: paste the product's ORIGINAL pixels back onto every refined candidate.

The product (prepare's mask.png minus the erased grip gap) is mapped by the placement
(canvas = input × scale + offset), then scaled ×1.01 about the product's centre (as in the
reference workflow: it hides the thin segmentation seam). Inside the placed mask the pixels are
exactly the placed input's; only a 1-2 px band outside the outline is feathered.

Writes final<i>.png; returns {"candidates": [{"index", "seed", "image", "notes"}]}, which the
score stage reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoshoot.stages.base import Stage

if TYPE_CHECKING:
    from autoshoot.stages.base import Job

logger = logging.getLogger(__name__)


class CompositeStage(Stage):
    name = "composite"
    version = "1"
    config_sections = ("render.composite_scale", "render.composite_feather_px")

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
        matrix = composite_matrix(prep["placement"], prep["product_bbox"], rc.composite_scale)
        # 2. place the product once, paste it on every candidate
        placed, inside, band_rgb, band_alpha = place_product(
            image, keep, matrix, (canvas_w, canvas_h), rc.composite_feather_px
        )
        refine = job.input_json("refine")
        refine_dir = job.input_dir("refine")
        candidates = []
        for c in refine["candidates"]:
            cand = np.asarray(Image.open(refine_dir / c["image"]).convert("RGB"))
            if cand.shape[:2] != (canvas_h, canvas_w):
                raise ValueError(
                    f"candidate {c['index']} is {cand.shape[1]}x{cand.shape[0]}, not the canvas size"
                )
            final = paste_product(cand, placed, inside, band_rgb, band_alpha)
            name = f"final{int(c['index'])}.png"
            save_image(out / name, final)
            candidates.append(
                {"index": int(c["index"]), "seed": int(c["seed"]), "image": name, "notes": c.get("notes", [])}
            )
        return {
            "candidates": candidates,
            "matrix": [[round(float(v), 6) for v in row] for row in matrix],
            "product_pixels": int(inside.sum()),
        }


def product_keep_mask(mask: np.ndarray, erase_polygon: list[list[float]]) -> np.ndarray:
    """(H, W) uint8 255 = product, with the erased grip gap (input px polygon) set to 0."""
    import cv2

    keep = np.where(mask >= 128, 255, 0).astype(np.uint8)
    if len(erase_polygon) >= 3:
        cv2.fillPoly(keep, [np.round(np.asarray(erase_polygon, dtype=np.float64)).astype(np.int32)], 0)
    return keep


def composite_matrix(placement: dict[str, Any], product_bbox: list[float], extra_scale: float) -> np.ndarray:
    """2x3 affine input px → canvas px: the placement, then ×``extra_scale`` about the placed
    product's bbox centre."""
    s = float(placement["scale"])
    ox, oy = (float(v) for v in placement["offset"])
    x0, y0, x1, y1 = (float(v) for v in product_bbox)
    cx, cy = (x0 + x1) / 2 * s + ox, (y0 + y1) / 2 * s + oy
    k = float(extra_scale)
    return np.array([[s * k, 0.0, k * ox + (1 - k) * cx], [0.0, s * k, k * oy + (1 - k) * cy]])


def warp_product(
    image: np.ndarray, keep: np.ndarray, matrix: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The input placed on the canvas.

    image: (H, W, 3) uint8 RGB input; keep: (H, W) uint8 255 = product; size: canvas (w, h).
    Returns the placed image (h, w, 3) uint8 RGB (bilinear resampling) and ``inside``
    (h, w) bool, where the placed mask is at least half covered.
    """
    import cv2

    placed = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    soft = cv2.warpAffine(keep, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return placed, soft >= 128


def place_product(
    image: np.ndarray, keep: np.ndarray, matrix: np.ndarray, size: tuple[int, int], feather_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The placed product, its inside mask, and the outline band's colours and alpha.

    The band (outside ``inside``, within ``feather_px``) takes the product's own colours
    (premultiplied warp, so no background halo) at alpha 1 - distance / feather_px.
    """
    import cv2

    placed, inside = warp_product(image, keep, matrix, size)
    w = keep.astype(np.float32) / 255.0
    premult = cv2.warpAffine(image.astype(np.float32) * w[..., None], matrix, size, flags=cv2.INTER_LINEAR)
    weight = cv2.warpAffine(w, matrix, size, flags=cv2.INTER_LINEAR)
    band_rgb = premult / np.maximum(weight, 1e-3)[..., None]
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
    """candidate (h, w, 3) uint8 RGB with the product pasted: exact inside, feathered band outside."""
    out = candidate.astype(np.float32)
    a = band_alpha[..., None]
    out = out * (1 - a) + band_rgb * a
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    out[inside] = placed[inside]
    return out

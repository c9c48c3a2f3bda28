"""Shared test material for the render, refine and composite tests: a synthetic product photo,
a prepare folder in the geometry's contract, an analyze stage.json, Jobs, a tiny renderer,
and a fake hand detector that reports landmarks we synthesise.

(No tests here; the other test_render*/test_refine*/test_composite* files import it.)
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoshoot.backends.hand_mesh import synthetic_hand_landmarks
from autoshoot.catalog import Row
from autoshoot.config import load_config
from autoshoot.stages.base import Job, Sessions

CANVAS = (256, 256)  # w, h
PLACEMENT = {"scale": 0.8, "offset": [48.0, 64.0]}
LONG_PROMPT = (
    "a young woman with long dark hair, wearing a cream linen blouse and wide navy trousers, soft "
    "window light from the left, a plain warm grey studio background. She holds the bag by its "
    "top handle beside her hip, arm relaxed. Half body shot. Looking at the camera with a calm "
    "smile. Only one person and only the specified item in her hand. Highly photorealistic image, "
    "tack-sharp focus, high definition."
)


def make_product_photo() -> tuple[np.ndarray, np.ndarray, list[list[float]], list[float]]:
    """A 200x180 RGB bag with a top loop handle on white; its mask (255 product), an erase
    polygon across the top of the handle, and the grip (input px)."""
    import cv2

    h, w = 180, 200
    img = np.full((h, w, 3), 250, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (30, 80), (170, 170), 255, -1)
    cv2.ellipse(mask, (100, 80), (45, 55), 0, 180, 360, 255, 10)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, (h, w, 1)).astype(np.uint8)
    body = np.clip(np.array([120, 70, 35], np.int16) + texture, 0, 255).astype(np.uint8)
    img[mask > 0] = body[mask > 0]
    erase = [[88.0, 18.0], [112.0, 18.0], [112.0, 34.0], [88.0, 34.0]]
    grip = [100.0, 26.0]
    return img, mask, erase, grip


def write_prepare_dir(
    folder: Path, image: np.ndarray, mask: np.ndarray, erase: list, grip: list | None
) -> Path:
    """A prepare stage folder as the geometry writes it (prepare.json, mask.png, canvas.png,
    inpaint_mask.png, control_canny.png, stage.json)."""
    import cv2

    from autoshoot.stages.composite import composite_matrix, product_keep_mask

    folder.mkdir(parents=True, exist_ok=True)
    keep = product_keep_mask(mask, erase)
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    m = composite_matrix(PLACEMENT, bbox, 1.0)
    canvas = cv2.warpAffine(image, m, CANVAS, flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    placed = cv2.warpAffine(keep, m, CANVAS, flags=cv2.INTER_NEAREST)
    canvas[placed == 0] = 255
    inpaint = np.where(placed > 0, 0, 255).astype(np.uint8)
    canny = cv2.Canny(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), 50, 150)
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(canvas).save(folder / "canvas.png")
    Image.fromarray(inpaint).save(folder / "inpaint_mask.png")
    Image.fromarray(canny).save(folder / "control_canny.png")
    prep = {
        "product_bbox": bbox,
        "handle": "top_loop" if grip else "none",
        "grip": grip,
        "erase_polygon": erase,
        "canvas_size": list(CANVAS),
        "placement": PLACEMENT,
    }
    (folder / "prepare.json").write_text(json.dumps(prep))
    (folder / "stage.json").write_text(json.dumps(prep))
    return folder


def write_analyze_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage.json").write_text(
        json.dumps({"prompt": LONG_PROMPT, "negative_prompt": "blurry, extra fingers"})
    )
    return folder


@dataclass
class FakeHand:
    landmarks: np.ndarray
    score: float = 0.99
    handedness: str = "Right"


class FakeHandDetector:
    """Stands in for MediaPipe on random-weight renders (which draw no hands): reports the
    given landmarks and records each call's roi."""

    def __init__(self, landmarks: np.ndarray | None):
        self.landmarks = landmarks
        self.calls: list[tuple[int, int, int, int] | None] = []

    def detect(self, image: np.ndarray, roi: Any = None) -> list[FakeHand]:
        self.calls.append(roi)
        return [] if self.landmarks is None else [FakeHand(self.landmarks.astype(np.float32))]


def grip_canvas() -> tuple[float, float]:
    _, _, _, grip = make_product_photo()
    return (
        grip[0] * PLACEMENT["scale"] + PLACEMENT["offset"][0],
        grip[1] * PLACEMENT["scale"] + PLACEMENT["offset"][1],
    )


def hand_at_grip() -> np.ndarray:
    gx, gy = grip_canvas()
    return synthetic_hand_landmarks((gx, gy + 10), 60.0, angle_deg=10.0)


def tiny_config(**overrides: Any):
    return load_config("tiny", overrides={"run.device": "cpu", **overrides})


def make_job(
    tmp: Path, config, sessions: Sessions, inputs: dict[str, Path], seed: int = 7, candidates: int = 2
) -> Job:
    image_path = tmp / "product.png"
    if not image_path.exists():
        img, _, _, _ = make_product_photo()
        Image.fromarray(img).save(image_path)
    row = Row(
        row_number=2, sku="BAG-1", image=str(image_path), fields={"sku": "BAG-1"}, image_path=image_path
    )
    return Job(
        row=row,
        image_path=image_path,
        image_sha256="0" * 64,
        seed=seed,
        candidates=candidates,
        work_dir=tmp,
        config=config,
        sessions=sessions,
        inputs=inputs,
    )


@functools.lru_cache(maxsize=1)
def shared_tiny_renderer():
    """One tiny SDXL renderer for the whole test session (loads in ~1 s once cached)."""
    from autoshoot.backends.sdxl import SDXLRenderer

    return SDXLRenderer(tiny_config())


def make_pipeline_dirs(tmp_path: Path) -> dict[str, Path]:
    """prepare/ and analyze/ stage folders under ``tmp_path``."""
    img, mask, erase, grip = make_product_photo()
    return {
        "prepare": write_prepare_dir(tmp_path / "prepare", img, mask, erase, grip),
        "analyze": write_analyze_dir(tmp_path / "analyze"),
    }

"""Cut a hand-sized gap across the handle at the grip point.

Points are (x, y) input pixels. ``mask`` arrays are HxW bool, True = product.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from autoshoot.config.prepare import PrepareConfig
from autoshoot.geometry.handles import HandleResult

logger = logging.getLogger(__name__)


def pixels_per_cm(bbox: tuple[int, int, int, int], size_cm: tuple[float, float]) -> float:
    """Input pixels per cm from the product's bbox (XYXY) and its body's real width x height in cm.

    The bbox also holds handles and straps, so it is at least the body in both directions;
    the smaller of the two ratios is the closer one.
    """
    bw, bh = max(1, bbox[2] - bbox[0]), max(1, bbox[3] - bbox[1])
    return float(min(bw / size_cm[0], bh / size_cm[1]))


def erase_polygon(handle: HandleResult, px_per_cm: float, config: PrepareConfig) -> list[tuple[float, float]]:
    """The gap: a rectangle centred on the grip, along the handle, cutting through it.

    Its length along the handle is ``palm_cm`` at the product's scale (at most
    ``erase_max_span_frac`` of the loop's width); across, it covers the handle's thickness
    plus padding on both sides. Returns four (x, y) corners in input pixels, or [] without a grip.
    """
    if handle.grip is None or handle.opening is None:
        return []
    gx, gy = handle.grip
    ux, uy = handle.direction
    nx, ny = -uy, ux
    span = handle.opening.span[1] - handle.opening.span[0]
    length = config.palm_cm * px_per_cm
    length = min(length, config.erase_max_span_frac * span)
    length = max(length, 1.5 * handle.thickness, 6.0)
    pad = max(config.erase_pad_min_px, config.erase_pad_frac * handle.thickness)
    across = handle.thickness + 2.0 * pad
    a, b = length / 2.0, across / 2.0
    return [
        (gx - ux * a - nx * b, gy - uy * a - ny * b),
        (gx + ux * a - nx * b, gy + uy * a - ny * b),
        (gx + ux * a + nx * b, gy + uy * a + ny * b),
        (gx - ux * a + nx * b, gy - uy * a + ny * b),
    ]


def polygon_mask(polygon: list[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """HxW bool, True inside ``polygon`` ((x, y) pixels), drawn with 1/16-px precision."""
    out = np.zeros(shape, np.uint8)
    if polygon:
        pts = np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)
        cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def erase_mask(mask: np.ndarray, polygon: list[tuple[float, float]]) -> np.ndarray:
    """The erased product: ``mask`` (HxW bool) minus the gap polygon."""
    return mask & ~polygon_mask(polygon, mask.shape)

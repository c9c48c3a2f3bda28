"""debug.png: what the geometry saw and decided, side by side.

Left: the input with the mask tinted, handle openings in blue, the erase polygon in red, the
grip as a red dot and the bbox in yellow. Right: the canvas with the inpaint area tinted and
the canny edges in magenta. A caption line gives handle kind, segmenter, shot and warnings.
"""

from __future__ import annotations

import cv2
import numpy as np

PANEL_H = 512


def draw_debug(
    image: np.ndarray,
    mask: np.ndarray,
    openings: np.ndarray | None,
    bbox: tuple[int, int, int, int],
    grip: tuple[float, float] | None,
    polygon: list[tuple[float, float]],
    canvas: np.ndarray,
    inpaint: np.ndarray,
    canny: np.ndarray,
    caption: str,
) -> np.ndarray:
    """image HxWx3 uint8 RGB, mask/openings HxW bool; canvas RGB, inpaint/canny HxW uint8 {0,255}.

    Returns an RGB uint8 image PANEL_H + 24 px tall.
    """
    # 1. left panel: input with overlays, drawn at the panel's scale
    k = min(1.0, PANEL_H / image.shape[0])
    if k < 1.0:
        size = (max(1, round(image.shape[1] * k)), PANEL_H)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        if openings is not None:
            openings = cv2.resize(openings.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(
                bool
            )
        bbox = tuple(int(round(v * k)) for v in bbox)  # type: ignore[assignment]
        grip = None if grip is None else (grip[0] * k, grip[1] * k)
        polygon = [(x * k, y * k) for x, y in polygon]
    left = image.astype(np.float32)
    tint = np.array([0, 200, 0], np.float32)
    left[mask] = 0.65 * left[mask] + 0.35 * tint
    if openings is not None and openings.any():
        left[openings] = 0.4 * left[openings] + 0.6 * np.array([40, 90, 255], np.float32)
    left = np.clip(left, 0, 255).astype(np.uint8)
    thick = max(1, round(max(image.shape[:2]) / 400))
    cv2.rectangle(left, bbox[:2], (bbox[2] - 1, bbox[3] - 1), (255, 220, 0), thick)
    if polygon:
        pts = np.round(np.asarray(polygon)).astype(np.int32)
        cv2.polylines(left, [pts], True, (255, 0, 0), thick)
    if grip is not None:
        cv2.circle(left, (int(round(grip[0])), int(round(grip[1]))), 3 * thick, (255, 0, 0), -1)
    # 2. right panel: canvas, inpaint area, canny, drawn at the panel's scale (any covered
    # pixel of the full-size area or edges stays marked)
    if canvas.shape[0] > PANEL_H:
        size = (max(1, round(canvas.shape[1] * PANEL_H / canvas.shape[0])), PANEL_H)
        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
        inpaint = cv2.resize(inpaint, size, interpolation=cv2.INTER_AREA)
        canny = cv2.resize(canny, size, interpolation=cv2.INTER_AREA)
    right = canvas.astype(np.float32)
    paint = inpaint > 0
    right[paint] = 0.7 * right[paint] + 0.3 * np.array([255, 160, 0], np.float32)
    right[canny > 0] = (255, 0, 255)
    right = np.clip(right, 0, 255).astype(np.uint8)
    # 3. side by side with a caption
    panels = [fit_height(left, PANEL_H), fit_height(right, PANEL_H)]
    sheet = np.concatenate(panels, axis=1)
    bar = np.full((24, sheet.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, caption[:160], (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([sheet, bar], axis=0)


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)

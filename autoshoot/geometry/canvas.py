"""What stage 1 consumes: the canvas, the inpaint mask and the canny edges.

Array contracts: ``image`` HxWx3 uint8 RGB (input size); ``alpha`` HxW float32 [0, 1]
(input size); canvas outputs are ``canvas_size`` = (w, h): RGB HxWx3 uint8 and masks HxW
uint8 in {0, 255}.
"""

from __future__ import annotations

import cv2
import numpy as np


def placement_matrix(scale: float, offset: tuple[float, float]) -> np.ndarray:
    """2x3 affine matrix of ``canvas_xy = input_xy * scale + offset`` (pixel centres at integers)."""
    return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], np.float64)


def warp_to_canvas(
    array: np.ndarray,
    scale: float,
    offset: tuple[float, float],
    canvas_size: tuple[int, int],
    fill: float | tuple = 0,
) -> np.ndarray:
    """Resample an input-size array onto the canvas (area-averaged when shrinking)."""
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    if scale < 1.0:
        # INTER_AREA only applies to resize: resize first, then shift with a sub-pixel warp
        h, w = array.shape[:2]
        sw, sh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        small = cv2.resize(array, (sw, sh), interpolation=interp)
        fx, fy = sw / w, sh / h
        # resized pixel i has its centre at input x = (i + 0.5) / fx - 0.5
        m = np.array(
            [
                [scale / fx, 0.0, offset[0] + scale * (0.5 / fx - 0.5)],
                [0.0, scale / fy, offset[1] + scale * (0.5 / fy - 0.5)],
            ],
            np.float64,
        )
        return cv2.warpAffine(
            small, m, canvas_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
        )
    return cv2.warpAffine(
        array,
        placement_matrix(scale, offset),
        canvas_size,
        flags=interp,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


def make_canvas(
    image: np.ndarray,
    alpha: np.ndarray,
    scale: float,
    offset: tuple[float, float],
    canvas_size: tuple[int, int],
    color: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """The erased product's pixels over a neutral background.

    Returns (canvas HxWx3 uint8 RGB, canvas alpha HxW float32 [0, 1]).
    """
    product = warp_to_canvas(image, scale, offset, canvas_size, fill=(0, 0, 0))
    a = warp_to_canvas(alpha.astype(np.float32), scale, offset, canvas_size, fill=0.0)
    a = np.clip(a, 0.0, 1.0)
    bg = np.empty_like(product)
    bg[:] = np.asarray(color, np.uint8)
    canvas = product.astype(np.float32) * a[..., None] + bg.astype(np.float32) * (1.0 - a[..., None])
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), a


def make_inpaint_mask(canvas_alpha: np.ndarray, grow_px: int) -> np.ndarray:
    """255 where stage 1 paints: everything except the erased product, grown ``grow_px`` into it.

    canvas_alpha: HxW float32 [0, 1]. Returns HxW uint8 in {0, 255}.
    """
    keep = (canvas_alpha >= 0.5).astype(np.uint8)
    if grow_px > 0:
        keep = cv2.erode(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1,) * 2))
    return np.where(keep > 0, 0, 255).astype(np.uint8)


def make_canny(canvas: np.ndarray, canvas_alpha: np.ndarray, low: int, high: int) -> np.ndarray:
    """Canny edges of the erased product on the canvas: its outline and inner lines.

    canvas: HxWx3 uint8 RGB; canvas_alpha: HxW float32. Returns HxW uint8 in {0, 255}.
    Edges away from the product (there are none on a flat background) are dropped.
    """
    gray = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    # the outline must be there even where product and background share a brightness
    outline = cv2.morphologyEx(
        (canvas_alpha >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)
    )
    near = cv2.dilate((canvas_alpha > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    edges = np.where(near, edges, 0)
    inner_outline = outline.astype(bool) & (canvas_alpha >= 0.5)
    edges[inner_outline] = 255
    return edges.astype(np.uint8)

"""Bags drawn in code, with exact truth: mask, bbox, grip point, a point inside the opening.

    draw_bag(handle="top_loop")                          one arched handle
    draw_bag(handle="twin_loops")                        two overlapping arches
    draw_bag(handle="top_loop", double_strap=True)       two parallel straps with a thin gap
    draw_bag(handle="none")                              a body without a handle
    draw_bag(..., background=(246, 243, 236), shadow=True, texture=True)

Arrays: ``image`` HxWx3 uint8 RGB; ``mask`` HxW bool (True = product; the opening and the
gap between double straps are False). Points are (x, y) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class SyntheticBag:
    image: np.ndarray
    mask: np.ndarray
    bbox: tuple[int, int, int, int]  # XYXY
    handle: str
    grip: tuple[float, float] | None
    hole: tuple[int, int] | None  # a pixel of background inside the handle opening
    gap: tuple[int, int] | None = None  # a pixel of the thin gap between double straps
    # other points a hand may rightly grip: for twin loops, the top of each arch and the point
    # where the two cross (both handles in one hand)
    grip_choices: list[tuple[float, float]] = field(default_factory=list)
    shadow: np.ndarray | None = None  # HxW bool: where the shadow darkens the background


def draw_bag(
    handle: str = "top_loop",
    size: tuple[int, int] = (480, 600),
    background: tuple[int, int, int] = (255, 255, 255),
    body_color: tuple[int, int, int] = (120, 60, 40),
    handle_color: tuple[int, int, int] | None = None,
    double_strap: bool = False,
    shadow: bool = False,
    texture: bool = False,
    strap_px: int = 14,
    gap_px: int = 8,
    seed: int = 0,
) -> SyntheticBag:
    """Draw a bag body (rounded rectangle) and its handle on a plain background."""
    rng = np.random.default_rng(seed)
    w, h = size
    handle_color = handle_color or tuple(int(c * 0.7) for c in body_color)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = background
    mask = np.zeros((h, w), np.uint8)
    # body geometry
    bx0, bx1 = int(0.22 * w), int(0.78 * w)
    by0, by1 = int(0.45 * h), int(0.88 * h)
    cx = (bx0 + bx1) / 2.0
    # 1. soft shadow on the background, below and right of the body
    shadow_mask = None
    if shadow:
        layer = np.zeros((h, w), np.float32)
        cv2.ellipse(layer, (int(cx + 0.04 * w), by1), (int(0.34 * w), int(0.035 * h)), 0, 0, 360, 1.0, -1)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.02 * w)
        darkness = 38.0 * layer / max(layer.max(), 1e-6)
        image = np.clip(image.astype(np.float32) - darkness[..., None], 0, 255).astype(np.uint8)
        shadow_mask = darkness > 1.0
    # 2. handle(s): arcs whose ends meet the body's top edge
    grip = hole = gap = None
    arches: list[tuple[float, int, int]] = []  # (centre x, half-width, height) of the strap centre line
    a, b = int(0.17 * w), int(0.2 * h)
    if handle == "top_loop":
        arches = [(cx, a, b)]
    elif handle == "twin_loops":
        arches = [(cx - 0.06 * w, a, b), (cx + 0.06 * w, a, int(b * 0.92))]
    elif handle == "strap_loop":
        arches = [(cx, int(0.24 * w), int(0.38 * h))]
    for ax, aa, bb in arches:
        centre = (int(round(ax)), by0 + strap_px // 2)
        if double_strap:
            outer = (aa + (strap_px + gap_px) // 2, bb + (strap_px + gap_px) // 2)
            inner = (aa - (strap_px + gap_px) // 2, bb - (strap_px + gap_px) // 2)
            for axes in (outer, inner):
                cv2.ellipse(image, centre, axes, 0, 180, 360, handle_color, strap_px, cv2.LINE_AA)
                cv2.ellipse(mask, centre, axes, 0, 180, 360, 1, strap_px, cv2.LINE_8)
        else:
            cv2.ellipse(image, centre, (aa, bb), 0, 180, 360, handle_color, strap_px, cv2.LINE_AA)
            cv2.ellipse(mask, centre, (aa, bb), 0, 180, 360, 1, strap_px, cv2.LINE_8)
    if arches:
        top = min(arches, key=lambda arch: by0 + strap_px // 2 - arch[2])
        ax, aa, bb = top
        y_centre = by0 + strap_px // 2 - bb
        grip = (float(ax), float(y_centre))
        hole = (int(round(ax)), int(by0 - bb // 2 + strap_px))
        if double_strap:
            gap = (int(round(ax)), int(y_centre))
    grip_choices = [(float(ax), float(by0 + strap_px // 2 - bb)) for ax, aa, bb in arches]
    if len(arches) == 2:
        grip_choices.append(arch_crossing(arches, by0 + strap_px // 2))
    # 3. body on top of the handle ends
    radius = int(0.04 * w)
    body = np.zeros((h, w), np.uint8)
    cv2.rectangle(body, (bx0 + radius, by0), (bx1 - radius, by1), 1, -1)
    cv2.rectangle(body, (bx0, by0 + radius), (bx1, by1 - radius), 1, -1)
    for corner in (
        (bx0 + radius, by0 + radius),
        (bx1 - radius, by0 + radius),
        (bx0 + radius, by1 - radius),
        (bx1 - radius, by1 - radius),
    ):
        cv2.circle(body, corner, radius, 1, -1)
    fill = np.empty((h, w, 3), np.float32)
    fill[:] = body_color
    if texture:
        fill += rng.normal(0.0, 6.0, (h, w, 1)).astype(np.float32)
        fill += 10.0 * np.sin(np.arange(w, dtype=np.float32) / 3.0)[None, :, None]
    body_b = body.astype(bool)
    image[body_b] = np.clip(fill[body_b], 0, 255).astype(np.uint8)
    mask |= body
    mask_b = mask.astype(bool)
    ys, xs = np.nonzero(mask_b)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    if shadow_mask is not None:
        shadow_mask &= ~mask_b
    return SyntheticBag(
        image=image,
        mask=mask_b,
        bbox=bbox,
        handle=handle if arches else "none",
        grip=grip,
        hole=hole,
        gap=gap,
        shadow=shadow_mask,
        grip_choices=grip_choices,
    )


def arch_crossing(arches: list[tuple[float, int, int]], base_y: int) -> tuple[float, float]:
    """Where the centre lines of two upper half-ellipses cross (the upper crossing)."""
    t = np.linspace(np.pi, 2 * np.pi, 2000)
    (x1, a1, b1), (x2, a2, b2) = arches
    p1 = np.stack([x1 + a1 * np.cos(t), base_y + b1 * np.sin(t)], axis=1)
    p2 = np.stack([x2 + a2 * np.cos(t), base_y + b2 * np.sin(t)], axis=1)
    d = np.linalg.norm(p1[:, None, :] - p2[None, :, :], axis=2)
    d[p1[:, 1] > base_y - 0.3 * min(b1, b2)] = np.inf  # only the crossing high on the arches
    i, _ = np.unravel_index(np.argmin(d), d.shape)
    return float(p1[i, 0]), float(p1[i, 1])


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))

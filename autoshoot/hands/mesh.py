"""Corrected-hand guidance for stage 2: a depth map and a "sharp glove" scribble of a hand posed
from 21 landmarks.

``HandMesh`` is the pluggable interface. ``CapsuleHandMesh`` (registered as "capsule") needs no
weights: each finger bone is a capsule of anatomical width, the palm is a slab, depth comes
from the landmarks' z, and there are always exactly five fingers, whatever the image drew.

Plugging in a MANO-based estimator (HaMeR, WiLoR, MeshGraphormer) for users who hold its
licence and weights: write a class with the same ``render`` method that fits the mesh to the
crop and rasterises its depth, register it, and select it in the config::

    from autoshoot.backends import HAND_MESHES
    HAND_MESHES.register("hamer", "my_package.hamer_mesh:HamerHandMesh")
    # profile: [render] hand_mesh = "hamer"

Landmark layout (MediaPipe): 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
PALM = (0, 1, 5, 9, 13, 17)
# Finger widths as a fraction of the index-MCP-to-pinky-MCP distance (~60 mm on an adult hand,
# whose palm is ~84 mm broad); fingers are 16-22 mm at the proximal joint and taper ~20%.
FINGER_WIDTH = (0.37, 0.32, 0.33, 0.30, 0.26)
TAPER = (1.0, 0.92, 0.85, 0.80)  # base → tip of each finger


@dataclass
class HandGuidance:
    """Guidance images, all HxW uint8 at the requested size.

    depth:    0 background, 64..255 hand with 255 nearest the camera (MiDaS-style, as depth
              ControlNets expect).
    scribble: 255 on the outline of the hand and of each finger, 0 elsewhere.
    mask:     255 where the hand model covers, 0 elsewhere.
    """

    depth: np.ndarray
    scribble: np.ndarray
    mask: np.ndarray


class HandMesh(Protocol):
    def render(self, landmarks: np.ndarray, size: tuple[int, int]) -> HandGuidance:
        """landmarks: (21, 3) float, x/y in pixels of the output image, z in pixels too (MediaPipe
        convention: smaller z is nearer the camera). size: (width, height)."""
        ...


class CapsuleHandMesh:
    """Five capsule fingers and a palm slab, z-buffered. No weights, no licence."""

    def __init__(self, config: Any = None, line_px: int | None = None):
        self.line_px = line_px

    def render(self, landmarks: np.ndarray, size: tuple[int, int]) -> HandGuidance:
        # 1. check inputs
        pts = np.asarray(landmarks, dtype=np.float64)
        if pts.shape != (21, 3) or not np.isfinite(pts).all():
            raise ValueError(f"landmarks must be a finite (21, 3) array, got shape {pts.shape}")
        width, height = int(size[0]), int(size[1])
        # 2. hand scale: the palm width (index MCP ↔ pinky MCP), floored by the palm length
        palm_w = max(
            float(np.linalg.norm(pts[5, :2] - pts[17, :2])),
            0.6 * float(np.linalg.norm(pts[0, :2] - pts[9, :2])),
            2.0,
        )
        # 3. z-buffer: nearest surface wins; labels tell the fingers apart for the scribble
        zbuf = np.full((height, width), np.inf)
        label = np.zeros((height, width), np.int16)
        draw_palm(zbuf, label, pts, palm_w)
        for f, chain in enumerate(FINGERS):
            joints = chain  # CMC (thumb) or MCP → tip
            for k in range(len(joints) - 1):
                r0 = 0.5 * palm_w * FINGER_WIDTH[f] * TAPER[min(k, 3)]
                r1 = 0.5 * palm_w * FINGER_WIDTH[f] * TAPER[min(k + 1, 3)]
                draw_capsule(zbuf, label, pts[joints[k]], pts[joints[k + 1]], r0, r1, 2 + f)
        # 4. depth image: near = bright
        mask = np.isfinite(zbuf)
        depth = np.zeros((height, width), np.uint8)
        if mask.any():
            z = zbuf[mask]
            near, far = float(z.min()), float(z.max())
            span = max(far - near, 1e-6)
            depth[mask] = np.clip(255.0 - 191.0 * (z - near) / span, 64, 255).astype(np.uint8)
        # 5. scribble: the outline plus the borders between fingers and palm
        scribble = draw_outlines(label, self.line_px or max(1, round(palm_w * 0.06)))
        return HandGuidance(depth=depth, scribble=scribble, mask=(mask * 255).astype(np.uint8))


def draw_capsule(
    zbuf: np.ndarray, label: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, lab: int
) -> None:
    """Z-buffer a tapered capsule from p0 to p1 (x, y, z pixels); the surface bulges toward the
    camera by the local radius."""
    h, w = zbuf.shape
    r = max(r0, r1)
    x0 = int(max(0, np.floor(min(p0[0], p1[0]) - r)))
    x1 = int(min(w, np.ceil(max(p0[0], p1[0]) + r) + 1))
    y0 = int(max(0, np.floor(min(p0[1], p1[1]) - r)))
    y1 = int(min(h, np.ceil(max(p0[1], p1[1]) + r) + 1))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = p1[:2] - p0[:2]
    dd = float(d @ d)
    t = np.zeros_like(xs) if dd < 1e-9 else ((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / dd
    t = np.clip(t, 0.0, 1.0)
    cx, cy = p0[0] + t * d[0], p0[1] + t * d[1]
    rad = r0 + t * (r1 - r0)
    dist2 = (xs - cx) ** 2 + (ys - cy) ** 2
    inside = dist2 <= rad**2
    z = p0[2] + t * (p1[2] - p0[2]) - np.sqrt(np.maximum(rad**2 - dist2, 0.0))
    region = zbuf[y0:y1, x0:x1]
    closer = inside & (z < region)
    region[closer] = z[closer]
    label[y0:y1, x0:x1][closer] = lab


def draw_palm(zbuf: np.ndarray, label: np.ndarray, pts: np.ndarray, palm_w: float) -> None:
    """Fill the palm polygon (wrist, thumb CMC, the four MCPs) with depth interpolated from its
    corners (inverse-distance weights), slightly behind the fingers' surface."""
    import cv2

    h, w = zbuf.shape
    poly = pts[list(PALM)]
    hull = cv2.convexHull(poly[:, :2].astype(np.float32)).reshape(-1, 2)
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, [np.round(hull).astype(np.int32)], 1)
    ys, xs = np.nonzero(fill)
    if len(xs) == 0:
        return
    d2 = (xs[:, None] - poly[None, :, 0]) ** 2 + (ys[:, None] - poly[None, :, 1]) ** 2 + 1.0
    wts = 1.0 / d2
    z = (wts * poly[None, :, 2]).sum(1) / wts.sum(1) - 0.12 * palm_w
    closer = z < zbuf[ys, xs]
    zbuf[ys[closer], xs[closer]] = z[closer]
    label[ys[closer], xs[closer]] = 1


def draw_outlines(label: np.ndarray, line_px: int) -> np.ndarray:
    """255 where the label changes between 4-neighbours (hand outline, finger borders), thickened."""
    import cv2

    edge = np.zeros(label.shape, bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    out = edge.astype(np.uint8) * 255
    if line_px > 1:
        out = cv2.dilate(out, np.ones((line_px, line_px), np.uint8))
    return out


def synthetic_hand_landmarks(center: tuple[float, float], size: float, angle_deg: float = 0.0) -> np.ndarray:
    """A plausible open-grip right hand: (21, 3) float pixels, wrist below, fingers up when
    ``angle_deg`` is 0. ``size`` is the wrist-to-middle-tip length. For tests and benchmarks."""
    # canonical hand in units of the wrist→middle-tip length, y up, x to the thumb side
    base = np.array(
        [
            [0.00, 0.00, 0.00],
            [-0.14, 0.10, -0.02], [-0.24, 0.22, -0.04], [-0.30, 0.33, -0.05], [-0.34, 0.42, -0.06],
            [-0.10, 0.42, -0.01], [-0.11, 0.58, -0.03], [-0.11, 0.68, -0.04], [-0.11, 0.76, -0.05],
            [0.00, 0.44, 0.00], [0.00, 0.62, -0.02], [0.00, 0.73, -0.03], [0.00, 0.82, -0.04],
            [0.09, 0.42, 0.01], [0.10, 0.58, -0.01], [0.11, 0.68, -0.02], [0.11, 0.76, -0.03],
            [0.17, 0.38, 0.02], [0.19, 0.50, 0.01], [0.20, 0.58, 0.00], [0.21, 0.65, -0.01],
        ]
    )  # fmt: skip
    scale = size / 0.82
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = base[:, :2] @ rot.T * scale
    out = np.zeros((21, 3))
    out[:, 0] = center[0] + xy[:, 0]
    out[:, 1] = center[1] - (xy[:, 1] - 0.41 * scale)  # y down; centre on the palm
    out[:, 2] = base[:, 2] * scale
    return out


class KinematicHandMesh:
    """The capsule hand drawn from the corrected skeleton: the detected landmarks are first
    fitted with the anatomical kinematic hand (``autoshoot.hands.kinematic.fit_hand``), so the
    guidance shows five fingers in anatomical proportion and range of motion, whatever the
    detector drew. No weights, no licence."""

    def __init__(self, config: Any = None, line_px: int | None = None):
        self.capsule = CapsuleHandMesh(config, line_px=line_px)

    def correct(self, landmarks: np.ndarray) -> np.ndarray:
        """(21, 3) pixel landmarks → the corrected (21, 3) hand in the same frame."""
        from autoshoot.hands.kinematic import fit_hand

        return fit_hand(landmarks).corrected

    def render(self, landmarks: np.ndarray, size: tuple[int, int]) -> HandGuidance:
        pts = np.asarray(landmarks, dtype=np.float64)
        if pts.shape != (21, 3) or not np.isfinite(pts).all():
            raise ValueError(f"landmarks must be a finite (21, 3) array, got shape {pts.shape}")
        return self.capsule.render(self.correct(pts), size)

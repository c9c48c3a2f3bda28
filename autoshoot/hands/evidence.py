"""Whether the picture bears out a detected skeleton: image evidence for the hand checks.

A hand-landmark detector always draws five fingers. On a generated hand with six digits it
still does, and one of its finger chains then runs through the gap between two digits: the
skeleton is plausible, the picture under it is not a finger. This module looks at the
pixels under each finger chain:

- a colour model of the hand is taken from inside its palm (the hull of the wrist, thumb
  base and knuckles), and one of the background from a ring around the hand on the fingers'
  side of the wrist (the forearm, beyond the wrist, has the hand's colour);
- each finger's support is the share of points along its distal part (PIP to tip) whose
  colour the hand model explains better than the background model;
- a middle or ring finger off the hand while both its neighbours lie on it is a finger
  threaded through a gap: an extra or a missing digit. An index or little finger off the
  hand is not judged: at the side of a hand it is most often hidden by what the hand holds;
- between two neighbouring fingers that are both on the hand, extended and drawn at least
  most of a finger's breadth apart, something must separate them: a gap (a dip in how
  hand-like the pixels are) or the seam where two touching fingers meet (a dip in
  lightness). Two chains over one smooth finger are a fused finger, or five chains
  spread over four digits (a missing digit). Curled fingers (they lie over each other and
  the palm) and fingers too few pixels wide for a seam to show are not judged.

When the two colour models cannot tell the palm from the background (a hand on a surface of
its colour) the check abstains. Pure numpy and OpenCV; the image is an HxWx3 uint8 RGB array,
the landmarks (21, 3) pixels in MediaPipe's layout (see ``autoshoot.hands.anatomy``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from autoshoot.hands.anatomy import CHAINS, FINGERS, TIPS, AnatomyLimits, _soft, measure_palm_length

SUPPORT_FINGERS = FINGERS[1:]  # index, middle, ring, little
PALM_HULL = (0, 1, 2, 5, 9, 13, 17)
# A finger's breadth at its middle phalanx in units of the palm length (wrist to middle
# knuckle): about 1.9 cm against about 10 cm on adult hands (hand anthropometry).
FINGER_BREADTH = 0.19
GAP_CLIP = 10.0  # the hand-vs-background log-likelihood ratio is clipped to +-this (one outlier colour)
# A seam or a gap between two fingers runs along them: each cross-section is the mean of
# SEAM_LINES parallel lines spread SEAM_RUN of a finger's breadth either side along the
# fingers, which keeps a seam and averages out speckle and JPEG blocks that cross it
SEAM_RUN = 0.15
SEAM_LINES = 5


@dataclass
class FingerSupport:
    """The result of ``measure_finger_support``.

    support: per finger (index, middle, ring, little), the share of points along its PIP-to-tip
        chain on hand-coloured pixels, in [0, 1].
    quality: how well the colour models separate their own samples (palm pixels called hand,
        background pixels called background, averaged), in [0, 1]; 0.5 is chance.
    """

    support: list[float] = field(default_factory=list)
    quality: float = 0.0
    # per neighbouring pair (index-middle, middle-ring, ring-little): how clearly something
    # separates the two fingers (the median over cross-sections of the deeper of the
    # lightness dip / seam_contrast and the hand-likeness dip / gap_contrast; >= 1 = separated),
    # or None where the pair is not judged (curled, off the hand, too near, too few pixels)
    separation: list[float | None] = field(default_factory=list)


def _gaussian(samples: np.ndarray, ridge: float = 4.0):
    """Log-likelihood (up to a constant) of a full-covariance Gaussian fitted to (N, 3) samples."""
    mu = samples.mean(axis=0)
    cov = np.cov(samples.T) + np.eye(samples.shape[1]) * ridge
    inv = np.linalg.inv(cov)
    logdet = float(np.linalg.slogdet(cov)[1])

    def loglik(x: np.ndarray) -> np.ndarray:
        d = x - mu
        return -0.5 * (np.einsum("ij,jk,ik->i", d, inv, d) + logdet)

    return loglik


def _dip(profile: np.ndarray) -> float:
    """Depth of the deepest dip inside a 1D profile: how far an inner sample lies below the
    lower of the highest samples on either side of it (<= 0 when there is no dip)."""
    left = np.maximum.accumulate(profile)[:-2]
    right = np.maximum.accumulate(profile[::-1])[::-1][2:]
    return float((np.minimum(left, right) - profile[1:-1]).max())


def _sample(channel: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2D float32 array at (N, 2) x, y points."""
    import cv2

    x = np.ascontiguousarray(xy[:, 0], dtype=np.float32).reshape(1, -1)
    y = np.ascontiguousarray(xy[:, 1], dtype=np.float32).reshape(1, -1)
    return cv2.remap(channel, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1)


def measure_separation(
    lab: np.ndarray,
    hand_likeness: Callable[[np.ndarray], np.ndarray],
    pts3: np.ndarray,
    support: list[float],
    px_per_crop_px: float,
    limits: AnatomyLimits,
    sections: int = 5,
    samples: int = 17,
) -> list[float | None]:
    """How clearly each pair of neighbouring fingers is separated (see ``FingerSupport``).

    Args:
        lab: (H, W, 3) float32 CIELAB crop (L first, 0-255).
        hand_likeness: (N, 3) Lab colours -> (N,) log-likelihood ratio hand vs background.
        pts3: (21, 3) landmarks in crop pixels (z in the same scale).
        support: per finger (index..little), the share of its distal chain on the hand.
        px_per_crop_px: pixels of real detail per crop pixel: the original image's pixels per
            crop pixel, times the image's ``detail_scale`` (see ``measure_finger_support``).
    Cross-sections run from points along one finger's distal chain (PIP to tip) to the
    nearest point of its neighbour's.
    """
    palm = measure_palm_length(pts3)
    if palm <= 0:
        return [None] * 3
    centre = pts3[[0, 5, 9, 13, 17]].mean(axis=0)
    curled = [float(np.linalg.norm(pts3[TIPS[f]] - centre)) < limits.curled_tip * palm for f in range(1, 5)]
    # a finger's breadth in pixels, of the image and of the crop (the coarser one limits a seam)
    seam_visible = FINGER_BREADTH * palm * min(px_per_crop_px, 1.0) >= limits.min_seam_px
    p = pts3[:, :2]
    t = np.linspace(0.0, 1.0, 11)[:, None]

    def distal(f: int) -> np.ndarray:
        chain = CHAINS[f][2:]
        return np.vstack(
            [p[a] * (1 - t[:-1]) + p[b] * t[:-1] for a, b in zip(chain[:-1], chain[1:], strict=True)]
            + [p[chain[-1]][None]]
        )

    s = np.linspace(0.0, 1.0, samples)[:, None]
    out: list[float | None] = []
    for k in range(3):  # pairs (index, middle), (middle, ring), (ring, little)
        f, g = k + 1, k + 2
        if (
            not seam_visible
            or curled[k]
            or curled[k + 1]
            or min(support[k], support[k + 1]) < limits.min_pair_support
        ):
            out.append(None)
            continue
        a_line, b_line = distal(f), distal(g)
        along = (a_line[-1] - a_line[0]) + (b_line[-1] - b_line[0])
        along = along / max(float(np.linalg.norm(along)), 1e-9)
        shifts = np.linspace(-SEAM_RUN, SEAM_RUN, SEAM_LINES) * FINGER_BREADTH * palm
        levels, dists = [], []
        for frac in np.linspace(0.2, 0.8, sections):
            a = a_line[int(round(frac * (len(a_line) - 1)))]
            b = b_line[int(np.argmin(np.linalg.norm(b_line - a, axis=1)))]
            dists.append(float(np.linalg.norm(b - a)) / palm)
            xy = np.vstack([a * (1 - s) + b * s + along * d for d in shifts])
            colours = (
                np.column_stack([_sample(lab[:, :, c], xy) for c in range(3)])
                .astype(np.float64)
                .reshape(len(shifts), samples, 3)
                .mean(axis=0)
            )
            likeness = np.clip(hand_likeness(colours), -GAP_CLIP, GAP_CLIP)
            levels.append(
                max(_dip(colours[:, 0]) / limits.seam_contrast, _dip(likeness) / limits.gap_contrast)
            )
        if float(np.median(dists)) < limits.min_pair_spacing * FINGER_BREADTH:
            out.append(None)  # drawn over each other: one finger hides the other
            continue
        out.append(float(np.median(levels)))
    return out


def measure_finger_support(
    image: np.ndarray,
    landmarks: np.ndarray,
    crop_px: int = 256,
    points: int = 7,
    min_hand_px: float = 16.0,
    limits: AnatomyLimits | None = None,
    detail_scale: float = 1.0,
) -> FingerSupport | None:
    """Support of each finger chain by hand-coloured pixels (see the module docstring).

    Args:
        image: HxWx3 uint8 RGB.
        landmarks: (21, 3) or (21, 2) pixels of ``image``.
        crop_px: the crop around the hand is resized so its long side is this many pixels.
        points: samples per bone (PIP-DIP, DIP-tip), end points excluded.
        min_hand_px: a hand whose landmark box is smaller than this (long side, pixels) has
            too few pixels to tell its fingers from what lies between them.
        limits: the tolerances of the separation measure (``AnatomyLimits`` by default).
        detail_scale: pixels of real detail per pixel of ``image``, at most 1: an image
            enlarged f times from the picture that was drawn (a candidate upscaled from its
            render to the final size) has 1/f. A seam between touching fingers shows only
            where a finger is ``limits.min_seam_px`` wide in real detail; enlarging blurs it
            over more pixels without showing it, so the pair is then not judged.
    Returns:
        ``FingerSupport``, or None when the hand or its surroundings are too small to model.
    """
    import cv2

    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    h, w = image.shape[:2]
    # 1. a square crop 1.6x the hand, resized
    cx, cy = (pts.min(axis=0) + pts.max(axis=0)) / 2
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])))
    if extent < min_hand_px:
        return None
    side = extent * 1.6
    x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    x1, y1 = int(min(cx + side / 2, w)), int(min(cy + side / 2, h))
    crop = image[y0:y1, x0:x1]
    if crop.shape[0] < 8 or crop.shape[1] < 8:
        return None
    scale = crop_px / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    lab = cv2.cvtColor(cv2.GaussianBlur(crop, (3, 3), 0), cv2.COLOR_RGB2LAB).astype(np.float64)
    p = (pts - (x0, y0)) * scale
    ch, cw = lab.shape[:2]
    # 2. the hand's colour inside its palm; the background's in a ring on the fingers' side
    palm_mask = np.zeros((ch, cw), np.uint8)
    cv2.fillPoly(palm_mask, [cv2.convexHull(np.round(p[list(PALM_HULL)]).astype(np.int32)).reshape(-1, 2)], 1)
    palm_mask = cv2.erode(palm_mask, np.ones((5, 5), np.uint8))
    hand_mask = np.zeros((ch, cw), np.uint8)
    cv2.fillPoly(hand_mask, [cv2.convexHull(np.round(p).astype(np.int32)).reshape(-1, 2)], 1)
    hand_mask = cv2.dilate(hand_mask, np.ones((15, 15), np.uint8))
    axis = p[9] - p[0]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    yy, xx = np.mgrid[0:ch, 0:cw]
    beyond_wrist = (xx - p[0, 0]) * axis[0] + (yy - p[0, 1]) * axis[1] <= 0
    fg = lab[palm_mask > 0]
    bg = lab[(hand_mask == 0) & ~beyond_wrist]
    if len(fg) < 20 or len(bg) < 20:
        return None
    fg, bg = fg[:: max(1, len(fg) // 4000)], bg[:: max(1, len(bg) // 4000)]  # enough to model a colour
    hand_ll, back_ll = _gaussian(fg), _gaussian(bg)
    quality = 0.5 * (float((hand_ll(fg) > back_ll(fg)).mean()) + float((back_ll(bg) > hand_ll(bg)).mean()))
    # 3. points along each finger's PIP -> DIP -> tip
    t = np.linspace(0.0, 1.0, points + 2)[1:-1, None]
    support = []
    for chain in CHAINS[1:]:
        samples = np.vstack([p[a] * (1 - t) + p[b] * t for a, b in zip(chain[2:-1], chain[3:], strict=True)])
        xi = np.clip(np.round(samples[:, 0]).astype(int), 0, cw - 1)
        yi = np.clip(np.round(samples[:, 1]).astype(int), 0, ch - 1)
        colours = lab[yi, xi]
        support.append(float((hand_ll(colours) > back_ll(colours)).mean()))
    # 4. what separates neighbouring fingers
    pts3 = np.asarray(landmarks, dtype=np.float64)
    pts3 = np.column_stack([p, (pts3[:, 2] * scale) if pts3.shape[1] > 2 else np.zeros(len(p))])
    separation = measure_separation(
        lab.astype(np.float32),
        lambda x: hand_ll(x) - back_ll(x),
        pts3,
        support,
        min(float(detail_scale), 1.0) / scale,
        limits or AnatomyLimits(),
    )
    return FingerSupport(support=support, quality=quality, separation=separation)


def check_finger_separation(found: FingerSupport | None, limits: AnatomyLimits) -> tuple[float, list[str]]:
    """Two neighbouring fingers with nothing between them: neither a gap nor a seam.

    1 when every judged pair is separated (``separation`` >= 1), falling as the clearest
    separation found drops towards 0. Abstains (1.0) like ``check_finger_support``.
    """
    if found is None or found.quality < limits.min_colour_quality:
        return 1.0, []
    score, reasons = 1.0, []
    for k, level in enumerate(found.separation):
        if level is None:
            continue
        g = _soft(1.0 - level, 0.5)
        if g < 0.7:
            reasons.append(f"{SUPPORT_FINGERS[k]} and {SUPPORT_FINGERS[k + 1]} fingers drawn over one finger")
        score *= g
    return score, reasons


def check_finger_support(found: FingerSupport | None, limits: AnatomyLimits) -> tuple[float, list[str]]:
    """A middle or ring finger drawn off the hand while both its neighbours lie on it.

    The gap is min(neighbours' support) - the finger's support; past ``limits.off_hand_gap``
    the score falls (1 = plausible). Abstains (1.0) when the colour models separate the palm
    from the background less than ``limits.min_colour_quality``.
    """
    if found is None or found.quality < limits.min_colour_quality:
        return 1.0, []
    score, reasons = 1.0, []
    s = found.support
    for f in (1, 2):  # middle, ring (index 0 = the index finger)
        gap = min(s[f - 1], s[f + 1]) - s[f]
        g = _soft(gap - limits.off_hand_gap, 0.2)
        if g < 0.7:
            reasons.append(f"{SUPPORT_FINGERS[f]} finger drawn off the hand, between two fingers on it")
        score *= g
    return score, reasons

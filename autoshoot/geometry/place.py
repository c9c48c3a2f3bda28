"""Scale the product from its real size and the shot, and put the grip where the pose puts the hand.

The canvas shows a person ``person_height_cm`` tall. A shot fixes how many cm the canvas
height spans (``shot_span_cm``), hence the canvas pixels per cm, and where the frame starts
relative to the top of the head. A hold pose fixes the hand's position on the body.
Placement maps input pixels to canvas pixels: ``canvas_xy = input_xy * scale + offset``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from autoshoot.config.prepare import PrepareConfig
from autoshoot.vocab import NON_GRIP_POSES, SHOTS

logger = logging.getLogger(__name__)

# Where each pose puts the hand (grip poses) or the product's centre (non-grip poses):
# (cm right of the body's centre line as seen in the image, cm below the top of the head),
# for a person of 170 cm; scaled with ``person_height_cm``.
POSE_POINT_CM: dict[str, tuple[float, float]] = {
    "beside_hip": (22.0, 86.0),  # arm hanging, hand at hip height beside the body
    "in_front": (7.0, 84.0),  # hand in front of the thighs near the centre line
    "forearm_crook": (22.0, 70.0),  # handle in the hand, elbow bent, waist height
    "raised_display": (10.0, 52.0),  # lifted to chest height
    "shoulder_strap": (14.0, 42.0),  # hand on the strap at chest height
    "cradled": (0.0, 72.0),  # product centre, held against the body
    "under_arm": (20.0, 55.0),  # product centre, clutched under the arm
}
# Where the frame's top edge sits, as a fraction of the shot's span above the head
# ("close" is framed on the hand instead: the hand sits this far down the canvas).
FRAME_TOP_FRAC = {"full_body": 0.05, "half_body": 0.06}
CLOSE_HAND_FRAC = 0.22
SHOT_FALLBACK = {"close": "half_body", "half_body": "full_body"}


@dataclass
class PlacementPlan:
    canvas_size: tuple[int, int]  # (w, h) canvas pixels
    scale: float  # canvas px per input px
    offset: tuple[float, float]  # canvas_xy = input_xy * scale + offset
    shot: str
    hold_pose: str
    anchor_canvas: tuple[float, float]  # where the grip (or product centre) landed
    canvas_px_per_cm: float
    fallbacks: list[str] = field(default_factory=list)


def canvas_size_for(shot: str, config: PrepareConfig) -> tuple[int, int]:
    """The shot's canvas preset times ``canvas_scale``, each side a multiple of 8 (at least 64)."""
    w, h = config.shot_canvas[shot]
    s = config.canvas_scale
    return (max(64, int(round(w * s / 8)) * 8), max(64, int(round(h * s / 8)) * 8))


def place_product(
    bbox: tuple[int, int, int, int],
    grip: tuple[float, float] | None,
    input_px_per_cm: float,
    shot: str,
    hold_pose: str,
    config: PrepareConfig,
) -> PlacementPlan:
    """Choose the canvas, the scale and the offset; fall back to a wider shot when it cannot fit.

    bbox: XYXY input px of the product; grip: (x, y) input px or None (then the product's
    centre goes where the pose puts it).

    1. try the requested shot, then wider ones;
    2. in each: canvas px/cm from the shot, scale = canvas px/cm ÷ input px/cm;
    3. anchor the grip at the pose's hand; slide sideways if the product leaves the canvas;
    4. if even the full-body shot cannot hold it, shrink it to fit (recorded).
    """
    fallbacks: list[str] = []
    current = shot if shot in SHOTS else config.default_shot
    if current != shot:
        fallbacks.append(f"unknown shot {shot!r}; used {current}")
    while True:
        plan = try_shot(bbox, grip, input_px_per_cm, current, hold_pose, config)
        if plan is not None:
            plan.fallbacks = fallbacks + plan.fallbacks
            return plan
        nxt = SHOT_FALLBACK.get(current)
        if nxt is None:
            break
        fallbacks.append(f"{current} shot cannot hold the product inside the canvas; used {nxt}")
        current = nxt
    plan = try_shot(bbox, grip, input_px_per_cm, current, hold_pose, config, shrink=True)
    assert plan is not None  # shrink=True always fits
    plan.fallbacks = fallbacks + plan.fallbacks
    return plan


def try_shot(
    bbox: tuple[int, int, int, int],
    grip: tuple[float, float] | None,
    input_px_per_cm: float,
    shot: str,
    hold_pose: str,
    config: PrepareConfig,
    shrink: bool = False,
) -> PlacementPlan | None:
    """One shot's placement, or None when the product does not fit (unless ``shrink``)."""
    notes: list[str] = []
    w, h = canvas_size_for(shot, config)
    ppc = h / config.shot_span_cm[shot]
    scale = ppc / input_px_per_cm
    k = config.person_height_cm / 170.0
    px_cm, py_cm = POSE_POINT_CM.get(hold_pose, POSE_POINT_CM["beside_hip"])
    px_cm, py_cm = px_cm * k, py_cm * k
    # the anchor on the canvas
    if shot == "close":
        ax, ay = w / 2.0 + 0.5 * px_cm * ppc, CLOSE_HAND_FRAC * h
        if grip is None or hold_pose in NON_GRIP_POSES:
            ay = h / 2.0
    else:
        top_cm = -FRAME_TOP_FRAC[shot] * config.shot_span_cm[shot]
        ax, ay = w / 2.0 + px_cm * ppc, (py_cm - top_cm) * ppc
    # the point of the product that lands there
    if grip is not None and hold_pose not in NON_GRIP_POSES:
        sx, sy = grip
    else:
        sx, sy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    margin_x, margin_y = config.margin_frac * w, config.margin_frac * h
    room_w, room_h = w - 2 * margin_x, h - 2 * margin_y
    bw, bh = (bbox[2] - bbox[0]) * scale, (bbox[3] - bbox[1]) * scale
    if bw > room_w or bh > room_h:
        if not shrink:
            return None
        factor = min(room_w / bw, room_h / bh)
        scale *= factor
        notes.append(f"product shrunk to {factor:.2f} of its real-size scale to fit the {shot} canvas")
    ox, oy = ax - sx * scale, ay - sy * scale
    # keep it inside: vertical overflow means the pose cannot hold it in this shot
    top, bottom = bbox[1] * scale + oy, bbox[3] * scale + oy
    if top < margin_y or bottom > h - margin_y:
        if not shrink:
            return None
        dy = (margin_y - top) if top < margin_y else (h - margin_y - bottom)
        oy += dy
        notes.append(f"product moved {dy:+.0f} px vertically to stay inside the canvas")
    left, right = bbox[0] * scale + ox, bbox[2] * scale + ox
    if left < margin_x:
        ox += margin_x - left
        notes.append(f"product slid {margin_x - left:+.0f} px sideways to stay inside the canvas")
    elif right > w - margin_x:
        ox -= right - (w - margin_x)
        notes.append(f"product slid {-(right - (w - margin_x)):+.0f} px sideways to stay inside the canvas")
    return PlacementPlan(
        canvas_size=(w, h),
        scale=float(scale),
        offset=(float(ox), float(oy)),
        shot=shot,
        hold_pose=hold_pose,
        anchor_canvas=(float(sx * scale + ox), float(sy * scale + oy)),
        canvas_px_per_cm=float(ppc),
        fallbacks=notes,
    )

"""Anatomical plausibility of 21 hand landmarks: pure numpy, no detector.

The landmarks follow MediaPipe's layout::

    0 wrist
    thumb 1 CMC, 2 MCP, 3 IP, 4 tip        index 5 MCP, 6 PIP, 7 DIP, 8 tip
    middle 9, 10, 11, 12    ring 13, 14, 15, 16    little 17, 18, 19, 20

An array of landmarks is (21, 3) float: x, y in pixels, z the relative depth in the same
pixel scale (MediaPipe's z times the image width). Lengths are measured in 3D and divided by
the hand's palm length, a robust mean over the rigid palm distances, so the checks do not
depend on the image size.

Each check returns a score in [0, 1] (1 = plausible) and short readable reasons. A detector
always draws a hand-like skeleton, so the checks look for what generated hands get wrong
and real hands never do: bones longer than a hand has, fingers bent sideways or backwards
at the finger joints, finger chains running through each other, fingertips that coincide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FINGERS = ("thumb", "index", "middle", "ring", "little")
CHAINS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
TIPS = (4, 8, 12, 16, 20)
MCPS = (5, 9, 13, 17)

# Canonical bone lengths in units of the palm length (wrist to middle MCP), from adult hand
# anthropometry (phalanx lengths as fractions of hand length, Buchholz et al. 1992), with the
# distal segment measured to the fingertip pad as a detector places the tip landmark.
# Order per finger: the three segments after the base (thumb: CMC-MCP, MCP-IP, IP-tip;
# fingers: MCP-PIP, PIP-DIP, DIP-tip).
CANONICAL_BONES = {
    "thumb": (0.55, 0.43, 0.36),
    "index": (0.54, 0.31, 0.25),
    "middle": (0.58, 0.37, 0.27),
    "ring": (0.54, 0.36, 0.26),
    "little": (0.45, 0.26, 0.23),
}
# Rigid palm distances in units of the palm length (wrist to middle MCP), as a hand-landmark
# detector places them on real hands (MCP landmarks at the knuckle joints): the wrist to each
# knuckle (the palm's length) and across the knuckles (its breadth, about 0.8 of its length).
PALM_LENGTHS = {(0, 5): 1.03, (0, 9): 1.0, (0, 13): 0.96, (0, 17): 0.94}
PALM_BREADTH = 0.78  # index MCP to little MCP
CANONICAL_PALM = {**PALM_LENGTHS, (5, 17): PALM_BREADTH, (5, 9): 0.27, (9, 13): 0.26, (13, 17): 0.25}


@dataclass(frozen=True)
class AnatomyLimits:
    """Tolerances of the plausibility checks (angles in degrees, lengths in palm lengths)."""

    bone_long: float = 1.45  # a bone this many times its canonical length is implausible
    bone_short: float = 0.25  # shorter than this (after foreshortening) is implausible
    finger_long: float = 1.3  # a whole finger (sum of its 3 segments) this many times canonical
    thumb_vs_fingers: float = 1.15  # thumb / longest finger, each against its canonical length
    palm_wide: float = 1.2  # palm breadth / length this many times canonical is implausible
    lateral_joint_deg: float = 40.0  # sideways bend at a PIP/DIP/IP joint
    flex_max_deg: float = 125.0  # bend at one PIP/DIP joint of a finger not curled into the palm
    curled_tip: float = 0.8  # a fingertip this near the palm centre: joints not judged
    min_chain_gap: float = 0.07  # centre lines of two fingers closer than this cross or fuse
    min_tip_gap: float = 0.12  # two fingertips closer than this are one fingertip
    palm_face_ratio: float = 0.55  # palm length / face box width (0.48-0.66 on real photos)
    palm_face_tolerance: float = 2.2  # allowed factor either way (perspective, foreshortening)
    # image evidence (autoshoot.hands.evidence): a middle or ring finger whose support by
    # hand-coloured pixels is this much below both its neighbours' runs through a gap. 0.5 is
    # above the largest such gap on the real hands of bench/hands_eval.py's fit part (0.36).
    off_hand_gap: float = 0.5
    min_colour_quality: float = 0.75  # below this the hand/background colour models abstain
    # what separates two neighbouring fingers (autoshoot.hands.evidence.measure_separation):
    # a dip of seam_contrast in lightness (L of CIELAB, 0-255) or of gap_contrast in the
    # hand-vs-background log-likelihood ratio; judged where both fingers are extended and on
    # the hand (support >= min_pair_support), drawn at least min_pair_spacing of a finger's
    # breadth apart, and a finger is at least min_seam_px pixels wide (a seam can show).
    # Set by hand, not fitted: a 6-level dip is a few times the noise of smooth skin in the
    # blurred 256 px crop; a ratio of 2 is a colour about 7x likelier background than hand. The
    # fit part's real pairs that are judged sit at 1.7x these or more; the held-out pictures
    # were seen before they were set (bench/hands_eval.py says what that means for its figures)
    seam_contrast: float = 6.0
    gap_contrast: float = 2.0
    min_pair_support: float = 0.5
    min_pair_spacing: float = 0.75
    min_seam_px: float = 12.0


@dataclass
class Anatomy:
    """The result of ``check_anatomy``: per-check scores in [0, 1], their product, reasons."""

    score: float
    checks: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    palm_length: float = 0.0  # pixels
    n_fingertips: int = 5


def measure_palm_length(landmarks: np.ndarray) -> float:
    """Palm length (wrist to middle MCP) in the landmarks' units: the median of the four
    wrist-to-knuckle distances, each divided by its canonical proportion. The breadth is
    left out so that a palm that is too wide does not shrink every other ratio."""
    estimates = [
        np.linalg.norm(landmarks[b] - landmarks[a]) / ratio for (a, b), ratio in PALM_LENGTHS.items()
    ]
    return float(np.median(estimates))


def check_palm_shape(landmarks: np.ndarray, limits: AnatomyLimits, palm: float) -> tuple[float, list[str]]:
    """Palm breadth across the knuckles against its length. A palm far wider than a hand's
    (~0.8 of its length) carries an extra or splayed finger, or knuckles placed apart."""
    breadth = float(np.linalg.norm(landmarks[17] - landmarks[5])) / max(palm, 1e-6)
    ratio = breadth / PALM_BREADTH
    s = _soft(np.log(ratio / limits.palm_wide), 0.1)
    reasons = [f"palm {ratio:.2f}x too wide for its length"] if s < 0.7 else []
    return s, reasons


def bone_lengths(landmarks: np.ndarray) -> np.ndarray:
    """(5, 4) lengths of each finger chain's 4 segments (wrist→base first), 3D."""
    out = np.zeros((5, 4), dtype=np.float64)
    for f, chain in enumerate(CHAINS):
        for s in range(4):
            out[f, s] = np.linalg.norm(landmarks[chain[s + 1]] - landmarks[chain[s]])
    return out


def _soft(excess: float, scale: float) -> float:
    """1 at no excess, falling smoothly: exp(-(excess/scale)^2)."""
    return float(np.exp(-((max(excess, 0.0) / scale) ** 2)))


def check_bone_ratios(landmarks: np.ndarray, limits: AnatomyLimits, palm: float) -> tuple[float, list[str]]:
    """Bones against the canonical hand. Foreshortening only shortens a bone, so too long is
    penalized hard and too short only past ``bone_short``."""
    lengths = bone_lengths(landmarks)[:, 1:] / max(palm, 1e-6)
    score = 1.0
    reasons = []
    for f, name in enumerate(FINGERS):
        canon = np.array(CANONICAL_BONES[name])
        ratio = lengths[f] / canon
        worst_long = float(ratio.max())
        total = float(lengths[f].sum() / canon.sum())
        s_long = _soft(np.log(worst_long / limits.bone_long), 0.25)
        s_total = _soft(np.log(total / limits.finger_long), 0.2)
        s_short = _soft(np.log(limits.bone_short / max(float(ratio.min()), 1e-3)), 0.5)
        s = s_long * s_total * s_short
        if s < 0.7:
            if total > limits.finger_long or worst_long > limits.bone_long:
                reasons.append(f"{name} {total:.1f}x too long")
            else:
                reasons.append(f"{name} bone too short")
        score *= s
    # a thumb longer than the longest finger (each against its canonical length) is a
    # generated thumb: foreshortening shortens fingers but never lengthens the thumb past them
    totals = [lengths[f].sum() / sum(CANONICAL_BONES[name]) for f, name in enumerate(FINGERS)]
    thumb_ratio = totals[0] / max(max(totals[1:]), 1e-6)
    s = _soft(np.log(thumb_ratio / limits.thumb_vs_fingers), 0.12)
    if s < 0.7:
        reasons.append(f"thumb {thumb_ratio:.2f}x the longest finger")
    score *= s
    return score, reasons


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def check_joint_angles(landmarks: np.ndarray, limits: AnatomyLimits) -> tuple[float, list[str]]:
    """Finger joints bend in one plane: a PIP/DIP (thumb IP) joint bends neither sideways
    (towards the neighbouring finger) beyond ``lateral_joint_deg`` nor more than
    ``flex_max_deg`` at all."""
    lateral_axis = _unit(landmarks[17] - landmarks[5])  # index MCP → little MCP
    palm_centre = landmarks[[0, 5, 9, 13, 17]].mean(axis=0)
    palm = measure_palm_length(landmarks)
    score = 1.0
    reasons = []
    for f, chain in enumerate(CHAINS):
        if f > 0 and np.linalg.norm(landmarks[chain[4]] - palm_centre) < limits.curled_tip * palm:
            continue  # curled into the palm: its hidden joints are guessed, not seen
        for j in (2, 3):  # PIP, DIP (thumb: MCP, IP)
            v1 = _unit(landmarks[chain[j]] - landmarks[chain[j - 1]])
            v2 = _unit(landmarks[chain[j + 1]] - landmarks[chain[j]])
            bend = float(np.degrees(np.arccos(np.clip(v1 @ v2, -1.0, 1.0))))
            if f == 0:
                side = 0.0  # the thumb's plane is not the palm's lateral axis
            else:
                side = abs(
                    float(
                        np.degrees(
                            np.arcsin(np.clip(v2 @ lateral_axis, -1, 1))
                            - np.arcsin(np.clip(v1 @ lateral_axis, -1, 1))
                        )
                    )
                )
            s = _soft(side - limits.lateral_joint_deg, 20.0) * _soft(bend - limits.flex_max_deg, 25.0)
            if s < 0.7:
                what = "sideways" if side > limits.lateral_joint_deg else "too far"
                reasons.append(
                    f"{FINGERS[f]} bent {what} ({max(side, bend) if what == 'too far' else side:.0f} deg)"
                )
            score *= s
    return score, reasons


def segment_distance(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> float:
    """Smallest distance between 3D segments pq and rs (closest points, clamped to both)."""
    d1, d2, w = q - p, s - r, p - r
    a, e, f = float(d1 @ d1), float(d2 @ d2), float(d2 @ w)
    if a <= 1e-12 and e <= 1e-12:
        return float(np.linalg.norm(w))
    if a <= 1e-12:
        t, u = 0.0, float(np.clip(f / e, 0.0, 1.0))
    else:
        c = float(d1 @ w)
        if e <= 1e-12:
            t, u = float(np.clip(-c / a, 0.0, 1.0)), 0.0
        else:
            b = float(d1 @ d2)
            denom = a * e - b * b
            t = float(np.clip((b * f - c * e) / denom, 0.0, 1.0)) if denom > 1e-12 else 0.0
            u = (b * t + f) / e
            if u < 0.0:
                t, u = float(np.clip(-c / a, 0.0, 1.0)), 0.0
            elif u > 1.0:
                t, u = float(np.clip((b - c) / a, 0.0, 1.0)), 1.0
    return float(np.linalg.norm((p + d1 * t) - (r + d2 * u)))


def check_chains(landmarks: np.ndarray, limits: AnatomyLimits, palm: float) -> tuple[float, list[str]]:
    """The distal parts (PIP→tip) of two fingers never run through each other."""
    score = 1.0
    reasons = []
    for f in range(1, 5):
        for g in range(f + 1, 5):
            cf, cg = CHAINS[f], CHAINS[g]
            gap = min(
                segment_distance(
                    landmarks[cf[i]], landmarks[cf[i + 1]], landmarks[cg[k]], landmarks[cg[k + 1]]
                )
                for i in (2, 3)
                for k in (2, 3)
            ) / max(palm, 1e-6)
            s = _soft(limits.min_chain_gap - gap, 0.03)
            if s < 0.7:
                reasons.append(f"{FINGERS[f]} and {FINGERS[g]} cross")
            score *= s
    return score, reasons


def count_fingertips(landmarks: np.ndarray, limits: AnatomyLimits, palm: float) -> int:
    """Distinct fingertips: tips closer than ``min_tip_gap`` palm lengths count once."""
    tips = landmarks[list(TIPS)]
    n = len(tips)
    parent = list(range(n))
    for i in range(n):
        for j in range(i + 1, n):
            if np.linalg.norm(tips[i] - tips[j]) < limits.min_tip_gap * palm:
                parent[j] = parent[i]
    return len({parent[i] for i in range(n)})


def check_palm_scale(palm: float, face_width: float | None, limits: AnatomyLimits) -> tuple[float, list[str]]:
    """Palm length against the person's scale (face box width), within a wide tolerance."""
    if not face_width:
        return 1.0, []
    ratio = palm / (limits.palm_face_ratio * face_width)
    off = abs(float(np.log(ratio))) - float(np.log(limits.palm_face_tolerance))
    s = _soft(off, 0.35)
    reasons = (
        [f"hand {'too big' if ratio > 1 else 'too small'} for the face ({ratio:.1f}x)"] if s < 0.7 else []
    )
    return s, reasons


def check_anatomy(
    landmarks: np.ndarray, face_width: float | None = None, limits: AnatomyLimits | None = None
) -> Anatomy:
    """All plausibility checks on one hand.

    Args:
        landmarks: (21, 3) float; x, y pixels, z relative depth in the same pixel scale.
        face_width: width in pixels of the face box of the hand's person, or None.
        limits: tolerances; defaults to ``AnatomyLimits()``.
    """
    limits = limits or AnatomyLimits()
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (21, 3):
        raise ValueError(f"check_anatomy needs (21, 3) landmarks, got {pts.shape}")
    palm = measure_palm_length(pts)
    reasons: list[str] = []
    checks: dict[str, float] = {}
    # 1. bone-length ratios
    checks["bones"], r = check_bone_ratios(pts, limits, palm)
    reasons += r
    checks["palm"], r = check_palm_shape(pts, limits, palm)
    reasons += r
    # 2. joint-angle ranges
    checks["angles"], r = check_joint_angles(pts, limits)
    reasons += r
    # 3. finger chains that do not cross
    checks["chains"], r = check_chains(pts, limits, palm)
    reasons += r
    # 4. five distinct fingertips
    n_tips = count_fingertips(pts, limits, palm)
    checks["fingertips"] = 0.5 ** (5 - n_tips) if n_tips < 5 else 1.0
    if n_tips != 5:
        reasons.append(f"{n_tips} distinct fingertips")
    # 5. palm size against the person's scale
    checks["scale"], r = check_palm_scale(palm, face_width, limits)
    reasons += r
    score = float(np.prod(list(checks.values())))
    return Anatomy(score=score, checks=checks, reasons=reasons, palm_length=palm, n_fingertips=n_tips)


# ---------------------------------------------------------------------------------------
# Synthetic hands for tests and for the canonical pose


def canonical_hand(palm_length: float = 100.0, curl_deg: float = 10.0, spread_deg: float = 8.0) -> np.ndarray:
    """A plausible right hand, palm facing the camera, fingers up: (21, 3) float64 pixels.

    Fingers bend ``curl_deg`` at each joint towards the camera (−z); neighbouring fingers
    fan out by ``spread_deg``. The wrist is at (0, 0, 0), image y grows downwards.
    """
    L = palm_length
    pts = np.zeros((21, 3), dtype=np.float64)
    # palm: MCPs on an arc above the wrist, x from index (left) to little (right)
    mcp_x = np.array([-0.39, -0.13, 0.13, 0.39]) * L
    for k, (x, (a, b)) in enumerate(zip(mcp_x, [(0, 5), (0, 9), (0, 13), (0, 17)], strict=True)):
        d = CANONICAL_PALM[(a, b)] * L
        pts[MCPS[k]] = (x, -np.sqrt(max(d * d - x * x, 1.0)), 0.0)
    for k, name in enumerate(FINGERS[1:]):
        base = pts[MCPS[k]]
        angle = np.radians((k - 1.5) * spread_deg)
        direction = np.array([np.sin(angle), -np.cos(angle), 0.0])
        p = base.copy()
        for s, bone in enumerate(CANONICAL_BONES[name]):
            bend = np.radians(curl_deg * (s + 1))
            d = np.array([direction[0] * np.cos(bend), direction[1] * np.cos(bend), -np.sin(bend)])
            p = p + _unit(d) * bone * L
            pts[MCPS[k] + s + 1] = p
    # thumb: from a CMC beside the wrist, out to the index side
    pts[1] = (-0.3 * L, -0.3 * L, 0.0)
    thumb_dir = _unit(np.array([-0.75, -0.66, -0.1]))
    p = pts[1].copy()
    for s, bone in enumerate(CANONICAL_BONES["thumb"]):
        turn = np.radians(12 * s)
        d = np.array(
            [
                thumb_dir[0] * np.cos(turn) - thumb_dir[1] * np.sin(turn),
                thumb_dir[0] * np.sin(turn) + thumb_dir[1] * np.cos(turn),
                thumb_dir[2],
            ]
        )
        p = p + _unit(d) * bone * L
        pts[2 + s] = p
    return pts

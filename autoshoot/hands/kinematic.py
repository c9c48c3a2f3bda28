"""An anatomical kinematic hand, fitted to 21 detected landmarks: stage 2's corrected hand.

The model is a rigid palm and five finger chains in a canonical frame (a right hand, palm
towards the camera, fingers up: x from the index to the little finger, y down the image,
flexion towards -z), every length in units of the palm length (wrist to middle knuckle):

- the palm's joints (wrist, thumb CMC, the four knuckles) are the canonical palm of
  ``autoshoot.hands.anatomy`` (its proportions come from adult hand anthropometry);
- each finger has abduction and flexion at the knuckle (MCP) and flexion at the PIP and DIP
  joints (the thumb: two rotations at the CMC, flexion at the MCP and IP), with the range of
  motion of a real hand: no sideways bend past the neighbouring finger, no hyper-extension of
  the finger joints (``JOINT_LIMITS``);
- the bones have the anthropometric lengths of ``CANONICAL_BONES``, times one length factor
  per finger bounded to +-8% (``LENGTH_RANGE``).

``fit_hand`` solves for the pose that best explains the landmarks: a similarity transform of
the palm (closed form, Umeyama), then each finger's angles by bounded least squares
(``scipy.optimize.least_squares``), in image pixels with z weighted lower (a detector's depth is
its least reliable coordinate). Whatever the detector drew (a 1.6x thumb, splayed knuckles, a
finger bent backwards, two fingers in one line) the corrected hand has five fingers in
anatomical proportion, so the guidance drawn from it can only show a plausible hand.

Landmark layout (MediaPipe): 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; little
17-20. Arrays are (21, 3) float: x, y pixels, z pixels (smaller = nearer the camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoshoot.hands.anatomy import CANONICAL_BONES, FINGERS, canonical_hand

PALM_JOINTS = (0, 1, 5, 9, 13, 17)
PALM_WEIGHTS = np.array([1.0, 0.5, 1.0, 1.0, 1.0, 1.0])  # the thumb CMC is the least sure
FINGER_JOINTS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
LENGTH_RANGE = (0.92, 1.08)  # per-finger length factor: people differ, proportions hold
Z_WEIGHT = 0.4  # weight of the depth residual against x and y
SPREAD_DEG = 8.0  # rest spread between neighbouring fingers
# Neighbouring fingers converge by at most this much (degrees) past parallel: their knuckles
# are ~0.26 palm lengths apart and a finger is ~0.2 wide, so they would collide beyond it.
MAX_CONVERGE_DEG = 3.0

# Range of motion in degrees (low, high) per parameter. Fingers: abduction at the MCP
# (relative to the rest spread), flexion at MCP, PIP, DIP (positive = towards the palm; the
# PIP and DIP do not hyper-extend). Thumb: CMC yaw in the palm plane, CMC pitch out of it,
# flexion at its MCP and IP.
JOINT_LIMITS = {
    "finger": ((-22.0, 22.0), (-25.0, 95.0), (0.0, 110.0), (0.0, 85.0)),
    "thumb": ((-35.0, 35.0), (-25.0, 75.0), (-10.0, 65.0), (-15.0, 85.0)),
}
_TEMPLATE = canonical_hand(palm_length=1.0, curl_deg=0.0, spread_deg=SPREAD_DEG)
_PALM = _TEMPLATE[list(PALM_JOINTS)]
_THUMB_REST = np.array([-0.75, -0.66, -0.1]) / np.linalg.norm([-0.75, -0.66, -0.1])
_THUMB_BEND = np.array([0.6, -0.2, -0.77])  # the thumb folds across the palm, towards it
_TOWARD_PALM = np.array([0.0, 0.0, -1.0])


@dataclass
class HandFit:
    """The result of ``fit_hand``.

    corrected: (21, 3) float64, the fitted anatomical hand in the input's pixel frame.
    angles: (5, 4) degrees per finger (thumb first), in ``JOINT_LIMITS`` order.
    lengths: (5,) per-finger length factors, in ``LENGTH_RANGE``.
    palm_length: pixels (the similarity transform's scale).
    mirrored: True when the hand is the mirror image of the canonical right hand.
    moved: mean 2D distance between the landmarks and the corrected hand, in hand lengths
        (wrist to the middle fingertip of the corrected hand).
    cost: the final least-squares cost (sum of squared weighted residuals, in hand lengths).
    """

    corrected: np.ndarray
    angles: np.ndarray
    lengths: np.ndarray
    palm_length: float
    mirrored: bool
    moved: float
    cost: float

    @property
    def hand_length(self) -> float:
        return self.palm_length * (1.0 + sum(CANONICAL_BONES["middle"]))


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted similarity (s, R, t) minimising sum w |s R src + t - dst|^2. R may be a
    reflection (det -1): a left hand is a mirrored right hand."""
    w = weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    rot = u @ vt
    var = float((w * (a * a).sum(1)).sum())
    scale = float(sig.sum() / max(var, 1e-12))
    return scale, rot, mu_d - scale * rot @ mu_s


def finger_points(index: int, params: np.ndarray) -> np.ndarray:
    """(3, 3) canonical-frame positions of a finger's three joints after its base (MCP; for the
    thumb the CMC): params = (4 angles in radians, length factor)."""
    return finger_points_batch(index, np.asarray(params, dtype=np.float64)[None])[0]


def finger_points_batch(index: int, params: np.ndarray) -> np.ndarray:
    """``finger_points`` for (n, 5) parameter rows at once: (n, 3, 3)."""
    bones = np.asarray(CANONICAL_BONES[FINGERS[index]])[None, :, None] * params[:, 4, None, None]
    if index == 0:
        yaw, pitch, m, ip = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
        c, s = np.cos(yaw), np.sin(yaw)
        t = np.stack(
            [c * _THUMB_REST[0] - s * _THUMB_REST[1], s * _THUMB_REST[0] + c * _THUMB_REST[1], 0.0 * c],
            axis=1,
        )
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        d = np.cos(pitch)[:, None] * t + np.sin(pitch)[:, None] * _TOWARD_PALM
        b = _THUMB_BEND - (d @ _THUMB_BEND)[:, None] * d
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        base = _TEMPLATE[1]
        cum = np.stack([0.0 * m, m, m + ip], axis=1)
    else:
        a = np.radians((index - 2.5) * SPREAD_DEG) + params[:, 0]
        d = np.stack([np.sin(a), -np.cos(a), 0.0 * a], axis=1)
        b = np.broadcast_to(_TOWARD_PALM, d.shape)
        base = _TEMPLATE[FINGER_JOINTS[index][0]]
        cum = np.cumsum(params[:, 1:4], axis=1)
    segs = bones * (np.cos(cum)[:, :, None] * d[:, None, :] + np.sin(cum)[:, :, None] * b[:, None, :])
    return base + np.cumsum(segs, axis=1)


def pose_hand(angles_deg: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """(21, 3) canonical-frame hand (palm length 1) for (5, 4) joint angles in degrees."""
    lengths = np.ones(5) if lengths is None else np.asarray(lengths, dtype=np.float64)
    pts = _TEMPLATE.copy()
    for f in range(5):
        params = np.concatenate([np.radians(angles_deg[f]), [lengths[f]]])
        pts[list(FINGER_JOINTS[f][1:])] = finger_points(f, params)
    return pts


def _bounds(index: int) -> tuple[np.ndarray, np.ndarray]:
    limits = np.radians(np.array(JOINT_LIMITS["thumb" if index == 0 else "finger"]))
    lo = np.concatenate([limits[:, 0], [LENGTH_RANGE[0]]])
    hi = np.concatenate([limits[:, 1], [LENGTH_RANGE[1]]])
    return lo, hi


def fit_hand(landmarks: np.ndarray, z_weight: float = Z_WEIGHT) -> HandFit:
    """Fit the kinematic hand to (21, 3) pixel landmarks; see the module docstring.

    Raises ValueError for an array that is not a finite (21, 3).
    """
    from scipy.optimize import least_squares

    obs = np.asarray(landmarks, dtype=np.float64)
    if obs.shape != (21, 3) or not np.isfinite(obs).all():
        raise ValueError(f"fit_hand needs a finite (21, 3) landmark array, got shape {obs.shape}")
    # 1. the palm: a similarity transform of the canonical palm onto the detected one
    scale, rot, shift = umeyama(_PALM, obs[list(PALM_JOINTS)], PALM_WEIGHTS)
    scale = max(scale, 1e-6)
    local = (obs - shift) @ rot / scale  # the landmarks in the canonical frame
    # the palm is nearly flat, so which side is the palm is decided by the fingers: they
    # flex towards it. Flip the canonical frame's z when they bend the other way.
    bend = np.mean([local[f[-1], 2] - local[f[0], 2] for f in FINGER_JOINTS[1:]])
    if bend > 0:
        flip = np.diag([1.0, 1.0, -1.0])
        rot = rot @ flip
        local = local @ flip
    mirrored = bool(np.linalg.det(rot) < 0)
    # residuals are measured in the image frame, with z down-weighted
    to_image = np.diag([1.0, 1.0, z_weight]) @ (scale * rot) / (scale * 2.22)
    # 2. each finger on its own: bounded least squares over its 4 angles and its length
    angles = np.zeros((5, 4))
    lengths = np.ones(5)
    model = _TEMPLATE.copy()
    cost = 0.0
    previous = None  # the in-plane direction (radians) of the finger on the index side
    for f in range(5):
        target = local[list(FINGER_JOINTS[f][1:])]
        lo, hi = _bounds(f)
        rest = np.radians((f - 2.5) * SPREAD_DEG)
        if previous is not None:  # fingers do not run through their neighbour
            lo[0] = min(max(lo[0], previous - rest - np.radians(MAX_CONVERGE_DEG)), hi[0] - 1e-3)

        def residuals_batch(ps: np.ndarray, f: int = f, target: np.ndarray = target) -> np.ndarray:
            diff = (finger_points_batch(f, ps) - target) @ to_image.T
            prior = 0.5 * (ps[:, 4:5] - 1.0)  # lengths stay near the anthropometric ones
            return np.concatenate([diff.reshape(len(ps), -1), prior], axis=1)

        def residuals(p: np.ndarray, f: int = f) -> np.ndarray:
            return residuals_batch(p[None])[0]

        def jacobian(p: np.ndarray, lo: np.ndarray = lo, hi: np.ndarray = hi) -> np.ndarray:
            # forward differences, all five in one batched evaluation (backward at an upper bound)
            step = np.where(p + 1e-6 <= hi, 1e-6, -1e-6)
            rows = residuals_batch(np.vstack([p, p + np.diag(step)]))
            return ((rows[1:] - rows[0]) / step[:, None]).T

        x0 = np.clip(initial_guess(f, target), lo + 1e-6, hi - 1e-6)
        sol = least_squares(
            residuals,
            x0,
            jac=jacobian,
            bounds=(lo, hi),
            method="trf",
            ftol=1e-5,
            xtol=1e-5,
            gtol=1e-5,
            max_nfev=60,
        )
        angles[f] = np.degrees(sol.x[:4])
        lengths[f] = sol.x[4]
        model[list(FINGER_JOINTS[f][1:])] = finger_points(f, sol.x)
        cost += float(sol.cost)
        if f > 0:
            previous = rest + sol.x[0]
    # 3. back to pixels
    corrected = scale * model @ rot.T + shift
    hand_len = scale * (1.0 + sum(CANONICAL_BONES["middle"]))
    moved = float(np.linalg.norm(corrected[:, :2] - obs[:, :2], axis=1).mean() / max(hand_len, 1e-6))
    return HandFit(
        corrected=corrected,
        angles=angles,
        lengths=lengths,
        palm_length=float(scale),
        mirrored=mirrored,
        moved=moved,
        cost=cost,
    )


def initial_guess(index: int, target: np.ndarray) -> np.ndarray:
    """Angles (radians) and length read off the canonical-frame joints, as a start."""
    base = _TEMPLATE[FINGER_JOINTS[index][0]]
    segs = np.diff(np.vstack([base, target]), axis=0)
    if index == 0:
        first = segs[0] / max(np.linalg.norm(segs[0]), 1e-9)
        yaw = np.arctan2(first[1], first[0]) - np.arctan2(_THUMB_REST[1], _THUMB_REST[0])
        yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
        return np.array([yaw, np.arcsin(np.clip(-first[2], -1, 1)), 0.2, 0.2, 1.0])
    first = segs[0]
    a = np.arctan2(first[0], -first[1]) - np.radians((index - 2.5) * SPREAD_DEG)
    flex = []
    for s in segs:
        flex.append(np.arctan2(-s[2], max(np.hypot(s[0], s[1]), 1e-9)))
    f1 = flex[0]
    return np.array([a, f1, max(flex[1] - f1, 0.0), max(flex[2] - flex[1], 0.0), 1.0])


def gripping_hand(
    grip: tuple[float, float],
    palm_px: float,
    wrist: tuple[float, float] | None = None,
    mirrored: bool = False,
) -> np.ndarray:
    """A canonical hand closed round a handle, placed at ``grip``: (21, 3) float64 pixels.

    Used when no hand is detected where one should grip. The fingers' middle phalanges wrap
    the grip point; the wrist lies towards ``wrist`` (e.g. the pose's wrist landmark) or, with
    none, below the grip (a bag carried at the side hangs from the hand). ``palm_px`` is the
    palm length in pixels (e.g. from the person's face width).
    """
    angles = np.array([[10.0, 35.0, 30.0, 20.0]] + [[0.0, 55.0, 75.0, 40.0]] * 4)  # thumb, then fingers
    hand = pose_hand(angles) * float(palm_px)
    if mirrored:
        hand[:, 0] *= -1.0
    # the grip point sits inside the curl: between the knuckles and the middle fingertips
    inside = hand[[6, 10, 14, 18, 8, 12, 16, 20]].mean(axis=0)
    gx, gy = float(grip[0]), float(grip[1])
    # canonical "up" (fingers, -y) points from the wrist to the grip
    if wrist is None:
        direction = np.array([0.0, -1.0])  # wrist below: the arm hangs, the hand holds up
    else:
        direction = np.array([gx - wrist[0], gy - wrist[1]], dtype=np.float64)
        if np.linalg.norm(direction) < 1e-6:
            direction = np.array([0.0, -1.0])
    direction /= np.linalg.norm(direction)
    angle = np.arctan2(direction[0], -direction[1])  # rotation taking (0, -1) onto direction
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    out = hand.copy()
    out[:, :2] = (hand[:, :2] - inside[:2]) @ rot.T + (gx, gy)
    out[:, 2] = hand[:, 2] - hand[0, 2]
    return out

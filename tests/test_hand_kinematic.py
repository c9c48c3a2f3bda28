"""The anatomical kinematic hand: malformed skeletons are corrected, real ones barely move."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from autoshoot.hands.anatomy import (
    CANONICAL_BONES,
    FINGERS,
    PALM_BREADTH,
    bone_lengths,
    canonical_hand,
    check_anatomy,
    measure_palm_length,
)
from autoshoot.hands.kinematic import JOINT_LIMITS, fit_hand, gripping_hand, pose_hand


def placed(hand: np.ndarray, angle_deg: float = 25.0, shift=(400.0, 380.0)) -> np.ndarray:
    """The hand rotated in the image plane and moved, as a detector would report it."""
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return hand @ rot.T + np.array([shift[0], shift[1], 0.0])


def thumb_16x(h: np.ndarray) -> np.ndarray:
    h = h.copy()
    h[2:5] = h[1] + 1.6 * (h[2:5] - h[1])
    return h


def splayed_knuckles(h: np.ndarray) -> np.ndarray:
    h = h.copy()
    centre = h[[5, 9, 13, 17]].mean(axis=0)
    for chain in ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)):
        h[list(chain)] += 0.6 * (h[chain[0]] - centre) * np.array([1, 1, 0])
    return h


def bent_backwards(h: np.ndarray) -> np.ndarray:
    """The middle finger's PIP bent 70 degrees the wrong way (towards the back of the hand)."""
    angles = np.array([[0, 10, 10, 10]] + [[0, 15, 15, 10]] * 4, dtype=float)
    pts = pose_hand(angles) * 100.0
    pip, tip_chain = pts[10], (11, 12)
    a = np.radians(-70 - 15 - 15)  # from its PIP on, the finger points away from the palm
    d = np.array([0.0, -np.cos(a), -np.sin(a)])
    p = pip.copy()
    for k, j in enumerate(tip_chain):
        p = p + d * CANONICAL_BONES["middle"][k + 1] * 100.0
        pts[j] = p
    return pts


def fused(h: np.ndarray) -> np.ndarray:
    """The ring finger drawn on the middle finger's line."""
    h = h.copy()
    h[[14, 15, 16]] = h[[10, 11, 12]] + 0.02 * (h[13] - h[9])
    return h


def proportions(pts: np.ndarray) -> np.ndarray:
    """Every bone (and the palm breadth) against the canonical hand: 1.0 = anatomical."""
    palm = measure_palm_length(pts)
    lengths = bone_lengths(pts)[:, 1:] / palm
    ratios = [lengths[f] / np.asarray(CANONICAL_BONES[n]) for f, n in enumerate(FINGERS)]
    breadth = np.linalg.norm(pts[17] - pts[5]) / palm / PALM_BREADTH
    return np.append(np.concatenate(ratios), breadth)


MALFORMATIONS = {
    "thumb 1.6x": thumb_16x,
    "splayed knuckles": splayed_knuckles,
    "finger bent backwards": bent_backwards,
    "two fingers fused": fused,
}


@pytest.mark.parametrize("name", sorted(MALFORMATIONS))
@pytest.mark.parametrize("mirror", [False, True])
def test_malformed_hands_are_corrected_to_anatomical_proportions(name, mirror):
    hand = canonical_hand(palm_length=100.0, curl_deg=15.0)
    bad = MALFORMATIONS[name](hand)
    if mirror:  # a left hand
        bad = bad * np.array([-1.0, 1.0, 1.0])
    bad = placed(bad)
    before = proportions(bad)
    fit = fit_hand(bad)
    after = proportions(fit.corrected)
    assert np.abs(after - 1.0).max() <= 0.10, (name, np.round(after, 2))
    assert check_anatomy(fit.corrected).reasons == []
    if name in ("thumb 1.6x", "splayed knuckles"):
        assert np.abs(before - 1.0).max() > 0.3  # the malformation was there
    assert fit.mirrored == mirror


def test_a_finger_bent_backwards_is_straightened():
    bad = placed(bent_backwards(canonical_hand()))
    fit = fit_hand(bad)
    lo = np.array(JOINT_LIMITS["finger"])[:, 0]
    assert (fit.angles[1:] >= lo - 1e-6).all()
    assert fit.angles[2, 2] >= 0.0  # the middle PIP: no hyper-extension


def test_fused_fingers_are_separated():
    fit = fit_hand(placed(fused(canonical_hand())))
    tips = fit.corrected[[12, 16], :2]
    assert np.linalg.norm(tips[0] - tips[1]) > 0.12 * fit.palm_length
    assert "cross" not in " ".join(check_anatomy(fit.corrected).reasons)


def test_plausible_hands_barely_move():
    for curl in (0.0, 20.0, 45.0):
        fit = fit_hand(placed(canonical_hand(palm_length=80.0, curl_deg=curl), angle_deg=-40))
        assert fit.moved < 0.02, curl


def test_refuses_a_wrong_array():
    with pytest.raises(ValueError, match="finite \\(21, 3\\)"):
        fit_hand(np.zeros((20, 3)))


def test_fit_takes_at_most_50_ms_per_hand():
    hands = [placed(m(canonical_hand()), angle_deg=a) for m in MALFORMATIONS.values() for a in (0, 60)]
    fit_hand(hands[0])  # imports scipy
    best = float("inf")
    for _ in range(3):  # the best of three rounds: a shared machine's noise is not the fit's cost
        start = time.process_time()
        for h in hands:
            fit_hand(h)
        best = min(best, (time.process_time() - start) / len(hands))
    assert best * 1000 <= 50.0


def test_gripping_hand_is_anatomical_and_at_the_grip():
    hand = gripping_hand((300.0, 200.0), palm_px=60.0, wrist=(300.0, 320.0))
    assert hand.shape == (21, 3)
    assert check_anatomy(hand).reasons == []
    curl = hand[[6, 10, 14, 18, 8, 12, 16, 20], :2].mean(axis=0)
    assert np.allclose(curl, (300.0, 200.0), atol=1e-6)
    assert hand[0, 1] > 200.0  # the wrist towards the pose's wrist
    left = gripping_hand((300.0, 200.0), palm_px=60.0, mirrored=True)
    assert fit_hand(left).mirrored


@pytest.mark.samples
def test_real_sample_hands_move_less_than_8_percent(samples_dir):
    pytest.importorskip("mediapipe")
    from PIL import Image

    from autoshoot.backends.mediapipe_hands import HandDetector, prepare_image

    detector = HandDetector()
    moved = []
    try:
        for path in sorted(samples_dir.glob("C_hand_real_*")) + sorted(samples_dir.glob("B_*")):
            with Image.open(path) as im:
                for hand in detector.detect(prepare_image(im)):
                    moved.append(fit_hand(hand.landmarks).moved)
    finally:
        detector.close()
    assert len(moved) >= 8
    assert float(np.mean(moved)) < 0.08, json.dumps(moved)

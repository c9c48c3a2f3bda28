"""Image evidence under a skeleton, on drawn hands: a finger chain threaded through a gap."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from autoshoot.hands.anatomy import CHAINS, AnatomyLimits, canonical_hand  # noqa: E402
from autoshoot.hands.evidence import check_finger_support, measure_finger_support  # noqa: E402

SKIN = (224, 172, 140)
BLUE = (60, 90, 140)


def drawn_hand(
    leave_out: tuple[int, ...] = (), background: tuple[int, int, int] = BLUE
) -> tuple[np.ndarray, np.ndarray]:
    """A 400x400 picture of the canonical hand (palm and fingers in skin colour) and its
    landmarks; the distal parts (PIP to tip) of the fingers in ``leave_out`` (1 index .. 4
    little) are not drawn, so their chains lie over the background."""
    pts = canonical_hand(palm_length=100.0, curl_deg=0.0)
    pts[:, 0] += 200
    pts[:, 1] += 330
    rng = np.random.default_rng(0)
    image = np.clip(np.array(background) + rng.normal(0, 6, (400, 400, 3)), 0, 255).astype(np.uint8)
    palm = np.round(pts[[0, 1, 2, 5, 9, 13, 17], :2]).astype(np.int32)
    cv2.fillPoly(image, [cv2.convexHull(palm).reshape(-1, 2)], SKIN)
    for f, chain in enumerate(CHAINS):
        last = 2 if f in leave_out else 4
        for a, b in zip(chain[:last], chain[1 : last + 1], strict=True):
            pa, pb = np.round(pts[a, :2]).astype(int), np.round(pts[b, :2]).astype(int)
            cv2.line(image, tuple(map(int, pa)), tuple(map(int, pb)), SKIN, 16)
    return image, pts


def test_a_drawn_hand_is_supported_everywhere():
    image, pts = drawn_hand()
    found = measure_finger_support(image, pts)
    assert found is not None and found.quality > 0.95
    assert min(found.support) > 0.9
    assert check_finger_support(found, AnatomyLimits()) == (1.0, [])


def test_a_middle_finger_over_a_gap_is_flagged():
    # the detector's middle finger lies where the picture has no finger, between two that it
    # has: an extra or a missing digit (the six-digit generated hand of the samples)
    image, pts = drawn_hand(leave_out=(2,))
    found = measure_finger_support(image, pts)
    assert found.support[1] < 0.2 and found.support[0] > 0.9 and found.support[2] > 0.9
    score, reasons = check_finger_support(found, AnatomyLimits())
    assert score < 0.05
    assert reasons == ["middle finger drawn off the hand, between two fingers on it"]


def test_fingers_hidden_at_the_side_of_a_grip_are_not_flagged():
    # index and little hidden (by what the hand holds): no finger off between two on
    image, pts = drawn_hand(leave_out=(1, 4))
    found = measure_finger_support(image, pts)
    assert found.support[0] < 0.2 and found.support[3] < 0.2
    assert check_finger_support(found, AnatomyLimits()) == (1.0, [])


def test_abstains_when_the_background_has_the_hands_colour():
    image, pts = drawn_hand(leave_out=(2,), background=SKIN)
    found = measure_finger_support(image, pts)
    assert found.quality < AnatomyLimits().min_colour_quality
    assert check_finger_support(found, AnatomyLimits()) == (1.0, [])


def test_too_small_a_hand_has_no_evidence():
    image, pts = drawn_hand()
    assert measure_finger_support(image, pts * 0.01) is None
    assert check_finger_support(None, AnatomyLimits()) == (1.0, [])

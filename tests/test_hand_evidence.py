"""Image evidence under a skeleton, on drawn hands: a finger chain threaded through a gap."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from autoshoot.hands.anatomy import CHAINS, AnatomyLimits, canonical_hand  # noqa: E402
from autoshoot.hands.evidence import (  # noqa: E402
    check_finger_separation,
    check_finger_support,
    measure_finger_support,
)

SKIN = (224, 172, 140)
BLUE = (60, 90, 140)


def palm_picture(
    side: int, offset: tuple[int, int], palm_length: float, background: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A side x side picture of noise around ``background`` with the canonical open hand's palm
    filled in skin colour, and that hand's landmarks (moved by ``offset``, px)."""
    pts = canonical_hand(palm_length=palm_length, curl_deg=0.0)
    pts[:, 0] += offset[0]
    pts[:, 1] += offset[1]
    rng = np.random.default_rng(0)
    image = np.clip(np.array(background) + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8)
    palm = np.round(pts[[0, 1, 2, 5, 9, 13, 17], :2]).astype(np.int32)
    cv2.fillPoly(image, [cv2.convexHull(palm).reshape(-1, 2)], SKIN)
    return image, pts


def drawn_hand(
    leave_out: tuple[int, ...] = (), background: tuple[int, int, int] = BLUE
) -> tuple[np.ndarray, np.ndarray]:
    """A 400x400 picture of the canonical hand (palm and fingers in skin colour) and its
    landmarks; the distal parts (PIP to tip) of the fingers in ``leave_out`` (1 index .. 4
    little) are not drawn, so their chains lie over the background."""
    image, pts = palm_picture(400, (200, 330), 100.0, background)
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


def fused_hand(seam: bool, palm_length: float = 150.0) -> tuple[np.ndarray, np.ndarray]:
    """A 600x600 picture of the canonical hand whose ring and little fingers are drawn as one
    wide finger from their knuckles to their tips, both chains lying on it (a fused finger, or
    a missing digit the detector spread five chains over); with ``seam``, a darker line runs
    between the two chains, as where two real fingers touch."""
    image, pts = palm_picture(600, (300, 500), palm_length, BLUE)
    width = round(0.16 * palm_length)
    for chain in CHAINS:
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            cv2.line(image, tuple(map(int, pts[a, :2])), tuple(map(int, pts[b, :2])), SKIN, width)
    ring, little = CHAINS[3], CHAINS[4]
    for k in range(1, 4):  # the space between the two fingers filled with skin
        quad = np.round(pts[[ring[k], ring[k + 1], little[k + 1], little[k]], :2]).astype(np.int32)
        cv2.fillPoly(image, [quad], SKIN)
    if seam:
        mid = np.round((pts[list(ring[1:]), :2] + pts[list(little[1:]), :2]) / 2).astype(np.int32)
        cv2.polylines(image, [mid.reshape(-1, 1, 2)], False, (170, 120, 95), 3)
    return image, pts


def test_spread_fingers_are_separated():
    image, pts = drawn_hand()
    found = measure_finger_support(image, pts)
    judged = [v for v in found.separation if v is not None]
    assert judged and min(judged) >= 1.0
    assert check_finger_separation(found, AnatomyLimits()) == (1.0, [])


def test_two_chains_over_one_finger_are_flagged():
    image, pts = fused_hand(seam=False)
    found = measure_finger_support(image, pts)
    assert min(found.support) > 0.9  # every chain lies on the hand: the support check sees nothing
    assert check_finger_support(found, AnatomyLimits()) == (1.0, [])
    assert found.separation[2] is not None and found.separation[2] < 0.5
    assert found.separation[0] >= 1.0 and found.separation[1] >= 1.0
    score, reasons = check_finger_separation(found, AnatomyLimits())
    assert score < 0.3
    assert reasons == ["ring and little fingers drawn over one finger"]


def test_touching_fingers_with_a_seam_are_not_flagged():
    image, pts = fused_hand(seam=True)
    found = measure_finger_support(image, pts)
    assert found.separation[2] >= 1.0
    assert check_finger_separation(found, AnatomyLimits()) == (1.0, [])


def test_separation_is_not_judged_where_a_seam_cannot_show():
    # fingers a few pixels wide: a seam between touching fingers is lost in the pixels
    image, pts = fused_hand(seam=False)
    small = cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA)
    pts_small = pts * 0.25
    found = measure_finger_support(small, pts_small)
    assert found is not None and found.separation == [None, None, None]
    assert check_finger_separation(found, AnatomyLimits()) == (1.0, [])


def test_an_enlarged_picture_is_judged_at_the_detail_it_was_drawn_with():
    # the same too-small hand enlarged 4x afterwards (as a candidate is upscaled to its final
    # size): its pixels are many, its detail is not; told so, the check does not judge it
    image, pts = fused_hand(seam=True)
    small = cv2.resize(image, (100, 100), interpolation=cv2.INTER_AREA)
    enlarged = cv2.resize(small, (400, 400), interpolation=cv2.INTER_CUBIC)
    as_if_sharp = measure_finger_support(enlarged, pts)
    assert as_if_sharp is not None and as_if_sharp.separation[2] is not None  # judged on blur
    told = measure_finger_support(enlarged, pts, detail_scale=0.25)
    assert told is not None and told.separation == [None, None, None]
    assert check_finger_separation(told, AnatomyLimits()) == (1.0, [])
    # the picture as drawn is judged as before: detail_scale 1 changes nothing
    assert (
        measure_finger_support(image, pts, detail_scale=1.0).separation
        == measure_finger_support(image, pts).separation
    )


def test_curled_fingers_are_not_judged():
    image, pts = fused_hand(seam=False)
    curled = pts.copy()
    centre = pts[[0, 5, 9, 13, 17]].mean(axis=0)
    for i in (15, 16, 19, 20):  # ring and little tips folded onto the palm
        curled[i] = centre + (pts[i] - centre) * 0.3
    found = measure_finger_support(image, curled)
    assert found.separation[2] is None

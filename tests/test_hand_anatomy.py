"""Plausibility maths on synthetic landmark sets: a perfect hand and the usual defects."""

from __future__ import annotations

import numpy as np
import pytest

from autoshoot.hand_anatomy import (
    CHAINS,
    AnatomyLimits,
    canonical_hand,
    check_anatomy,
    count_fingertips,
    measure_palm_length,
    segment_distance,
)


def rotate_about(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues rotation of (N, 3) points about ``axis`` through ``centre``."""
    k = axis / np.linalg.norm(axis)
    t = np.radians(degrees)
    v = points - centre
    rotated = v * np.cos(t) + np.cross(k, v) * np.sin(t) + np.outer(v @ k, k) * (1 - np.cos(t))
    return rotated + centre


@pytest.fixture
def hand() -> np.ndarray:
    return canonical_hand(palm_length=120.0)


def test_perfect_hand_is_plausible(hand):
    result = check_anatomy(hand)
    assert result.score > 0.99
    assert result.reasons == []
    assert result.n_fingertips == 5
    assert measure_palm_length(hand) == pytest.approx(120.0, rel=0.05)


@pytest.mark.parametrize("palm", [30.0, 400.0])
@pytest.mark.parametrize("curl", [0.0, 25.0])
def test_plausible_at_any_size_and_mild_curl(palm, curl):
    result = check_anatomy(canonical_hand(palm_length=palm, curl_deg=curl))
    assert result.score > 0.95, result.reasons


def test_rotation_and_mirror_do_not_change_the_verdict(hand):
    turned = rotate_about(hand, hand[0], np.array([0.3, 0.2, 1.0]), 70)
    mirrored = hand * np.array([-1.0, 1.0, 1.0])
    assert check_anatomy(turned).score > 0.99
    assert check_anatomy(mirrored).score > 0.99


def test_six_fingers_widen_the_palm(hand):
    # a sixth finger between ring and little pushes the little finger's chain outwards
    six = hand.copy()
    outward = (hand[17] - hand[5]) / np.linalg.norm(hand[17] - hand[5])
    six[17:21] += outward * 0.35 * 120.0
    result = check_anatomy(six)
    assert result.checks["palm"] < 0.3
    assert result.score < 0.3
    assert any("too wide" in r for r in result.reasons)


def test_fused_fingers_cross_and_share_a_tip(hand):
    fused = hand.copy()
    fused[14:17] = hand[10:13] + np.array([1.5, 0.0, 0.0])  # ring drawn onto the middle finger
    result = check_anatomy(fused)
    assert result.checks["chains"] < 0.1
    assert result.n_fingertips == 4
    assert "4 distinct fingertips" in result.reasons
    assert any("middle and ring cross" in r for r in result.reasons)
    assert result.score < 0.1


def test_finger_bent_sideways_at_a_finger_joint(hand):
    bent = hand.copy()
    lateral = hand[17] - hand[5]
    palm_normal = np.cross(hand[5] - hand[0], hand[17] - hand[0])
    # rotate the index DIP→tip about the palm normal: a sideways bend of 70 degrees
    bent[8] = rotate_about(hand[8:9], hand[7], palm_normal, 70)[0]
    result = check_anatomy(bent)
    assert result.checks["angles"] < 0.5
    assert any("index bent sideways" in r for r in result.reasons), result.reasons
    assert np.linalg.norm(lateral) > 0


def test_finger_folded_back_on_itself(hand):
    folded = hand.copy()
    # the middle finger's distal phalanx turns back 170 degrees at the DIP joint
    lateral = hand[17] - hand[5]
    folded[12] = rotate_about(hand[12:13], hand[11], lateral, 170)[0]
    result = check_anatomy(folded)
    assert result.checks["angles"] < 0.2
    assert any("middle bent too far" in r for r in result.reasons), result.reasons


def test_generated_long_thumb(hand):
    long_thumb = hand.copy()
    long_thumb[2:5] = hand[1] + (hand[2:5] - hand[1]) * 1.7
    result = check_anatomy(long_thumb)
    assert result.checks["bones"] < 0.3
    assert any(r.startswith("thumb") for r in result.reasons)


def test_palm_against_the_face_scale(hand):
    palm = measure_palm_length(hand)
    limits = AnatomyLimits()
    face_ok = palm / limits.palm_face_ratio
    assert check_anatomy(hand, face_width=face_ok).checks["scale"] == pytest.approx(1.0)
    tiny_face = check_anatomy(hand, face_width=face_ok / 6)
    assert tiny_face.checks["scale"] < 0.2
    assert any("too big for the face" in r for r in tiny_face.reasons)


def test_count_fingertips_merges_coincident_tips(hand):
    limits = AnatomyLimits()
    palm = measure_palm_length(hand)
    assert count_fingertips(hand, limits, palm) == 5
    merged = hand.copy()
    merged[[12, 16, 20]] = hand[8]
    assert count_fingertips(merged, limits, palm) == 2


def test_segment_distance():
    p, q = np.array([0.0, 0, 0]), np.array([10.0, 0, 0])
    assert segment_distance(p, q, np.array([5.0, -5, 3]), np.array([5.0, 5, 3])) == pytest.approx(3.0)
    assert segment_distance(p, q, np.array([12.0, 0, 0]), np.array([20.0, 0, 0])) == pytest.approx(2.0)
    assert segment_distance(p, q, p, q) == pytest.approx(0.0)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        check_anatomy(np.zeros((20, 3)))


def test_chains_layout():
    assert [c[-1] for c in CHAINS] == [4, 8, 12, 16, 20]

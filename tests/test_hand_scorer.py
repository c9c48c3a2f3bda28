"""Real MediaPipe on the sample photos: detection, the crop around the grip, the scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.samples

mp_hands = pytest.importorskip("autoshoot.backends.mediapipe_hands")


def load(samples_dir, name: str) -> np.ndarray:
    return mp_hands.prepare_image(Image.open(samples_dir / name))


@pytest.fixture(scope="module")
def detector():
    det = mp_hands.HandDetector(refine_crops=False)
    yield det
    det.close()


@pytest.fixture(scope="module")
def scorer():
    from autoshoot.config import load_config

    # the hand checks on photos; the second-bag rule has its own tests (test_bag_detector.py)
    # and its default detector's weights are not here
    sc = mp_hands.MediaPipeHandScorer(load_config(overrides={"score.bag_detector": "none"}))
    yield sc
    sc.close()


def small_hand_canvas(samples_dir) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1024x1024 candidate with the two grip_04 hands shrunk to ~20 px palms."""
    src = Image.open(samples_dir / "C_hand_real_grip_04.jpg").convert("RGB")
    src.thumbnail((184, 184))
    canvas = Image.new("RGB", (1024, 1024), (235, 235, 235))
    canvas.paste(src, (600, 500))
    return np.asarray(canvas), (600, 500, 600 + src.size[0], 500 + src.size[1])


def test_detect_returns_pixel_landmarks(detector, samples_dir):
    image = load(samples_dir, "C_hand_real_grip_04.jpg")
    hands = detector.detect(image)
    assert len(hands) == 2
    h, w = image.shape[:2]
    for hand in hands:
        assert hand.landmarks.shape == (21, 3) and hand.landmarks.dtype == np.float32
        assert 0 <= hand.landmarks[:, 0].min() and hand.landmarks[:, 0].max() <= w
        assert 0 <= hand.landmarks[:, 1].min() and hand.landmarks[:, 1].max() <= h
        x0, y0, x1, y1 = hand.bbox
        assert x0 < x1 and y0 < y1
        assert hand.handedness in ("Left", "Right")
        assert 0.5 <= hand.handedness_score <= 1.0
        assert hand.detection_score == 1.0
    # the hand holding the bottle (upper) is the larger one in this photo: largest first
    assert hands[0].size >= hands[1].size


def test_each_hand_keeps_the_world_landmarks_of_its_pass(detector, samples_dir):
    # MediaPipe's 3D estimate of the hand (metres, centred on the hand), from the same pass as
    # the pixel landmarks; a crop's are not moved or scaled with its pixels
    image = load(samples_dir, "C_hand_real_grip_04.jpg")
    for hand in detector.detect(image, roi=(0, 0, image.shape[1], image.shape[0])):
        assert hand.world is not None and hand.world.shape == (21, 3)
        assert np.all(np.abs(hand.world) < 0.25)  # a hand, in metres, about its centre
        palm = float(np.linalg.norm(hand.world[9] - hand.world[0]))
        assert 0.04 < palm < 0.15


def test_crop_around_the_grip_finds_small_hands(detector, samples_dir):
    image, roi = small_hand_canvas(samples_dir)
    full = detector.detect(image)
    cropped = detector.detect(image, roi=roi)
    assert len(full) == 0  # too small for the palm detector at full frame
    assert len(cropped) == 2
    for hand in cropped:
        assert hand.views == ["crop"]
        cx, cy = hand.landmarks[:, 0].mean(), hand.landmarks[:, 1].mean()
        assert roi[0] <= cx <= roi[2] and roi[1] <= cy <= roi[3]  # mapped back to the canvas


def test_duplicates_across_passes_are_merged(detector, samples_dir):
    image = load(samples_dir, "C_hand_real_grip_04.jpg")
    hands = detector.detect(image, roi=(0, 0, image.shape[1], image.shape[0]))
    assert len(hands) == 2
    assert all(sorted(h.views) == ["crop", "full"] for h in hands)


def test_detect_refuses_wrong_arrays(detector):
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        detector.detect(np.zeros((64, 64), dtype=np.uint8))


def test_score_contract_is_json(scorer, samples_dir):
    result = scorer.score(load(samples_dir, "C_hand_real_grip_01.png"), file="grip.png")
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) >= {"file", "hand_score", "hands", "reasons", "components"}
    assert data["bags"] == []  # the bag rule is off: stable, empty
    assert 0.0 <= data["hand_score"] <= 1.0
    assert data["hands"] and len(data["hands"][0]["landmarks"]) == 21
    assert set(data["components"]) >= {"confidence", "anatomy", "scene"}
    assert all(0.0 <= v <= 1.0 for v in data["components"].values())


def test_malformed_scores_below_real(scorer, samples_dir):
    real = scorer.score(load(samples_dir, "C_hand_real_grip_01.png"))
    bad = scorer.score(load(samples_dir, "C_hand_ai_malformed_04.jpg"))
    assert real.hand_score > 0.9
    assert bad.hand_score < 0.5
    assert any("too wide" in r or r.startswith("thumb") for r in bad.reasons)


def test_grip_component(scorer, samples_dir):
    image = load(samples_dir, "B_holding_backpack_strap_01.jpg")
    hand = scorer.score(image).hands[0]
    x0, y0, x1, y1 = hand["bbox"]
    at_hand = ((x0 + x1) / 2, (y0 + y1) / 2)
    square = [
        (at_hand[0] - 10, at_hand[1] - 10),
        (at_hand[0] + 10, at_hand[1] - 10),
        (at_hand[0] + 10, at_hand[1] + 10),
        (at_hand[0] - 10, at_hand[1] + 10),
    ]
    near = scorer.score(image, grip=at_hand, erase_polygon=square)
    far = scorer.score(image, grip=(60.0, 60.0), erase_polygon=[(40, 40), (80, 40), (80, 80), (40, 80)])
    assert near.components["grip"] > 0.6
    assert far.components["grip"] < 0.05
    assert any("px from handle gap" in r for r in far.reasons)
    assert near.hand_score > far.hand_score + 0.3


def test_no_hand(scorer):
    blank = np.full((512, 512, 3), 200, dtype=np.uint8)
    free = scorer.score(blank)
    assert free.hands == [] and free.reasons == [
        "no hand found where one should be visible",
        "no person found",
    ]
    # nobody in the picture (e.g. a failed render): below the threshold, so it goes to review
    c = scorer.config
    assert free.hand_score == pytest.approx(c.no_hand_score * c.no_person_factor)
    assert free.hand_score < c.accept_threshold
    gripped = scorer.score(blank, grip=(256, 256))
    assert "no hand at the grip" in gripped.reasons
    assert gripped.hand_score < 0.2


def test_scene_counts_faces(scorer, samples_dir):
    crowd = scorer.score(load(samples_dir, "C_hand_real_wave_01.jpg"))
    assert "3 faces" in crowd.reasons
    assert crowd.components["scene"] < 0.2


def test_people_holding_bags_are_good(scorer, samples_dir):
    threshold = scorer.config.accept_threshold
    assert scorer.score(load(samples_dir, "B_holding_backpack_strap_01.jpg")).hand_score >= threshold


def test_fails_closed_without_a_visible_hand(scorer, samples_dir):
    # a person whose hands are out of sight, and bare packshots: never accepted, and say why
    threshold = scorer.config.accept_threshold
    for name in (
        "B_carrying_tote_05.png",
        "A_packshot_tote_white_01.jpg",
        "A_packshot_backpack_white_31.jpg",
    ):
        result = scorer.score(load(samples_dir, name))
        assert result.hand_score < threshold, name
        assert "no hand found where one should be visible" in result.reasons, name


def test_a_close_up_is_not_a_hand_without_a_body(scorer, samples_dir):
    image = load(samples_dir, "C_hand_real_grip_01.png")
    h, w = image.shape[:2]
    hand = scorer.score(image).hands[0]
    x0, y0, x1, y1 = (int(v) for v in hand["bbox"])
    # a tight crop of the hand alone: no face, no body
    crop = np.ascontiguousarray(image[max(0, y0 - 40) : y1 + 40, max(0, x0 - 40) : x1 + 40])
    close = scorer.score(crop, shot="close")
    assert "hands without a body" not in close.reasons
    assert close.components["scene"] == 1.0


def test_overlay_draws_the_skeleton(scorer, samples_dir):
    image = load(samples_dir, "C_hand_real_grip_04.jpg")
    result = scorer.score(image)
    overlay = mp_hands.draw_overlay(
        image, result.hands, grip=(10, 10), erase_polygon=[(0, 0), (20, 0), (20, 20)]
    )
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    changed = np.any(overlay != image, axis=2)
    x0, y0, x1, y1 = (int(v) for v in result.hands[0]["bbox"])
    assert changed[y0:y1, x0:x1].mean() > 0.02
    assert not np.array_equal(overlay, image)


def test_cover_wrap_and_combine_on_synthetic_hands():
    from autoshoot.hand_anatomy import canonical_hand

    hand = canonical_hand(palm_length=100.0) + np.array([500.0, 500.0, 0.0])
    centre = tuple(hand[[0, 5, 9, 13, 17], :2].mean(axis=0))

    def square(cx, cy, r=10.0):
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]

    assert mp_hands.measure_cover(hand, centre, square(*centre)) == 1.0
    assert mp_hands.measure_cover(hand, centre, square(centre[0] + 300, centre[1])) == 0.0
    assert mp_hands.measure_cover(hand, centre, None) == 1.0
    assert mp_hands.measure_cover(hand, (0.0, 0.0), None) == 0.0
    assert mp_hands.measure_wrap(canonical_hand(curl_deg=0.0)) < 0.1
    assert mp_hands.measure_wrap(canonical_hand(curl_deg=60.0)) > 0.9
    assert mp_hands.polygon_distance(np.array([30.0, 0.0]), np.array(square(0.0, 0.0))) == pytest.approx(20.0)
    weights = {"anatomy": 3.0, "grip": 1.0, "unused": 0.0}
    assert mp_hands.combine_components(
        {"anatomy": 1.0, "grip": 1.0, "unused": 0.0}, weights
    ) == pytest.approx(1.0)
    assert mp_hands.combine_components({"anatomy": 0.5, "grip": 1.0}, weights) == pytest.approx(0.5**0.75)
    assert mp_hands.combine_components({"anatomy": 1.0, "grip": 0.0}, weights) == pytest.approx(0.01**0.25)


def test_finger_separation_counts_in_anatomy_only_when_switched_on(scorer, samples_dir):
    # the boneless hand: its ring and little chains lie on one finger. On (the fitted default)
    # anatomy includes the separation; off, it is only reported as a component
    from autoshoot.config import load_config

    image = load(samples_dir, "C_hand_ai_malformed_15.jpg")
    on = scorer.score(image)
    assert scorer.config.finger_separation is True
    off_scorer = mp_hands.MediaPipeHandScorer(
        load_config(overrides={"score.bag_detector": "none", "score.finger_separation": False})
    )
    try:
        off = off_scorer.score(image)
    finally:
        off_scorer.close()
    assert off.components["separation"] < 0.7 and off.components["anatomy"] > 0.9
    assert not any("drawn over one finger" in r for r in off.reasons)
    assert on.components["separation"] == pytest.approx(off.components["separation"])
    assert on.components["anatomy"] == pytest.approx(
        off.components["anatomy"] * off.components["separation"], abs=1e-3
    )
    assert any("ring and little fingers drawn over one finger" in r for r in on.reasons)
    assert on.hand_score < off.hand_score

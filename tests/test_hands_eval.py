"""Regression test of bench/hands_eval.py: real hands rank above AI-malformed ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.samples

BENCH = Path(__file__).resolve().parents[1] / "bench" / "hands_eval.py"


@pytest.fixture(scope="module")
def evaluation(samples_dir):
    pytest.importorskip("mediapipe")
    spec = importlib.util.spec_from_file_location("hands_eval", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.evaluate(samples_dir, time_runs=1)


OPEN_21 = (
    "issue 21 is open: the anatomy rules were fitted to the first samples; on the added ones the AUC "
    "is 0.67 and a six-digit and an over-long-finger AI hand score above the threshold"
)


@pytest.mark.xfail(strict=True, reason=OPEN_21)
def test_auc_on_the_samples(evaluation):
    _, result = evaluation
    assert result["auc"] >= 0.9
    assert result["auc_hand_only"] >= 0.9


def test_people_holding_bags_score_as_good_grips(evaluation):
    _, result = evaluation
    assert result["bag_photos_good"]


@pytest.mark.xfail(strict=True, reason=OPEN_21)
def test_every_malformed_hand_goes_to_review(evaluation):
    _, result = evaluation
    for row in result["rows"]:
        if row["label"] == 0:
            assert row["hand_score"] < result["threshold"], row["file"]
            assert row["reasons"], row["file"]


def test_a_missed_hand_is_never_accepted(evaluation):
    """Fail closed: where MediaPipe finds no hand, the score is below the threshold and says so."""
    _, result = evaluation
    missed = [r for r in result["rows"] if "no hand visible" in r["reasons"]]
    assert missed, "the samples include hands MediaPipe misses (C_hand_ai_malformed_11, B_carrying_tote_05)"
    assert result["no_hand_below_threshold"]
    assert all(r["hand_score"] < result["threshold"] for r in missed)


def test_single_person_real_hands_are_accepted(evaluation):
    _, result = evaluation
    for row in result["rows"]:
        if (
            row["label"] == 1
            and not any("faces" in r for r in row["reasons"])
            and "no hand visible" not in row["reasons"]
        ):
            assert row["hand_score"] >= result["threshold"], (row["file"], row["reasons"])


def test_speed_guard(evaluation):
    # the target is <= 150 ms on one core (bench/hands_eval.py pins one); this guard only
    # catches a multiplied number of MediaPipe calls, not machine noise
    _, result = evaluation
    assert result["ms_per_1024_candidate"] < 450


def test_auc_counts_ties_half(evaluation):
    module, _ = evaluation
    assert module.auc([0.9, 0.5, 0.5], [1, 1, 0]) == pytest.approx(0.75)
    assert module.auc([0.1, 0.9], [1, 0]) == 0.0


def test_bag_detector_timing_runs_the_real_detector(evaluation, samples_dir):
    pytest.importorskip("transformers")
    from autoshoot.backends.bag_detector import build_tiny_detector

    module, _ = evaluation
    images = module.candidates_1024(samples_dir, 2)
    assert [im.shape for im in images] == [(1024, 1024, 3)] * 2
    model, processor = build_tiny_detector()
    timing = module.time_bag_detector(images, model, processor)
    assert timing["bag_detector"] == "Owlv2ForObjectDetection" and timing["bag_detector_threads"] == 1
    assert 0 < timing["bag_detector_ms_per_1024_candidate"] < 5000
    assert 0 < timing["bag_detector_params_m"] < 1

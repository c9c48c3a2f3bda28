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


def test_the_split_keeps_the_new_hands_out_of_the_fit(evaluation):
    _, result = evaluation
    held = {r["file"] for r in result["rows"] if r["part"] == "held_out"}
    assert {f"C_hand_ai_malformed_{n}.jpg" for n in (11, 13, 15, 17)} <= held
    assert {"C_hand_real_grip_11.jpg", "C_hand_real_grip_15.jpg"} <= held
    assert not any(r["file"] in held for r in result["rows"] if r["file"] == "C_hand_ai_malformed_04.jpg")
    assert result["parts"]["held_out"]["n"] == {"real": 4, "malformed": 4, "no hand": 18}


def test_fitted_figures_on_the_fit_part(evaluation):
    _, result = evaluation
    fit = result["parts"]["fit"]
    assert result["threshold"] == pytest.approx(0.7)
    assert fit["auc"] >= 0.9 and fit["malformed_accepted"] == 0.0


def test_held_out_figures(evaluation):
    # Regression figures of the held-out part, as measured (targets: AUC >= 0.9, no malformed
    # hand accepted). The six-digit hand is caught by the picture under its skeleton (a finger
    # chain threaded through a gap); the "boneless" hand (C_hand_ai_malformed_15) has a plausible
    # skeleton lying on its fingers and is caught by the finger separation (two of its chains on
    # one finger), counted as fitted. One of the four real grips (greyscale) is not found by
    # MediaPipe even in tiles, and fails closed.
    # Measured: AUC 0.97 [0.88, 1.00]; accepted precision 1.00, recall 0.75; no malformed
    # accepted; per-hand anatomy AUC 1.00 (7 of 9 found).
    _, result = evaluation
    held = result["parts"]["held_out"]
    assert held["auc"] >= 0.9
    assert held["recall"] >= 0.75
    assert held["malformed_accepted"] == 0.0 and held["malformed_accepted_files"] == []
    assert held["no_hand_accepted"] == 0
    assert held["auc_anatomy_per_hand"] >= 0.95


def test_the_finger_separation_is_fitted_on_synthetic_fused_fingers_of_the_fit_part(evaluation):
    # the fit part has no hand with two chains on one digit: its evidence is synthetic, built on
    # its own real photos (never on the held-out part). Measured: 27 synthetic hands, 3 flagged
    # on the photo (the others are not judged: fingers too few pixels wide, or a chain off the
    # hand), AUC 0.55; augmented, each of the 3 stays flagged or is not judged (one flipped,
    # rotated +20 degrees or shrunk to 0.6), none is judged separated, and no real hand of the fit
    # part is flagged in any augmented photo: on
    _, result = evaluation
    assert result["n_synthetic_fit"] > 0
    flagged = result["synthetic_flagged_fit"]
    kept, abstained = result["synthetic_kept_fit"], result["synthetic_abstained_fit"]
    contradicted = result["synthetic_contradicted_fit"]
    assert all(kept[a] + abstained[a] + contradicted[a] == flagged for a in kept)
    robust = not any(contradicted.values()) and not any(result["real_flagged_augmented_fit"].values())
    assert result["checks"] == {
        "separation": result["check_auc_fit"]["separation"] > 0.5 and flagged > 0 and robust
    }
    assert result["checks"] == result["config_checks"]  # the shipped default is the fitted choice
    assert result["checks"] == {"separation": True}  # as measured: a regression turns it off
    fit_real = [r for r in result["rows"] if r["part"] == "fit" and r["kind"] == "real" and r["hands"]]
    synthetic = [v for r in fit_real for v in r["synthetic_separation"]]
    assert len(synthetic) == result["n_synthetic_fit"]
    assert sum(v["original"] is not None and v["original"] < 0.7 for v in synthetic) == flagged > 0
    assert all(r["components"]["separation"] >= 0.7 for r in fit_real)  # no real one is flagged
    assert all(set(r["real_separation_augmented"]) == set(kept) for r in fit_real)
    assert not any("synthetic_separation" in r for r in result["rows"] if r["kind"] != "real")
    # the other choice, for reference (not fitted): not counted, the boneless hand is accepted
    other = result["held_out_other_choice"]["separation"]
    assert other["counted"] is not result["checks"]["separation"]
    assert other["malformed_accepted_files"] == ["C_hand_ai_malformed_15.jpg"]


def test_the_kinematic_residual_is_measured_on_the_fit_part_and_not_counted(evaluation):
    # the kinematic model's residual, on the image landmarks and on MediaPipe's 3D (world)
    # landmarks. Measured: world residual AUC 0.50 on the fit part (0.54 with its 144 synthetic
    # malformations, 21 of them past the tolerance 0.054), 0.67 held out; past the tolerance
    # held out: malformed_15 and _17, and the real grip_15 (0.058). Not a rule: the fit part does
    # not support it, and under --augment the fit part's small real strap hand passes it 5 times
    _, result = evaluation
    world = result["world_fit"]
    fit_real = [r for r in result["rows"] if r["part"] == "fit" and r["kind"] == "real"]
    residuals = [h["world_residual"] for r in fit_real for h in r["hands"] if h["world_residual"] is not None]
    assert world["tolerance"] == max(residuals)
    assert world["past_tolerance"]["fit"]["real"] == []
    with_world = sum(1 for r in fit_real for h in r["hands"] if h["world"] is not None)
    assert world["synthetic"]["n"] == 18 * with_world > 0  # 18 malformations per real hand
    assert 0.4 <= world["auc"]["world_residual fit, with synthetic"] < 0.7
    from autoshoot.config.score import ScoreConfig

    assert not hasattr(ScoreConfig, "world_fit")  # measured only: no switch, no rule


def test_anatomical_negatives_are_the_malformations_named(evaluation):
    import numpy as np

    from autoshoot.hands.anatomy import bone_lengths, canonical_hand
    from autoshoot.hands.kinematic import fit_hand

    module, _ = evaluation
    hand = canonical_hand(palm_length=100.0, curl_deg=15.0)  # the fit does not depend on the unit
    bad = module.anatomical_negatives(hand)
    assert len(bad) == 18
    assert bone_lengths(bad["finger 2 1.6x"])[2, 2:].sum() == pytest.approx(
        1.6 * bone_lengths(hand)[2, 2:].sum()
    )
    assert np.array_equal(bad["finger 2 1.6x"][:10], hand[:10])
    assert bone_lengths(bad["thumb 1.6x"])[0, 2:].sum() == pytest.approx(
        1.6 * bone_lengths(hand)[0, 2:].sum()
    )
    breadth = np.linalg.norm(bad["splayed knuckles"][17] - bad["splayed knuckles"][5])
    assert breadth == pytest.approx(1.6 * np.linalg.norm(hand[17] - hand[5]))
    # bent backwards: the fingertip moves to the back of the hand (+z here: the fingers curl to -z)
    assert bad["finger 2 bent backwards"][12, 2] > hand[12, 2] + 10.0
    # a synthetic over-long finger lies farther from the anatomical skeleton than the hand it came from
    assert fit_hand(bad["finger 2 1.6x"]).moved > 2 * fit_hand(hand).moved


def test_a_fused_pair_lies_on_one_finger(evaluation):
    import numpy as np

    from autoshoot.hands.anatomy import measure_palm_length
    from autoshoot.hands.evidence import FINGER_BREADTH

    module, _ = evaluation
    hand = np.zeros((21, 3))
    for f, x in zip(range(5), (-2.0, -1.0, 0.0, 1.0, 2.0), strict=True):  # five straight chains, 1 apart
        for j in range(4):
            hand[1 + 4 * f + j] = (x * 20, -40 - 20 * j, 0)
    hand[0] = (0, 0, 0)
    fused = module.fuse_pair(hand, 3, 4)  # the little finger's chain on the ring finger
    half = module.FUSED_OFFSET * FINGER_BREADTH * measure_palm_length(hand)
    for h, o in ((14, 18), (15, 19), (16, 20)):
        assert fused[h, 0] == pytest.approx(hand[h, 0] - half) and fused[o, 0] == pytest.approx(
            hand[h, 0] + half
        )
        assert fused[h, 1] == fused[o, 1] == hand[h, 1]
    assert np.array_equal(fused[:14], hand[:14]) and np.array_equal(fused[17], hand[17])


def test_weights_are_fitted_on_the_fit_part_and_are_the_defaults(evaluation):
    # a hand component that does not rank real above malformed on the fit part weighs 0; the
    # config's defaults are those fitted weights, so the figures above are the shipped scorer's
    _, result = evaluation
    assert result["weights"] == result["config_weights"]
    for name, value in result["component_auc_fit"].items():
        assert (result["weights"][name] > 0) == (value > 0.5), name


def test_nothing_without_a_visible_hand_is_accepted(evaluation):
    _, result = evaluation
    for row in result["rows"]:
        if row["kind"] == "no hand":
            assert row["hand_score"] < result["config_threshold"], row["file"]
            assert row["reasons"], row["file"]


def test_every_fit_part_malformed_hand_goes_to_review(evaluation):
    _, result = evaluation
    for row in result["rows"]:
        if row["kind"] == "malformed" and row["part"] == "fit":
            assert row["hand_score"] < result["threshold"], row["file"]
            assert row["reasons"], row["file"]


def test_single_person_real_hands_that_are_found_are_accepted(evaluation):
    _, result = evaluation
    for row in result["rows"]:
        if row["kind"] == "real" and row["hands"] and not any("faces" in r for r in row["reasons"]):
            assert row["hand_score"] >= result["threshold"], (row["file"], row["reasons"])


def test_threshold_fit_and_metrics(evaluation):
    module, _ = evaluation
    kinds = ["real", "real", "malformed", "no hand"]
    # safe and full recall from 0.55 to 0.80: the centre 0.675 rounds up (fail closed) to 0.70
    assert module.fit_threshold([0.9, 0.8, 0.5, 0.4], kinds) == pytest.approx(0.7)
    m = module.accept_metrics([0.9, 0.6, 0.75, 0.1], kinds, 0.7)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["malformed_accepted"] == 1.0


def test_speed_guard(evaluation):
    # the target is <= 150 ms on one core (bench/hands_eval.py pins one); this guard only
    # catches a multiplied number of MediaPipe calls, not machine noise
    _, result = evaluation
    assert result["ms_per_1024_candidate"] < 450


def test_auc_counts_ties_half(evaluation):
    module, _ = evaluation
    assert module.auc([0.9, 0.5, 0.5], [1, 1, 0]) == pytest.approx(0.75)
    assert module.auc([0.1, 0.9], [1, 0]) == 0.0


def test_a_wrong_verdict_is_named_by_its_kind(evaluation):
    # --augment counts, per augmentation, the verdicts at the threshold that it turns wrong
    module, _ = evaluation
    assert module.wrong_verdict(0.7, "malformed", 0.7) == "malformed_accepted"  # the threshold accepts
    assert module.wrong_verdict(0.69, "malformed", 0.7) is None
    assert module.wrong_verdict(0.69, "real", 0.7) == "real_refused"
    assert module.wrong_verdict(0.95, "real", 0.7) is None


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


def test_cross_validation_folds_are_fixed_and_figures_hold(evaluation):
    module, result = evaluation
    rows = result["rows"]
    folds = module.fold_of(rows)
    assert set(folds) == {r["file"] for r in rows} and set(folds.values()) == {0, 1, 2}
    for fold in range(3):  # every fold holds real, malformed and no-hand images
        assert {r["kind"] for r in rows if folds[r["file"]] == fold} == set(module.KINDS)
    assert module.fold_of(list(reversed(rows))) == folds  # by name, not by order
    cv = result["cross_validation"]
    # measured: AUC 0.98 [0.91, 1.00]; one malformed hand accepted out of fold
    # (C_hand_ai_malformed_01, 0.486: its fold's threshold is fitted at 0.45, below the real
    # photo of three people, 0.497); no image without a hand accepted
    assert cv["auc"] >= 0.9
    assert set(cv["malformed_accepted_files"]) <= {"C_hand_ai_malformed_01.jpg"}
    assert cv["no_hand_accepted"] == 0
    # the finger separation's switch is fitted on in every fold
    assert [fold["checks"]["separation"] for fold in cv["per_fold"]] == [True, True, True]

"""Regression test: the geometry's figures on the real packshots must not drop below the targets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "geometry_eval.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("geometry_eval", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.samples
def test_white_packshots_hold_their_figures(samples_dir):
    """The figures measured on the packshots not used for fitting (``held_out``) and on the
    fitted ones must not drop. One is below the issue's targets (IoU 0.95 everywhere: contact
    shadows of AI renders); ``python bench/geometry_eval.py`` lists what is missed and why."""
    bench = load_bench()
    report = bench.run(samples_dir, segmenter="auto", speed_side=0)
    held, fit = report["summary"]["held_out/plain"], report["summary"]["fit/plain"]
    assert held["n"] >= 8 and fit["n"] >= 8
    # a product never sits on both sides of the split
    sides = {}
    for r in report["results"]:
        sides.setdefault(bench.product_of(r["file"]), set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    # never cut into a bag without a visible handle
    assert held["no_handle_n"] >= 1 and held["no_handle_erased"] == 0
    assert report["summary"]["plain"]["no_handle_erased"] == 0
    # held-out figures (measured: kind 10/10, grip 9/9, every hole point background, min IoU 0.906)
    assert held["kind_right_frac"] == 1.0
    assert held["grip_ok_frac"] >= bench.TARGETS["grip_ok_frac"]
    assert held["hole_bg_frac"] == 1.0
    assert held["min_bbox_iou"] >= 0.9
    # the mask covers its share of the true box (measured: mean 0.743 held out, 0.731 fit); a
    # shadow rule that peels dark panels of the bags drops it (0.712 held out) while the box IoU
    # still rises, so the IoU alone cannot guard the shadow peel
    assert all(0.0 < r["box_fill"] <= 1.0 for r in report["results"])
    assert held["mean_box_fill"] >= 0.72
    assert fit["mean_box_fill"] >= 0.71
    # fitted figures (measured: kind 16/17, grip 16/16, every hole point background, min IoU 0.94)
    assert fit["kind_right_frac"] >= 0.94
    assert fit["grip_ok_frac"] == 1.0
    assert fit["hole_bg_frac"] == 1.0
    assert fit["min_bbox_iou"] >= 0.93
    # the misses are reported, not hidden
    misses = bench.check_targets(report["summary"], None)
    assert any("handle kind" in m for m in misses) == (
        held["kind_right_frac"] < bench.TARGETS["kind_right_frac"]
    )
    assert any("bbox IoU" in m for m in misses) == (held["min_bbox_iou"] < bench.TARGETS["min_bbox_iou"])
    # photographic backgrounds need a model; without weights the run says so per image
    photo = [r for r in report["results"] if r["background"] == "photo"]
    assert photo and all("model missing" in r["note"] for r in photo)


@pytest.mark.samples
def test_plain_is_fast_enough(samples_dir):
    """Target: 0.5 s per 1500-px packshot on one core. The test machine is shared, so it
    allows twice that; ``python bench/geometry_eval.py`` reports the real figure."""
    bench = load_bench()
    from dataclasses import replace

    from autoshoot.config import load_config

    config = load_config("default")
    config = replace(config, prepare=replace(config.prepare, segmenter="plain"))
    rows = [r for r in bench.read_truth(samples_dir) if r["background"] == "plain"][:3]
    seconds = bench.measure_speed(rows, samples_dir, config, 1500)
    assert max(seconds) <= 2 * bench.TARGETS["max_seconds"], seconds


@pytest.mark.samples
def test_a_camera_size_photo_is_prepared_on_its_working_copy(samples_dir):
    """--big-side: a white packshot enlarged to a camera original's size, prepared on its working
    copy (prepare.work_side) and on the whole photo in one run, gives the same answer."""
    bench = load_bench()
    from dataclasses import replace

    from autoshoot.config import load_config

    config = load_config("default")
    config = replace(config, prepare=replace(config.prepare, segmenter="plain", work_side=1024))
    rows = [r for r in bench.read_truth(samples_dir) if r["file"] == "A_packshot_backpack_white_01.jpg"]
    big = bench.measure_big_photos(rows, samples_dir, config, 2048, 1)
    (r,) = big["images"]
    assert big["work_side"] == 1024 and r["size"] == [round(1080 * 2048 / 1340), 2048]
    assert r["same_kind"] and r["kind_right"] == {"whole": True, "work": True}
    assert r["grip_shift"] < 0.02 and r["bbox_iou"] > 0.99 and r["mask_iou"] > 0.97
    assert r["grip_error"]["work"] <= bench.TARGETS["grip_max_error"]


@pytest.mark.samples
def test_the_resolution_study_scores_each_size_against_the_truth_scaled_alike(samples_dir):
    bench = load_bench()
    from autoshoot.config import load_config

    rows = [r for r in bench.read_truth(samples_dir) if r["file"] == "A_packshot_messenger_white_03.jpg"]
    study = bench.resolution_study(rows, samples_dir, load_config("default"), [900])
    assert set(study) == {"original", "900"}
    for r in study.values():  # this bag holds its answer at both sizes (measured)
        assert r["n"] == 1 and r["kind_right"] == 1 and r["grip_ok"] == r["grip_n"] == 1
        assert r["min_bbox_iou"] > 0.95 and r["misses"] == []


def test_each_augmentation_moves_the_truth_with_the_picture():
    """A red bag with a blue grip mark on a vignetted backdrop: under every augmentation the
    moved grip point still lands on the mark, and the moved box (where the picture keeps one)
    still holds the bag and nothing beside it."""
    import numpy as np

    bench = load_bench()
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    vignette = 235 - 30 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    rgb = np.repeat(vignette[..., None], 3, axis=2).astype(np.uint8)
    rgb[100:250, 120:300] = (200, 30, 30)
    rgb[105:115, 200:210] = (20, 20, 220)  # the grip mark: 10 px square centred on (204.5, 109.5)
    truth = {"box": [120.0, 100.0, 300.0, 250.0], "grip": (204.5, 109.5), "hole": None}
    for name in bench.AUGMENTATIONS:
        out, moved = bench.augment_packshot(rgb, truth, name)
        gx, gy = (round(v) for v in moved["grip"])
        assert abs(int(out[gy, gx, 2]) - 220) < 40 and out[gy, gx, 0] < 70, (name, out[gy, gx])
        if name == "rot5":
            assert moved["box"] is None
            continue
        x0, y0, x1, y1 = (round(v) for v in moved["box"])
        inside = out[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].reshape(-1, 3)
        assert (inside[:, 0] > 120).mean() > 0.99, name  # the red bag (and its blue mark) fill the box
        if name != "crop":  # crop keeps 8% round the box; the rest of the picture is backdrop
            assert out[y0 - 4, (x0 + x1) // 2, 1] > 150 and out[(y0 + y1) // 2, x1 + 3, 1] > 150, name
    with pytest.raises(ValueError, match="choose from"):
        bench.augment_packshot(rgb, truth, "sepia")


@pytest.mark.samples
def test_a_mirrored_packshot_gets_the_mirrored_answer(samples_dir):
    """--augment flip: the geometry has no left or right. Mirrored, each packshot keeps its kind,
    its grip verdict and its box (measured on all 27 white packshots: every figure the same)."""
    bench = load_bench()
    from autoshoot.config import load_config

    names = {
        "A_packshot_tote_white_01.jpg",
        "A_packshot_duffle_white_36.jpg",
        "A_packshot_backpack_white_07.jpg",
    }
    rows = [r for r in bench.read_truth(samples_dir) if r["file"] in names]
    study = bench.augment_study(rows, samples_dir, load_config("default"), ("flip",))
    for split in ("fit", "held_out"):
        original, flipped = study["original"][split], study["flip"][split]
        assert flipped["changed"] == []
        for key in ("n", "kind_right", "grip_ok", "grip_n", "hole_bg", "cut_without_handle"):
            assert flipped[key] == original[key], (split, key)
        if original["n"]:
            assert abs(flipped["min_bbox_iou"] - original["min_bbox_iou"]) < 0.01
    assert sum(study["original"][s]["n"] for s in ("fit", "held_out")) == 3


@pytest.mark.samples
def test_a_grey_render_squared_with_white_keeps_its_answer(samples_dir):
    """--augment pad_white: two grey studio renders squared with pure white, as catalogs do.
    The pad is found and the answers are the photos' own; with the pad's detection off (the
    baseline the study runs alongside) the renders' grey backdrop is taken for product."""
    bench = load_bench()
    from autoshoot.config import load_config

    names = {"A_packshot_duffle_white_53.jpg", "A_packshot_duffle_white_55.jpg"}
    rows = [r for r in bench.read_truth(samples_dir) if r["file"] in names]
    study = bench.augment_study(rows, samples_dir, load_config("default"), ("pad_white",))
    assert set(study) == {"original", "pad_white", "pad_white/no_pad_detection"}
    original, padded = study["original"]["fit"], study["pad_white"]["fit"]
    baseline = study["pad_white/no_pad_detection"]["fit"]
    assert original["n"] == padded["n"] == 2 and original["kind_right"] == 2
    assert padded["kind_right"] == padded["grip_ok"] == 2 and padded["changed"] == []
    # measured 0.89 against 0.94 as it is: one render's box runs on to its photo's right edge
    assert padded["min_bbox_iou"] > 0.85
    # measured: both lose their handles, box IoU 0.41 and 0.43
    assert baseline["kind_right"] == 0 and baseline["min_bbox_iou"] < 0.6

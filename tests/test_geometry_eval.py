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


@pytest.fixture(scope="module")
def auto_report(samples_dir):
    return load_bench().run(samples_dir, segmenter="auto", speed_side=0)


@pytest.mark.samples
def test_white_packshot_figures_do_not_regress(auto_report):
    """Floors just under what the geometry measured on all 27 white packshots when 24 were added
    (IoU min 0.61 / mean 0.935, grip 72%, hole 96%, kind 74%); the issue's targets are below."""
    white = auto_report["summary"]["plain"]
    assert white["n"] >= 27 and white["segmenters"] == ["plain"]
    assert white["mean_bbox_iou"] >= 0.93
    assert white["grip_ok_frac"] >= 0.70
    assert white["hole_bg_frac"] >= 0.95
    assert white["kind_right_frac"] >= 0.70
    # photographic backgrounds need a model; without weights the run says so per image
    photo = [r for r in auto_report["results"] if r["background"] == "photo"]
    assert photo and all("model missing" in r["note"] for r in photo)


@pytest.mark.samples
@pytest.mark.xfail(
    strict=True,
    reason="issue 16 is open: handle kind right on 74%, grip on 72%, box IoU down to 0.61 on grey "
    "studio renders, against targets of 90%, 90% and 0.95",
)
def test_white_packshots_meet_the_targets(samples_dir):
    bench = load_bench()
    report = bench.run(samples_dir, segmenter="auto", speed_side=0)
    white = report["summary"]["plain"]
    assert white["n"] >= 8
    assert white["segmenters"] == ["plain"]  # auto picks plain for every white packshot
    assert white["min_bbox_iou"] >= bench.TARGETS["min_bbox_iou"]
    assert white["grip_ok_frac"] >= bench.TARGETS["grip_ok_frac"]
    assert white["hole_bg_frac"] == 1.0
    assert white["kind_right_frac"] >= bench.TARGETS["kind_right_frac"]
    assert white["topology_right_frac"] >= 0.85  # the openings alone, without the category prior
    assert bench.check_targets(report["summary"], None) == []
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

"""The score stage on a real candidate folder: grip mapping, overlays, the stage.json shape."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from autoshoot.catalog import Row
from autoshoot.config import Config, load_config
from autoshoot.config.score import ScoreConfig
from autoshoot.io import atomic_write_json
from autoshoot.stages.base import Job, Sessions
from autoshoot.stages.score import ScoreStage, grip_from_prepared, product_box_from_prepared

# the hand checks on photos; the second-bag rule is tested with its own detector below and in
# test_bag_detector.py (the default detector's weights are not here)
NO_BAG_RULE = Config(score=ScoreConfig(bag_detector="none"))


def test_grip_from_prepared_maps_input_to_canvas():
    prepared = {
        "grip": [100, 50],
        "erase_polygon": [[90, 40], [110, 40], [110, 60], [90, 60]],
        "placement": {"scale": 2.0, "offset": [10, 20]},
    }
    grip, polygon = grip_from_prepared(prepared)
    assert grip == (210.0, 120.0)
    assert polygon[0] == (190.0, 100.0) and polygon[2] == (230.0, 140.0)
    # an explicit canvas grip wins; no handle means no grip
    assert grip_from_prepared({**prepared, "grip_canvas": [5, 6]})[0] == (5.0, 6.0)
    assert grip_from_prepared(
        {"grip": None, "erase_polygon": [], "placement": {"scale": 1, "offset": [0, 0]}}
    ) == (None, None)


def test_product_box_from_prepared_maps_input_to_canvas():
    prepared = {"product_bbox": [40, 30, 240, 330], "placement": {"scale": 2.0, "offset": [10, 20]}}
    assert product_box_from_prepared(prepared) == (90.0, 80.0, 490.0, 680.0)
    canvas = {**prepared, "product_bbox_canvas": [1, 2, 3, 4]}
    assert product_box_from_prepared(canvas) == (1.0, 2.0, 3.0, 4.0)
    assert product_box_from_prepared({"product_bbox": [40, 30, 240, 330]}) == (40.0, 30.0, 240.0, 330.0)
    assert product_box_from_prepared({"grip": [1, 2]}) is None


def make_job(
    tmp_path: Path, samples_dir: Path | None, with_prepare: bool = True, config: Config = NO_BAG_RULE
) -> Job:
    """Two candidates: sample photos, or (``samples_dir`` None) two 600x800 grey canvases."""
    composite = tmp_path / "composite"
    composite.mkdir()
    cands = []
    for i, name in enumerate(["B_holding_backpack_strap_01.jpg", "C_hand_ai_malformed_04.jpg"]):
        target = composite / f"c{i}.png"
        if samples_dir is None:
            Image.new("RGB", (600, 800), (200 - 40 * i, 200, 200)).save(target)
        else:
            Image.open(samples_dir / name).convert("RGB").save(target)
        cands.append({"index": i, "seed": 7 + i, "image": f"c{i}.png"})
    atomic_write_json(composite / "stage.json", {"candidates": cands})
    inputs = {"composite": composite}
    if with_prepare:
        prepare = tmp_path / "prepare"
        prepare.mkdir()
        # the backpack hand sits near (300, 705) of the candidate; placement halves input px
        atomic_write_json(
            prepare / "stage.json",
            {
                "grip": [600, 1410],
                "erase_polygon": [[580, 1390], [620, 1390], [620, 1430], [580, 1430]],
                "product_bbox": [400, 1000, 800, 1500],
                "placement": {"scale": 0.5, "offset": [0, 0]},
            },
        )
        inputs["prepare"] = prepare
    row = Row(row_number=2, sku="SKU-1", image="x.png", fields={})
    return Job(
        row=row,
        image_path=tmp_path / "x.png",
        image_sha256="0",
        seed=7,
        candidates=2,
        work_dir=tmp_path,
        config=config,
        sessions=Sessions(),
        inputs=inputs,
    )


@pytest.mark.samples
def test_score_stage_scores_each_candidate(tmp_path, samples_dir):
    pytest.importorskip("mediapipe")
    job = make_job(tmp_path, samples_dir)
    out = tmp_path / "score"
    out.mkdir()
    stage = ScoreStage()
    result = stage.run(job, out)
    json.dumps(result)  # JSON-able
    assert result["grip"] == [300.0, 705.0]
    assert result["product_box"] == [200.0, 500.0, 400.0, 750.0]
    cands = result["candidates"]
    assert [c["index"] for c in cands] == [0, 1]
    for c in cands:
        assert (out / c["overlay"]).is_file()
        assert (out / c["image"]).resolve() == (tmp_path / "composite" / f"c{c['index']}.png").resolve()
        assert set(c) >= {"hand_score", "components", "reasons", "hands", "bags"}
        assert c["bags"] == []  # the rule is off
    good, bad = cands
    assert "grip" in good["components"] and good["components"]["grip"] > 0.5
    assert good["hand_score"] > bad["hand_score"]
    # the scorer is built once per run and reused
    assert job.sessions.loaded() == ["hand_scorer:mediapipe"]
    shutil.rmtree(out)
    out.mkdir()
    stage.run(job, out)
    assert job.sessions.loaded() == ["hand_scorer:mediapipe"]
    job.sessions.close()


@pytest.mark.samples
def test_score_stage_without_prepare_scores_without_grip(tmp_path, samples_dir):
    pytest.importorskip("mediapipe")
    job = make_job(tmp_path, samples_dir, with_prepare=False)
    out = tmp_path / "score"
    out.mkdir()
    result = ScoreStage().run(job, out)
    assert result["grip"] is None
    assert all("grip" not in c["components"] for c in result["candidates"])
    job.sessions.close()


def test_score_stage_is_light_and_declares_models():
    stage = ScoreStage()
    assert stage.name == "score" and stage.config_sections == ("score",)
    roles = [spec.role for spec in stage.models(Config())]
    assert roles == ["hand landmarks", "face + pose", "bag detector (scene: no second bag)"]
    assert stage.models(Config())[-1].source == "google/owlv2-base-patch16-ensemble"
    assert len(stage.models(NO_BAG_RULE)) == 2
    assert stage.check_models(NO_BAG_RULE) == []
    # offline (HF_HUB_OFFLINE=1 in the tests) and not in the cache: named before any SKU runs
    assert [m[0] for m in stage.check_models(Config())] == ["bag detector (scene: no second bag)"]


def test_score_stage_passes_the_placed_product_box_to_the_bag_rule(tmp_path):
    pytest.importorskip("mediapipe")
    from fakes import RecordingBagDetector

    from autoshoot.backends.mediapipe_hands import MediaPipeHandScorer

    config = load_config("tiny")
    job = make_job(tmp_path, None, config=config)
    # the product sits at (200, 500, 400, 750) of the canvas; a second bag at the top left
    detector = RecordingBagDetector(boxes=[(205, 505, 395, 745, 0.9), (20, 20, 150, 200, 0.8)])
    job.sessions.get("hand_scorer:mediapipe", lambda: MediaPipeHandScorer(config, bag_detector=detector))
    out = tmp_path / "score"
    out.mkdir()
    result = ScoreStage().run(job, out)
    assert result["product_box"] == [200.0, 500.0, 400.0, 750.0]
    assert detector.calls == [((800, 600, 3), "uint8")] * 2
    for cand in result["candidates"]:
        assert "2 bags" in cand["reasons"]
        assert [b["is_product"] for b in cand["bags"]] == [True, False]
    job.sessions.close()


def test_tiny_profile_scores_with_the_tiny_random_detector(tmp_path):
    pytest.importorskip("mediapipe")
    pytest.importorskip("transformers")
    job = make_job(tmp_path, None, config=load_config("tiny"))
    out = tmp_path / "score"
    out.mkdir()
    result = ScoreStage().run(job, out)
    scorer = job.sessions.get("hand_scorer:mediapipe", lambda: None)
    assert type(scorer.bag_detector).__name__ == "ZeroShotBagDetector"
    assert type(scorer.bag_detector.model).__name__ == "Owlv2ForObjectDetection"
    assert result["product_box"] == [200.0, 500.0, 400.0, 750.0]
    for cand in result["candidates"]:
        assert "scene" in cand["components"]
        for bag in cand["bags"]:  # random weights: any boxes, but in canvas pixels
            x0, y0, x1, y1 = bag["box"]
            assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 800
            assert bag["score"] >= job.config.score.bag_threshold and isinstance(bag["is_product"], bool)
        n_second = sum(1 for b in cand["bags"] if not b["is_product"])
        said = [r for r in cand["reasons"] if r.endswith(" bags")]
        assert said == ([f"{n_second + 1} bags"] if n_second else [])
    job.sessions.close()


class RecordingScorer:
    """A hand scorer that records the keyword arguments of each call."""

    def __init__(self):
        self.calls = []

    def score(self, image, **kwargs):
        from autoshoot.types import HandScore

        self.calls.append(kwargs)
        return HandScore(file=kwargs.get("file", ""), hand_score=0.5, hands=[], reasons=[], components={})


def test_score_stage_passes_the_briefs_shot_to_the_scorer(tmp_path):
    # a close-up brief must reach the scorer, which then does not call a lone hand "without a body"
    job = make_job(tmp_path, None, config=load_config("tiny"))
    analyze = tmp_path / "analyze"
    analyze.mkdir()
    atomic_write_json(analyze / "stage.json", {"brief": {"shot": "close"}, "prompt": "p"})
    job.inputs["analyze"] = analyze
    scorer = job.sessions.get("hand_scorer:mediapipe", RecordingScorer)
    out = tmp_path / "score"
    out.mkdir()
    ScoreStage().run(job, out)
    assert [call["shot"] for call in scorer.calls] == ["close", "close"]


def test_the_scorer_is_told_how_much_a_candidate_was_enlarged(tmp_path):
    # a candidate drawn at the 1024-px canvas and upscaled to 2048 px holds half a pixel of
    # drawn detail per pixel: the finger separation must not read a blurred seam as none
    from autoshoot.stages.score import detail_scale

    assert detail_scale({"canvas_size": [1024, 768], "final_size": [2048, 1536]}) == 0.5
    assert detail_scale({"canvas_size": [1024, 768], "final_size": [1024, 768]}) == 1.0
    assert detail_scale({"candidates": []}) == 1.0  # an older RUN does not say

    job = make_job(tmp_path, None, config=load_config("tiny"))
    stage_json = tmp_path / "composite" / "stage.json"
    composite = json.loads(stage_json.read_text())
    atomic_write_json(stage_json, {**composite, "canvas_size": [300, 400], "final_size": [600, 800]})
    scorer = job.sessions.get("hand_scorer:mediapipe", RecordingScorer)
    out = tmp_path / "score"
    out.mkdir()
    ScoreStage().run(job, out)
    assert [call["detail_scale"] for call in scorer.calls] == [0.5, 0.5]


@pytest.mark.samples
def test_candidates_scored_in_parallel_score_as_they_do_one_by_one(tmp_path, samples_dir):
    """score.parallel: each thread borrows its own MediaPipe graphs from the scorer's pool."""
    pytest.importorskip("mediapipe")
    results = {}
    for parallel in (1, 2):
        config = dataclasses.replace(
            NO_BAG_RULE, score=dataclasses.replace(NO_BAG_RULE.score, parallel=parallel)
        )
        folder = tmp_path / str(parallel)
        folder.mkdir()
        job = make_job(folder, samples_dir, config=config)
        out = folder / "score"
        out.mkdir()
        results[parallel] = ScoreStage().run(job, out)["candidates"]
        scorer = job.sessions.get("hand_scorer:mediapipe", lambda: None)
        # the pool built at most one set of graphs per candidate scored at once
        assert 1 <= len(scorer.detector._all) <= parallel
        job.sessions.close()
    for one, two in zip(results[1], results[2], strict=True):
        assert one["hand_score"] == pytest.approx(two["hand_score"], abs=1e-9)
        assert one["reasons"] == two["reasons"]

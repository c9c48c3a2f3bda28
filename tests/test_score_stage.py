"""The score stage on a real candidate folder: grip mapping, overlays, the stage.json shape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from autoshoot.catalog import Row
from autoshoot.config import Config
from autoshoot.io import atomic_write_json
from autoshoot.stages.base import Job, Sessions
from autoshoot.stages.score import ScoreStage, grip_from_prepared


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


def make_job(tmp_path: Path, samples_dir: Path, with_prepare: bool = True) -> Job:
    composite = tmp_path / "composite"
    composite.mkdir()
    cands = []
    for i, name in enumerate(["B_holding_backpack_strap_01.jpg", "C_hand_ai_malformed_04.jpg"]):
        target = composite / f"c{i}.png"
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
        config=Config(),
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
    cands = result["candidates"]
    assert [c["index"] for c in cands] == [0, 1]
    for c in cands:
        assert (out / c["overlay"]).is_file()
        assert (out / c["image"]).resolve() == (tmp_path / "composite" / f"c{c['index']}.png").resolve()
        assert set(c) >= {"hand_score", "components", "reasons", "hands"}
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
    assert stage.models(Config())
    assert stage.check_models(Config()) == []

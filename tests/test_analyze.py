"""The analyze stage (batched briefs, overrides, brand profiles, files, cache key) and its command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoshoot.catalog import Row
from autoshoot.config import load_config
from autoshoot.errors import StageError
from autoshoot.stages.analyze import AnalyzeStage
from autoshoot.stages.base import Job, Sessions

TOTE = "A_packshot_tote_white_01.jpg"
BACKPACK = "A_packshot_backpack_white_01.jpg"


def make_job(tmp_path: Path, image: Path, sku: str, config, **fields) -> Job:
    row = Row(
        row_number=2,
        sku=sku,
        image=str(image),
        fields={"sku": sku, "image": str(image), **fields},
        image_path=image,
    )
    return Job(
        row=row,
        image_path=image,
        image_sha256="0" * 64,
        seed=0,
        candidates=2,
        work_dir=tmp_path / sku,
        config=config,
        sessions=Sessions(),
    )


@pytest.mark.samples
def test_run_batch_writes_briefs_prompts_and_the_contract(tmp_path, samples_dir):
    config = load_config(
        "tiny",
        overrides={"analyze.brands": {"Acme": {"setting": "a white cyclorama", "lighting": "hard flash"}}},
    )
    sessions = Sessions()
    jobs = [
        make_job(tmp_path, samples_dir / TOTE, "T-1", config, title="Zip tote", brand="acme", shot="close"),
        make_job(
            tmp_path, samples_dir / BACKPACK, "B-1", config, title="Trail backpack", setting="a forest path"
        ),
    ]
    for job in jobs:
        job.sessions = sessions
    outs = [tmp_path / "out-t", tmp_path / "out-b"]
    results = AnalyzeStage().run_batch(jobs, outs)
    tote, backpack = results
    # the keys later stages read
    for result in results:
        brief = result["brief"]
        assert set(result) >= {
            "brief",
            "prompt",
            "negative_prompt",
            "prompt_version",
            "backend",
            "fallback_fields",
            "flags",
        }
        assert len(brief["product"]["size_cm"]) == 2 and brief["product"]["handle"] in (
            "top_loop",
            "twin_loops",
        )
        assert brief["hold_pose"] and brief["shot"] and "handle_box" in brief["product"]
        assert result["prompt"].endswith("high definition.") and "child" in result["negative_prompt"]
        json.dumps(result)  # JSON-able
    assert (
        tote["brief"]["product"]["category"] == "tote"
        and backpack["brief"]["product"]["category"] == "backpack"
    )
    # brand profile, then the row's own override
    assert tote["brief"]["setting"] == "a white cyclorama" and tote["brief"]["lighting"] == "hard flash"
    assert tote["brief"]["shot"] == "close" and "Close-up shot" in tote["prompt"]
    assert backpack["brief"]["setting"] == "a forest path"
    assert tote["overrides"] == {"lighting": "hard flash", "setting": "a white cyclorama", "shot": "close"}
    assert jobs[0].flags == []  # rules briefs are no fallback
    # files
    assert json.loads((outs[0] / "brief.json").read_text()) == tote["brief"]
    assert (outs[0] / "prompt.txt").read_text().startswith(tote["prompt"])
    assert sessions.loaded() == ["vlm:rules:"]


@pytest.mark.samples
def test_a_bad_override_fails_only_its_sku(tmp_path, samples_dir):
    config = load_config("tiny")
    jobs = [
        make_job(tmp_path, samples_dir / TOTE, "T-1", config, handle="none", hold_pose="beside_hip"),
        make_job(tmp_path, samples_dir / TOTE, "T-2", config),
    ]
    bad, good = AnalyzeStage().run_batch(jobs, [tmp_path / "a", tmp_path / "b"])
    assert isinstance(bad, StageError) and str(bad).startswith("row 2: hold_pose 'beside_hip' grips a handle")
    assert isinstance(good, dict)


def test_vlm_crash_falls_back_to_rules_for_the_batch(tmp_path):
    from PIL import Image

    image = tmp_path / "bag.png"
    Image.new("RGB", (300, 300), (20, 20, 20)).save(image)
    config = load_config("tiny")
    job = make_job(tmp_path, image, "X-1", config, title="Black briefcase")

    class Broken:
        name = "broken"

        def describe(self, requests):
            raise RuntimeError("CUDA out of memory")

    job.sessions.get("vlm:rules:", lambda: Broken())
    result = AnalyzeStage().run(job, tmp_path / "out")
    assert result["brief"]["product"]["category"] == "briefcase"
    assert result["fallback_fields"] == ["*"] and {"brief_fallback", "vlm_error"} <= set(job.flags)


def test_extra_key_changes_with_overrides_brand_and_text(tmp_path):
    config = load_config("tiny", overrides={"analyze.brands": {"Acme": {"setting": "a white cyclorama"}}})
    stage = AnalyzeStage()
    image = tmp_path / "x.png"
    base = stage.extra_key(make_job(tmp_path, image, "S", config))
    assert stage.extra_key(make_job(tmp_path, image, "S", config)) == base
    assert stage.extra_key(make_job(tmp_path, image, "S", config, shot="close")) != base
    assert stage.extra_key(make_job(tmp_path, image, "S", config, brand="Acme")) != base
    assert stage.extra_key(make_job(tmp_path, image, "S", config, title="Tote")) != base
    other_brand = load_config("tiny", overrides={"analyze.brands": {"Acme": {"setting": "a beach"}}})
    assert stage.extra_key(make_job(tmp_path, image, "S", other_brand, brand="Acme")) != stage.extra_key(
        make_job(tmp_path, image, "S", config, brand="Acme")
    )


def test_models_listing_stays_light():
    stage = AnalyzeStage()
    assert stage.models(load_config("tiny")) == []
    (spec,) = stage.models(load_config("default"))
    assert spec.source == "Qwen/Qwen2.5-VL-7B-Instruct" and "autoshoot models download" in spec.how_to_get


@pytest.mark.samples
def test_analyze_command_json(samples_dir, tmp_path):
    from autoshoot.cli import main

    out = tmp_path / "brief"
    result = CliRunner().invoke(
        main,
        [
            "analyze",
            str(samples_dir / TOTE),
            "--profile",
            "tiny",
            "--title",
            "Zip tote",
            "--json",
            "--override",
            "shot=half_body",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sku"] == Path(TOTE).stem and data["backend"] == "rules"
    assert data["brief"]["product"]["category"] == "tote" and data["brief"]["shot"] == "half_body"
    assert (
        data["prompt"].startswith("An adult")
        and (out / "brief.json").is_file()
        and (out / "prompt.txt").is_file()
    )


@pytest.mark.samples
def test_analyze_command_errors(samples_dir):
    from autoshoot.cli import main

    runner = CliRunner()
    bad = runner.invoke(
        main, ["analyze", str(samples_dir / TOTE), "--profile", "tiny", "--override", "shot=wide"]
    )
    assert bad.exit_code == 2
    assert "shot 'wide' is not allowed; allowed values are: close, half_body, full_body" in bad.output
    unknown = runner.invoke(main, ["analyze", str(samples_dir / TOTE), "--vlm", "gpt"], standalone_mode=False)
    assert "unknown VLM backend 'gpt'; valid names are: openai, qwen, rules" in str(unknown.exception)


def test_an_unreadable_image_fails_only_its_sku_when_the_vlm_fails(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (300, 300), (200, 30, 30)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    config = load_config("tiny")
    jobs = [
        make_job(tmp_path, broken, "BAD", config),
        make_job(tmp_path, good, "OK", config, title="Red tote"),
    ]
    sessions = Sessions()
    for job in jobs:
        job.sessions = sessions
    bad, ok = AnalyzeStage().run_batch(jobs, [tmp_path / "a", tmp_path / "b"])
    assert isinstance(bad, Exception) and "cannot identify image file" in str(bad)
    assert ok["brief"]["product"]["category"] == "tote" and ok["brief"]["product"]["colours"][0] == "red"
    assert ok["flags"] == [] and ok["backend"] == "rules"  # the rules batch was redone SKU by SKU

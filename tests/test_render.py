"""Stage 1 on tiny random SDXL components (CPU): sizes, seeds, the per-step ControlNet scale,
chunked long prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from render_fixtures import (
    CANVAS,
    LONG_PROMPT,
    make_job,
    make_pipeline_dirs,
    shared_tiny_renderer,
    tiny_config,
)

from autoshoot.backends.sdxl import DenoiseRequest, control_schedule, tokenize_chunks
from autoshoot.stages.base import Sessions
from autoshoot.stages.render import RenderStage, candidate_seeds, render_candidates


def test_render_stage_writes_canvas_sized_candidates_with_seeds(tmp_path):
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    tiny_renderer = shared_tiny_renderer()
    config = tiny_config()
    sessions = Sessions()
    sessions.get("renderer:sdxl", lambda: tiny_renderer)
    job = make_job(tmp_path, config, sessions, pipeline_dirs, seed=11, candidates=2)
    out = tmp_path / "render"
    out.mkdir()

    result = RenderStage().run(job, out)

    json.dumps(result)  # the runner saves it as stage.json
    assert [c["seed"] for c in result["candidates"]] == [11, 12]
    for c in result["candidates"]:
        im = Image.open(out / c["image"])
        assert im.size == CANVAS and im.mode == "RGB"
    a = np.asarray(Image.open(out / "c0.png"), dtype=np.int16)
    b = np.asarray(Image.open(out / "c1.png"), dtype=np.int16)
    assert np.abs(a - b).mean() > 1.0  # two seeds, two pictures
    assert result["control_scales_seen"] == control_schedule(config.render.steps, 0.4, 0.9, 0.2)


def test_control_scale_switches_from_04_to_09_at_20_percent(tmp_path):
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    tiny_renderer = shared_tiny_renderer()
    rc = tiny_config().render
    canvas = np.asarray(Image.open(pipeline_dirs["prepare"] / "canvas.png"))
    inpaint = np.asarray(Image.open(pipeline_dirs["prepare"] / "inpaint_mask.png"))
    canny = np.asarray(Image.open(pipeline_dirs["prepare"] / "control_canny.png"))
    import dataclasses

    rc10 = dataclasses.replace(rc, steps=10)
    _, info = render_candidates(tiny_renderer, rc10, canvas, inpaint, canny, "a woman holding a bag", "", [3])

    # the forward pre-hook recorded the scale the ControlNet saw at each of the 10 steps
    assert info["scales_seen"] == [0.4, 0.4] + [0.9] * 8
    # FreeU v2 is on with the reference's factors
    up = tiny_renderer.c.unet.up_blocks[0]
    assert (up.b1, up.b2, up.s1, up.s2) == (1.3, 1.4, 0.9, 0.2)


def test_candidate_re_renders_alone_from_its_seed(tmp_path):
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    tiny_renderer = shared_tiny_renderer()
    rc = tiny_config().render
    canvas = np.asarray(Image.open(pipeline_dirs["prepare"] / "canvas.png"))
    inpaint = np.asarray(Image.open(pipeline_dirs["prepare"] / "inpaint_mask.png"))
    canny = np.asarray(Image.open(pipeline_dirs["prepare"] / "control_canny.png"))
    seeds = candidate_seeds(100, 3)

    batch, _ = render_candidates(tiny_renderer, rc, canvas, inpaint, canny, LONG_PROMPT, "", seeds)
    alone, _ = render_candidates(tiny_renderer, rc, canvas, inpaint, canny, LONG_PROMPT, "", [seeds[2]])

    diff = np.abs(batch[2].astype(np.int16) - alone[0].astype(np.int16))
    assert diff.max() <= 2  # same picture; batched float arithmetic may round differently
    assert np.abs(batch[1].astype(np.int16) - alone[0].astype(np.int16)).mean() > 1.0


def test_long_prompts_are_chunked_not_truncated():
    tiny_renderer = shared_tiny_renderer()
    tok = tiny_renderer.c.tokenizer
    chunks = tokenize_chunks(tok, LONG_PROMPT)
    assert len(chunks) > 2 and all(len(c) == 77 for c in chunks)

    embeds, pooled = tiny_renderer.encode_prompt(LONG_PROMPT, "", 1)
    assert embeds.shape[1] == 77 * len(chunks)
    # a change at the very end of the prompt (past token 77) changes the conditioning
    changed, _ = tiny_renderer.encode_prompt(LONG_PROMPT[:-20] + "in a dark red dress.", "", 1)
    prompt_half = slice(1, 2)  # CFG order: negative first
    assert not np.allclose(embeds[prompt_half, -77:].numpy(), changed[prompt_half, -77:].numpy())
    # an empty negative prompt is zeros (SDXL's force_zeros_for_empty_prompt)
    assert float(embeds[0].abs().max()) == 0.0


def test_denoise_keeps_the_unmasked_area_close_to_the_source():
    tiny_renderer = shared_tiny_renderer()
    h = w = 256
    img = np.full((h, w, 3), 200, np.uint8)
    img[64:192, 64:192] = (30, 90, 160)
    mask = np.full((h, w), 255, np.uint8)
    mask[64:192, 64:192] = 0
    req = DenoiseRequest(
        images=[img], masks=[mask], controls=[[("canny", np.zeros((h, w), np.uint8))]], prompt="a bag",
        negative_prompt="", seeds=[1], steps=4, scales=[[0.9]] * 4, cfg=6.0,
    )  # fmt: skip
    res = tiny_renderer.denoise(req)
    assert res.images[0].shape == (h, w, 3)
    assert len(res.scales_seen) == 4


def test_bad_request_sizes_are_refused():
    tiny_renderer = shared_tiny_renderer()
    img = np.zeros((100, 100, 3), np.uint8)
    req = DenoiseRequest(
        images=[img], masks=[np.zeros((100, 100), np.uint8)], controls=[[("canny", img)]], prompt="x",
        negative_prompt="", seeds=[1], steps=2, scales=[[1.0]] * 2, cfg=1.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="multiples of 64"):
        tiny_renderer.denoise(req)


def test_stage1_renders_each_shot_at_its_sdxl_bucket():
    from autoshoot.config.prepare import PrepareConfig
    from autoshoot.geometry.place import canvas_size_for
    from autoshoot.stages.render import model_size

    # the shot canvases are SDXL ~1 MP buckets and render at their own size
    pc = PrepareConfig()
    for shot, bucket in (("full_body", (832, 1216)), ("half_body", (896, 1152)), ("close", (1024, 1024))):
        assert canvas_size_for(shot, pc) == bucket
        assert model_size(*bucket) == bucket
        assert 0.98e6 < bucket[0] * bucket[1] < 1.06e6
    # the landscape forms, and the nearest bucket for a canvas of any other shape
    assert model_size(1216, 832) == (1216, 832) and model_size(1152, 896) == (1152, 896)
    assert model_size(768, 1344) == (768, 1344)
    assert model_size(700, 1000) == (832, 1216)  # aspect 0.70: nearest is 0.684
    assert model_size(400, 400) == (1024, 1024)  # a small canvas still renders at 1 MP
    # the tiny profile scales the buckets by long_side / 1024, in multiples of 64
    assert model_size(208, 304, 256) == (192, 320)

"""The prepare recipe end to end: output files, the stage, the command, the segmenter backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from synthetic_bags import draw_bag

from autoshoot.backends import SEGMENTERS
from autoshoot.catalog import Row
from autoshoot.cli import main
from autoshoot.config import load_config
from autoshoot.errors import ModelMissingError
from autoshoot.geometry.pipeline import (
    OUTPUT_FILES,
    ProductHints,
    choose_segmenter,
    hints_from_brief,
    run_prepare,
)
from autoshoot.io import atomic_write_json
from autoshoot.stages.base import Job, Sessions
from autoshoot.stages.prepare import PrepareStage


def save_bag(path: Path, **kwargs) -> Path:
    bag = draw_bag(**kwargs)
    Image.fromarray(bag.image).save(path)
    return path


def test_run_prepare_writes_the_contract(tmp_path):
    image = save_bag(tmp_path / "bag.png", shadow=True)
    config = load_config("tiny")
    prepared = run_prepare(
        image, tmp_path / "out", config, ProductHints(category="handbag", shot="full_body")
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    info = json.loads((out / "prepare.json").read_text())
    assert info == json.loads(json.dumps(prepared.info))
    for key in (
        "product_bbox",
        "handle",
        "grip",
        "erase_polygon",
        "canvas_size",
        "placement",
        "hold_pose",
        "shot",
        "canvas_grip",
        "warnings",
        "fallbacks",
        "segmenter",
    ):
        assert key in info
    assert info["handle"] == "top_loop" and info["segmenter"] == "plain"
    assert len(info["erase_polygon"]) == 4
    # mask at input size, 255/0, opening is 0
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (600, 480) and set(np.unique(mask)) == {0, 255}
    w, h = info["canvas_size"]
    assert max(w, h) <= 336  # tiny profile: quarter-size canvas
    for name in ("canvas.png", "inpaint_mask.png", "control_canny.png"):
        assert Image.open(out / name).size == (w, h)
    # the placement is exact: the grip maps to the canvas grip
    s, (ox, oy) = info["placement"]["scale"], info["placement"]["offset"]
    assert info["canvas_grip"] == pytest.approx(
        [info["grip"][0] * s + ox, info["grip"][1] * s + oy], abs=0.01
    )
    # the erased gap is painted, the product body is kept
    inpaint = np.asarray(Image.open(out / "inpaint_mask.png"))
    gx, gy = (int(round(v)) for v in info["canvas_grip"])
    assert inpaint[gy, gx] == 255
    x0, y0, x1, y1 = info["product_bbox"]
    body = (int(((x0 + x1) / 2) * s + ox), int((y0 + 0.75 * (y1 - y0)) * s + oy))
    assert inpaint[body[1], body[0]] == 0


def test_no_handle_switches_pose_and_erases_nothing(tmp_path):
    image = save_bag(tmp_path / "plain_box.png", handle="none")
    prepared = run_prepare(image, tmp_path / "out", load_config("tiny"), ProductHints(hold_pose="beside_hip"))
    info = prepared.info
    assert info["handle"] == "none" and info["grip"] is None and info["erase_polygon"] == []
    assert info["hold_pose"] in ("cradled", "under_arm")
    assert "no_handle" in prepared.flags


def test_alpha_png_uses_its_alpha(tmp_path):
    bag = draw_bag(background=(10, 200, 10))  # the colour under the alpha does not matter
    rgba = np.dstack([bag.image, np.where(bag.mask, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cut.png")
    prepared = run_prepare(tmp_path / "cut.png", tmp_path / "out", load_config("tiny"))
    assert prepared.info["segmenter"] == "alpha"
    assert ((prepared.mask > 0) == bag.mask).mean() > 0.999


def test_hints_from_brief_are_tolerant():
    hints = hints_from_brief(
        {
            "product": {
                "category": "tote",
                "width": 40,
                "height": "35",
                "handle": "twin_loops",
                "handle_box": [1, 2, 3, 4],
            },
            "hold_pose": "in_front",
            "shot": "close",
        }
    )
    assert hints == ProductHints(
        "tote", (40.0, 35.0), "twin_loops", (1.0, 2.0, 3.0, 4.0), "in_front", "close"
    )
    assert (
        hints_from_brief({"product": {"category": "spaceship", "size_cm": "big"}, "shot": 3})
        == ProductHints()
    )
    assert hints_from_brief(None) == ProductHints()
    assert hints_from_brief({"product": {"size_cm": "38 x 30"}}).size_cm == (38.0, 30.0)


def make_job(tmp_path: Path, image: Path, brief: dict | None, config=None) -> Job:
    analyze = tmp_path / "analyze"
    analyze.mkdir()
    atomic_write_json(analyze / "stage.json", {"brief": brief, "prompt": "x"})
    row = Row(row_number=2, sku="SKU1", image=str(image), fields={}, image_path=image)
    return Job(
        row=row,
        image_path=image,
        image_sha256="0",
        seed=0,
        candidates=1,
        work_dir=tmp_path,
        config=config or load_config("tiny"),
        sessions=Sessions(),
        inputs={"analyze": analyze},
    )


def test_stage_reads_the_brief_and_returns_prepare_json(tmp_path):
    image = save_bag(tmp_path / "tote.png", handle="twin_loops")
    brief = {
        "product": {"category": "tote", "size_cm": [40, 38], "handle": "twin_loops", "handle_box": None},
        "hold_pose": "in_front",
        "shot": "full_body",
    }
    job = make_job(tmp_path, image, brief)
    stage = PrepareStage()
    assert stage.name == "prepare" and stage.config_sections == ("prepare",)
    out = tmp_path / "prepare"
    result = stage.run(job, out)
    assert result == json.loads((out / "prepare.json").read_text())
    assert result["handle"] == "twin_loops" and result["hold_pose"] == "in_front"
    assert result["size_cm"] == [40.0, 38.0]
    assert job.flags == []
    assert job.sessions.loaded() == ["segmenter:plain"]
    # no handle: the flag goes to the job
    job2 = make_job(
        tmp_path / "b", save_bag((tmp_path / "b").mkdir() or tmp_path / "b" / "box.png", handle="none"), {}
    )
    stage.run(job2, tmp_path / "b" / "prepare")
    assert job2.flags == ["no_handle"]


def test_stage_models_check(tmp_path):
    stage = PrepareStage()
    assert stage.models(load_config("tiny")) == []
    assert stage.check_models(load_config("default")) == []  # auto: model only needed for photos
    forced = load_config("default", overrides={"prepare.segmenter": "rembg", "run.offline": True})
    missing = stage.check_models(forced)
    assert len(missing) == 1 and "birefnet-general.onnx" in missing[0][2]  # rembg's own file name


def test_cli_prepare(tmp_path):
    image = save_bag(tmp_path / "bag.jpg")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "prepare",
            str(image),
            "--out",
            str(tmp_path / "o"),
            "--profile",
            "tiny",
            "--shot",
            "close",
            "--hold-pose",
            "forearm_crook",
            "--size-cm",
            "30x22",
            "--category",
            "handbag",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["size_cm"] == [30.0, 22.0] and info["hold_pose"] == "forearm_crook"
    assert (tmp_path / "o" / "debug.png").is_file()
    bad = runner.invoke(main, ["prepare", str(image), "--out", str(tmp_path / "o2"), "--size-cm", "big"])
    assert bad.exit_code == 2
    assert "write WIDTHxHEIGHT in cm, e.g. 38x30" in bad.output


# --- segmenter backends ---------------------------------------------------------------


def export_tiny_onnx(path: Path) -> Path:
    """A 2-layer conv net with rembg's I/O (N,3,H,W → N,1,H,W), random weights."""
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package (pip install onnx==1.17.0)")
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1)
    )
    torch.onnx.export(
        net,
        torch.randn(1, 3, 32, 32),
        str(path),
        input_names=["input.1"],
        output_names=["out"],
        dynamic_axes={"input.1": {2: "h", 3: "w"}, "out": {2: "h", 3: "w"}},
        dynamo=False,
    )
    return path


@pytest.mark.parametrize("name", ["rembg", "birefnet"])
def test_onnx_segmenters_load_and_predict(tmp_path, name, monkeypatch):
    model = export_tiny_onnx(tmp_path / ("u2netp.onnx" if name == "rembg" else "birefnet.onnx"))
    if name == "rembg":
        # the rembg package's own u2netp session, on a random model where rembg keeps its models
        # (the checksum of rembg's real file cannot match a random model)
        monkeypatch.setenv("U2NET_HOME", str(tmp_path))
        monkeypatch.setenv("MODEL_CHECKSUM_DISABLED", "1")
        config = load_config("tiny", overrides={"prepare.rembg_model": "u2netp"})
    else:
        config = load_config(
            "tiny", overrides={"prepare.birefnet_model": str(model), "prepare.birefnet_size": 64}
        )
    seg = SEGMENTERS.create(name, config)
    image = draw_bag(size=(120, 150)).image
    alpha = seg.predict(image)
    assert alpha.shape == (150, 120) and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and alpha.max() - alpha.min() > 0.5  # min-max scaled


def test_missing_models_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(
        ModelMissingError, match=r"download https://github.com/danielgatis/rembg/.*/u2net.onnx"
    ):
        SEGMENTERS.create("rembg", load_config("tiny", overrides={"prepare.rembg_model": "u2net"}))
    with pytest.raises(
        ModelMissingError,
        match=r"(?s)BiRefNet segmenter: ZhengPeng7/BiRefNet .*fix: run `autoshoot models download` \(about 0.9 GB",
    ):
        SEGMENTERS.create("birefnet", load_config("default", overrides={"run.offline": True}))


def test_auto_picks_plain_for_uniform_border_and_the_model_otherwise(tmp_path):
    config = load_config("default", overrides={"run.offline": True})
    bag = draw_bag()
    assert choose_segmenter(bag.image, config) == ("plain", True)
    rng = np.random.default_rng(1)
    photo = bag.image.copy()
    frame = np.ones(photo.shape[:2], bool)
    frame[40:-40, 40:-40] = False
    photo[frame] = rng.integers(0, 255, (int(frame.sum()), 3), dtype=np.uint8)
    assert choose_segmenter(photo, config) == ("rembg", False)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(ModelMissingError, match="--segmenter plain"):
        run_prepare(tmp_path / "photo.png", tmp_path / "out", config)


def test_cut_out_openings_are_blank_on_the_canvas(tmp_path):
    """An alpha that covers the strap gap (as models do): the gap is cut from mask.png and the
    canvas shows the neutral colour there, not a faint copy of the white background."""
    import cv2

    bag = draw_bag(double_strap=True)
    filled = cv2.morphologyEx(bag.mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    rgba = np.dstack([bag.image, np.where(filled > 0, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "filled.png")
    config = load_config("default")
    prepared = run_prepare(tmp_path / "filled.png", tmp_path / "out", config, ProductHints(shot="close"))
    gx, gy = bag.gap
    assert prepared.mask[gy, gx] == 0
    s, (ox, oy) = prepared.info["placement"]["scale"], prepared.info["placement"]["offset"]
    hx, hy = bag.hole
    cx, cy = int(round(hx * s + ox)), int(round(hy * s + oy))
    assert (prepared.canvas[cy, cx] == config.prepare.canvas_color).all()
    assert prepared.inpaint[cy, cx] == 255


def test_the_prompt_is_rendered_after_the_geometry(tmp_path):
    """The brief says "holds it by its top handle beside her hip"; the bag has no handle, so
    geometry switches to a pose without a grip, and the prompt that stage 1 uses says so."""
    import copy

    from autoshoot.brief import Brief
    from autoshoot.brief.prompt import EXAMPLE_BRIEF, render_prompt
    from autoshoot.stages.prepare import final_prompt

    brief = copy.deepcopy(EXAMPLE_BRIEF)
    brief["product"].update(handle="top_loop", category="handbag")
    brief.update(hold_pose="beside_hip", shot="full_body")
    before = render_prompt(Brief.from_data(brief))
    assert "by its top handle" in before
    job = make_job(tmp_path, save_bag(tmp_path / "box.png", handle="none"), brief)
    atomic_write_json(
        job.inputs["analyze"] / "stage.json", {"brief": brief, "prompt": before, "negative_prompt": "n"}
    )
    info = PrepareStage().run(job, tmp_path / "prepare")
    assert info["handle"] == "none" and info["hold_pose"] in ("cradled", "under_arm")
    assert "top handle" not in info["prompt"] and info["hold_pose"].replace("_", " ")[:5] in info["prompt"]
    assert any(c.startswith("hold_pose beside_hip -> ") for c in info["prompt_changes"])
    assert any(c.startswith("handle top_loop -> none") for c in info["prompt_changes"])
    # the later stages take the final prompt, not the brief's
    atomic_write_json(tmp_path / "prepare" / "stage.json", info)
    job.inputs["prepare"] = tmp_path / "prepare"
    assert final_prompt(job) == (info["prompt"], info["negative_prompt"])
    assert final_prompt(job)[0] != before


def test_an_implausible_size_is_flagged_not_placed(tmp_path):
    image = save_bag(tmp_path / "bag.png")
    config = load_config("tiny")
    sane = run_prepare(image, tmp_path / "a", config, ProductHints(category="handbag", size_cm=(30.0, 22.0)))
    assert sane.info["size_cm"] == [30.0, 22.0] and "size_implausible" not in sane.flags
    # a 106 cm handbag: flagged, placed at the category's default size
    odd = run_prepare(image, tmp_path / "b", config, ProductHints(category="handbag", size_cm=(40.0, 106.0)))
    assert "size_implausible" in odd.flags
    assert odd.info["size_cm"] == list(config.prepare.category_size_cm["handbag"])
    assert any("106" in w and "implausible" in w for w in odd.info["warnings"])
    assert odd.info["px_per_cm"] > sane.info["px_per_cm"] * 0.9  # not drawn at 106 cm
    # a tiny "other" product (a 3 cm thing) is flagged too
    assert (
        "size_implausible"
        in run_prepare(image, tmp_path / "c", config, ProductHints(size_cm=(2.0, 3.0))).flags
    )


@pytest.mark.parametrize("filename", ["my_u2net.onnx", "BiRefNet-custom.onnx"])
def test_rembg_runs_a_local_onnx_through_its_own_sessions(tmp_path, filename):
    import rembg.sessions.birefnet_general as birefnet_general
    from rembg.sessions.u2net_custom import U2netCustomSession

    model = export_tiny_onnx(tmp_path / filename)
    seg = SEGMENTERS.create("rembg", load_config("tiny", overrides={"prepare.rembg_model": str(model)}))
    expected = birefnet_general.BiRefNetSessionGeneral if "BiRefNet" in filename else U2netCustomSession
    assert isinstance(seg.session, expected)
    alpha = seg.predict(draw_bag(size=(90, 110)).image)
    assert alpha.shape == (110, 90) and alpha.dtype == np.float32 and alpha.max() <= 1.0


def test_hints_take_the_brief_grip_point():
    assert hints_from_brief({"product": {"grip_point": [12, "30.5"]}}).grip_point == (12.0, 30.5)
    assert hints_from_brief({"product": {"grip_point": "top"}}).grip_point is None


def test_a_large_photo_is_measured_on_its_working_copy(tmp_path):
    """prepare.work_side: the geometry runs on the photo shrunk to that long side, and everything
    it writes is in the input's pixels, as the whole photo's would be: the same handle, the grip
    within a few pixels, mask.png at the input's size, and a placement that puts the grip where
    the canvas has it."""
    from synthetic_bags import box_iou, mask_iou

    bag = draw_bag(size=(1440, 1800), shadow=True, strap_px=36)
    path = tmp_path / "large.png"
    Image.fromarray(bag.image).save(path)
    hints = ProductHints(category="handbag", shot="full_body")
    whole = run_prepare(
        path, tmp_path / "whole", load_config("tiny", overrides={"prepare.work_side": 0}), hints
    )
    work = run_prepare(
        path, tmp_path / "work", load_config("tiny", overrides={"prepare.work_side": 480}), hints
    )
    a, b = whole.info, work.info
    assert a["work_scale"] == [1.0, 1.0] and b["work_scale"] == pytest.approx([1 / 3.75] * 2, abs=1e-3)
    assert a["handle"] == b["handle"] == "top_loop"
    diag = float(np.hypot(*bag.image.shape[:2]))
    assert np.hypot(a["grip"][0] - b["grip"][0], a["grip"][1] - b["grip"][1]) < 0.01 * diag
    assert np.hypot(b["grip"][0] - bag.grip[0], b["grip"][1] - bag.grip[1]) < 0.02 * diag
    assert box_iou(a["product_bbox"], b["product_bbox"]) > 0.99
    assert b["image_size"] == [1440, 1800] and work.mask.shape == (1800, 1440)
    assert np.asarray(Image.open(tmp_path / "work" / "mask.png")).shape == (1800, 1440)
    assert mask_iou(whole.mask > 0, work.mask > 0) > 0.98
    assert work.mask[bag.hole[1], bag.hole[0]] == 0  # the opening stays background at full size
    # lengths in input pixels: the handle's thickness (measured in whole working pixels, so
    # within two of them) and the pixels per cm agree
    assert b["handle_thickness_px"] == pytest.approx(a["handle_thickness_px"], abs=2 / b["work_scale"][0])
    assert b["px_per_cm"] == pytest.approx(a["px_per_cm"], rel=0.01)
    # the placement maps input pixels to the canvas: the grip lands on the canvas grip, and the
    # product's box on the same canvas box as the whole photo's, within a canvas pixel
    s, (ox, oy) = b["placement"]["scale"], b["placement"]["offset"]
    assert b["canvas_grip"] == pytest.approx([b["grip"][0] * s + ox, b["grip"][1] * s + oy], abs=0.01)
    sa, (oxa, oya) = a["placement"]["scale"], a["placement"]["offset"]
    x0, y0, x1, y1 = a["product_bbox"]
    for x, y in ((x0, y0), (x1, y1)):
        assert x * s + ox == pytest.approx(x * sa + oxa, abs=1.0)
        assert y * s + oy == pytest.approx(y * sa + oya, abs=1.0)
    assert a["canvas_size"] == b["canvas_size"]
    # the erase polygon is in input pixels too, around the grip
    poly = np.asarray(b["erase_polygon"])
    assert poly[:, 0].min() < b["grip"][0] < poly[:, 0].max()


def test_work_scale_maps_points_both_ways_and_the_brief_hints_to_work():
    from autoshoot.geometry.pipeline import WorkScale, shrink_to_work_side

    image = np.zeros((900, 1200, 3), np.uint8)
    small, alpha, work = shrink_to_work_side(image, np.ones((900, 1200), np.float32), 600)
    assert small.shape == (450, 600, 3) and alpha.shape == (450, 600)
    assert (work.fx, work.fy) == (0.5, 0.5)
    # pixel centres at integers: working pixel 0 averages input pixels 0 and 1, so its centre is
    # the input point 0.5 between them
    assert work.point_to_work((0.5, 0.5)) == (0.0, 0.0)
    assert work.point_to_input(work.point_to_work((123.0, 456.0))) == pytest.approx((123.0, 456.0))
    hints = work.hints_to_work(
        ProductHints(handle_box=(100.0, 200.0, 300.0, 400.0), grip_point=(200.5, 210.5))
    )
    assert hints.handle_box == (50.0, 100.0, 150.0, 200.0) and hints.grip_point == (100.0, 105.0)
    assert shrink_to_work_side(image, None, 0)[2] == WorkScale() == shrink_to_work_side(image, None, 1200)[2]


def test_a_work_side_too_small_is_refused_with_an_example(tmp_path):
    from autoshoot.errors import ConfigError

    path = save_bag(tmp_path / "bag.png")
    with pytest.raises(
        ConfigError, match=r"prepare.work_side=100: use 0 .* e.g. --set prepare.work_side=1536"
    ):
        run_prepare(path, tmp_path / "out", load_config("tiny", overrides={"prepare.work_side": 100}))

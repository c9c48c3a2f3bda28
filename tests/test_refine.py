"""Stage 2 (hand refine) on tiny components, with a fake detector that reports synthetic
landmarks (random-weight renders draw no hands for MediaPipe to find)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from render_fixtures import (
    CANVAS,
    FakeHandDetector,
    grip_canvas,
    hand_at_grip,
    make_job,
    make_pipeline_dirs,
    shared_tiny_renderer,
    tiny_config,
)

from autoshoot.backends.hand_mesh import CapsuleHandMesh
from autoshoot.stages.base import Sessions
from autoshoot.stages.refine import (
    HandWindow,
    RefineStage,
    build_refine_inputs,
    canonical_grip_hand,
    hand_window_box,
    paste_window,
)
from autoshoot.stages.render import RenderStage


def run_render_then_refine(tmp_path, dirs, renderer, detector):
    config = tiny_config()
    sessions = Sessions()
    sessions.get("renderer:sdxl", lambda: renderer)
    sessions.get("hand_detector", lambda: detector)
    sessions.get("scene_detector", NoScene)
    job = make_job(tmp_path, config, sessions, dict(dirs), seed=5, candidates=2)
    (tmp_path / "render").mkdir()
    stage1 = RenderStage().run(job, tmp_path / "render")
    (tmp_path / "render" / "stage.json").write_text(__import__("json").dumps(stage1))
    job.inputs["render"] = tmp_path / "render"
    (tmp_path / "refine").mkdir()
    return RefineStage().run(job, tmp_path / "refine"), tmp_path


class NoScene:
    """Random-weight renders show nobody: no face, no pose."""

    def detect(self, image):
        from autoshoot.backends.mediapipe_hands import Scene

        return Scene()


def test_refine_repaints_only_the_hand_window(tmp_path):
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    tiny_renderer = shared_tiny_renderer()
    detector = FakeHandDetector(hand_at_grip())
    result, root = run_render_then_refine(tmp_path, pipeline_dirs, tiny_renderer, detector)

    assert result["refined"] == 2
    gx, gy = grip_canvas()
    x0, y0, x1, y1 = detector.calls[0]  # searched around the grip
    assert x0 < gx < x1 and y0 < gy < y1
    for c in result["candidates"]:
        assert "hand refined" in c["notes"]
        before = np.asarray(Image.open(root / "render" / f"c{c['index']}.png"), dtype=np.int16)
        after = np.asarray(Image.open(root / "refine" / c["image"]), dtype=np.int16)
        assert after.shape == (CANVAS[1], CANVAS[0], 3)
        bx0, by0, bx1, by1 = c["hand_window"]
        outside = np.ones(after.shape[:2], bool)
        outside[by0:by1, bx0:bx1] = False
        assert np.array_equal(after[outside], before[outside])  # untouched outside the window
        assert np.abs(after[by0:by1, bx0:bx1] - before[by0:by1, bx0:bx1]).mean() > 0.5


def test_no_hand_at_the_grip_refines_a_canonical_gripping_hand(tmp_path):
    # stage 1 may draw a hand too malformed for MediaPipe: stage 2 is not skipped
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    tiny_renderer = shared_tiny_renderer()
    result, root = run_render_then_refine(tmp_path, pipeline_dirs, tiny_renderer, FakeHandDetector(None))

    assert result["refined"] == 2
    gx, gy = grip_canvas()
    for c in result["candidates"]:
        assert "no hand found near the grip: refined with a canonical gripping hand" in c["notes"]
        assert "hand refined" in c["notes"]
        x0, y0, x1, y1 = c["hand_window"]
        assert x0 < gx < x1 and y0 < gy < y1  # the window is round the grip
        before = np.asarray(Image.open(root / "render" / f"c{c['index']}.png"), dtype=np.int16)
        after = np.asarray(Image.open(root / "refine" / c["image"]), dtype=np.int16)
        assert np.abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean() > 0.5


def test_canonical_grip_hand_follows_the_pose():
    from autoshoot.backends.mediapipe_hands import Scene

    image = np.zeros((600, 800, 3), np.uint8)
    scene = Scene(faces=[((380.0, 40.0, 480.0, 160.0), 0.9)], body=True, wrists=[(300.0, 420.0)])
    hand = canonical_grip_hand(image, (300.0, 340.0), scene)
    palm = np.linalg.norm(hand[9] - hand[0])
    assert palm == pytest.approx(55.0, rel=0.05)  # 0.55 of the face width
    assert hand[0, 1] > 340.0  # the wrist towards the pose's wrist, below the grip
    nobody = canonical_grip_hand(image, (300.0, 340.0), None)
    assert np.linalg.norm(nobody[9] - nobody[0]) == pytest.approx(0.065 * 800, rel=0.05)


def test_refine_inputs_hold_depth_scribble_and_canny_at_model_size():
    rc = tiny_config().render
    image = np.full((256, 256, 3), 128, np.uint8)
    lms = hand_at_grip()
    box = hand_window_box(lms, (256, 256), rc.refine_window, rc.refine_min_window)
    crop, mask, controls = build_refine_inputs(CapsuleHandMesh(), rc, image, HandWindow(box, lms))

    assert box[2] - box[0] == box[3] - box[1] and 0 <= box[0] and box[2] <= 256
    assert crop.shape == (rc.long_side, rc.long_side, 3)
    assert [m for m, _ in controls] == ["depth", "scribble", "canny"]
    depth = controls[0][1]
    assert depth.max() == 255 and (mask > 0).sum() > (depth > 0).sum()  # mask grown around the hand


def test_paste_window_feathers_inside_the_box_only():
    image = np.zeros((100, 100, 3), np.uint8)
    crop = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    out = paste_window(image, (20, 20, 84, 84), crop, mask, feather_px=4)
    assert out[52, 52, 0] == 200  # centre fully replaced
    assert out[:20].max() == 0 and out[84:].max() == 0  # outside the box untouched
    assert 0 < out[52, 36, 0] < 200  # feathered edge


@pytest.mark.samples
def test_real_detector_finds_the_hand_and_refines_its_window(tmp_path, samples_dir):
    """The real MediaPipe detector on a real photo of a gripping hand, as a stage-1 candidate."""
    import json

    from autoshoot.backends.mediapipe_hands import HandDetector

    im = Image.open(samples_dir / "C_hand_real_grip_01.png").convert("RGB")
    im.thumbnail((384, 384))
    photo = np.asarray(im)
    grip = [170.0, 187.0]  # input px; placement is the identity here
    (tmp_path / "prepare").mkdir()
    prep = {
        "grip": grip,
        "placement": {"scale": 1.0, "offset": [0.0, 0.0]},
        "canvas_size": [im.width, im.height],
    }
    (tmp_path / "prepare" / "prepare.json").write_text(json.dumps(prep))
    (tmp_path / "render").mkdir()
    Image.fromarray(photo).save(tmp_path / "render" / "c0.png")
    cands = [{"index": 0, "seed": 3, "image": "c0.png"}]
    (tmp_path / "render" / "stage.json").write_text(json.dumps({"candidates": cands}))
    dirs = {
        "prepare": tmp_path / "prepare",
        "render": tmp_path / "render",
        "analyze": make_pipeline_dirs(tmp_path / "upstream")["analyze"],
    }
    sessions = Sessions()
    sessions.get("renderer:sdxl", shared_tiny_renderer)
    detector = sessions.get("hand_detector", HandDetector)
    job = make_job(tmp_path, tiny_config(), sessions, dirs, candidates=1)
    (tmp_path / "refine").mkdir()

    result = RefineStage().run(job, tmp_path / "refine")

    c = result["candidates"][0]
    assert c["notes"] == ["hand refined"], c["notes"]
    x0, y0, x1, y1 = c["hand_window"]
    assert x0 < grip[0] < x1 and y0 < grip[1] < y1
    out = np.asarray(Image.open(tmp_path / "refine" / "r0.png"))
    assert out.shape == photo.shape
    assert np.array_equal(out[:y0], photo[:y0]) and np.array_equal(out[y1:], photo[y1:])
    detector.close()

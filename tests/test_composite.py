"""Composite: the product's original pixels, placed and scaled ×1.01, pasted exactly."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from render_fixtures import CANVAS, make_job, make_pipeline_dirs, make_product_photo, tiny_config

from autoshoot.stages.base import Sessions
from autoshoot.stages.composite import (
    CompositeStage,
    composite_matrix,
    product_keep_mask,
    warp_product,
)


def write_refine_dir(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(1)
    cands = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (CANVAS[1], CANVAS[0], 3), dtype=np.uint8)).save(
            folder / f"r{i}.png"
        )
        cands.append({"index": i, "seed": 40 + i, "image": f"r{i}.png", "notes": ["x"]})
    (folder / "stage.json").write_text(json.dumps({"candidates": cands}))
    return folder


def test_product_pixels_are_exactly_the_placed_input(tmp_path):
    pipeline_dirs = make_pipeline_dirs(tmp_path)
    dirs = dict(pipeline_dirs, refine=write_refine_dir(tmp_path / "refine"))
    job = make_job(tmp_path, tiny_config(), Sessions(), dirs)
    (tmp_path / "composite").mkdir()

    result = CompositeStage().run(job, tmp_path / "composite")

    assert [c["seed"] for c in result["candidates"]] == [40, 41]
    image, mask, erase, _ = make_product_photo()
    prep = json.loads((pipeline_dirs["prepare"] / "prepare.json").read_text())
    matrix = composite_matrix(prep["placement"], prep["product_bbox"], 1.01)
    assert np.allclose(matrix[0, 0], 0.8 * 1.01)
    placed, inside = warp_product(image, product_keep_mask(mask, erase), matrix, CANVAS)
    assert inside.sum() > 5000
    for c in result["candidates"]:
        final = np.asarray(Image.open(tmp_path / "composite" / c["image"]))
        cand = np.asarray(Image.open(tmp_path / "refine" / f"r{c['index']}.png"))
        assert final.shape == (CANVAS[1], CANVAS[0], 3)
        assert np.array_equal(final[inside], placed[inside])  # exact product pixels
        # only a band of <= 2 px outside the outline is feathered; beyond it, the render
        import cv2

        near = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.array_equal(final[~near], cand[~near])
        band = near & ~inside
        assert np.any(final[band] != cand[band])


def test_erased_gap_is_not_pasted_back(tmp_path):
    image, mask, erase, _ = make_product_photo()
    keep = product_keep_mask(mask, erase)
    assert keep[26, 100] == 0 and mask[26, 100] == 255  # the grip gap stays for the hand
    assert keep[120, 100] == 255


def test_scale_is_about_the_product_centre():
    placement = {"scale": 2.0, "offset": [10.0, 20.0]}
    bbox = [0.0, 0.0, 100.0, 50.0]
    m = composite_matrix(placement, bbox, 1.01)
    centre_in = np.array([50.0, 25.0, 1.0])
    assert np.allclose(m @ centre_in, [50 * 2 + 10, 25 * 2 + 20])  # the centre stays put

"""Composite: every candidate upscaled to the final size, and the product's original pixels,
placed and scaled ×1.01, resampled ONCE from the input photo and pasted exactly.

Fidelity tolerance: inside the product, the delivered pixels equal an exact area resampling of
the original photo (computed here independently, by integrating the photo's piecewise-constant
pixels over each output pixel's footprint) to within 1 grey level (uint8 rounding of float
sums), for a packshot shrunk 4x and at a non-integer factor.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from render_fixtures import CANVAS, make_job, make_pipeline_dirs, make_product_photo, tiny_config

from autoshoot.stages.base import Sessions
from autoshoot.stages.composite import (
    CompositeStage,
    composite_matrix,
    final_size,
    product_keep_mask,
    warp_product,
)

FINAL = (2048, 2048)  # the 256x256 test canvas at the default render.output_long_side


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
    assert result["final_size"] == list(FINAL) and result["canvas_size"] == list(CANVAS)
    image, mask, erase, _ = make_product_photo()
    prep = json.loads((pipeline_dirs["prepare"] / "prepare.json").read_text())
    matrix = composite_matrix(prep["placement"], prep["product_bbox"], 1.01, (8.0, 8.0))
    assert np.allclose(matrix[0, 0], 0.8 * 8 * 1.01)
    placed, inside = warp_product(image, product_keep_mask(mask, erase), matrix, FINAL)
    assert inside.sum() > 64 * 5000
    upscaler = job.sessions.get("upscaler:tiny", lambda: None)  # the run's, built once
    assert upscaler is not None and upscaler.param_bytes > 0
    for c in result["candidates"]:
        final = np.asarray(Image.open(tmp_path / "composite" / c["image"]))
        cand = np.asarray(Image.open(tmp_path / "refine" / f"r{c['index']}.png"))
        assert final.shape == (FINAL[1], FINAL[0], 3)  # the delivered size
        assert np.array_equal(final[inside], placed[inside])  # exact product pixels
        # only a band of <= 2 px outside the outline is feathered; beyond it, the upscaled render
        import cv2

        big = upscaler.upscale(cand, FINAL)
        near = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.array_equal(final[~near], big[~near])
        band = near & ~inside
        assert np.any(final[band] != big[band])


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


def test_final_size_keeps_the_canvas_aspect():
    assert final_size((832, 1216), 2048) == (1401, 2048)
    assert final_size((1216, 832), 2048) == (2048, 1401)
    assert final_size((1024, 1024), 2048) == (2048, 2048)
    assert final_size((208, 304), 2048) == (1401, 2048)  # the tiny profile's canvas


def test_canvas_to_final_maps_pixel_edges_to_edges():
    # no extra scale: the input's pixel edges land where the canvas's would after a resize
    placement = {"scale": 0.5, "offset": [3.0, 4.0]}
    m = composite_matrix(placement, [0, 0, 10, 10], 1.0, (4.0, 4.0))
    # input edge x = -0.5 (centre coords) → canvas edge 0.5·(-0.5) + 3 → final edge ×4
    edge_in = np.array([-0.5, -0.5, 1.0])
    canvas_edge = np.array([0.5 * -0.5 + 3.0, 0.5 * -0.5 + 4.0])
    assert np.allclose(m @ edge_in, (canvas_edge + 0.5) * 4.0 - 0.5)


# --- fidelity: one area resampling of the original photo ------------------------------------


def exact_area(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reference: each output pixel's exact mean of the input over its footprint, from the
    cumulative sums of the piecewise-constant input (linear between pixel edges). Footprint parts
    outside the input are dropped. Float64, (h, w, C)."""

    def axis(cum: np.ndarray, n_out: int, k: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        n_in = cum.shape[0] - 1
        j = np.arange(n_out, dtype=np.float64)
        a = np.clip((j - 0.5 - t) / k + 0.5, 0, n_in)  # edge coordinates
        b = np.clip((j + 0.5 - t) / k + 0.5, 0, n_in)
        return a, b

    img = image.astype(np.float64)
    h, w = img.shape[:2]
    # rows: integrate along y
    cy = np.concatenate([np.zeros((1, w, img.shape[2])), np.cumsum(img, axis=0)], axis=0)
    a, b = axis(cy, size[1], matrix[1, 1], matrix[1, 2])
    edges = np.arange(h + 1, dtype=np.float64)

    def interp_rows(cum, pos):
        flat = cum.reshape(cum.shape[0], -1)
        return np.stack([np.interp(pos, edges, flat[:, i]) for i in range(flat.shape[1])], axis=1)

    length = np.maximum(b - a, 1e-12)[:, None]
    rows = (interp_rows(cy, b) - interp_rows(cy, a)) / length
    rows = rows.reshape(size[1], w, img.shape[2])
    cx = np.concatenate([np.zeros((size[1], 1, img.shape[2])), np.cumsum(rows, axis=1)], axis=1)
    a, b = axis(cx.transpose(1, 0, 2), size[0], matrix[0, 0], matrix[0, 2])
    edges = np.arange(w + 1, dtype=np.float64)
    cols_cum = cx.transpose(1, 0, 2)
    length = np.maximum(b - a, 1e-12)[:, None]
    cols = (interp_rows(cols_cum, b) - interp_rows(cols_cum, a)) / length
    return cols.reshape(size[0], size[1], img.shape[2]).transpose(1, 0, 2)


def woven_packshot(w: int = 1600, h: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """A large packshot whose product has detail at the pixel scale (a 2-px weave, 1-px
    stitching, a fine logo ring): what aliases when shrunk with no prefilter."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 250, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (200, 300), (1400, 1100), 255, -1)
    cv2.ellipse(mask, (800, 300), (350, 250), 0, 180, 360, 255, 40)
    weave = ((xx // 2 + yy // 2) % 2) * 90 + ((xx + 2 * yy) % 5 == 0) * 60
    body = np.stack([60 + weave, 40 + weave // 2, 20 + weave // 3], axis=-1).clip(0, 255).astype(np.uint8)
    cv2.circle(body, (800, 700), 120, (255, 255, 255), 1)
    img[mask > 0] = body[mask > 0]
    return img, mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def check_fidelity(k: float, offset: tuple[float, float], size=(512, 384)):
    import cv2

    img, mask = woven_packshot()
    keep = product_keep_mask(mask, [])
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    # a placement whose final scale, ×1.01 included, is k
    m = composite_matrix({"scale": k / 1.01, "offset": list(offset)}, bbox, 1.01)
    assert np.isclose(m[0, 0], k) and np.isclose(m[1, 1], k)
    placed, inside = warp_product(img, keep, m, size)
    ref = exact_area(img, m, size)
    # compare where the whole footprint is product (at the outline, the photo's background
    # is part of any resampling of it, and the band is feathered anyway)
    core = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert core.sum() > 20000
    diff = np.abs(placed[core].astype(np.float64) - ref[core])
    assert diff.max() <= 1.0, diff.max()  # the tolerance: uint8 rounding
    # the old path, one bilinear warp with no prefilter, aliases on the same photo
    bilinear = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ref8 = np.clip(np.rint(ref), 0, 255)
    return psnr(placed[core], ref8[core]), psnr(bilinear[core], ref8[core])


def test_packshot_shrunk_4x_is_one_area_resampling_of_the_photo():
    ours, bilinear = check_fidelity(0.25, (-3.3, -40.7))
    assert ours > 50.0 and bilinear < 30.0, (ours, bilinear)


def test_non_integer_shrink_is_one_area_resampling_of_the_photo():
    ours, bilinear = check_fidelity(0.37, (0.45, -70.2), size=(640, 480))
    assert ours > 50.0 and bilinear < 35.0, (ours, bilinear)


def write_big_prepare(tmp_path, k_final: float):
    """A prepare folder and product photo for the large woven packshot, placed so that the
    delivered picture (2048 px from a 256-px canvas) shows it at ``k_final`` of its size."""
    img, mask = woven_packshot()
    (tmp_path / "prepare").mkdir()
    Image.fromarray(img).save(tmp_path / "product.png")
    Image.fromarray(mask).save(tmp_path / "prepare" / "mask.png")
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    f = FINAL[0] / CANVAS[0]
    prep = {
        "product_bbox": bbox,
        "handle": "none",
        "grip": None,
        "erase_polygon": [],
        "canvas_size": list(CANVAS),
        "placement": {"scale": k_final / (f * 1.01), "offset": [20.3, 40.6]},
    }
    for name in ("prepare.json", "stage.json"):
        (tmp_path / "prepare" / name).write_text(json.dumps(prep))
    return img, prep


def test_delivered_product_is_one_area_resampling_of_the_photo(tmp_path):
    """Through the stage: a 1600-px packshot shrunk 4x onto a 2048-px final."""
    import cv2

    img, prep = write_big_prepare(tmp_path, 0.25)
    dirs = {"prepare": tmp_path / "prepare", "refine": write_refine_dir(tmp_path / "refine", n=1)}
    job = make_job(tmp_path, tiny_config(), Sessions(), dirs, candidates=1)
    (tmp_path / "composite").mkdir()

    result = CompositeStage().run(job, tmp_path / "composite")

    final = np.asarray(Image.open(tmp_path / "composite" / result["candidates"][0]["image"]))
    assert final.shape == (FINAL[1], FINAL[0], 3)
    m = np.asarray(result["matrix"])
    assert np.isclose(m[0, 0], 0.25)
    ref = exact_area(img, m, FINAL)
    inside = exact_area(np.asarray(Image.open(tmp_path / "prepare" / "mask.png"))[..., None], m, FINAL)[
        ..., 0
    ]
    core = cv2.erode((inside >= 127.5).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert core.sum() > 50000
    assert np.abs(final[core].astype(np.float64) - ref[core]).max() <= 1.0

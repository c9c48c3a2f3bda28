"""Geometry on synthetic bags with exact truth: segmentation, handle, erase, placement, outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synthetic_bags import box_iou, draw_bag, mask_iou

from autoshoot.config import load_config
from autoshoot.config.prepare import PrepareConfig
from autoshoot.geometry.canvas import make_canny, make_canvas, make_inpaint_mask, warp_to_canvas
from autoshoot.geometry.erase import erase_mask, erase_polygon, pixels_per_cm, polygon_mask
from autoshoot.geometry.handles import find_handle
from autoshoot.geometry.place import canvas_size_for, place_product
from autoshoot.geometry.segment import (
    NoProductError,
    clean_mask,
    enclosed_background,
    estimate_background,
    segment_plain,
)

CFG = PrepareConfig()


def segment(image: np.ndarray, config: PrepareConfig = CFG):
    return clean_mask(segment_plain(image, config), image, config)


def diag(box) -> float:
    return float(np.hypot(box[2] - box[0], box[3] - box[1]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"background": (246, 243, 236), "texture": True},
        {"shadow": True},
        {"shadow": True, "background": (250, 249, 245), "body_color": (232, 226, 212)},  # pale bag, off-white
        {"handle": "twin_loops", "texture": True},
    ],
    ids=["white", "off_white_texture", "shadow", "pale_on_off_white_shadow", "twin"],
)
def test_plain_segmentation_matches_truth(kwargs):
    bag = draw_bag(**kwargs)
    result = segment(bag.image)
    ys, xs = np.nonzero(result.mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert mask_iou(result.mask, bag.mask) >= 0.97
    assert box_iou(box, bag.bbox) >= 0.97
    assert not result.mask[bag.hole[1], bag.hole[0]], "the handle opening must be background"
    if bag.shadow is not None:
        # the soft shadow is background: at most a rim of a few px next to the product survives
        near = cv2.dilate(bag.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert not (result.mask & bag.shadow & ~near).any()
        assert (result.mask & bag.shadow).sum() <= 0.06 * bag.shadow.sum()
    assert result.warnings == []


def test_gap_between_double_straps_is_background():
    bag = draw_bag(double_strap=True, texture=True)
    result = segment(bag.image)
    assert not result.mask[bag.gap[1], bag.gap[0]]
    assert not result.mask[bag.hole[1], bag.hole[0]]


def test_model_mask_that_closes_gaps_is_mended():
    """A model's alpha that fills the strap gap and the opening: background-coloured enclosed
    regions are cut out again."""
    bag = draw_bag(double_strap=True)
    closed = cv2.morphologyEx(bag.mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    filled = closed.astype(bool) | cv2.dilate(bag.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(
        bool
    )
    assert filled[bag.gap[1], bag.gap[0]]  # the "model" kept the white sliver
    result = clean_mask(filled.astype(np.float32), bag.image, CFG)
    assert not result.mask[bag.gap[1], bag.gap[0]]
    assert not result.mask[bag.hole[1], bag.hole[0]]
    assert result.holes_removed >= 1


def studio_render(bag, rng_seed: int = 0) -> np.ndarray:
    """The synthetic bag on a light bluish-grey studio backdrop as renders show it: a vignette
    (the corners 30 levels darker than the middle) and a deep cast shadow on the floor that
    keeps 40% of the backdrop's light, tinted a little bluer, reaching the image's left edge."""
    h, w = bag.mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    backdrop = np.stack([238 - 15 * r2, 242 - 15 * r2, 249 - 15 * r2], axis=-1)
    ys, xs = np.nonzero(bag.mask)
    layer = np.zeros((h, w), np.float32)
    cv2.ellipse(layer, (int(xs.min()), int(ys.max()) - 4), (int(xs.min()) + 10, 14), 0, 0, 360, 1.0, -1)
    layer = cv2.GaussianBlur(layer, (0, 0), 8.0)
    keep = 1.0 - 0.6 * layer[..., None]
    tint = np.stack([1 - 0.04 * layer, 1 - 0.02 * layer, 1 + 0.04 * layer], axis=-1)
    floor = np.clip(backdrop * keep * tint, 0, 255)
    noise = np.random.default_rng(rng_seed).normal(0.0, 1.5, floor.shape)
    out = np.clip(floor + noise, 0, 255).astype(np.uint8)
    out[bag.mask] = bag.image[bag.mask]
    return out


def test_studio_render_backdrop_and_deep_shadow_are_background():
    """A grey studio backdrop darkens smoothly towards the corners and the floor shadow is deep:
    the background is a colour field fitted to the frame, and a shadow is that colour dimmed."""
    bag = draw_bag(body_color=(35, 45, 70), texture=True)
    image = studio_render(bag)
    border = estimate_background(image, CFG)
    assert border.is_uniform(CFG) and border.field_coef is not None
    result = segment(image)
    ys, xs = np.nonzero(result.mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert box_iou(box, bag.bbox) >= 0.97
    assert mask_iou(result.mask, bag.mask) >= 0.97
    assert not result.mask[bag.hole[1], bag.hole[0]]
    # with a flat background colour the deep shadow stays part of the product
    flat = PrepareConfig(background_field=False, shadow_min_light=0.75)
    old = segment(image, flat)
    ys, xs = np.nonzero(old.mask)
    assert box_iou((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), bag.bbox) < 0.95


def test_a_render_squared_with_a_white_pad_is_segmented_inside_its_own_backdrop():
    """A catalog squares a grey studio render with pure white round it. Read at the image's
    frame, the backdrop would be white and the render's whole grey backdrop "product"; the
    photo's straight edges inside the pad are found, the backdrop is read there, and the pad
    is background. As a JPEG too (it rings at the pad's edge)."""
    from autoshoot.geometry.segment import find_pad

    bag = draw_bag(body_color=(35, 45, 70), texture=True)
    render = studio_render(bag)
    h, w = render.shape[:2]
    top, left = 90, 150
    padded = cv2.copyMakeBorder(render, top, top, left, left, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    truth = np.zeros(padded.shape[:2], bool)
    truth[top : top + h, left : left + w] = bag.mask
    found = find_pad(padded, CFG)
    assert found is not None
    box, colour = found
    assert box == (left, top, left + w, top + h) and colour == (255.0, 255.0, 255.0)
    border = estimate_background(padded, CFG)
    assert border.is_uniform(CFG) and border.content_box(padded.shape) == box
    result = segment(padded)
    assert mask_iou(result.mask, truth) >= 0.97
    assert not result.mask[top + bag.hole[1], left + bag.hole[0]]
    assert "cropped" not in " ".join(result.warnings)
    # read at the image's frame alone, the render's own backdrop is taken for product
    unpadded = segment(padded, PrepareConfig(detect_pad=False))
    assert mask_iou(unpadded.mask, truth) < 0.5
    # a JPEG's ringing moves the found edge a few lines at most
    _, data = cv2.imencode(".jpg", padded[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    jpeg = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    (x0, y0, x1, y1), _ = find_pad(jpeg, CFG)
    assert max(abs(x0 - left), abs(y0 - top), abs(x1 - left - w), abs(y1 - top - h)) <= 8
    assert mask_iou(segment(jpeg).mask, truth) >= 0.95


def test_a_product_on_the_pads_colour_is_not_taken_for_a_padded_photo():
    """On pure white, lines of white run in from every side up to the product too; but past
    them lie its handle's apex and its rounded corners, not a photo's straight edge."""
    from autoshoot.geometry.segment import find_pad

    for handle in ("top_loop", "twin_loops", "none"):
        bag = draw_bag(handle=handle, shadow=True)
        assert find_pad(bag.image, CFG) is None, handle
        assert estimate_background(bag.image, CFG).content is None
    # nor is a flat grey backdrop reaching every edge (no lines of one colour at all)
    assert find_pad(studio_render(draw_bag()), CFG) is None
    # a centred, square-cornered product of one colour looks like a photo in a pad; with no
    # product on that "backdrop", it is read as the product it is
    block = np.full((400, 400, 3), 255, np.uint8)
    block[100:300, 80:320] = (60, 40, 30)
    assert find_pad(block, CFG) is not None
    assert estimate_background(block, CFG).content is None
    ys, xs = np.nonzero(segment(block).mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (80, 100, 320, 300)


@pytest.mark.samples
def test_a_letterboxed_sample_photo_has_its_pad_found(samples_dir):
    """A real photo with white bars left and right (one of the hand samples): its bars are found,
    and none of the packshots, which have none, is taken for a padded photo."""
    from PIL import Image

    from autoshoot.geometry.segment import find_pad

    rgb = np.asarray(Image.open(samples_dir / "C_hand_real_grip_11.jpg").convert("RGB"))
    (x0, y0, x1, y1), colour = find_pad(rgb, CFG)
    assert (y0, y1) == (0, rgb.shape[0]) and x0 > 100 and rgb.shape[1] - x1 > 100
    assert min(colour) >= 250
    for path in sorted(samples_dir.glob("A_packshot_*")):
        assert find_pad(np.asarray(Image.open(path).convert("RGB")), CFG) is None, path.name


@pytest.mark.parametrize(("h", "w", "b"), [(64, 48, 3), (9, 8, 1), (40, 160, 10)])
def test_the_frame_is_read_from_its_strips_as_a_full_size_mask_reads_it(h, w, b):
    from autoshoot.geometry.segment import frame_pixels

    image = np.random.default_rng(h).integers(0, 255, (h, w, 3), dtype=np.uint8)
    known = np.zeros((h, w), bool)
    known[:b], known[-b:], known[:, :b], known[:, -b:] = True, True, True, True
    frame, ys, xs = frame_pixels(image, b)
    rows, cols = np.nonzero(known)
    assert np.array_equal(frame, image[known])  # the same pixels in the same order
    assert np.array_equal(ys, rows) and np.array_equal(xs, cols)


def test_border_uniformity():
    bag = draw_bag()
    assert estimate_background(bag.image, CFG).is_uniform(CFG)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, bag.image.shape, dtype=np.uint8)
    assert not estimate_background(photo, CFG).is_uniform(CFG)


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({}, "top_loop"),
        ({"handle": "twin_loops"}, "twin_loops"),
        ({"handle": "strap_loop", "shadow": True}, "strap_loop"),
        ({"double_strap": True}, "top_loop"),
        ({"background": (246, 243, 236), "texture": True, "shadow": True}, "top_loop"),
    ],
    ids=["top", "twin", "strap", "double_strap", "off_white"],
)
def test_handle_kind_and_grip(kwargs, kind):
    bag = draw_bag(**kwargs)
    handle = find_handle(segment(bag.image).mask, CFG)  # no category: topology alone
    assert handle.kind == kind
    assert handle.topology_kind == kind
    choices = bag.grip_choices or [bag.grip]
    error = min(np.hypot(handle.grip[0] - x, handle.grip[1] - y) for x, y in choices) / diag(bag.bbox)
    assert error <= 0.03
    assert abs(handle.direction[0]) > 0.9  # the top of an arch runs sideways


def test_no_handle():
    bag = draw_bag(handle="none", shadow=True)
    handle = find_handle(segment(bag.image).mask, CFG)
    assert handle.kind == "none" and handle.grip is None
    assert erase_polygon(handle, 10.0, CFG) == []


def test_priors_from_brief():
    bag = draw_bag()
    mask = segment(bag.image).mask
    assert find_handle(mask, CFG, category="tote").kind == "twin_loops"  # category prior for one opening
    assert find_handle(mask, CFG, brief_handle="strap_loop").kind == "strap_loop"  # the brief wins
    # a handle box far from the only opening is ignored, with a note
    handle = find_handle(mask, CFG, handle_box=(0, 0, 5, 5))
    assert handle.grip is not None and any("handle box" in n for n in handle.notes)


def test_handle_box_picks_the_opening():
    bag = draw_bag(handle="twin_loops")
    mask = segment(bag.image).mask
    openings = find_handle(mask, CFG).openings
    assert len(openings) >= 2
    right = max(openings, key=lambda o: o.bbox[0])
    box = (right.bbox[2] - 10, right.apex_y, right.bbox[2] + 40, right.bbox[1] + 10)
    picked = find_handle(mask, CFG, handle_box=box)
    assert picked.opening is not None and picked.opening.bbox == right.bbox


def test_erase_cuts_the_loop_open_with_a_palm_wide_gap():
    bag = draw_bag()
    mask = segment(bag.image).mask
    handle = find_handle(mask, CFG)
    ppc = pixels_per_cm(bag.bbox, (30.0, 22.0))
    polygon = erase_polygon(handle, ppc, CFG)
    assert len(polygon) == 4
    length = np.hypot(polygon[1][0] - polygon[0][0], polygon[1][1] - polygon[0][1])
    span = handle.opening.span[1] - handle.opening.span[0]
    assert length == pytest.approx(min(CFG.palm_cm * ppc, CFG.erase_max_span_frac * span), rel=1e-6)
    gap = polygon_mask(polygon, mask.shape)
    assert gap[int(handle.grip[1]), int(handle.grip[0])]
    erased = erase_mask(mask, polygon)
    # the opening now reaches the outside: the loop is cut through
    assert enclosed_background(mask)[bag.hole[1], bag.hole[0]]
    assert not enclosed_background(erased)[bag.hole[1], bag.hole[0]]
    # the body is untouched
    body_row = int(0.7 * mask.shape[0])
    assert (erased[body_row] == mask[body_row]).all()


def test_no_product_and_several_objects_and_cropped():
    blank = np.full((200, 200, 3), 255, np.uint8)
    with pytest.raises(NoProductError, match="no product found"):
        segment(blank)
    two = draw_bag(handle="none").image.copy()
    cv2.circle(two, (60, 60), 50, (0, 0, 200), -1)
    result = segment(two)
    assert any("several objects" in w for w in result.warnings)
    assert not result.mask[60, 60]  # the smaller blob was dropped
    cropped = np.full((200, 200, 3), 255, np.uint8)
    cropped[120:, 50:150] = (30, 30, 30)
    assert any("cropped" in w for w in segment(cropped).warnings)


def test_placement_maps_grip_to_pose_and_keeps_inside():
    box, grip = (100, 50, 400, 500), (250.0, 80.0)
    ppc = pixels_per_cm(box, (30.0, 40.0))
    plan = place_product(box, grip, ppc, "full_body", "beside_hip", CFG)
    w, h = plan.canvas_size
    assert (w, h) == (832, 1216)  # an SDXL ~1 MP bucket
    assert plan.canvas_px_per_cm == pytest.approx(0.9 * h / 170.0, rel=0.01)  # person fills 90%
    assert plan.scale == pytest.approx(plan.canvas_px_per_cm / ppc)
    gx, gy = grip[0] * plan.scale + plan.offset[0], grip[1] * plan.scale + plan.offset[1]
    assert (gx, gy) == pytest.approx(plan.anchor_canvas)
    assert gx > w / 2  # beside the hip: off centre
    assert 0.45 * h < gy < 0.6 * h  # hip height
    margin = CFG.margin_frac
    assert box[0] * plan.scale + plan.offset[0] >= margin * w - 1e-6
    assert box[3] * plan.scale + plan.offset[1] <= (1 - margin) * h + 1e-6
    assert plan.fallbacks == []


def test_placement_falls_back_when_the_shot_cannot_hold_it():
    box = (0, 0, 300, 900)  # a tall product: 60 cm hanging from the hand
    ppc = pixels_per_cm(box, (20.0, 60.0))
    plan = place_product(box, (150.0, 10.0), ppc, "close", "beside_hip", CFG)
    assert plan.shot != "close"
    assert any("close shot cannot hold" in f for f in plan.fallbacks)
    huge = place_product((0, 0, 1000, 1000), (500.0, 5.0), 1.0, "full_body", "beside_hip", CFG)
    assert any("shrunk" in f for f in huge.fallbacks)
    w, h = huge.canvas_size
    assert 1000 * huge.scale <= (1 - 2 * CFG.margin_frac) * h + 1e-6


def test_tiny_profile_canvas_is_small():
    tiny = load_config("tiny").prepare
    assert tiny.canvas_scale == 0.25
    for shot in ("close", "half_body", "full_body"):
        w, h = canvas_size_for(shot, tiny)
        assert w % 8 == 0 and h % 8 == 0 and max(w, h) <= 336
    assert canvas_size_for("close", load_config("default").prepare) == (1024, 1024)


def test_warp_matches_placement_exactly():
    """A single bright pixel lands where ``canvas_xy = input_xy * scale + offset`` says."""
    image = np.zeros((400, 400), np.float32)
    image[200:204, 120:124] = 1.0  # centre at (121.5, 201.5)
    for scale in (0.5, 1.7):
        out = warp_to_canvas(image, scale, (13.0, -20.0), (800, 800))
        ys, xs = np.nonzero(out > 0.01)
        weights = out[ys, xs]
        cx, cy = (xs * weights).sum() / weights.sum(), (ys * weights).sum() / weights.sum()
        assert cx == pytest.approx(121.5 * scale + 13.0, abs=0.35)
        assert cy == pytest.approx(201.5 * scale - 20.0, abs=0.35)


def test_canvas_inpaint_and_canny():
    bag = draw_bag()
    alpha = bag.mask.astype(np.float32)
    canvas, a = make_canvas(bag.image, alpha, 0.5, (10.0, 20.0), (256, 320), (240, 240, 240))
    assert canvas.shape == (320, 256, 3) and canvas.dtype == np.uint8
    assert (canvas[0, 0] == 240).all()
    inpaint = make_inpaint_mask(a, 3)
    assert set(np.unique(inpaint)) <= {0, 255}
    product = a >= 0.5
    assert (inpaint[~product] == 255).all()  # everything but the product is painted
    # grown 3 px into the product's edge
    kept = inpaint == 0
    assert kept.sum() < product.sum()
    assert not (kept & ~cv2.erode(product.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)).any()
    canny = make_canny(canvas, a, 60, 160)
    assert canny.shape == (320, 256) and canny.max() == 255
    far = cv2.dilate(product.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert not canny[far].any()


def test_grabcut_refinement_keeps_the_product():
    config = PrepareConfig(grabcut=True)
    bag = draw_bag(texture=True, shadow=True)
    result = segment(bag.image, config)
    assert mask_iou(result.mask, bag.mask) >= 0.97
    assert not result.mask[bag.hole[1], bag.hole[0]]


def _body_with_ring(ring_center: tuple[int, int], ring_axes: tuple[int, int]) -> np.ndarray:
    """A 300x240 body on a 600x600 frame with a thin elliptic ring (a loop) drawn on it."""
    mask = np.zeros((600, 600), np.uint8)
    cv2.rectangle(mask, (150, 200), (450, 520), 255, -1)
    cv2.ellipse(mask, ring_center, ring_axes, 0, 0, 360, 255, 10)
    return mask > 0


def test_a_loop_half_way_down_the_side_is_not_a_handle():
    # a strap ring hanging on the body's side half-way down (a messenger whose strap is out of
    # view): thin, but neither above the body nor an arc from the top, so nothing is erased
    mask = _body_with_ring((470, 400), (40, 40))
    handle = find_handle(mask, CFG, category="messenger")
    assert [o.role for o in handle.openings] == ["other"]
    assert handle.kind == "none" and handle.grip is None
    assert erase_polygon(handle, 10.0, CFG) == []


def test_a_loop_above_the_body_is_a_carry_handle():
    mask = _body_with_ring((300, 200), (70, 60))
    handle = find_handle(mask, CFG, category="backpack")
    assert handle.opening is not None and handle.opening.role == "carry"
    assert handle.kind == "top_loop"
    assert abs(handle.grip[0] - 300) < 10 and abs(handle.grip[1] - 145) < 10
    # the brief saying "no handle" wins over the silhouette, and the disagreement is recorded
    vetoed = find_handle(mask, CFG, category="backpack", brief_handle="none")
    assert vetoed.kind == "none" and vetoed.grip is None and vetoed.disagreements
    # the brief naming another kind sets the kind, and that is recorded too
    twin = find_handle(mask, CFG, category="backpack", brief_handle="twin_loops")
    assert twin.kind == "twin_loops" and any("twin_loops" in d for d in twin.disagreements)


@pytest.mark.parametrize("skew", [0.45, 0.6, 1.6])
def test_a_tilted_arc_is_gripped_at_its_top(skew):
    """A carry handle leaning to one side (a long, shallow side and a steep one) is held at the
    top of its arc, not at the middle of a run that slides down its shallow side."""
    mask = np.zeros((600, 600), np.uint8)
    cv2.rectangle(mask, (150, 200), (450, 520), 255, -1)
    xs = np.linspace(200, 400, 400)
    ys = 205 - 90 * np.sin(np.pi * ((xs - 200) / 200) ** skew)  # the handle's centre line
    cv2.polylines(mask, [np.stack([xs, ys], 1).round().astype(np.int32)], False, 255, 12)
    handle = find_handle(mask > 0, CFG, category="backpack")
    assert handle.kind == "top_loop"
    apex = (xs[np.argmin(ys)], ys.min())
    assert abs(handle.grip[0] - apex[0]) <= 6 and abs(handle.grip[1] - apex[1]) <= 6  # half its thickness


def test_the_brief_grip_point_picks_the_opening_and_disagreement_is_recorded():
    bag = draw_bag(handle="twin_loops")
    mask = segment(bag.image).mask
    openings = find_handle(mask, CFG).openings
    right = max(openings, key=lambda o: o.bbox[0])
    picked = find_handle(mask, CFG, brief_grip=(right.grip[0] + 3, right.grip[1] + 2))
    assert picked.opening is not None and picked.opening.bbox == right.bbox
    assert picked.grip == right.grip  # the grip itself comes from the mask
    assert not picked.disagreements
    far = find_handle(mask, CFG, brief_grip=(2.0, float(mask.shape[0] - 2)))
    assert far.grip is not None and any("grip point" in d for d in far.disagreements)


def _on_photo(bag, seed: int = 3) -> np.ndarray:
    """The synthetic bag pasted on a photo-like background: smooth blotches of foliage colours."""
    rng = np.random.default_rng(seed)
    h, w = bag.mask.shape
    noise = cv2.resize(
        rng.random((h // 24, w // 24, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    base = np.array([70, 120, 60], np.float32)
    photo = np.clip(base + 60 * (noise - 0.5), 0, 255).astype(np.uint8)
    return np.where(bag.mask[..., None], bag.image, photo)


def test_background_seen_through_a_loop_is_cut_on_a_photo_background():
    from autoshoot.geometry.segment import estimate_background

    bag = draw_bag(size=(480, 600))
    image = _on_photo(bag)
    border = estimate_background(image, CFG)
    assert not border.is_uniform(CFG)
    # a model's matte that kept the loop's inside (the opening filled)
    filled = bag.mask | enclosed_background(bag.mask)
    assert filled[bag.hole[1], bag.hole[0]]
    result = clean_mask(filled.astype(np.float32), image, CFG, border)
    assert not result.mask[bag.hole[1], bag.hole[0]], "the background inside the loop must be cut"
    assert result.holes_removed >= 1
    assert mask_iou(result.mask, bag.mask) >= 0.97
    # a handle the colour of the background behind it is product, not a hole: it stays
    green = draw_bag(size=(480, 600), handle_color=(70, 120, 60))
    kept = clean_mask(green.mask.astype(np.float32), _on_photo(green), CFG)
    assert mask_iou(kept.mask, green.mask) >= 0.99


def sling_mask(strap_px: int = 76) -> np.ndarray:
    """A sling pack's silhouette: a body and one padded strap that leaves its top, arcs over to
    the right and comes back to the body's side, leaving a tall, narrow wedge between them.
    HxW bool; the strap is about 12% of the product's diagonal thick."""
    mask = np.zeros((640, 520), np.uint8)
    cv2.rectangle(mask, (90, 170), (320, 600), 1, -1)
    strap = np.array([[180, 175], [250, 110], [330, 120], [385, 200], [400, 330], [320, 470]], np.int32)
    cv2.polylines(mask, [strap], False, 1, strap_px)
    return mask.astype(bool)


def test_padded_sling_strap_beside_a_narrow_wedge_is_a_strap():
    """Rays from a narrow wedge cross a padded strap slantwise: measured with a strap's
    thickness the wedge is a strap's opening, gripped on the strap above the wedge."""
    mask = sling_mask()
    handle = find_handle(mask, CFG, category="backpack")
    assert handle.kind == "strap_loop" and handle.opening is not None
    assert handle.opening.role == "strap"
    x, y = handle.grip
    assert mask[int(round(y)), int(round(x))], "the grip lies on the strap"
    assert y < handle.opening.bbox[1], "above the wedge, where the strap arcs over"
    # with a carry handle's thickness the same wedge has no thin wall: nothing is found
    carry_only = PrepareConfig(strap_max_wall_frac=CFG.handle_max_wall_frac)
    assert find_handle(mask, carry_only, category="backpack").kind == "none"


def test_thick_wall_over_a_wide_opening_is_never_a_handle():
    """The strap's thickness is only allowed beside a tall, narrow opening: a wide gap under a
    thick part of a bag (a flap, a pocket) stays no handle."""
    mask = np.zeros((640, 520), np.uint8)
    cv2.rectangle(mask, (90, 250), (430, 600), 1, -1)
    cv2.rectangle(mask, (150, 150), (370, 250), 1, -1)  # a block 13% of the diagonal thick ...
    cv2.rectangle(mask, (190, 225), (330, 262), 0, -1)  # ... with a wide slot under it
    handle = find_handle(mask.astype(bool), CFG, category="backpack")
    assert handle.kind == "none" and handle.grip is None


def test_sling_strap_is_gripped_at_the_top_of_its_arc():
    """The rays over the wedge only see the strap's part beside the body; the strap goes on
    rising over the top. The grip follows its outline to the arc's top, on its centre line."""
    strap_px = 76
    handle = find_handle(sling_mask(strap_px), CFG, category="backpack")
    assert handle.kind == "strap_loop" and handle.grip is not None
    # the strap's centre line is highest on its segment (250, 110)-(330, 120)
    x, y = handle.grip
    assert 250 <= x <= 330
    assert abs(y - (110 + (x - 250) / 8)) <= 0.25 * strap_px
    assert y < handle.opening.arc_top[1] - strap_px / 4, "above the wall over the wedge"


def test_slit_under_a_flat_handle_is_a_handle_not_a_speck(tmp_path):
    """A flat handle pressed onto the bag leaves a slit a few px tall, smaller than a speck: it
    is kept aside as long and thin, found as the handle's opening and left as background; a
    pale seam of the same size that is no handle's opening stays filled."""
    from PIL import Image

    from autoshoot.geometry.pipeline import ProductHints, prepare_product

    image = np.full((600, 600, 3), 250, np.uint8)
    cv2.rectangle(image, (100, 200), (500, 560), (40, 40, 45), -1)  # the body
    cv2.rectangle(image, (280, 188), (320, 200), (30, 30, 35), -1)  # a flat handle, sewn on at its ends
    cv2.rectangle(image, (288, 194), (311, 196), (250, 250, 250), -1)  # the slit under it: 24 x 3 px
    cv2.rectangle(image, (150, 400), (173, 402), (250, 250, 250), -1)  # a pale seam on the body, 24 x 3 px
    cv2.rectangle(image, (250, 300), (258, 307), (250, 250, 250), -1)  # a speck: 9 x 8 px
    result = segment(image)
    assert result.mask[195, 300] and result.mask[401, 160] and result.mask[303, 254], "all filled"
    assert result.slits[195, 300] and result.slits[401, 160] and not result.slits[303, 254]
    handle = find_handle(result.mask & ~result.slits, CFG, category="backpack")
    assert handle.kind == "top_loop"
    assert abs(handle.grip[0] - 300) <= 3 and 188 <= handle.grip[1] <= 194, "on the handle over the slit"
    path = tmp_path / "flat_handle.png"
    Image.fromarray(image).save(path)
    prepared = prepare_product(path, ProductHints(category="backpack"), load_config("default"))
    assert prepared.info["handle"] == "top_loop"
    assert prepared.mask[195, 300] == 0, "the handle's slit is background"
    assert prepared.mask[401, 160] == 255 and prepared.mask[303, 254] == 255, "the seam and the speck are not"
    # without the slit rule the slit is only a speck and no handle is found
    no_slits = PrepareConfig(gap_min_elongation=0)
    assert not segment(image, no_slits).slits.any()
    assert find_handle(segment(image, no_slits).mask, no_slits, category="backpack").kind == "none"


def test_pale_seam_under_the_top_edge_of_a_bag_without_handle_is_no_handle(tmp_path):
    """A slit just under the body's top edge (pale piping) has a thin wall above it too, but
    that wall is the body's own edge, not a handle standing proud of it: no handle, no cut."""
    from PIL import Image

    from autoshoot.geometry.pipeline import ProductHints, prepare_product

    image = np.full((600, 600, 3), 250, np.uint8)
    cv2.rectangle(image, (100, 200), (500, 560), (40, 40, 45), -1)
    cv2.rectangle(image, (288, 206), (311, 208), (250, 250, 250), -1)  # 24 x 3 px, 6 px under the top
    result = segment(image)
    assert result.slits[207, 300]
    assert find_handle(result.mask & ~result.slits, CFG, category="messenger").kind == "none"
    path = tmp_path / "no_handle.png"
    Image.fromarray(image).save(path)
    prepared = prepare_product(path, ProductHints(category="messenger"), load_config("default"))
    assert prepared.info["handle"] == "none" and prepared.info["erase_polygon"] == []
    assert prepared.mask[207, 300] == 255

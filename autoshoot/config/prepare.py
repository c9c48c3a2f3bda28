"""Config of the ``prepare`` stage (geometry). Owned by the geometry code.

    segmentation   which segmenter (auto picks ``plain`` for uniform borders, else the model),
                   the colour tolerances of ``plain``, hole clean-up, model locations
    handle         what counts as a handle opening (thinness, size)
    erase          the grip gap: palm width in cm and padding across the handle
    placement      canvas presets per shot, body scale per shot, margins
    outputs        canvas colour, how far the inpaint mask grows into the product, canny thresholds

Every size that depends on the image is a fraction of the product (or canvas) size, so the
same config works for a 360-px thumbnail and a 4000-px packshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Canvas presets (SDXL's trained sizes), portrait; their landscape forms swap w and h.
CANVAS_PRESETS = ((1024, 1024), (896, 1152), (832, 1216), (768, 1344))


def _default_shot_canvas() -> dict[str, tuple[int, int]]:
    # SDXL ~1 MP buckets (stage 1 renders each at its own size)
    return {"full_body": (832, 1216), "half_body": (896, 1152), "close": (1024, 1024)}


def _default_category_size_cm() -> dict[str, tuple[float, float]]:
    # the body's width x height in cm (handle excluded), typical of each category
    return {
        "handbag": (30.0, 22.0),
        "tote": (40.0, 38.0),
        "briefcase": (42.0, 32.0),
        "laptop_bag": (40.0, 30.0),
        "backpack": (30.0, 44.0),
        "duffle": (55.0, 30.0),
        "messenger": (38.0, 28.0),
        "suitcase": (45.0, 68.0),
        "other": (35.0, 30.0),
    }


def _default_category_size_range_cm() -> dict[str, tuple[float, float]]:
    # plausible longest side of the body in cm per category; a brief's size outside is flagged
    return {
        "handbag": (10.0, 50.0),
        "tote": (20.0, 70.0),
        "briefcase": (25.0, 60.0),
        "laptop_bag": (25.0, 60.0),
        "backpack": (20.0, 75.0),
        "duffle": (30.0, 95.0),
        "messenger": (20.0, 60.0),
        "suitcase": (35.0, 100.0),
        "other": (5.0, 80.0),
    }


@dataclass(frozen=True)
class PrepareConfig:
    # --- segmentation ---------------------------------------------------------------
    segmenter: str = "auto"  # auto | plain | birefnet | rembg
    model_segmenter: str = "rembg"  # what ``auto`` uses when the border is not uniform
    # BiRefNet: a hub id or local folder (transformers, trust_remote_code), or a local .onnx
    birefnet_model: str = "ZhengPeng7/BiRefNet"
    birefnet_size: int = 1024  # BiRefNet's input side
    # the rembg package: a session name (its model downloads into $U2NET_HOME, default ~/.u2net)
    # or a .onnx path; birefnet-general is BiRefNet-general, the reference workflow's model
    rembg_model: str = "birefnet-general"
    # the geometry runs on the photo shrunk to this long side (0: at full size); prepare.json's
    # coordinates and mask.png stay in the input's pixels. Its smoothing and gradient operators
    # work in pixels and were fitted on 600-1440 px packshots, and their answers drift above
    # that size (bench/geometry_eval.py --resample-sides: grip within 5% on 24/25 white
    # packshots resampled to 1536 px, 22/25 at 2048, 18/25 at 3072). The mask stays about as
    # fine as the product in the delivered 2048-px picture
    work_side: int = 1536
    border_px: int = 4  # width of the image frame sampled for the background colour
    border_uniform_tol: float = 14.0  # a border pixel within this distance counts as background
    border_uniform_frac: float = 0.7  # border is "uniform" when this fraction of it is background
    bg_tolerance: float = 12.0  # plain: minimum colour distance of product pixels from the background
    background_field: bool = True  # the backdrop's colour varies smoothly: a quadratic fitted to the frame
    # a catalog that squares its photos adds a flat pad round them (often pure white round a grey
    # studio): the backdrop is then read at the photo's own edge inside the pad, and the pad is
    # background (bench/geometry_eval.py --augment pad_white)
    detect_pad: bool = True
    pad_tol: float = 6.0  # a pad pixel lies within this of the pad's colour (JPEG ringing included)
    shadow_peel: bool = True  # plain: remove soft, grey, smooth shadows joined to the background
    shadow_min_light: float = 0.25  # darkest shadow that may be peeled: this share of the backdrop's light
    backdrop_max_light: float = 1.25  # a studio light may brighten the backdrop this much around the product
    shadow_max_chroma: float = 10.0  # shadows are the backdrop's colour dimmed: max channel spread from it
    shadow_chroma_slope: float = (
        0.2  # ... plus this share of the light lost (ambient light tints deep shadows)
    )
    shadow_max_gradient: float = 6.0  # shadows are smooth: max gradient per pixel
    shadow_edge_frac: float = (
        0.006  # a shadow's steep edge goes too this close (of the image side) to its core
    )
    grabcut: bool = False  # plain: GrabCut on the edge band (bench: worst bbox IoU 0.973 → 0.980, +80 ms,
    # but it can nibble thin straps at its reduced size, so it is off by default)
    grabcut_side: int = 512  # GrabCut runs at this long side
    matte_px: float = 1.5  # width of the soft edge of the canvas matte
    seen_through_cut: bool = True  # photo backgrounds: cut the background a model kept inside loops
    seen_through_band_frac: float = 0.04  # background colours are sampled this far outside (of the diagonal)
    seen_through_colors: int = 6  # k-means colours per palette
    seen_through_zone_frac: float = 0.6  # ... in this upper part of the product's height
    seen_through_ratio: float = 0.5  # a pixel is background when this much closer to its colours (Lab)
    seen_through_max_distance: float = 18.0  # ... and at most this far from one of them (Lab units)
    min_speck_frac: float = 0.0005  # holes and blobs smaller than this fraction of the bbox are noise
    gap_min_elongation: float = 4.0  # ... unless this many times longer than wide (a flat handle's slit)
    several_objects_frac: float = 0.05  # a second blob this large (vs the largest) warns
    # --- handle ---------------------------------------------------------------------
    handle_min_area_frac: float = 0.0005  # opening area / product bbox area
    handle_max_wall_frac: float = 0.12  # handle thickness / product bbox diagonal
    strap_max_wall_frac: float = 0.15  # ... for a padded strap beside a tall, narrow opening
    handle_min_thin_frac: float = 0.4  # part of the opening's top edge that must have a thin wall
    strap_loop_height_frac: float = 0.45  # opening height / product height above which it is a strap
    apex_falloff_frac: float = 0.03  # an opening's weight falls e-fold per 3% of the height below the top one
    # where arches cross over a loop, its top run reaches this far (of its width) below the apex
    grip_top_run_frac: float = 0.1
    body_open_frac: float = 0.04  # the body is the mask opened with a disk this wide (of the diagonal)
    carry_max_below_frac: float = (
        0.1  # a carry handle's opening ends this close (of the height) to the body's top
    )
    strap_max_apex_frac: float = 0.1  # a strap's arc starts this close (of the height) to the product's top
    brief_grip_frac: float = (
        0.1  # the brief's grip point picks openings whose grip is this close (of the diagonal)
    )
    twin_apex_frac: float = 0.12  # openings whose tops are this close (of the height) are twins
    # --- erase ----------------------------------------------------------------------
    palm_cm: float = 8.5  # the gap is as wide as a gripping hand
    erase_pad_frac: float = 0.35  # extra cut across the handle, as a fraction of its thickness
    erase_pad_min_px: float = 3.0
    erase_max_span_frac: float = 0.65  # the gap never takes more than this of the loop's width
    category_size_cm: dict[str, tuple[float, float]] = field(default_factory=_default_category_size_cm)
    category_size_range_cm: dict[str, tuple[float, float]] = field(
        default_factory=_default_category_size_range_cm
    )
    # --- placement ------------------------------------------------------------------
    shot_canvas: dict[str, tuple[int, int]] = field(default_factory=_default_shot_canvas)
    canvas_scale: float = 1.0  # multiplies every canvas size (tiny profile: 0.25); sizes stay multiples of 8
    person_height_cm: float = 170.0
    # visible height in cm of each shot (full body: a 170 cm person fills 90% of the height;
    # half body: head to knees; close: the hand and the product)
    shot_span_cm: dict[str, float] = field(
        default_factory=lambda: {"full_body": 189.0, "half_body": 140.0, "close": 70.0}
    )
    margin_frac: float = 0.03  # the product keeps this fraction of the canvas from every edge
    default_shot: str = "half_body"
    default_hold_pose: str = "beside_hip"
    # --- outputs --------------------------------------------------------------------
    canvas_color: tuple[int, int, int] = (240, 240, 240)  # neutral background of canvas.png (RGB)
    inpaint_grow_px: int = 6  # the inpaint mask reaches this far into the product's edge (canvas px)
    canny_low: int = 60
    canny_high: int = 160


PROFILES: dict[str, dict] = {
    "default": {},
    "tiny": {"segmenter": "plain", "canvas_scale": 0.25, "inpaint_grow_px": 2},
}

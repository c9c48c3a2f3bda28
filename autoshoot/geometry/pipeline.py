"""The geometry recipe: one product photo in, the ``autoshoot prepare`` folder out.

Both ``autoshoot prepare`` and the ``prepare`` stage call ``run_prepare``. Its output folder
holds exactly:

    prepare.json        bbox, handle, grip, erase polygon, canvas size, placement, ... (input px)
    mask.png            input size, 255 product / 0 background (handle openings 0)
    canvas.png          the erased product on a neutral background, canvas size
    inpaint_mask.png    255 = stage 1 paints there: all but the erased product, grown into its edge
    control_canny.png   canny edges of the erased product, canvas size
    debug.png           overlays for people
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from autoshoot.config import Config
from autoshoot.errors import ConfigError, StageError
from autoshoot.vocab import CATEGORIES, GRIP_POSES, HOLD_POSES, NON_GRIP_POSES, SHOTS

if TYPE_CHECKING:
    from autoshoot.geometry.segment import BorderStats

logger = logging.getLogger(__name__)

OUTPUT_FILES = (
    "prepare.json",
    "mask.png",
    "canvas.png",
    "inpaint_mask.png",
    "control_canny.png",
    "debug.png",
)


@dataclass(frozen=True)
class ProductHints:
    """What the geometry takes from the brief (or the command line). Everything is optional."""

    category: str = "other"
    size_cm: tuple[float, float] | None = None  # body width, height
    handle: str | None = None  # the brief's handle kind: a prior, not the truth
    handle_box: tuple[float, float, float, float] | None = None  # XYXY input px
    hold_pose: str | None = None
    shot: str | None = None
    grip_point: tuple[float, float] | None = None  # the VLM's grip, input px


@dataclass
class Prepared:
    """Everything ``run_prepare`` writes, in memory."""

    info: dict[str, Any]  # the prepare.json content
    mask: np.ndarray  # HxW uint8 {0, 255}, input size
    canvas: np.ndarray  # HxWx3 uint8 RGB, canvas size
    inpaint: np.ndarray  # HxW uint8 {0, 255}, canvas size
    canny: np.ndarray  # HxW uint8 {0, 255}, canvas size
    debug: np.ndarray  # RGB uint8
    flags: list[str] = field(default_factory=list)  # e.g. "no_handle"


def hints_from_brief(brief: dict[str, Any] | None) -> ProductHints:
    """Read the geometry's hints from a brief dict, tolerating missing or odd keys.

    Accepts ``{"product": {"category", "size_cm": [w, h] | "width"/"height", "handle",
    "handle_box"}, "hold_pose", "shot"}``; anything unusable falls back to defaults.
    """
    brief = brief or {}
    product = brief.get("product") or {}
    category = product.get("category") if product.get("category") in CATEGORIES else "other"
    size = product.get("size_cm")
    if size is None and product.get("width") and product.get("height"):
        size = (product.get("width"), product.get("height"))
    if isinstance(size, str):  # "38x30", as a catalog column writes it
        size = size.lower().replace(" ", "").split("x")
    size_cm = None
    try:
        if size is not None and len(size) == 2 and float(size[0]) > 0 and float(size[1]) > 0:
            size_cm = (float(size[0]), float(size[1]))
    except (TypeError, ValueError):
        size_cm = None
    box = product.get("handle_box")
    handle_box = None
    try:
        if box is not None and len(box) == 4:
            handle_box = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        handle_box = None
    point = product.get("grip_point")
    grip_point = None
    try:
        if point is not None and len(point) == 2:
            grip_point = (float(point[0]), float(point[1]))
    except (TypeError, ValueError):
        grip_point = None
    handle = product.get("handle")
    pose = brief.get("hold_pose")
    shot = brief.get("shot")
    return ProductHints(
        category=category,
        size_cm=size_cm,
        handle=handle if handle in ("top_loop", "twin_loops", "strap_loop", "none") else None,
        handle_box=handle_box,  # type: ignore[arg-type]
        grip_point=grip_point,
        hold_pose=pose if pose in HOLD_POSES else None,
        shot=shot if shot in SHOTS else None,
    )


def load_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a photo: (HxWx3 uint8 RGB, HxW float32 alpha [0, 1] or None when opaque).

    The same reader as the composite's (``catalog.load_product_image``): EXIF rotation is
    applied, so pixel coordinates match what people see, and CMYK/palette/16-bit images are
    converted the same way.
    """
    from autoshoot.catalog import load_product_image

    try:
        rgb, alpha8 = load_product_image(path)
    except (OSError, ValueError) as err:
        raise StageError(f"cannot read image {str(path)!r}: {err}") from err
    if alpha8 is None or alpha8.min() > 0.98 * 255:
        return rgb, None
    alpha = alpha8.astype(np.float32) / 255.0
    # transparent pixels often hold junk colours: show them as white
    rgb[alpha < 0.02] = 255
    return rgb, alpha


@dataclass(frozen=True)
class WorkScale:
    """The working copy of a photo: ``fx``, ``fy`` working pixels per input pixel (1 = the
    input itself). Pixel centres sit at integers in both, and a resize maps pixel edges to
    edges, so a point moves by (x + 0.5)·f - 0.5 and a length by f."""

    fx: float = 1.0
    fy: float = 1.0

    @property
    def f(self) -> float:
        return (self.fx + self.fy) / 2

    def point_to_input(self, p: tuple[float, float] | list[float]) -> tuple[float, float]:
        return (float(p[0]) + 0.5) / self.fx - 0.5, (float(p[1]) + 0.5) / self.fy - 0.5

    def point_to_work(self, p: tuple[float, float] | list[float]) -> tuple[float, float]:
        return (float(p[0]) + 0.5) * self.fx - 0.5, (float(p[1]) + 0.5) * self.fy - 0.5

    def placement_to_input(
        self, scale: float, offset: tuple[float, float] | list[float]
    ) -> tuple[float, tuple[float, float]]:
        """``canvas = work · scale + offset`` → the same map from input pixels (one scale: the
        working copy keeps the aspect within a pixel, and the x factor is the canvas's)."""
        s = float(scale) * self.fx
        return s, (
            float(offset[0]) + float(scale) * 0.5 * (self.fx - 1.0),
            float(offset[1]) + float(scale) * 0.5 * (self.fy - 1.0),
        )

    def mask_to_input(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A working-size HxW bool mask at the input's ``shape`` (H, W): linear interpolation,
        then the half level."""
        if self.fx == 1.0 and self.fy == 1.0:
            return mask
        return cv2.resize(mask.astype(np.float32), shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5

    def hints_to_work(self, hints: ProductHints) -> ProductHints:
        """The brief's input-pixel handle box and grip point in working pixels."""
        if self.fx == 1.0 and self.fy == 1.0:
            return hints
        box = hints.handle_box
        return replace(
            hints,
            handle_box=None
            if box is None
            else (box[0] * self.fx, box[1] * self.fy, box[2] * self.fx, box[3] * self.fy),
            grip_point=None if hints.grip_point is None else self.point_to_work(hints.grip_point),
        )


def shrink_to_work_side(
    image: np.ndarray, alpha: np.ndarray | None, work_side: int
) -> tuple[np.ndarray, np.ndarray | None, WorkScale]:
    """The photo (and its alpha) area-averaged down to ``work_side`` px on its long side, with
    its ``WorkScale``; unchanged when it is no larger, or when ``work_side`` is 0."""
    h, w = image.shape[:2]
    if work_side < 0 or 0 < work_side < 256:
        raise ConfigError(
            f"prepare.work_side={work_side}: use 0 (geometry at the photo's full size) or at least 256 "
            "px, e.g. --set prepare.work_side=1536"
        )
    if work_side == 0 or max(h, w) <= work_side:
        return image, alpha, WorkScale()
    k = work_side / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_alpha = None if alpha is None else cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return small, small_alpha, WorkScale(size[0] / w, size[1] / h)


def choose_segmenter(
    image: np.ndarray, config: Config, border: BorderStats | None = None
) -> tuple[str, bool]:
    """``(name, border_uniform)``: the configured segmenter, or for ``auto`` plain when the border
    is uniform, else the configured model. image: HxWx3 uint8 RGB; ``border``: its
    ``estimate_background``, when the caller has it already."""
    from autoshoot.geometry.segment import estimate_background

    pc = config.prepare
    uniform = (border or estimate_background(image, pc)).is_uniform(pc)
    if pc.segmenter != "auto":
        return pc.segmenter, uniform
    return ("plain" if uniform else pc.model_segmenter), uniform


def default_session_getter() -> Callable[[str, Callable[[], Any]], Any]:
    cache: dict[str, Any] = {}

    def get(key: str, factory: Callable[[], Any]) -> Any:
        if key not in cache:
            cache[key] = factory()
        return cache[key]

    return get


def prepare_product(
    image_path: Path,
    hints: ProductHints,
    config: Config,
    get_session: Callable[[str, Callable[[], Any]], Any] | None = None,
) -> Prepared:
    """Segment, find the handle, erase the gap, place on the canvas, draw the outputs.

    ``get_session(key, factory)`` builds each segmenter once per run (``Job.sessions.get``).
    """
    from autoshoot.backends import SEGMENTERS
    from autoshoot.geometry.canvas import make_canny, make_canvas, make_inpaint_mask
    from autoshoot.geometry.debug import draw_debug
    from autoshoot.geometry.erase import erase_polygon, pixels_per_cm, polygon_mask
    from autoshoot.geometry.handles import find_handle
    from autoshoot.geometry.place import place_product
    from autoshoot.geometry.segment import clean_mask, enclosed_background, estimate_background, mask_bbox

    pc = config.prepare
    get_session = get_session or default_session_getter()
    t0 = time.perf_counter()
    marks: dict[str, float] = {}

    def mark(step: str) -> None:
        marks[step] = round(time.perf_counter() - t0 - sum(marks.values()), 4)

    warnings: list[str] = []
    flags: list[str] = []
    # 1. the photo (a transparent PNG brings its own mask), shrunk to the working size
    full, alpha_in = load_image(Path(image_path))
    h_img, w_img = full.shape[:2]
    image, alpha_in, work = shrink_to_work_side(full, alpha_in, pc.work_side)
    hints = work.hints_to_work(hints)
    mark("load")
    # 2. segment
    border = estimate_background(image, pc)
    if alpha_in is not None:
        segmenter, alpha = "alpha", alpha_in
    else:
        segmenter, _ = choose_segmenter(image, config, border)
        SEGMENTERS.check(segmenter)
        model = get_session(f"segmenter:{segmenter}", lambda: SEGMENTERS.create(segmenter, config))
        alpha = model.predict(image)
    mark("segment")
    # 3. clean: largest blob, specks, background-coloured openings, cropped?
    cleaned = clean_mask(alpha, image, pc, border)
    mask = cleaned.mask
    warnings += cleaned.warnings
    bbox = mask_bbox(mask)
    mark("clean")
    # 4. handle (a slit filled as a speck may be the gap under a flat handle)
    slits = cleaned.slits if cleaned.slits is not None and cleaned.slits.any() else None
    handle = find_handle(
        mask & ~slits if slits is not None else mask,
        pc,
        category=hints.category,
        brief_handle=hints.handle,
        handle_box=hints.handle_box,
        brief_grip=hints.grip_point,
    )
    if slits is not None:
        # only the slits that are a handle's opening are background; the others stay filled
        mask = mask & ~handle_slits(slits, handle.openings)
    warnings += handle.notes if handle.kind != "none" else []
    if handle.disagreements:
        flags.append("handle_disagreement")
        warnings += [f"handle signals disagree: {d}" for d in handle.disagreements]
    mark("handle")
    # 5. pose and real scale
    size_cm, size_warning = plausible_size(hints.size_cm, hints.category, pc)
    if size_warning:
        flags.append("size_implausible")
        warnings.append(size_warning)
    ppc = pixels_per_cm(bbox, size_cm)
    pose = hints.hold_pose or pc.default_hold_pose
    if handle.kind == "none":
        # no graspable handle found with confidence: erase nothing, hold it without a grip
        flags.append("no_handle")
        if pose not in NON_GRIP_POSES:
            warnings.append(f"no graspable handle found: hold pose {pose} changed to {NON_GRIP_POSES[0]}")
            pose = NON_GRIP_POSES[0]
    # 6. erase the grip gap (only a gripping pose on a found handle needs one)
    polygon = erase_polygon(handle, ppc, pc) if pose in GRIP_POSES and handle.grip is not None else []
    erased = mask & ~polygon_mask(polygon, mask.shape)
    # 7. place
    shot = hints.shot or pc.default_shot
    plan = place_product(bbox, handle.grip, ppc, shot, pose, pc)
    # 8. stage 1's inputs
    product_alpha = erased_alpha(alpha, mask, erased)
    canvas, canvas_alpha = make_canvas(
        image, product_alpha, plan.scale, plan.offset, plan.canvas_size, pc.canvas_color
    )
    inpaint = make_inpaint_mask(canvas_alpha, pc.inpaint_grow_px)
    canny = make_canny(canvas, canvas_alpha, pc.canny_low, pc.canny_high)
    canvas_grip = None
    if handle.grip is not None:
        canvas_grip = [
            handle.grip[0] * plan.scale + plan.offset[0],
            handle.grip[1] * plan.scale + plan.offset[1],
        ]
    # back to the input's pixels: the mask, the box, the points, the lengths and the placement
    full_mask = work.mask_to_input(mask, (h_img, w_img))
    grip_in = work.point_to_input(handle.grip) if handle.grip is not None else None
    scale_in, offset_in = work.placement_to_input(plan.scale, plan.offset)
    info: dict[str, Any] = {
        "image_size": [w_img, h_img],
        "work_scale": [round(work.fx, 6), round(work.fy, 6)],
        "product_bbox": list(mask_bbox(full_mask)),
        "handle": handle.kind,
        "grip": [round(grip_in[0], 2), round(grip_in[1], 2)] if grip_in else None,
        "erase_polygon": [[round(x, 2), round(y, 2)] for x, y in (work.point_to_input(p) for p in polygon)],
        "canvas_size": list(plan.canvas_size),
        "placement": {"scale": scale_in, "offset": list(offset_in)},
        "canvas_grip": [round(v, 2) for v in canvas_grip] if canvas_grip else None,
        "hold_pose": plan.hold_pose,
        "shot": plan.shot,
        "segmenter": segmenter,
        "handle_thickness_px": round(handle.thickness / work.f, 2),
        "handle_direction": [round(v, 4) for v in handle.direction],
        "handle_topology": handle.topology_kind,
        "handle_role": handle.opening.role if handle.opening is not None else None,
        "handle_disagreements": handle.disagreements,
        "size_cm": list(size_cm),
        "px_per_cm": round(ppc / work.f, 4),
        "canvas_px_per_cm": round(plan.canvas_px_per_cm, 4),
        "warnings": warnings,
        "fallbacks": plan.fallbacks,
        "flags": flags,
        "seconds": 0.0,
        "step_seconds": {},
    }
    mark("erase_place_outputs")
    # 9. the overlay for people
    caption = (
        f"handle {handle.kind}  segmenter {segmenter}  shot {plan.shot}  pose {plan.hold_pose}  "
        + "; ".join(warnings + plan.fallbacks)
    )
    debug = draw_debug(
        image, mask, enclosed_background(mask), bbox, handle.grip, polygon, canvas, inpaint, canny, caption
    )
    mark("debug")
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["step_seconds"] = marks
    logger.info("prepared %s: %s, grip %s, %.2fs", image_path, handle.kind, info["grip"], info["seconds"])
    return Prepared(
        info=info,
        mask=np.where(full_mask, 255, 0).astype(np.uint8),
        canvas=canvas,
        inpaint=inpaint,
        canny=canny,
        debug=debug,
        flags=flags,
    )


def plausible_size(
    size_cm: tuple[float, float] | None, category: str, pc: Any
) -> tuple[tuple[float, float], str]:
    """``(size to place at, warning)``: the brief's size when it is plausible for the category,
    else the category's default size and a warning saying why (a bottle is not 106 cm tall)."""
    default = pc.category_size_cm.get(category) or pc.category_size_cm["other"]
    if size_cm is None:
        return tuple(default), ""  # type: ignore[return-value]
    low, high = pc.category_size_range_cm.get(category) or pc.category_size_range_cm["other"]
    longest = max(size_cm)
    if low <= longest <= high:
        return size_cm, ""
    return tuple(default), (  # type: ignore[return-value]
        f"size {size_cm[0]:g}x{size_cm[1]:g} cm is implausible for a {category} (longest side "
        f"{low:g}-{high:g} cm): placed at the category's {default[0]:g}x{default[1]:g} cm instead; "
        "set size_cm in the catalog if the size is right"
    )


def handle_slits(slits: np.ndarray, openings: list[Any]) -> np.ndarray:
    """The parts of ``slits`` (HxW bool) that are graspable handle openings (``Opening.role``
    carry or strap, matched by their box): HxW bool."""
    out = np.zeros(slits.shape, bool)
    graspable = [o for o in openings if o.role != "other"]
    if not graspable:
        return out
    n, labels, stats, _ = cv2.connectedComponentsWithStats(slits.astype(np.uint8), connectivity=4)
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        if any(o.bbox == (x, y, x + w, y + h) for o in graspable):
            out |= labels == i
    return out


def erased_alpha(alpha: np.ndarray, mask: np.ndarray, erased: np.ndarray) -> np.ndarray:
    """The canvas matte: ``alpha`` (HxW float32) where the erased product is, its soft edge in a
    2-px band outside the mask, and 0 elsewhere (openings the clean-up cut out, the grip gap)."""
    band = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mask
    out = np.zeros(alpha.shape, np.float32)
    out[erased] = np.maximum(alpha[erased], 0.5)
    out[band] = np.minimum(alpha[band], 0.49)
    gap = mask & ~erased
    if gap.any():
        near_gap = cv2.dilate(gap.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        out[near_gap & ~erased] = 0.0
    return out


def write_prepared(prepared: Prepared, out: Path) -> dict[str, Any]:
    """Write the six files of the contract into ``out`` (atomically); return prepare.json's content."""
    from autoshoot.io import atomic_write_json, save_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_image(out / "mask.png", prepared.mask)
    save_image(out / "canvas.png", prepared.canvas)
    save_image(out / "inpaint_mask.png", prepared.inpaint)
    save_image(out / "control_canny.png", prepared.canny)
    save_image(out / "debug.png", prepared.debug)
    atomic_write_json(out / "prepare.json", prepared.info)
    return prepared.info


def run_prepare(
    image_path: Path,
    out: Path,
    config: Config,
    hints: ProductHints | None = None,
    get_session: Callable[[str, Callable[[], Any]], Any] | None = None,
) -> Prepared:
    """``prepare_product`` + ``write_prepared``: the one entry of the command and the stage."""
    prepared = prepare_product(Path(image_path), hints or ProductHints(), config, get_session)
    write_prepared(prepared, Path(out))
    return prepared

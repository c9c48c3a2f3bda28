"""Segmentation without a model (``plain``) and the clean-up every segmenter's mask goes through.

Array contracts used throughout:

- ``image``: HxWx3 uint8, RGB.
- ``alpha``: HxW float32 in [0, 1], 1 = product.
- ``mask``: HxW bool, True = product. Background seen through a handle loop is False.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from autoshoot.config.prepare import PrepareConfig
from autoshoot.errors import StageError

logger = logging.getLogger(__name__)


class NoProductError(StageError):
    """Nothing but background was found in the image."""


@dataclass(frozen=True)
class BorderStats:
    color: tuple[float, float, float]  # median RGB of the image frame
    uniform_frac: float  # fraction of the frame within ``border_uniform_tol`` of the background
    noise: float  # 95th percentile of the frame's colour distance to the background
    # the background's colour as a smooth surface (a studio backdrop with a vignette or a
    # gradient): 6x3 coefficients of a quadratic in the image's normalised (u, v), per channel;
    # None for a flat ``color``
    field_coef: np.ndarray | None = field(default=None, compare=False)
    # a flat pad round the photo (``find_pad``): the photo's box as fractions of the image's
    # width and height (x0, y0, x1, y1), and the pad's colour. The stats above are then the
    # photo's, read at its own edge; the pad is background of its own colour
    content: tuple[float, float, float, float] | None = None
    pad_color: tuple[float, float, float] | None = None

    def is_uniform(self, config: PrepareConfig) -> bool:
        return self.uniform_frac >= config.border_uniform_frac

    def colour_at(self, shape: tuple[int, ...]) -> np.ndarray:
        """The background's colour at every pixel of an HxW image: HxWx3 float32.

        The surface is smooth, so it is evaluated on a grid of at most 64 px a side and resized.
        With a pad, the pad's pixels get the pad's colour and the photo inside it its own.
        """
        h, w = shape[:2]
        if self.content is None:
            return self._field_at(h, w)
        x0, y0, x1, y1 = self.content_box(shape)
        out = np.empty((h, w, 3), np.float32)
        out[:] = np.asarray(self.pad_color, np.float32)
        out[y0:y1, x0:x1] = self._field_at(y1 - y0, x1 - x0)
        return out

    def content_box(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The photo inside the pad in an HxW image's pixels (XYXY, x1 and y1 exclusive); the
        whole image without a pad."""
        h, w = shape[:2]
        if self.content is None:
            return 0, 0, w, h
        fx0, fy0, fx1, fy1 = self.content
        return round(fx0 * w), round(fy0 * h), round(fx1 * w), round(fy1 * h)

    def _field_at(self, h: int, w: int) -> np.ndarray:
        if self.field_coef is None:
            return np.broadcast_to(np.asarray(self.color, np.float32), (h, w, 3))
        gh, gw = min(h, 64), min(w, 64)
        # grid points at the centres of the resized image's cells, in the image's (u, v)
        gu = (((np.arange(gw, dtype=np.float32) + 0.5) * w / gw - 0.5) / max(1, w - 1) - 0.5)[None, :, None]
        gv = (((np.arange(gh, dtype=np.float32) + 0.5) * h / gh - 0.5) / max(1, h - 1) - 0.5)[:, None, None]
        c = self.field_coef.astype(np.float32)
        grid = c[0] + c[1] * gu + c[2] * gv + c[3] * gu * gu + c[4] * gu * gv + c[5] * gv * gv
        return cv2.resize(np.clip(grid, 0.0, 255.0), (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass
class CleanResult:
    mask: np.ndarray  # HxW bool
    warnings: list[str] = field(default_factory=list)
    holes_removed: int = 0  # enclosed background-coloured regions cut out of the mask
    # HxW bool: the long, thin holes filled as specks (the slit under a flat handle, or a pale
    # seam); the handle finder looks at them, and only a handle's slit is cut out again
    slits: np.ndarray | None = None


def estimate_background(image: np.ndarray, config: PrepareConfig) -> BorderStats:
    """The background's colour from a ``border_px`` frame, and how much of the frame matches it.

    image: HxWx3 uint8 RGB. A photo squared with a flat pad (``find_pad``) is read at its own
    edge inside the pad, and the pad is background of its own colour (``BorderStats.content``).
    """
    found = find_pad(image, config) if config.detect_pad else None
    if found is None:
        return frame_background(image, config)
    (x0, y0, x1, y1), pad_color = found
    h, w = image.shape[:2]
    photo = image[y0:y1, x0:x1]
    inner = frame_background(photo, config)
    # the photo must hold a product on its backdrop: a centred, square-cornered product of one
    # colour on the pad's colour would otherwise be read as a backdrop with nothing on it
    threshold = max(config.bg_tolerance, inner.noise + 6.0)
    if float((background_distance(photo, inner) > threshold).mean()) < 0.02:
        return frame_background(image, config)
    return replace(inner, content=(x0 / w, y0 / h, x1 / w, y1 / h), pad_color=pad_color)


def find_pad(
    image: np.ndarray, config: PrepareConfig
) -> tuple[tuple[int, int, int, int], tuple[float, float, float]] | None:
    """The photo inside a flat pad, as a catalog squaring its photos adds one: its XYXY box (x1,
    y1 exclusive) and the pad's colour, or None.

    image: HxWx3 uint8 RGB. The pad has the colour of the image's outermost pixels, flat within
    ``pad_tol``: lines of it run in from the edges. A pad is taken only as a catalog adds one
    round a photo, which a product on a plain backdrop of the pad's colour does not mimic:
    - it is centred: as thick on both sides of each axis (within 2 lines);
    - past the pad on each padded side, one of the first lines (up to 8: JPEG rings at the
      step) is off the pad's colour along 97% of its length, as a photo's straight edge is (a
      product meets those lines at its handle's apex, or its rounded corners);
    - the photo's four corner pixels are off the pad's colour: a photo's corners are square.
    A pad within ``pad_tol`` of the photo's backdrop needs no finding: the backdrop matches it.
    """
    h, w = image.shape[:2]
    if min(h, w) < 32:
        return None
    frame, _, _ = frame_pixels(image, 1)
    pad_color = np.median(frame, axis=0)
    lower = np.clip(np.rint(pad_color) - config.pad_tol, 0, 255)
    upper = np.clip(np.rint(pad_color) + config.pad_tol, 0, 255)

    def off(pixels: np.ndarray) -> np.ndarray:
        """HxWx3 → HxW float32: 1 where a pixel is off the pad's colour (in any channel)."""
        return (cv2.inRange(pixels, lower, upper) == 0).astype(np.float32)

    # every line exactly, each read at about every 4th pixel along it
    w4, h4 = max(1, w // 4), max(1, h // 4)
    rows = off(cv2.resize(image, (w4, h), interpolation=cv2.INTER_NEAREST))
    cols = off(cv2.resize(image, (w, h4), interpolation=cv2.INTER_NEAREST))

    def pad_lines(fractions: np.ndarray) -> int:
        """Lines from one side that are the pad's: at most 1% off its colour (a speck)."""
        inside = np.flatnonzero(fractions > 0.01)
        return int(inside[0]) if len(inside) else len(fractions)

    row_off, col_off = rows.mean(axis=1), cols.mean(axis=0)
    top, bottom = pad_lines(row_off), pad_lines(row_off[::-1])
    left, right = pad_lines(col_off), pad_lines(col_off[::-1])
    if top + bottom >= h - 16 or left + right >= w - 16 or not (top or bottom or left or right):
        return None
    # a catalog centres the photo it squares: the pad is as thick on both sides of an axis
    if abs(top - bottom) > 2 or abs(left - right) > 2:
        return None
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    # a photo's corners are square: each is off the pad's colour (a product's are rounded)
    corners = [image[y, x] for y in (y0, y1 - 1) for x in (x0, x1 - 1)]
    if any((np.abs(c.astype(np.int16) - np.rint(pad_color)) <= config.pad_tol).all() for c in corners):
        return None
    # the photo's lines beyond the pad, along its own length
    across = rows[y0:y1, -(-x0 * w4 // w) : x1 * w4 // w]
    down = cols[-(-y0 * h4 // h) : y1 * h4 // h, x0:x1]
    edges = (
        (top, across[:8].mean(axis=1)),
        (bottom, across[-8:].mean(axis=1)),
        (left, down[:, :8].mean(axis=0)),
        (right, down[:, -8:].mean(axis=0)),
    )
    if any(width and fractions.max() < 0.97 for width, fractions in edges):
        return None
    return (x0, y0, x1, y1), (float(pad_color[0]), float(pad_color[1]), float(pad_color[2]))


def frame_background(image: np.ndarray, config: PrepareConfig) -> BorderStats:
    """``estimate_background`` of an image read at its own frame (no pad).

    A studio backdrop is rarely one colour: it darkens towards the corners (vignette) or
    fades from top to bottom. With ``background_field`` the background is a quadratic surface
    per channel fitted to the frame pixels near its median colour, refitted once without the
    pixels far from the first fit (a product or a shadow crossing the frame). The frame's match
    and noise are measured against that surface; a photographic background fits no surface and
    stays non-uniform.
    """
    h, w = image.shape[:2]
    b = max(1, min(config.border_px, h // 4, w // 4))
    frame, ys, xs = frame_pixels(image, b)
    frame = frame.astype(np.float32)
    color = np.median(frame, axis=0)
    dist = np.abs(frame - color).max(axis=1)
    matching = dist <= config.border_uniform_tol
    coef = None
    if config.background_field and matching.sum() >= 50:
        u, v = xs / max(1, w - 1) - 0.5, ys / max(1, h - 1) - 0.5
        design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1).astype(np.float32)
        keep = matching
        for _ in range(2):
            coef, *_ = np.linalg.lstsq(design[keep], frame[keep], rcond=None)
            residual = np.abs(frame - design @ coef).max(axis=1)
            keep = residual <= config.border_uniform_tol / 2.0
            if keep.sum() < 50:
                break
        field_match = residual <= config.border_uniform_tol
        if field_match.mean() > matching.mean():
            dist, matching = residual, field_match
        else:
            coef = None  # the flat colour explains the frame as well: keep it simple
    # noise of the background itself (a product crossing the frame is not noise)
    noise = float(np.percentile(dist[matching], 95)) if matching.any() else float(np.percentile(dist, 95))
    return BorderStats(
        color=(float(color[0]), float(color[1]), float(color[2])),
        uniform_frac=float(matching.mean()),
        noise=noise,
        field_coef=None if coef is None else np.asarray(coef, np.float32),
    )


def frame_pixels(image: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of a ``b``-px frame round ``image`` (HxWxC, b <= H/4 and W/4) as (N, C), with
    their rows and columns, in row-major order (as ``image[frame_mask]`` and ``np.nonzero`` give
    them), taken from the four strips without a full-size mask."""
    h, w = image.shape[:2]
    cols = np.arange(w)
    side_cols = np.concatenate([cols[:b], cols[w - b :]])
    inner = np.arange(b, h - b)
    middle = np.concatenate([image[b : h - b, :b], image[b : h - b, w - b :]], axis=1)
    frame = np.concatenate(
        [
            image[:b].reshape(-1, image.shape[2]),
            middle.reshape(-1, image.shape[2]),
            image[h - b :].reshape(-1, image.shape[2]),
        ]
    )
    ys = np.concatenate(
        [np.repeat(np.arange(b), w), np.repeat(inner, 2 * b), np.repeat(np.arange(h - b, h), w)]
    )
    xs = np.concatenate([np.tile(cols, b), np.tile(side_cols, len(inner)), np.tile(cols, b)])
    return frame, ys, xs


def color_distance(image: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    """Per-pixel max-channel distance to ``color`` after a 3x3 median (JPEG noise): HxW float32.

    A median keeps gaps two pixels wide open, where a blur would close them.
    """
    blurred = cv2.medianBlur(np.ascontiguousarray(image), 3)
    ref = np.empty_like(blurred)
    ref[:] = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    diff = cv2.absdiff(blurred, ref)  # uint8, per channel
    c0, c1, c2 = cv2.split(diff)
    return cv2.max(cv2.max(c0, c1), c2).astype(np.float32)


def background_distance(image: np.ndarray, border: BorderStats, bg: np.ndarray | None = None) -> np.ndarray:
    """``color_distance`` to the background: its flat colour, or its colour field where it has one.

    image: HxWx3 uint8 RGB; ``bg``: ``border.colour_at(image.shape)`` when already computed.
    Returns HxW float32.
    """
    if border.field_coef is None and border.content is None:
        return color_distance(image, border.color)
    bg = border.colour_at(image.shape) if bg is None else bg
    blurred = cv2.medianBlur(np.ascontiguousarray(image), 3).astype(np.float32)
    c0, c1, c2 = cv2.split(cv2.absdiff(blurred, np.ascontiguousarray(bg, np.float32)))
    return cv2.max(cv2.max(c0, c1), c2)


def segment_plain(image: np.ndarray, config: PrepareConfig, border: BorderStats | None = None) -> np.ndarray:
    """Product alpha of a packshot on a uniform background, without a model.

    image: HxWx3 uint8 RGB. Returns alpha: HxW float32 in [0, 1].

    1. background colour from the frame; 2. colour distance above a noise-aware threshold;
    3. peel soft grey shadows joined to the outside; 4. optional GrabCut on the edge band;
    5. a soft matte over ``matte_px`` at the edge.
    """
    # 1. background colour and threshold
    border = border or estimate_background(image, config)
    bg = border.colour_at(image.shape)
    dist = background_distance(image, border, bg)
    threshold = max(config.bg_tolerance, border.noise + 6.0)
    # 2. everything clearly off the background colour
    fg = dist > threshold
    if not fg.any():
        return np.zeros(dist.shape, np.float32)
    # 3. shadows: grey, darker than the background, smooth, reachable from the outside
    if config.shadow_peel:
        fg = peel_shadows(image, dist, fg, bg, config)
    # 4. GrabCut on the uncertain band
    if config.grabcut:
        fg = refine_grabcut(image, fg, config)
    # 5. matte: binary inside, a ramp of the colour distance across the edge
    return matte_edge(fg, dist, threshold, config.matte_px)


def peel_shadows(
    image: np.ndarray,
    dist: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    config: PrepareConfig,
) -> np.ndarray:
    """Drop soft shadows from ``fg``: the background's own colour dimmed, smooth, joined to the outside.

    image: HxWx3 uint8 RGB; dist: HxW float32 colour distance; fg: HxW bool; bg: HxWx3 float32,
    the background's colour (``BorderStats.colour_at``). Returns HxW bool.
    A shadow dims every channel of the backdrop by the same factor, so its colour is the
    background's, darker: on a bluish studio grey a shadow is bluish too. Its chroma is measured
    against that dimmed background colour (on a neutral background: plain max - min).
    A shadow region is only removed when it touches the background that touches the frame and
    is smaller than the product itself (a pale, flat product must never be peeled away).
    """
    gray = cv2.cvtColor(cv2.GaussianBlur(image, (5, 5), 0), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = (
        np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    )
    # within the box of the candidate product pixels only (the rest is background)
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    p = cv2.split(image[box].astype(np.float32))
    b = cv2.split(np.ascontiguousarray(bg[box], np.float32))
    bg_sum = cv2.max(b[0] + b[1] + b[2], 1.0)
    # how much of the backdrop's light a pixel keeps: below 1 in a shadow, above it where a
    # studio light brightens the floor around the product
    light = (p[0] + p[1] + p[2]) / bg_sum
    # what is left once the dimmed background colour is taken away; its spread is the chroma
    r0, r1, r2 = (cv2.subtract(pc, cv2.multiply(light, bc)) for pc, bc in zip(p, b, strict=True))
    chroma = cv2.subtract(cv2.max(cv2.max(r0, r1), r2), cv2.min(cv2.min(r0, r1), r2))
    lost = cv2.absdiff(bg_sum, light * bg_sum) / 3.0  # grey levels of light lost (or gained)
    backdrop_like = np.zeros(fg.shape, bool)
    backdrop_like[box] = (
        fg[box]
        & (light >= config.shadow_min_light)
        & (light <= config.backdrop_max_light)
        & (chroma <= config.shadow_max_chroma + config.shadow_chroma_slope * lost)
    )
    candidate = backdrop_like & (grad <= config.shadow_max_gradient)
    if not candidate.any():
        return fg
    # components of (background ∪ shadow candidates) that reach the frame
    shadow = candidate & reaches_frame((~fg) | candidate)
    if config.shadow_edge_frac > 0 and shadow.any():
        # a render's shadow has a crisp edge: a steep ramp of the backdrop's colour around the
        # smooth core. Its pixels go too, where they lie within a few px of the core.
        r = max(1, round(config.shadow_edge_frac * max(fg.shape)))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        shadow |= backdrop_like & cv2.dilate(shadow.astype(np.uint8), disk).astype(bool)
    if shadow.sum() > 0.5 * (fg & ~shadow).sum():
        logger.debug("shadow peel skipped: it would remove %d of %d product pixels", shadow.sum(), fg.sum())
        return fg
    # the shadow's steep inner ramp can leave one-pixel crumbs beside it: open only there, so
    # thin straps elsewhere stay whole
    peeled = fg & ~shadow
    kernel = np.ones((3, 3), np.uint8)
    opened = cv2.morphologyEx(peeled.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    near_shadow = cv2.dilate(shadow.astype(np.uint8), kernel, iterations=2).astype(bool)
    return np.where(near_shadow, opened, peeled)


def refine_grabcut(image: np.ndarray, fg: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """GrabCut on a band around the edge of ``fg`` at ``grabcut_side`` px; the core stays fixed.

    image: HxWx3 uint8 RGB; fg: HxW bool. Returns HxW bool at the input size.
    """
    h, w = fg.shape
    s = min(1.0, config.grabcut_side / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    fg_small = cv2.resize(fg.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    band = max(2, round(3 * s * max(h, w) / 512))
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    sure_fg = cv2.erode(fg_small, kernel).astype(bool)
    maybe = cv2.dilate(fg_small, kernel).astype(bool)
    gc = np.full(fg_small.shape, cv2.GC_BGD, np.uint8)
    gc[maybe] = cv2.GC_PR_BGD
    gc[fg_small.astype(bool)] = cv2.GC_PR_FGD
    gc[sure_fg] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error as err:  # degenerate colour models (e.g. a one-colour product)
        logger.debug("GrabCut skipped: %s", err)
        return fg
    refined_small = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    refined = cv2.resize(refined_small, (w, h), interpolation=cv2.INTER_LINEAR).astype(bool)
    # only the band may change at full size
    big_kernel = np.ones((2 * round(band / s) + 1,) * 2, np.uint8)
    core = cv2.erode(fg.astype(np.uint8), big_kernel).astype(bool)
    outer = cv2.dilate(fg.astype(np.uint8), big_kernel).astype(bool)
    return core | (refined & outer)


def matte_edge(fg: np.ndarray, dist: np.ndarray, threshold: float, matte_px: float) -> np.ndarray:
    """Binary ``fg`` with a soft ramp of the colour distance in a thin band at its edge.

    fg: HxW bool; dist: HxW float32. Returns alpha HxW float32 in [0, 1] with alpha >= 0.5
    exactly where ``fg`` is True.
    """
    alpha = fg.astype(np.float32)
    if matte_px <= 0:
        return alpha
    k = max(1, int(np.ceil(matte_px)))
    kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
    inner_band = fg & ~cv2.erode(fg.astype(np.uint8), kernel).astype(bool)
    outer_band = ~fg & cv2.dilate(fg.astype(np.uint8), kernel).astype(bool)
    ramp = np.clip(dist / (2.0 * threshold), 0.0, 1.0)
    alpha[inner_band] = np.maximum(0.5, ramp[inner_band])
    alpha[outer_band] = np.minimum(0.49, ramp[outer_band])
    return alpha


def clean_mask(
    alpha: np.ndarray,
    image: np.ndarray,
    config: PrepareConfig,
    border: BorderStats | None = None,
) -> CleanResult:
    """Binary product mask from any segmenter's alpha, with its defects mended.

    alpha: HxW float32 [0, 1]; image: HxWx3 uint8 RGB. Returns a ``CleanResult`` whose mask is
    HxW bool.

    1. threshold at 0.5; no product → ``NoProductError``;
    2. keep the largest blob (warn when another is large);
    3. fill specks (tiny holes) and drop crumbs; the long, thin ones are also kept aside
       (``CleanResult.slits``);
    4. when the border is uniform: cut out enclosed regions whose colour matches the
       background (the white slivers between double straps that models keep); on a
       photographic background: cut out the background a model kept inside handle loops
       (``cut_background_seen_through``);
    5. warn when the product touches the image border (cropped).
    """
    warnings: list[str] = []
    # 1. threshold
    mask = alpha >= 0.5
    if mask.sum() < 16:
        raise NoProductError(
            "no product found: the image is all background. Check that the photo shows the product, "
            "or pick a model segmenter with --segmenter birefnet"
        )
    # 2. largest blob
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1]
    largest = 1 + order[0]
    if len(order) > 1 and areas[order[1]] >= config.several_objects_frac * areas[order[0]]:
        warnings.append(
            f"several objects: kept the largest ({areas[order[0]]} px), dropped {len(order) - 1} other(s) "
            f"(next largest {areas[order[1]]} px)"
        )
    mask = labels == largest
    # 3. specks: holes smaller than min_speck_frac of the bbox are filled
    x, y, w, h = stats[largest, :4]
    min_area = max(4, int(config.min_speck_frac * w * h))
    mask, slits = fill_small_holes(mask, min_area, config.gap_min_elongation)
    # 4. background-coloured enclosed regions
    removed = 0
    border = border or estimate_background(image, config)
    if border.is_uniform(config):
        mask, removed = cut_background_colored(mask, image, border, config, min_area)
    elif config.seen_through_cut:
        mask, removed = cut_background_seen_through(mask, image, config, min_area)
    # 5. cropped? (at the photo's own edge when it sits in a pad)
    bx0, by0, bx1, by1 = border.content_box(mask.shape)
    if mask[by0].any() or mask[by1 - 1].any() or mask[:, bx0].any() or mask[:, bx1 - 1].any():
        warnings.append("product touches the image border: it is probably cropped")
    return CleanResult(mask=mask, warnings=warnings, holes_removed=removed, slits=slits)


def fill_small_holes(
    mask: np.ndarray, min_area: int, gap_min_elongation: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Fill enclosed background regions smaller than ``min_area`` px. mask: HxW bool.

    Returns (filled mask, slits): HxW bool both; the slits are the filled regions that are long
    and thin (``is_gap`` with ``gap_min_elongation``; none when it is 0), as the slit under a
    flat handle pressed onto the bag is.
    """
    holes = enclosed_background(mask)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small = np.zeros(n, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < min_area
    slit = np.zeros(n, bool)
    if gap_min_elongation > 0:
        slit[1:] = small[1:] & is_gap(stats[1:], gap_min_elongation)
    return mask | small[labels], slit[labels]


def is_gap(stats: np.ndarray, min_elongation: float) -> np.ndarray:
    """Which regions (rows of ``connectedComponentsWithStats`` stats) are slits: their long side
    is at least ``min_elongation`` times their mean width across it, and at least 8 px."""
    long_side = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    mean_width = stats[:, cv2.CC_STAT_AREA] / np.maximum(long_side, 1.0)
    return (long_side >= 8) & (long_side >= min_elongation * mean_width)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """XYXY box of a non-empty HxW bool mask (x1, y1 exclusive), from its rows' and columns'
    any (a fiftieth of the time of listing every pixel)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def enclosed_background(mask: np.ndarray) -> np.ndarray:
    """Background pixels not 4-connected to the image frame (handle openings, specks). HxW bool."""
    return (~mask) & ~reaches_frame(~mask)


def reaches_frame(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` (HxW bool) 4-connected to the image frame. HxW bool."""
    padded = np.pad(region.astype(np.uint8), 1, constant_values=1)  # a frame joins every border run
    _, labels = cv2.connectedComponents(padded, connectivity=4)
    return (labels == labels[0, 0])[1:-1, 1:-1] & region


def cut_background_colored(
    mask: np.ndarray, image: np.ndarray, border: BorderStats, config: PrepareConfig, min_area: int
) -> tuple[np.ndarray, int]:
    """Remove regions inside ``mask`` whose colour is the background's and that are flat.

    mask: HxW bool; image: HxWx3 uint8 RGB. Returns (mask, number of regions removed). A
    region must be at least ``min_area`` px and nearly uniform, so that a white logo with
    texture or print stays; regions of exactly the background colour between straps go.
    """
    dist = background_distance(image, border)
    tight = max(6.0, border.noise + 3.0)
    candidate = mask & (dist <= tight)
    if not candidate.any():
        return mask, 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=4)
    removed = 0
    out = mask.copy()
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        region = labels == i
        if float(dist[region].mean()) <= tight * 0.6:
            out[region] = False
            removed += 1
    return out, removed


def cut_background_seen_through(
    mask: np.ndarray, image: np.ndarray, config: PrepareConfig, min_area: int
) -> tuple[np.ndarray, int]:
    """Photographic backgrounds: remove the background a model kept inside handle loops.

    mask: HxW bool; image: HxWx3 uint8 RGB. Returns (mask, number of regions removed).

    The background's colours are sampled in a band just outside the product and the
    product's below its upper part (each summarised by a few k-means colours, in Lab). A region is cut
    when its pixels are much closer to the background's colours than to the product's, it lies
    in the product's upper part (``seen_through_zone_frac`` of its height, where loops are),
    and it is enclosed by the product (it never touches the background outside: a handle the
    colour of the grass behind it stays).
    """
    if not mask.any():
        return mask, 0
    x0, y0, x1, y1 = mask_bbox(mask)
    diag = float(np.hypot(x1 - x0, y1 - y0))
    band = max(3, int(config.seen_through_band_frac * diag))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    grown = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    shrunk = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    outside = grown & ~mask
    if outside.sum() < 50 or shrunk.sum() < 50:
        return mask, 0
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    rng = np.random.default_rng(0)

    def palette(region: np.ndarray) -> np.ndarray:
        pixels = lab[region]
        if len(pixels) > 4000:
            pixels = pixels[rng.choice(len(pixels), 4000, replace=False)]
        k = min(config.seen_through_colors, len(pixels))
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        cv2.setRNGSeed(0)
        _, _, centers = cv2.kmeans(pixels, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
        return centers

    def nearest(pixels: np.ndarray, centers: np.ndarray) -> np.ndarray:
        return np.sqrt(((pixels[:, None, :] - centers[None, :, :]) ** 2).sum(-1)).min(axis=1)

    zone = mask.copy()
    # loops stand on the upper part (a filled loop is as thick as a body, so the body's top
    # from ``handles.body_top_row`` may be above it)
    cut_row = int(y0 + config.seen_through_zone_frac * (y1 - y0))
    zone[cut_row:] = False
    # the product's colours come from below that part (the upper part may hold the kept background)
    body = shrunk.copy()
    body[:cut_row] = False
    bg_colors, product_colors = palette(outside), palette(body if body.sum() >= 50 else shrunk)
    if not zone.any():
        return mask, 0
    zy, zx = np.nonzero(zone)
    pixels = lab[zy, zx]
    d_bg, d_product = nearest(pixels, bg_colors), nearest(pixels, product_colors)
    like = np.zeros(mask.shape, bool)
    like[zy, zx] = (d_bg < config.seen_through_ratio * d_product) & (d_bg <= config.seen_through_max_distance)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(like.astype(np.uint8), connectivity=4)
    background_outside = (~mask) & reaches_frame(~mask)
    out, removed = mask.copy(), 0
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        x, y, w, h = stats[i, :4]
        window = (slice(max(0, y - 2), y + h + 2), slice(max(0, x - 2), x + w + 2))
        region = labels[window] == i
        ring = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~region
        if (ring & background_outside[window]).any():
            continue  # it touches the background outside: an edge of the product, not a loop's inside
        out[window][region] = False
        removed += 1
    return out, removed

"""Find the handle from the mask's topology: openings enclosed by a thin structure.

An *opening* is a background region of the mask that does not reach the image frame (the
background seen through a handle loop). It belongs to a handle when the product above most
of it is thin (a wall of at most ``handle_max_wall_frac`` of the product's diagonal). The
grip point is the middle of that thin wall at the middle of the loop's topmost span.

Where an opening sits relative to the body says what it can be:

- a **carry handle** (``top_loop``, ``twin_loops``) stands above the body: its opening ends
  where the body starts (the first row at least half as wide as the body's widest row);
- a **strap** (``strap_loop``) runs down beside the body: its opening reaches well below the
  body's top, and its arc starts near the product's top;
- any other opening (a gap between a buckle and the flap, a strap hanging half-way down) is
  not graspable. With no graspable opening the kind is ``none``: nothing is erased.

The brief's kind is a second opinion: it wins for the kind of a found handle (the VLM tells a
tote's two handles from one better than a silhouette does), and a brief that says ``none``
wins over an opening (never cut into a bag the VLM saw no handle on). Every disagreement is
recorded in ``HandleResult.disagreements``.

Array contracts: ``mask`` is HxW bool (True = product). Points are (x, y) input pixels;
boxes are XYXY input pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from autoshoot.config.prepare import PrepareConfig
from autoshoot.geometry.segment import enclosed_background, is_gap, mask_bbox

logger = logging.getLogger(__name__)

# Handle kind when the brief says nothing and the topology is ambiguous (one opening).
CATEGORY_HANDLE = {
    "tote": "twin_loops",
    "duffle": "twin_loops",
    "handbag": "top_loop",
    "briefcase": "top_loop",
    "laptop_bag": "top_loop",
    "backpack": "top_loop",
    "messenger": "top_loop",
    "suitcase": "top_loop",
}


@dataclass
class Opening:
    """One candidate handle opening and the thin wall above it."""

    bbox: tuple[int, int, int, int]  # XYXY of the opening
    area: int
    thin_frac: float  # share of the opening's columns whose wall above is thin
    apex_y: int  # topmost outer edge of the thin wall
    grip: tuple[float, float]  # middle of the wall at the middle of the topmost span
    arc_top: tuple[float, float]  # middle of the wall at its highest point (a strap's grip)
    thickness: float  # vertical wall thickness at the grip, px
    span: tuple[int, int]  # x range of the thin wall (the loop's width)
    midline: list[tuple[float, float]] = field(default_factory=list)  # centre of the wall per ray
    normal: tuple[float, float] = (0.0, -1.0)  # unit normal of the handle at the grip, outwards
    role: str = "other"  # carry (above the body) | strap (down beside it) | other (not graspable)
    exits: list[tuple[float, float]] = field(default_factory=list)  # where the thin rays leave the product
    width: float = 0.0  # the wall's width across it: median distance from the exits to the opening's edge, px


@dataclass
class HandleResult:
    kind: str  # top_loop | twin_loops | strap_loop | none
    grip: tuple[float, float] | None
    thickness: float = 0.0  # handle thickness across its direction, px
    direction: tuple[float, float] = (1.0, 0.0)  # unit tangent of the handle at the grip
    opening: Opening | None = None
    openings: list[Opening] = field(default_factory=list)  # every qualifying opening
    topology_kind: str = "none"  # what the openings alone say, before priors
    notes: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)  # signals that did not agree


def find_handle(
    mask: np.ndarray,
    config: PrepareConfig,
    category: str | None = None,
    brief_handle: str | None = None,
    handle_box: tuple[float, float, float, float] | None = None,
    brief_grip: tuple[float, float] | None = None,
) -> HandleResult:
    """Locate the handle opening, classify the handle and place the grip point.

    mask: HxW bool, True = product. ``handle_box`` (XYXY input px) from the brief restricts
    the openings considered when any opening meets it; so does ``brief_grip`` (the VLM's grip
    point, input px) to the opening whose grip is nearest, within ``brief_grip_frac`` of the
    diagonal.
    The grip itself always comes from the mask (the thin wall is the evidence).

    1. list the enclosed openings large enough to matter;
    2. measure the wall above each one; keep those under a thin wall;
    3. sort them: carry handles above the body, straps beside it, the rest not graspable;
    4. apply the brief's handle box as a prior;
    5. pick the highest, largest opening; the grip is the middle of its topmost span;
    6. classify: the brief's handle, else the topology and the category.
    """
    notes: list[str] = []
    disagreements: list[str] = []
    if not mask.any():
        return HandleResult(kind="none", grip=None, notes=["empty mask"])
    x0, y0, x1, y1 = mask_bbox(mask)
    bw, bh = x1 - x0, y1 - y0
    diag = float(np.hypot(bw, bh))
    # 1. openings
    holes = enclosed_background(mask)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    min_area = max(6, int(config.handle_min_area_frac * bw * bh))
    # the rays measuring a wall cross slits (the sliver between two stacked handles): the wall
    # is the whole structure above the opening
    small = np.zeros(n, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < min_area
    solid = mask | small[labels]
    # 2. walls
    body_top = body_top_row(mask, config)
    top = y0
    openings = []
    for i in range(1, n):
        slit = stats[i, cv2.CC_STAT_AREA] < min_area
        if slit and not is_gap(stats[i : i + 1], config.gap_min_elongation)[0]:
            continue
        opening = measure_opening(solid, labels, i, stats[i], diag, config)
        if slit and opening is not None and body_top - opening.apex_y < max(2.0, opening.thickness):
            # a flat handle over a slit stands proud of the body's top; a pale seam under the
            # body's top edge does not (a bag without a handle is never cut into)
            opening = None
        if opening is None and stats[i, cv2.CC_STAT_HEIGHT] >= 2 * stats[i, cv2.CC_STAT_WIDTH]:
            # a tall, narrow opening is the wedge between a padded strap and the body: a shoulder
            # strap is wider than a carry handle, and the rays from a wedge cross it slantwise.
            # It counts only as a strap (3. below), never as a carry handle.
            opening = measure_opening(solid, labels, i, stats[i], diag, config, config.strap_max_wall_frac)
            if opening is not None and opening_role(opening, top, body_top, int(bh), config) != "strap":
                opening = None
        if opening is not None:
            openings.append(opening)
    # 3. where each opening sits relative to the body; only carry and strap openings are graspable
    for o in openings:
        o.role = opening_role(o, top, body_top, int(bh), config)
        if o.role == "strap":
            # a hand carries a strap by the top of its arc; a carry handle by the middle of
            # its top span (which keeps the grip centred on a tilted handle)
            # (its centre line may go on rising beyond the wall over the opening)
            climbed = strap_top(mask, o)
            o.grip = climbed if climbed is not None and climbed[1] < o.arc_top[1] else o.arc_top
    graspable = [o for o in openings if o.role != "other"]
    carry = [o for o in graspable if o.role == "carry"]
    candidates = carry or graspable
    # 4. prior: the brief's handle box
    if handle_box is not None and graspable:
        inside = [o for o in graspable if boxes_meet(o, handle_box)]
        if inside:
            candidates = [o for o in inside if o.role == "carry"] or inside
        else:
            notes.append("no graspable opening meets the brief's handle box; ignored the box")
            disagreements.append("handle_box")
    if not candidates:
        why = "no thin loop found" if not openings else "no opening above the body or along a strap"
        result = HandleResult(kind="none", grip=None, openings=openings, notes=notes + [why])
        if brief_handle in ("top_loop", "twin_loops", "strap_loop"):
            result.disagreements = disagreements + [f"brief says {brief_handle}, no graspable opening found"]
        return result
    chosen = None  # an opening the brief's grip point names
    if brief_grip is not None and candidates:
        reach = config.brief_grip_frac * diag
        nearest = min(
            candidates, key=lambda o: np.hypot(o.grip[0] - brief_grip[0], o.grip[1] - brief_grip[1])
        )
        if np.hypot(nearest.grip[0] - brief_grip[0], nearest.grip[1] - brief_grip[1]) <= reach:
            chosen = nearest
        else:
            disagreements.append("the brief's grip point is far from every graspable opening")
    # 5. the carry handle sits on top and has the largest opening: area, discounted by how far
    # below the highest apex an opening's top is (a tilted photo may lift a side strap a little)
    top_y = min(o.apex_y for o in candidates)
    fall = max(1.0, config.apex_falloff_frac * bh)
    best = chosen or max(candidates, key=lambda o: (o.area * np.exp(-(o.apex_y - top_y) / fall), -o.apex_y))
    direction, thickness = handle_direction(best)
    # 6. kind
    topology = classify_topology(best, candidates, bh, config)
    kind = choose_kind(topology, category, brief_handle)
    if kind != topology:
        notes.append(f"handle kind {kind} from the brief/category (topology says {topology})")
    if brief_handle in ("top_loop", "twin_loops", "strap_loop") and brief_handle != topology:
        disagreements.append(f"brief says {brief_handle}, the mask says {topology}")
    result = HandleResult(
        kind=kind,
        grip=best.grip,
        thickness=thickness,
        direction=direction,
        opening=best,
        openings=openings,
        topology_kind=topology,
        notes=notes,
        disagreements=disagreements,
    )
    if brief_handle == "none":
        # the VLM saw no handle: trust it over a silhouette, never cut into the bag
        result.notes.append(f"the brief says no handle; the {kind} found in the mask is not used")
        result.disagreements.append(f"brief says none, the mask shows a {topology}")
        result.kind, result.grip, result.opening = "none", None, None
    return result


def body_top_row(mask: np.ndarray, config: PrepareConfig) -> int:
    """The body's top: the first row of the body at least half as wide as its widest row.

    The body is the largest part of the mask opened with a disk of ``body_open_frac`` of the
    product's diagonal, which removes handles and straps (thin) but keeps the body (thick). The opening runs on a
    copy at most 256 px long, so it costs about a millisecond.
    """
    x0, y0, x1, y1 = mask_bbox(mask)
    crop = mask[y0:y1, x0:x1].astype(np.uint8)
    k = min(1.0, 256.0 / max(crop.shape))
    small = cv2.resize(
        crop,
        (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))),
        interpolation=cv2.INTER_AREA,
    )
    r = max(1, int(round(config.body_open_frac * float(np.hypot(*small.shape)))))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    body = cv2.morphologyEx(small, cv2.MORPH_OPEN, disk)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(body)
    if n > 2:  # thick straps that stand apart from the body are not the body
        body = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    counts = body.sum(axis=1)
    if counts.max() == 0:
        counts = small.sum(axis=1)
    return int(y0 + np.flatnonzero(counts >= 0.5 * counts.max())[0] / k)


def opening_role(opening: Opening, top: int, body_top: int, product_h: int, config: PrepareConfig) -> str:
    """carry: the opening ends about where the body starts; strap: it runs down well below the
    body's top and its arc starts near the product's top; other: neither (not graspable)."""
    below = (opening.bbox[3] - body_top) / max(1, product_h)
    if below <= config.carry_max_below_frac:
        return "carry"
    if (opening.apex_y - top) / max(1, product_h) <= config.strap_max_apex_frac:
        return "strap"
    return "other"


def measure_opening(
    mask: np.ndarray,
    labels: np.ndarray,
    index: int,
    stat: np.ndarray,
    diag: float,
    config: PrepareConfig,
    max_wall_frac: float | None = None,
) -> Opening | None:
    """Cast rays out of the opening's upper edge; None when most of that edge is not thin.

    Each upward-facing edge pixel of the opening sends a ray along the edge's outward normal
    through the product until it meets background: the ray's length is the local thickness
    of the structure above the opening, whatever its slant (a vertical wall would make the
    legs of an inverted-V handle look thick). A wall is thin up to ``max_wall_frac`` of the
    product's diagonal (default ``handle_max_wall_frac``). ``mask`` may count small slits
    as product; the opening ``index`` itself is always background.
    """
    h_img, w_img = mask.shape
    x0, y0, w, h = (int(v) for v in stat[:4])
    max_wall = (config.handle_max_wall_frac if max_wall_frac is None else max_wall_frac) * diag
    reach = int(np.ceil(max_wall * 1.5)) + 2
    # 1. a window around the opening, as wide as the normals' blur and Sobel reach (the rays
    # march on the whole mask)
    pad = 12
    wx0, wy0 = max(0, x0 - pad), max(0, y0 - pad)
    wx1, wy1 = min(w_img, x0 + w + pad), min(h_img, y0 + h + pad)
    opening = (labels[wy0:wy1, wx0:wx1] == index).astype(np.float32)
    sub = mask[wy0:wy1, wx0:wx1]
    # 2. edge pixels of the opening next to the product, and their outward normals
    near_product = cv2.dilate(sub.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge = (opening > 0) & near_product
    smooth = cv2.GaussianBlur(opening, (0, 0), 2.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    ey, ex = np.nonzero(edge)
    nx, ny = -gx[ey, ex], -gy[ey, ex]
    norm = np.hypot(nx, ny) + 1e-6
    nx, ny = nx / norm, ny / norm
    up = ny <= -0.35
    if up.sum() < 3:
        return None
    ex, ey, nx, ny = ex[up] + wx0, ey[up] + wy0, nx[up], ny[up]
    # 3. march each ray until background (or the image frame)
    steps = np.arange(1, reach + 1, dtype=np.float32)
    px = np.rint(ex[:, None] + nx[:, None] * steps[None, :]).astype(np.int64)
    py = np.rint(ey[:, None] + ny[:, None] * steps[None, :]).astype(np.int64)
    inside_img = (px >= 0) & (px < w_img) & (py >= 0) & (py < h_img)
    on_product = np.zeros(px.shape, bool)
    on_product[inside_img] = mask[py[inside_img], px[inside_img]] & (
        labels[py[inside_img], px[inside_img]] != index
    )
    hits_bg = ~on_product & inside_img
    first = np.where(hits_bg.any(axis=1), hits_bg.argmax(axis=1), reach)
    length = first.astype(np.float32)  # product pixels crossed before the background
    thin = (length >= 1) & (length <= max_wall)
    thin_frac = float(thin.sum() / max(1, (length >= 1).sum()))
    if thin_frac < config.handle_min_thin_frac or thin.sum() < 3:
        return None
    # 4. the apex: the highest point where a thin ray leaves the product
    tx, ty, tnx, tny, tl = ex[thin], ey[thin], nx[thin], ny[thin], length[thin]
    out_x, out_y = tx + tnx * tl, ty + tny * tl
    # the handle spans the opening: a slanted ray from a corner that leaves the product far to
    # the side (through the base of a strap beside the loop) does not set the apex
    margin = 0.1 * w
    over = (out_x >= x0 - margin) & (out_x <= x0 + w + margin)
    if over.sum() >= 3:
        tx, ty, tnx, tny, tl = tx[over], ty[over], tnx[over], tny[over], tl[over]
        out_x, out_y = out_x[over], out_y[over]
    apex = float(out_y.min())
    typical = float(np.percentile(tl, 30))  # a low percentile: stacked handles make some rays long
    tol = max(2.0, 0.5 * typical)
    # the top run: rays that face mostly up and leave the product near the apex; the grip is
    # its middle (a flat-topped handle is held at its centre, not at its highest pixel). The
    # run reaches half a handle's thickness below the apex: measured in the loop's width, it
    # would slide down the long, shallow side of a tilted arc. Where the outer edge goes on at
    # that height beyond the wall's rays (two arches crossing over the opening: the apex is the
    # other arch's side, not a top of this wall), the run is the whole top span, down to
    # ``grip_top_run_frac`` of its width below the apex.
    width = float(out_x.max() - out_x.min())
    near = (tny <= -0.7) & (out_y <= apex + tol)
    lo, hi = edge_run(mask, int(round(out_x[int(np.argmin(out_y))])), apex, tol, int(np.ceil(width)) + 1)
    own = near.sum() < 3 or (lo >= out_x[near].min() - typical and hi <= out_x[near].max() + typical)
    top = near if own else (tny <= -0.7) & (out_y <= apex + max(tol, config.grip_top_run_frac * width))
    if top.sum() < 3:
        top = out_y <= apex + tol
    mid_x = (out_x[top].min() + out_x[top].max()) / 2.0
    candidates = np.flatnonzero(top)
    j = candidates[np.argmin(np.abs(out_x[candidates] - mid_x))]
    # the grip sits half a handle's thickness in from the outer edge (two stacked handles
    # make one thick wall: count only a typical handle's thickness)
    half = min(tl[j], 1.25 * typical) / 2.0
    grip = (float(out_x[j] - tnx[j] * half), float(out_y[j] - tny[j] * half))
    # a strap is held at the top of its arc: the wall's highest point
    k = int(np.argmin(out_y))
    half_k = min(tl[k], 1.25 * typical) / 2.0
    arc_top = (float(out_x[k] - tnx[k] * half_k), float(out_y[k] - tny[k] * half_k))
    midline = [
        (float(a - c * ln / 2), float(b - d * ln / 2))
        for a, b, c, d, ln in zip(out_x, out_y, tnx, tny, tl, strict=True)
    ]
    return Opening(
        bbox=(x0, y0, x0 + w, y0 + h),
        area=int(stat[cv2.CC_STAT_AREA]),
        thin_frac=thin_frac,
        apex_y=int(round(apex)),
        grip=grip,
        arc_top=arc_top,
        thickness=float(min(tl[j], 1.25 * typical)),
        span=(int(np.floor(out_x.min())), int(np.ceil(out_x.max())) + 1),
        midline=midline,
        normal=(float(tnx[j]), float(tny[j])),
        exits=[(float(a), float(b)) for a, b in zip(out_x, out_y, strict=True)],
        width=wall_width(np.stack([out_x, out_y], 1), np.stack([tx, ty], 1)),
    )


def edge_run(mask: np.ndarray, x: int, apex: float, tol: float, reach: int) -> tuple[int, int]:
    """The outer edge at the apex: the first and last columns around ``x``, contiguous and at
    most ``reach`` each way, whose topmost product pixel lies within ``tol`` px of row ``apex``."""
    x0, x1 = max(0, x - reach), min(mask.shape[1], x + reach + 1)
    cols = mask[:, x0:x1]
    has = cols.any(axis=0)
    near = has & (np.abs(np.argmax(cols, axis=0) - apex) <= tol)
    i = min(max(x - x0, 0), len(near) - 1)
    lo = hi = i
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(near) - 1 and near[hi + 1]:
        hi += 1
    return x0 + lo, x0 + hi


def wall_width(exits: np.ndarray, starts: np.ndarray) -> float:
    """The wall's width across it, whatever the slant of the rays: the median over the exits
    (Nx2, px) of the distance to the nearest ray start on the opening's edge (Mx2, px)."""
    if len(exits) == 0 or len(starts) == 0:
        return 0.0
    exits, starts = exits[:: max(1, len(exits) // 400)], starts[:: max(1, len(starts) // 400)]
    d2 = ((exits[:, None, :] - starts[None, :, :]) ** 2).sum(-1)
    return float(np.median(np.sqrt(d2.min(axis=1))))


def strap_top(mask: np.ndarray, opening: Opening) -> tuple[float, float] | None:
    """The top of a strap's arc, followed along the product's outline beyond the opening.

    The rays above a strap's opening only see the part of the strap over it; the strap may go on
    rising (over the shoulder of a sling). From the highest place where
    a thin ray leaves the product on the outline's convex part, walk along the outline both
    ways while it stays convex (within a quarter of the wall's thickness of the convex hull: a
    strap's outer edge is convex, the corner where it meets the body is not) and has not
    fallen a wall's thickness below the highest point reached. The strap's centre line there is
    the middle of the points near that top, half the strap's width (``Opening.width``) in from
    the edge. None when no ray leaves on the convex part of the outline.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours or not opening.exits:
        return None
    outline = max(contours, key=len)[:, 0, :].astype(np.float64)
    hull = cv2.convexHull(outline.astype(np.float32))
    n = len(outline)
    t = max(2.0, opening.thickness)
    tol = max(2.0, 0.25 * t)

    def depth(i: int) -> float:
        x, y = outline[i % n]
        return cv2.pointPolygonTest(hull, (float(x), float(y)), True)

    exits = np.asarray(opening.exits, np.float64)
    # the outline point nearest each exit, highest first
    nearest = np.argmin(
        (outline[None, :, 0] - exits[:, None, 0]) ** 2 + (outline[None, :, 1] - exits[:, None, 1]) ** 2,
        axis=1,
    )
    start = None
    for i in sorted(set(int(v) for v in nearest), key=lambda i: outline[i, 1]):
        if depth(i) <= tol:
            start = i
            break
    if start is None:
        return None
    visited = [start]
    for step in (1, -1):
        best_y = outline[start, 1]
        for s in range(1, n // 2):
            i = (start + step * s) % n
            y = outline[i, 1]
            if depth(i) > tol or y > best_y + t:
                break
            best_y = min(best_y, y)
            visited.append(i)
    pts = outline[visited]
    top_y = pts[:, 1].min()
    width = max(2.0, opening.width)
    run = pts[pts[:, 1] <= top_y + max(2.0, 0.1 * t)]
    mid_x = (run[:, 0].min() + run[:, 0].max()) / 2.0
    x, y = run[np.argmin(np.abs(run[:, 0] - mid_x))]
    below = mask[int(y) :, int(x)]
    run_down = int(np.argmin(below)) if not below.all() else len(below)
    return float(x), float(y + min(width, run_down) / 2.0)


def handle_direction(opening: Opening) -> tuple[tuple[float, float], float]:
    """Unit tangent of the handle at the grip (x >= 0), and its thickness across (px).

    The tangent is perpendicular to the mean normal of the rays near the grip, so one noisy
    edge pixel does not tilt the gap.
    """
    gx, gy = opening.grip
    reach = max(4.0, 1.5 * opening.thickness)
    near = [(x, y) for x, y in opening.midline if np.hypot(x - gx, y - gy) <= reach]
    nx, ny = opening.normal
    if len(near) >= 3:
        pts = np.asarray(near, np.float64)
        _, _, vt = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)
        tx, ty = float(vt[0, 0]), float(vt[0, 1])
        # trust the midline only when it agrees roughly with the normal's tangent
        if abs(tx * nx + ty * ny) < 0.5:
            nx, ny = -ty, tx
    ux, uy = -ny, nx
    if ux < 0:
        ux, uy = -ux, -uy
    return (float(ux), float(uy)), opening.thickness


def classify_topology(best: Opening, openings: list[Opening], product_h: int, config: PrepareConfig) -> str:
    """What the openings alone say: strap_loop (tall), twin_loops (several tops), top_loop."""
    x0, y0, x1, y1 = best.bbox
    if best.role == "strap" or (y1 - best.apex_y) >= config.strap_loop_height_frac * product_h:
        return "strap_loop"
    # twins: other openings whose tops are about as high and that sit beside this one
    width = x1 - x0
    near = [
        o
        for o in openings
        if o.apex_y - best.apex_y <= config.twin_apex_frac * product_h
        and max(o.bbox[0] - x1, x0 - o.bbox[2]) <= 0.5 * width
        and (
            o is best
            or abs((o.bbox[0] + o.bbox[2]) - (x0 + x1)) / 2.0 >= 0.25 * min(width, o.bbox[2] - o.bbox[0])
        )
    ]  # (nested openings, like the gap between double straps, share their centre: not twins)
    return "twin_loops" if len(near) >= 2 else "top_loop"


def choose_kind(topology: str, category: str | None, brief_handle: str | None) -> str:
    """The brief's handle when it names one, else the category's usual kind for a top loop."""
    if brief_handle in ("top_loop", "twin_loops", "strap_loop"):
        return brief_handle
    if topology == "strap_loop" and CATEGORY_HANDLE.get(category or "") != "twin_loops":
        return topology  # (a tote's or duffle's long handles make tall openings too)
    if category in CATEGORY_HANDLE:
        return CATEGORY_HANDLE[category]
    return topology


def boxes_meet(opening: Opening, box: tuple[float, float, float, float]) -> bool:
    """Whether the opening or the wall above it overlaps ``box`` (XYXY), grown by 10%."""
    bx0, by0, bx1, by1 = box
    gx, gy = 0.1 * (bx1 - bx0), 0.1 * (by1 - by0)
    x0, y0, x1, y1 = opening.span[0], opening.apex_y, opening.span[1], opening.bbox[3]
    return not (x1 < bx0 - gx or x0 > bx1 + gx or y1 < by0 - gy or y0 > by1 + gy)

"""Stage 2: hand refine. For each stage-1 candidate, find the hand at the grip (MediaPipe
landmarks), crop a window around it, upscale it to the model resolution, build the corrected
hand's depth map and "sharp glove" scribble from a ``HandMesh``, and re-run the last steps
(30→40 of 40, after injecting latent noise) with depth 1.0, scribble 0.8 and canny 0.35 through
the union ControlNet in one call. The window is pasted back with a feathered mask.

The guidance is drawn from the corrected hand (``render.hand_mesh``, by default the anatomical
kinematic hand fitted to the landmarks). When MediaPipe finds no hand near the grip (stage 1
may have drawn one too malformed to detect), the window is built round a canonical gripping
hand placed from the pose (the nearest wrist) and the grip, and refined all the same. Only a
SKU with no grip is passed through unchanged, and its notes say why. All candidates are
refined in one batched call.

Writes r<i>.png at the canvas size; returns {"candidates": [{"index", "seed", "image", "notes"}]}.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from autoshoot.stages.base import ModelSpec, Stage
from autoshoot.stages.render import fetch_missing_models, get_renderer, missing_models, model_specs, resize

if TYPE_CHECKING:
    from autoshoot.config import Config
    from autoshoot.stages.base import Job

logger = logging.getLogger(__name__)

REFINE_MODES = ("depth", "scribble", "canny")


@dataclass
class HandWindow:
    """A square crop of the canvas around one hand. box: XYXY canvas pixels (ints, x1/y1
    exclusive). landmarks: (21, 3) float canvas pixels (z in pixels too)."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray


class RefineStage(Stage):
    uses_gpu: ClassVar[bool] = True  # the runner's GPU lane (run.overlap)
    name = "refine"
    version = "2"  # 2: a canonical gripping hand where none is found
    config_sections = ("render",)

    def models(self, config: Config) -> list[ModelSpec]:
        sdxl = ", ".join(spec.role for spec in model_specs(config))
        return [
            ModelSpec("SDXL (the render stage's models)", sdxl),
            ModelSpec("hand landmarks", "MediaPipe Hands (inside the mediapipe wheel)"),
        ]

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        return missing_models(config)

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        return fetch_missing_models(config)

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        from PIL import Image

        from autoshoot.io import read_json, save_image

        rc = job.config.render
        # 1. read stage 1's candidates and the grip (input px → canvas px)
        render_dir = job.input_dir("render")
        stage1 = job.input_json("render")
        prep = read_json(job.input_dir("prepare") / "prepare.json")
        grip = grip_on_canvas(prep)
        images = [
            np.asarray(Image.open(render_dir / c["image"]).convert("RGB")) for c in stage1["candidates"]
        ]
        notes: list[list[str]] = [list(c.get("notes", [])) for c in stage1["candidates"]]
        # 2. find each candidate's hand at the grip
        windows: list[HandWindow | None] = []
        for i, image in enumerate(images):
            window, why = self.find_window(job, image, grip)
            windows.append(window)
            if window is None:
                notes[i].append(f"hand refine skipped: {why}")
            elif why:
                notes[i].append(why)
        # 3. refine the candidates that have a hand, in one batch
        todo = [i for i, w in enumerate(windows) if w is not None]
        seconds: dict[str, float] = {}
        if todo and rc.refine_enabled:
            renderer = get_renderer(job)
            mesh = get_hand_mesh(job)
            from autoshoot.stages.prepare import final_prompt

            prompt, negative = final_prompt(job)
            seeds = [int(stage1["candidates"][i]["seed"]) for i in todo]
            refined, seconds = refine_windows(
                renderer,
                mesh,
                rc,
                [images[i] for i in todo],
                [windows[i] for i in todo],
                prompt,
                negative,
                seeds,
            )
            for i, image in zip(todo, refined, strict=False):
                images[i] = image
                notes[i].append("hand refined")
        elif todo:
            for i in todo:
                notes[i].append("hand refine disabled (render.refine_enabled = false)")
        # 4. save r<i>.png
        candidates = []
        for i, c in enumerate(stage1["candidates"]):
            save_image(out / f"r{i}.png", images[i], fast=True)
            w = windows[i]
            candidates.append(
                {
                    "index": int(c["index"]),
                    "seed": int(c["seed"]),
                    "image": f"r{i}.png",
                    "notes": notes[i],
                    "hand_window": list(w.box) if w is not None else None,
                }
            )
        return {"candidates": candidates, "refined": len(todo), "seconds": seconds}

    def find_window(
        self, job: Job, image: np.ndarray, grip: tuple[float, float] | None
    ) -> tuple[HandWindow | None, str]:
        """The hand nearest the grip, as a crop window; or None and the reason."""
        rc = job.config.render
        if grip is None:
            return None, "the product has no grip point (no handle found)"
        h, w = image.shape[:2]
        pad = rc.hand_search_pad * max(w, h)
        roi = (
            int(max(0, grip[0] - pad)),
            int(max(0, grip[1] - pad)),
            int(min(w, grip[0] + pad)),
            int(min(h, grip[1] + pad)),
        )
        detector = job.sessions.get("hand_detector", make_hand_detector)
        hands = detector.detect(image, roi=roi)
        lms = hand_near_grip(hands, grip, pad)
        why = ""
        if lms is None:
            scene = job.sessions.get("scene_detector", make_scene_detector).detect(image)
            lms = canonical_grip_hand(image, grip, scene)
            why = "no hand found near the grip: refined with a canonical gripping hand"
        return HandWindow(
            box=hand_window_box(lms, (w, h), rc.refine_window, rc.refine_min_window), landmarks=lms
        ), why


def make_hand_detector() -> Any:
    """MediaPipe hands, a graph per concurrent call (several SKUs in the GPU lane at once: run.lanes)."""
    from autoshoot.backends.mediapipe_hands import HandDetector
    from autoshoot.run.models import ModelPool

    return ModelPool(HandDetector)


def make_scene_detector() -> Any:
    from autoshoot.backends.mediapipe_hands import SceneDetector
    from autoshoot.run.models import ModelPool

    return ModelPool(SceneDetector)


def hand_near_grip(hands: list[Any], grip: tuple[float, float], pad: float) -> np.ndarray | None:
    """(21, 3) float64 landmarks of the detected hand nearest the grip, or None when there is
    none within ``pad`` pixels of it."""
    if not hands:
        return None
    best = min(hands, key=lambda hd: distance_to_hand(np.asarray(hd.landmarks), grip))
    lms = np.asarray(best.landmarks, dtype=np.float64)
    return lms if distance_to_hand(lms, grip) <= pad else None


def canonical_grip_hand(image: np.ndarray, grip: tuple[float, float], scene: Any = None) -> np.ndarray:
    """The canonical gripping hand (``autoshoot.hands.kinematic.gripping_hand``) at ``grip``:
    its palm 0.55 of the person's face width (adult proportions), or 6.5% of the image's long
    side without a face; its wrist towards the pose's wrist nearest the grip (within three
    palm lengths), else below the grip. ``scene``: a ``Scene`` from the MediaPipe adapter, or
    None. Returns (21, 3) float64 pixels."""
    from autoshoot.hands.kinematic import gripping_hand

    h, w = image.shape[:2]
    faces = list(getattr(scene, "faces", []) or [])
    if faces:
        face_w = max(float(box[2] - box[0]) for box, _ in faces)
        palm = 0.55 * face_w
    else:
        palm = 0.065 * max(h, w)
    wrist = None
    wrists = list(getattr(scene, "wrists", []) or [])
    if wrists:
        near = min(wrists, key=lambda p: np.hypot(p[0] - grip[0], p[1] - grip[1]))
        if np.hypot(near[0] - grip[0], near[1] - grip[1]) <= 3.0 * palm:
            wrist = near
    return gripping_hand(grip, palm, wrist=wrist)


def get_hand_mesh(job: Job) -> Any:
    from autoshoot.backends import HAND_MESHES

    name = job.config.render.hand_mesh
    return job.sessions.get(f"hand_mesh:{name}", lambda: HAND_MESHES.create(name, job.config))


def grip_on_canvas(prep: dict[str, Any]) -> tuple[float, float] | None:
    """prepare.json's grip (input px) mapped by its placement: canvas = input × scale + offset."""
    grip = prep.get("grip")
    if not grip:
        return None
    placement = prep.get("placement") or {"scale": 1.0, "offset": [0.0, 0.0]}
    s, (ox, oy) = float(placement["scale"]), placement["offset"]
    return (grip[0] * s + ox, grip[1] * s + oy)


def distance_to_hand(landmarks: np.ndarray, point: tuple[float, float]) -> float:
    """Pixels from ``point`` to the nearest landmark of a (21, 2+) hand."""
    return float(np.min(np.hypot(landmarks[:, 0] - point[0], landmarks[:, 1] - point[1])))


def hand_window_box(
    landmarks: np.ndarray, size: tuple[int, int], factor: float, min_side: int
) -> tuple[int, int, int, int]:
    """A square XYXY box (ints, inside the image) centred on the hand, ``factor`` × its extent."""
    w, h = size
    x0, y0 = landmarks[:, 0].min(), landmarks[:, 1].min()
    x1, y1 = landmarks[:, 0].max(), landmarks[:, 1].max()
    side = int(round(max(max(x1 - x0, y1 - y0) * factor, min_side)))
    side = min(side, w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bx = int(round(min(max(cx - side / 2, 0), w - side)))
    by = int(round(min(max(cy - side / 2, 0), h - side)))
    return (bx, by, bx + side, by + side)


def build_refine_inputs(
    mesh: Any, rc: Any, image: np.ndarray, window: HandWindow
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    """One candidate's stage-2 inputs at the model resolution (square, ``rc.long_side``).

    image: (H, W, 3) uint8 RGB canvas. Returns the crop (S, S, 3) uint8 RGB, the repaint mask
    (S, S) uint8 (255 = repaint: the hand model grown by ``refine_mask_dilate`` × hand size)
    and the controls [("depth", …), ("scribble", …), ("canny", …)], each (S, S) uint8.
    """
    import cv2

    from autoshoot.backends.sdxl import fit_size

    x0, y0, x1, y1 = window.box
    crop = image[y0:y1, x0:x1]
    side, _ = fit_size(x1 - x0, y1 - y0, rc.long_side)
    k = side / (x1 - x0)
    crop_m = resize(crop, (side, side))
    lms = window.landmarks.copy()
    lms[:, 0] = (lms[:, 0] - x0) * k
    lms[:, 1] = (lms[:, 1] - y0) * k
    lms[:, 2] = lms[:, 2] * k
    guide = mesh.render(lms, (side, side))
    extent = max(float(np.ptp(lms[:, 0])), float(np.ptp(lms[:, 1])), 1.0)
    grow = max(1, int(round(rc.refine_mask_dilate * extent)))
    hull = cv2.convexHull(lms[:, :2].astype(np.float32)).reshape(-1, 2)
    mask = guide.mask.copy()
    cv2.fillPoly(mask, [np.round(hull).astype(np.int32)], 255)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    canny = cv2.Canny(cv2.cvtColor(crop_m, cv2.COLOR_RGB2GRAY), 100, 200)
    controls = [("depth", guide.depth), ("scribble", guide.scribble), ("canny", canny)]
    return crop_m, mask, controls


def refine_windows(
    renderer: Any,
    mesh: Any,
    rc: Any,
    images: list[np.ndarray],
    windows: list[HandWindow],
    prompt: str,
    negative: str,
    seeds: list[int],
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Refine each image's hand window in one batched call; returns the pasted-back images
    (each (H, W, 3) uint8 RGB) and the renderer's seconds."""
    from autoshoot.backends.sdxl import DenoiseRequest

    # 1. crops, masks and guidance at the model resolution
    inputs = [build_refine_inputs(mesh, rc, im, w) for im, w in zip(images, windows, strict=False)]
    # 2. steps start..total of the schedule, fixed scales per control
    scales = [[float(rc.refine_scales.get(m, 0.0)) for m in REFINE_MODES]] * (
        rc.refine_steps_total - rc.refine_start_step
    )
    req = DenoiseRequest(
        images=[i[0] for i in inputs],
        masks=[i[1] for i in inputs],
        controls=[i[2] for i in inputs],
        prompt=prompt,
        negative_prompt=negative,
        seeds=[s + 7919 for s in seeds],  # stage 2 noise differs from stage 1's
        steps=rc.refine_steps_total,
        start_step=rc.refine_start_step,
        noise_strength=rc.refine_noise_strength,
        scales=scales,
        cfg=rc.cfg,
    )
    res = renderer.denoise(req)
    # 3. paste back with a feathered mask
    out = [
        paste_window(im, w.box, crop, mask, rc.refine_feather_px)
        for im, w, crop, (_, mask, _) in zip(images, windows, res.images, inputs, strict=False)
    ]
    return out, res.seconds


def paste_window(
    image: np.ndarray, box: tuple[int, int, int, int], crop: np.ndarray, mask: np.ndarray, feather_px: int
) -> np.ndarray:
    """Blend ``crop`` (model resolution) back into ``image`` at ``box``.

    image: (H, W, 3) uint8 RGB; crop: (S, S, 3) uint8 RGB; mask: (S, S) uint8, 255 = repainted.
    The mask is resized to the box and blurred by ``feather_px``; outside it the image is unchanged.
    """
    import cv2

    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    patch = resize(crop, size).astype(np.float32)
    alpha = resize(mask, size).astype(np.float32) / 255.0
    if feather_px > 0:
        f = int(feather_px)
        alpha[:f], alpha[-f:], alpha[:, :f], alpha[:, -f:] = 0, 0, 0, 0  # no seam at the window's edge
        alpha = cv2.GaussianBlur(alpha, (2 * f + 1, 2 * f + 1), 0)
    alpha = alpha[..., None]
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + patch * alpha + 0.5, 0, 255).astype(np.uint8)
    return out

"""The ``score`` stage: hand quality of every composited candidate, with landmark overlays.

Reads ``composite/stage.json`` (the candidates) and ``prepare/stage.json`` (where the hand
should grip, the erased handle gap and the product's box, in INPUT pixels, mapped here to
canvas pixels with the placement). Writes ``overlay_<i>.png`` per candidate and returns::

    {"grip": [x, y] | None, "erase_polygon": [[x, y], ...] | None,
     "product_box": [x0, y0, x1, y1] | None,
     "candidates": [{"index", "seed", "image", "hand_score", "components", "reasons",
                     "hands", "bags", "overlay"}]}

``image`` is relative to this stage's folder (it points into the composite folder).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.stages.base import Job, ModelSpec, Stage

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger(__name__)


class ScoreStage(Stage):
    name: ClassVar[str] = "score"
    version: ClassVar[str] = (
        "5"  # 2: fails closed (no hand, nobody), close-ups, tile search; 3: finger evidence, fitted weights;
        # 4: the finger-separation component (measured; weight 0 as fitted); 5: the finger
        # separation counts in anatomy (as fitted), judged at the candidate's drawn detail
    )
    config_sections: ClassVar[tuple[str, ...]] = ("score",)

    def models(self, config: Config) -> list[ModelSpec]:
        specs = [
            ModelSpec(
                "hand landmarks",
                "mediapipe hands (bundled in the mediapipe wheel)",
                "pip install mediapipe==0.10.21",
            ),
            ModelSpec(
                "face + pose", "mediapipe face_detection, pose (bundled)", "pip install mediapipe==0.10.21"
            ),
        ]
        return specs + [
            ModelSpec(e.role, e.source, bag_model_fix(e, config)) for e in bag_model_entries(config)
        ]

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        from autoshoot.backends import BAG_DETECTORS, HAND_SCORERS

        HAND_SCORERS.check(config.score.scorer)
        BAG_DETECTORS.check(config.score.bag_detector)
        import importlib.util

        missing = []
        if importlib.util.find_spec("mediapipe") is None:
            missing.append(
                (
                    "hand scorer",
                    "the mediapipe package",
                    "pip install mediapipe==0.10.21 (numpy<2, protobuf<5)",
                )
            )
        return missing + missing_bag_models(config)

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        from autoshoot.stages.render import fetch_missing_entries

        return fetch_missing_entries(
            config,
            bag_model_entries(config),
            lambda entry: bag_model_fix(entry, config),
        )

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        from autoshoot.backends import HAND_SCORERS
        from autoshoot.backends.mediapipe_hands import draw_overlay, prepare_image
        from autoshoot.io import save_image

        config = job.config
        # 1. the candidates and where the hand should be
        composite = job.input_json("composite")
        candidates = composite.get("candidates", [])
        if not candidates:
            raise RuntimeError("the composite stage produced no candidates to score")
        grip, polygon = read_grip(job)
        product_box = read_product_box(job)
        # the candidates are at the final size: canvas px → final px
        grip, polygon, product_box = to_final_size(composite, grip, polygon, product_box)
        detail = detail_scale(composite)  # the hand was drawn at the canvas size, then enlarged
        shot = read_shot(job)
        # 2. the scorer, built once per run
        scorer = job.sessions.get(
            f"hand_scorer:{config.score.scorer}", lambda: HAND_SCORERS.create(config.score.scorer, config)
        )
        # 3. score each candidate and draw its overlay
        from PIL import Image

        src_dir = job.input_dir("composite")

        def score_one(cand: dict[str, Any]) -> dict[str, Any]:
            path = src_dir / cand["image"]
            with Image.open(path) as im:
                image = prepare_image(im)
            result = scorer.score(
                image,
                grip=grip,
                erase_polygon=polygon,
                file=cand["image"],
                product_box=product_box,
                shot=shot,
                detail_scale=detail,
            )
            overlay = f"overlay_{int(cand['index'])}.png"
            label = f"#{cand['index']} {result.hand_score:.2f}"
            save_image(
                out / overlay,
                draw_overlay(image, result.hands, grip, polygon, label=label, bags=result.bags),
                fast=True,
            )
            logger.info(
                "%s candidate %s: hand score %.3f %s",
                job.sku,
                cand["index"],
                result.hand_score,
                result.reasons,
            )
            return {
                "index": int(cand["index"]),
                "seed": cand.get("seed"),
                "image": os.path.relpath(path, out),
                "hand_score": result.hand_score,
                "components": result.components,
                "reasons": result.reasons,
                "hands": result.hands,
                "bags": result.bags,
                "overlay": overlay,
            }

        # the candidates in parallel: MediaPipe, OpenCV and zlib release the GIL, and the
        # scorer's MediaPipe graphs are a pool (one per concurrent call)
        from concurrent.futures import ThreadPoolExecutor

        workers = min(len(candidates), scoring_threads(config))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autoshoot-score") as pool:
            scored = list(pool.map(score_one, candidates))
        return {
            "grip": None if grip is None else [round(grip[0], 1), round(grip[1], 1)],
            "erase_polygon": None if polygon is None else [[round(x, 1), round(y, 1)] for x, y in polygon],
            "product_box": None if product_box is None else [round(v, 1) for v in product_box],
            "candidates": scored,
        }


def scoring_threads(config: Config) -> int:
    """``score.parallel``, or its default: 4 on a CUDA run, 1 on the CPU."""
    from autoshoot.budget import uses_gpu

    if config.score.parallel:
        return max(1, int(config.score.parallel))
    return 4 if uses_gpu(config) else 1


def to_final_size(
    composite: dict[str, Any],
    grip: tuple[float, float] | None,
    polygon: list[tuple[float, float]] | None,
    box: tuple[float, float, float, float] | None,
) -> tuple[Any, Any, Any]:
    """Canvas-pixel grip, polygon and XYXY box mapped to the composite's final size (a resize
    maps pixel edges to edges: c → (c + 0.5)·f - 0.5); unchanged when the composite is at the
    canvas size or does not say (an older RUN)."""
    if not composite.get("final_size") or not composite.get("canvas_size"):
        return grip, polygon, box
    (fw, fh), (cw, ch) = composite["final_size"], composite["canvas_size"]
    fx, fy = float(fw) / float(cw), float(fh) / float(ch)

    def pt(x: float, y: float) -> tuple[float, float]:
        return ((x + 0.5) * fx - 0.5, (y + 0.5) * fy - 0.5)

    grip = None if grip is None else pt(*grip)
    polygon = None if polygon is None else [pt(*p) for p in polygon]
    if box is not None:
        box = (*pt(box[0], box[1]), *pt(box[2], box[3]))
    return grip, polygon, box


def detail_scale(composite: dict[str, Any]) -> float:
    """Pixels of drawn detail per pixel of a final candidate: the canvas's long side over the
    final's (the renders are drawn at the canvas size and upscaled to the final size), at most
    1; 1 when the composite does not say (an older RUN)."""
    if not composite.get("final_size") or not composite.get("canvas_size"):
        return 1.0
    return min(1.0, max(composite["canvas_size"]) / max(max(composite["final_size"]), 1))


def read_grip(job: Job) -> tuple[tuple[float, float] | None, list[tuple[float, float]] | None]:
    """The grip point and erase polygon in canvas pixels, from ``prepare/stage.json``."""
    if "prepare" not in job.inputs:
        return None, None
    return grip_from_prepared(job.input_json("prepare"))


def grip_from_prepared(
    prepared: dict[str, Any],
) -> tuple[tuple[float, float] | None, list[tuple[float, float]] | None]:
    """(grip, erase_polygon) in canvas pixels from a prepare.json dict.

    ``grip_canvas`` is used when present; otherwise ``grip`` and ``erase_polygon`` (input
    pixels) are mapped with ``placement`` (canvas = input * scale + offset). A missing
    placement means the coordinates are already canvas pixels.
    """
    placement = prepared.get("placement") or {}
    scale = float(placement.get("scale", 1.0))
    ox, oy = (placement.get("offset") or (0.0, 0.0))[:2]

    def to_canvas(x: float, y: float) -> tuple[float, float]:
        return (float(x) * scale + float(ox), float(y) * scale + float(oy))

    grip = None
    if prepared.get("grip_canvas"):
        grip = tuple(float(v) for v in prepared["grip_canvas"][:2])
    elif prepared.get("grip"):
        grip = to_canvas(*prepared["grip"][:2])
    polygon = None
    if prepared.get("erase_polygon_canvas"):
        polygon = [tuple(float(v) for v in p[:2]) for p in prepared["erase_polygon_canvas"]]
    elif prepared.get("erase_polygon"):
        polygon = [to_canvas(*p[:2]) for p in prepared["erase_polygon"]]
    if polygon is not None and len(polygon) < 3:
        polygon = None
    return grip, polygon  # type: ignore[return-value]


def read_shot(job: Job) -> str | None:
    """The brief's shot ("close", "half_body", "full_body"), or None without an analyze stage."""
    if "analyze" not in job.inputs:
        return None
    brief = job.input_json("analyze").get("brief") or {}
    return brief.get("shot")


def read_product_box(job: Job) -> tuple[float, float, float, float] | None:
    """The placed product's box in canvas pixels, from ``prepare/stage.json``."""
    if "prepare" not in job.inputs:
        return None
    return product_box_from_prepared(job.input_json("prepare"))


def product_box_from_prepared(prepared: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The product's XYXY box in canvas pixels from a prepare.json dict, or None.

    ``product_bbox`` (input pixels) is mapped with ``placement`` (canvas = input * scale +
    offset), as ``grip_from_prepared`` maps the grip; ``product_bbox_canvas`` wins when present.
    """
    if prepared.get("product_bbox_canvas"):
        x0, y0, x1, y1 = (float(v) for v in prepared["product_bbox_canvas"][:4])
        return (x0, y0, x1, y1)
    bbox = prepared.get("product_bbox")
    if not bbox or len(bbox) < 4:
        return None
    placement = prepared.get("placement") or {}
    scale = float(placement.get("scale", 1.0))
    ox, oy = (float(v) for v in (placement.get("offset") or (0.0, 0.0))[:2])
    x0, y0, x1, y1 = (float(v) for v in bbox[:4])
    return (x0 * scale + ox, y0 * scale + oy, x1 * scale + ox, y1 * scale + oy)


# ---------------------------------------------------------------------------------------
# the bag detector's model (shown by `autoshoot models`, checked before the first SKU)


def bag_model_entries(config: Config) -> list[Any]:
    """The zero-shot bag detector's model (``score.bag_model``) as ``autoshoot.stages.render.ModelEntry``
    items; none when the rule is off (``score.bag_detector = none`` or ``score.scene = false``)
    or another detector is registered under ``score.bag_detector``."""
    from autoshoot.stages.render import ModelEntry

    sc = config.score
    if not sc.scene or sc.bag_detector != "zeroshot":
        return []
    role = "bag detector (scene: no second bag)"
    if sc.bag_model == "tiny":
        return [ModelEntry(f"{role}: tiny random OWLv2 (built in code, no download)", "tiny", "tiny")]
    return [
        ModelEntry(
            role,
            sc.bag_model,
            "transformers",
            files=("config.json",),
            patterns=("*.json", "*.txt", "*.safetensors"),
        )
    ]


def bag_model_fix(entry: Any, config: Config) -> str:
    """How to provide the detector, or to turn the rule off."""
    from autoshoot.backends.bag_detector import bag_model_hint

    if entry.kind == "tiny":
        return "nothing to fetch"
    return bag_model_hint(entry.source, config)


def missing_bag_models(config: Config) -> list[tuple[str, str, str]]:
    """The detector, when it is absent and cannot be fetched now (offline, or a local folder)."""
    from autoshoot.stages.render import missing_entries

    return missing_entries(config, bag_model_entries(config), lambda entry: bag_model_fix(entry, config))

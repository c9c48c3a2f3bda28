"""Config of the ``score`` and ``rank`` stages. Owned by the hand-scorer code.

detection   MediaPipe Hands settings and the upscaled crop around the expected grip
components  which components run (stability and scene cost extra MediaPipe calls)
bags        the scene rule "no second bag": a zero-shot bag detector and how its boxes are
            matched to the placed product
weights     how the components combine into ``hand_score`` (a weighted geometric mean)
ranking     the acceptance threshold and the optional aesthetic scorer that breaks ties
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _default_weights() -> dict[str, float]:
    # anatomy dominates: it is the only component that sees malformed fingers. Confidence and
    # stability weigh 0: fitted on the fit part of bench/hands_eval.py, neither ranks real above
    # AI-malformed hands (AUC 0.43 each; MediaPipe is as sure, and as stable under a flip, on a
    # clean generated hand as on a real one, and loses small or occluded real hands under a flip).
    return {"confidence": 0.0, "anatomy": 4.0, "stability": 0.0, "grip": 2.0, "scene": 2.0}


@dataclass(frozen=True)
class ScoreConfig:
    scorer: str = "mediapipe"  # name in autoshoot.backends.HAND_SCORERS
    accept_threshold: float = 0.7  # best candidate >= this → accepted, else review

    # detection
    model_complexity: int = 1  # MediaPipe Hands landmark model: 0 lite, 1 full
    min_detection_confidence: float = 0.5
    crop_size: int = 512  # an upscaled crop's long side, pixels
    crop_factor: float = 2.5  # the crop around the grip is this many times the grip box
    grip_box_frac: float = 0.1  # the box around the grip: this fraction of the image's long side
    refine_crops: bool = True  # re-detect small hands found at full frame on an upscaled crop
    tile_search: bool = (
        True  # no hand found: search 3x3 upscaled tiles (+9 MediaPipe calls) before failing closed
    )

    # components
    # re-run each hand on a flipped crop: +1 MediaPipe call per hand. Off: its weight is 0 (above)
    stability: bool = False
    stability_tolerance: float = 0.12  # mean landmark shift (palm lengths) that is still stable
    scene: bool = True  # face detection + pose: one person, no hands without a body
    # count in anatomy two neighbouring extended fingers with neither a gap nor a seam between
    # them (one digit drawn with two chains), as a finger off the hand is. Fitted by
    # bench/hands_eval.py on its fit part, whose fused-finger evidence is synthetic (two chains laid
    # on one real finger of its real photos): on, as no synthetic hand it flags is judged
    # separated once the photo is flipped, rotated, rescaled or saved as JPEG (it stays flagged,
    # or is not judged where too few pixels show a seam), and no real hand of the fit part is
    # flagged under those. The "separation" component is reported either way
    finger_separation: bool = True
    # candidates of a SKU scored at once, each with its own MediaPipe graphs; 0 = 4 when the
    # run renders on a CUDA GPU (many cores; scoring must keep up with the render), else 1
    parallel: int = 0
    grip_near: float = 0.6  # hand farther than this (palm lengths) from the erase polygon → bad
    # fail closed (autoshoot.hands.policy): no hand found caps hand_score at no_hand_score, below
    # accept_threshold; no person found multiplies it by no_person_factor
    no_hand_score: float = 0.4
    no_person_factor: float = 0.3
    close_up_frac: float = 0.25  # a hand box this share of the image diagonal: a close-up
    max_hands: int = 2
    weights: dict[str, float] = field(default_factory=_default_weights)

    # scene: no second bag (part of the scene component; off when scene is off)
    bag_detector: str = "zeroshot"  # name in autoshoot.backends.BAG_DETECTORS; "none" = rule off
    bag_model: str = "google/owlv2-base-patch16-ensemble"  # hub id or folder (OWLv2, OWL-ViT, Grounding DINO)
    bag_queries: tuple[str, ...] = ("a bag", "a handbag", "a backpack", "a tote bag", "a briefcase")
    bag_threshold: float = 0.3  # detections scoring below this are ignored
    bag_nms_iou: float = 0.5  # two detections overlapping this much (IoU) are one bag
    bag_match_iou: float = 0.3  # a bag overlapping the placed product this much (IoU) is the product...
    bag_match_contain: float = 0.6  # ...or when this share of the smaller box is inside the other
    bag_penalty: float = 0.35  # the scene component is multiplied by this per second bag

    # ranking: an optional aesthetic / prompt-alignment scorer (name in AESTHETIC_SCORERS)
    aesthetic: str = ""  # "" = none
    aesthetic_model: str = ""  # weights path or hub id for that scorer
    aesthetic_weight: float = 0.0  # 0 = ties only; >0 mixes it into the ranking key
    tie_margin: float = 0.02  # hand scores this close count as tied


PROFILES: dict[str, dict] = {
    "default": {},
    # the tiny profile renders random noise: skip the extra calls, keep the same code path
    # (a random tiny OWLv2 built in code stands in for the bag detector)
    "tiny": {"stability": False, "bag_model": "tiny"},
}

"""Bag detectors for the scene rule "no second bag", and the rule's box arithmetic.

MediaPipe's bundled models find hands, faces, poses and people, but not bags, so the rule
needs a detector of its own. ``ZeroShotBagDetector`` runs a transformers zero-shot object
detector (``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``) queried with text
("a handbag", "a backpack", ...): OWLv2 by default (``google/owlv2-base-patch16-ensemble``),
or OWL-ViT and Grounding DINO hub ids or local folders. ``NoBagDetector`` (``none``) turns
the rule off.

``find_second_bags`` decides: detections at or above the threshold, duplicates suppressed
across queries, are matched to the placed product's box; any confident bag that is not the
product is a second bag.

``tiny`` model: a random tiny OWLv2 (two-layer vision and text towers, 128 px input) with an
offline byte-level CLIP tokenizer, built in code with a fixed seed, saved once to the user's
cache folder and loaded back through the same ``from_pretrained`` path. Its boxes are noise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoshoot.errors import ModelMissingError
from autoshoot.hub import is_offline
from autoshoot.run.models import on_own_stream, one_call_at_a_time

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # XYXY pixels

TINY_VERSION = "1"
TINY_SOURCE = "tiny"
MAX_DETECTIONS = 100  # per image, best first
MIN_BOX_SIDE = 2.0  # pixels: thinner boxes are no bag
# OWLv2 pads each image to a square (bottom and right) before resizing it, so its boxes are
# relative to that square; the other detectors' boxes are relative to the image itself
SQUARE_PADDED_MODELS = ("owlv2",)


@dataclass(frozen=True)
class BagDetection:
    """One detected bag.

    box: XYXY pixels of the image given to ``detect`` (x right, y down, origin top-left).
    score: the detector's confidence in [0, 1].
    label: the text query that matched, e.g. "a handbag".
    """

    box: Box
    score: float
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
        }


# ---------------------------------------------------------------------------------------
# the rule: which confident bags are not the product


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_overlap(a: Box, b: Box) -> tuple[float, float]:
    """(IoU, intersection over the smaller box's area) of two XYXY boxes, each in [0, 1]."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a, area_b = box_area(a), box_area(b)
    union = area_a + area_b - inter
    smaller = min(area_a, area_b)
    return (inter / union if union > 0 else 0.0, inter / smaller if smaller > 0 else 0.0)


def boxes_match(a: Box, b: Box, min_iou: float, min_contain: float) -> bool:
    """The same object: IoU >= ``min_iou``, or the smaller box lies mostly (>= ``min_contain``
    of its area) inside the larger, e.g. a box on the bag's body inside one that includes its
    strap."""
    iou, contain = box_overlap(a, b)
    return iou >= min_iou or contain >= min_contain


def suppress_duplicates(
    detections: list[BagDetection], threshold: float, nms_iou: float, min_contain: float
) -> list[BagDetection]:
    """Non-maximum suppression across all queries: the detections scoring >= ``threshold``,
    best first, without any that match (``boxes_match``) a better one."""
    kept: list[BagDetection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if det.score < threshold or box_area(det.box) <= 0:
            continue
        if any(boxes_match(det.box, k.box, nms_iou, min_contain) for k in kept):
            continue
        kept.append(det)
    return kept


@dataclass(frozen=True)
class BagCount:
    """What ``find_second_bags`` found: ``bags`` are the distinct confident detections, each
    with ``is_product`` (None when the product's box was not known); ``n_bags`` counts the
    product too; ``second`` are the bags that are not the product."""

    bags: list[tuple[BagDetection, bool | None]]
    second: list[BagDetection]
    n_bags: int

    def to_json(self) -> list[dict[str, Any]]:
        return [{**det.to_json(), "is_product": is_product} for det, is_product in self.bags]


def find_second_bags(
    detections: list[BagDetection],
    product_box: Box | None,
    threshold: float,
    nms_iou: float = 0.5,
    match_iou: float = 0.3,
    match_contain: float = 0.6,
) -> BagCount:
    """Count the bags in a candidate and pick out those that are not the product.

    Args:
        detections: raw detections (any score, duplicates across queries allowed).
        product_box: XYXY pixels of the placed product in the same image, or None.
        threshold: detections below this score are ignored.
        nms_iou / match_iou: IoU at which two detections are one bag / a detection is the product.
        match_contain: or when this share of the smaller box lies inside the other.
    Returns:
        A ``BagCount``. With a product box, the product counts as one bag whether or not it
        was detected (the composite pasted it there), and every confident bag that does not
        match it is a second bag. Without one, one of the detected bags is taken to be the
        product and the others are second bags.
    """
    kept = suppress_duplicates(detections, threshold, nms_iou, match_contain)
    if product_box is None:
        return BagCount(bags=[(d, None) for d in kept], second=kept[1:], n_bags=len(kept))
    product = tuple(float(v) for v in product_box)
    bags = [(d, boxes_match(d.box, product, match_iou, match_contain)) for d in kept]  # type: ignore[arg-type]
    second = [d for d, is_product in bags if not is_product]
    return BagCount(bags=bags, second=second, n_bags=1 + len(second))


# ---------------------------------------------------------------------------------------
# detectors


class NoBagDetector:
    """``none``: the second-bag rule is off; finds nothing."""

    def __init__(self, config: Any = None):
        pass

    def detect(self, image: np.ndarray) -> list[BagDetection]:
        return []

    def close(self) -> None:
        pass


class ZeroShotBagDetector:
    """A transformers zero-shot object detector queried with ``score.bag_queries``.

    Built once per run (``ZeroShotBagDetector(config)``), called per candidate. Loads
    ``score.bag_model`` (hub id, local folder, or ``tiny``) with ``AutoProcessor`` and
    ``AutoModelForZeroShotObjectDetection``; runs on ``run.device`` (a GPU when ``auto`` finds
    one, else the CPU), in float32.

    Args:
        config: a Config (``score`` and ``run`` sections) or a ScoreConfig.
        model / processor: already-built transformers objects (tests and the benchmark pass them).
    """

    def __init__(self, config: Any, model: Any = None, processor: Any = None):
        import torch

        from autoshoot.backends.sdxl import pick_device

        self.settings = getattr(config, "score", config)
        run = getattr(config, "run", None)
        self.device = pick_device(getattr(run, "device", "auto"))
        self.queries = [str(q) for q in self.settings.bag_queries]
        if not self.queries:
            from autoshoot.errors import ConfigError

            raise ConfigError("score.bag_queries is empty; give at least one, e.g. ['a bag', 'a handbag']")
        if model is None or processor is None:
            model, processor = load_detector(self.settings.bag_model, offline=is_offline(config))
        self.model = model.to(self.device, torch.float32).eval().requires_grad_(False)
        self.processor = processor
        self.square_padded = getattr(model.config, "model_type", "") in SQUARE_PADDED_MODELS
        self.input_size = processor_input_size(processor)
        self.text_inputs: dict[str, Any] | None = None  # the queries, tokenized once

    def close(self) -> None:
        self.model = None

    @one_call_at_a_time
    @on_own_stream
    def detect(self, image: np.ndarray) -> list[BagDetection]:
        """Detect bags.

        Args:
            image: HxWx3 uint8 RGB.
        Returns:
            Detections scoring above ``score.bag_threshold`` (duplicates across queries and
            overlapping boxes of one bag are kept: ``find_second_bags`` merges them), best
            first, boxes as XYXY pixels of ``image`` clipped to it, at least 2 px a side.
        """
        import torch

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect needs an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        # 1. shrink to the model's input size first (area averaging): the processor's own
        #    anti-aliased resize is far slower on a large image
        small = shrink_to(image, self.input_size)
        sh, sw = small.shape[:2]
        # 2. tokenize the queries (once) and preprocess the image
        inputs = self.prepare_inputs(small)
        # 3. detect
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # 4. boxes in pixels of ``small`` (OWLv2's are relative to its padded square), then of ``image``
        side = max(sh, sw)
        target = (side, side) if self.square_padded else (sh, sw)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            threshold=float(self.settings.bag_threshold),
            target_sizes=[target],
            text_labels=[self.queries],
        )[0]
        boxes = result["boxes"].float().cpu().numpy() * np.array([w / sw, h / sh, w / sw, h / sh])
        scores = result["scores"].float().cpu().numpy()
        labels = result.get("text_labels") or [""] * len(scores)
        found = []
        for box, score, label in zip(boxes, scores, labels, strict=False):
            x0, y0, x1, y1 = np.clip(box, 0, [w, h, w, h]).tolist()
            if x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE:
                found.append(BagDetection((x0, y0, x1, y1), float(score), str(label or "")))
        found.sort(key=lambda d: -d.score)
        return found[:MAX_DETECTIONS]

    def prepare_inputs(self, image: np.ndarray) -> dict[str, Any]:
        """The model's inputs for one HxWx3 uint8 RGB image and the queries, on the device.
        The queries are tokenized once per run."""
        if self.text_inputs is None:
            encoded = self.processor(text=[self.queries], return_tensors="pt", truncation=True)
            self.text_inputs = {k: v.to(self.device) for k, v in encoded.items()}
        pixels = self.processor.image_processor(images=[image], return_tensors="pt")
        return {**self.text_inputs, **{k: v.to(self.device) for k, v in pixels.items()}}


# ---------------------------------------------------------------------------------------
# loading


def load_detector(source: str, offline: bool) -> tuple[Any, Any]:
    """(model, processor) from a hub id, a local folder, or ``tiny`` (built once, then loaded)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    path = str(tiny_detector_on_disk()) if source == TINY_SOURCE else os.path.expanduser(source)
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=offline)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(path, local_files_only=offline)
    except OSError as err:
        from autoshoot.hub import fetch_problem

        where = f"{source} ({fetch_problem(err)})"
        raise ModelMissingError([("bag detector", where, bag_model_hint(source))]) from err
    logger.info("bag detector %s loaded (%s)", source, type(model).__name__)
    return model, processor


def bag_model_hint(source: str, config: Any = None) -> str:
    """How to provide a missing detector, or to turn the rule off (``hub.download_hint``'s wording)."""
    from autoshoot.hub import download_hint, is_local_source

    off = "or turn the second-bag rule off with --set score.bag_detector=none"
    if is_local_source(source):
        return f"{download_hint(source, config)} (it needs the detector's config.json and weights); {off}"
    return f"{download_hint(source, config)}; or set score.bag_model to a local folder; {off}"


def processor_input_size(processor: Any) -> tuple[int, int | None] | None:
    """What the image processor resizes to, as (short side, long-side limit or None), or None.

    OWL models resize to a fixed height x width: (max of the two, None). Grounding DINO
    resizes the short side to ``shortest_edge`` within ``longest_edge``."""
    size = getattr(getattr(processor, "image_processor", processor), "size", None)
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
    if get("height") and get("width"):
        return max(int(get("height")), int(get("width"))), None
    if get("shortest_edge"):
        return int(get("shortest_edge")), int(get("longest_edge") or 0) or None
    return None


def shrink_to(image: np.ndarray, size: tuple[int, int | None] | None) -> np.ndarray:
    """``image`` shrunk with area averaging (never enlarged) to the resolution the model sees:
    its short side down to ``size[0]``, its long side to at most ``size[1]``. No detail the
    model would see is lost; the processor's own resize then has little left to do.

    Args:
        image: HxWx3 uint8 RGB.
        size: ``processor_input_size``'s answer.
    Returns:
        hxwx3 uint8 RGB (``image`` itself when there is nothing to shrink).
    """
    if size is None:
        return image
    h, w = image.shape[:2]
    short, long_ = size
    scale = min(1.0, short / min(h, w), long_ / max(h, w) if long_ else 1.0)
    if scale >= 0.999:
        return image
    import cv2

    size_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------
# the tiny random detector (tests, demo, install check)


def tiny_detector_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autoshoot" / f"tiny-owlv2-v{TINY_VERSION}"


def tiny_detector_on_disk(folder: Path | None = None) -> Path:
    """Save the tiny detector once (transformers layout) and return its folder."""
    folder = folder or tiny_detector_dir()
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        save_tiny_detector(folder)
    return folder


def save_tiny_detector(folder: Path) -> None:
    import shutil
    import tempfile

    model, processor = build_tiny_detector()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if folder.exists():  # an incomplete folder
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process saved it first (the same model: same seed)
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").is_file():
            raise


def build_tiny_detector(seed: int = 0) -> tuple[Any, Any]:
    """Random tiny OWLv2: 2-layer, 32-wide vision (128 px, 16 px patches: 64 boxes) and text
    towers, and an offline byte-level CLIP tokenizer (16 tokens, like OWL's). Under a second."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from autoshoot.backends.sdxl_tiny import build_byte_tokenizers

    _, tokenizer = build_byte_tokenizers()  # pads with "!" (id 0), as OWL's tokenizer does
    tokenizer.model_max_length = 16
    vocab_size = len(tokenizer)
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = Owlv2Config(
        text_config={
            **tower,
            "vocab_size": vocab_size,
            "max_position_embeddings": 16,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,  # the highest id: OWL pools the text at argmax(input_ids)
            "pad_token_id": 0,
        },
        vision_config={**tower, "image_size": 128, "patch_size": 16},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 128, "width": 128}), tokenizer=tokenizer
    )
    return model, processor

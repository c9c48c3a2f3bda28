"""MediaPipe hand, face and pose detection, and the hand-quality scorer built on it.

MediaPipe is a detector, not a judge of quality: its handedness confidence is as high on
AI-malformed hands as on real ones. ``HandDetector`` finds hands (full frame, then an
upscaled crop around the expected grip, where small hands are found that the full frame
misses) and returns landmarks in image pixels. ``MediaPipeHandScorer`` judges them from
their anatomy (``autoshoot.hand_anatomy``), the agreement of the skin region with a
five-finger skeleton, their stability under a flip, the grip and the scene.

Uses the legacy ``mp.solutions`` graphs, whose models ship inside the mediapipe 0.10.21
wheel, so everything here runs offline on the CPU.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # XYXY pixels


@dataclass
class DetectedHand:
    """One hand found by MediaPipe, in pixels of the image given to ``detect``.

    landmarks: (21, 3) float32; x, y in pixels (x right, y down, origin top-left); z is
        MediaPipe's relative depth (wrist = 0, smaller = nearer the camera) times the
        width of the image MediaPipe saw, mapped into the same pixel scale as x and y.
    handedness: "Left" or "Right" as MediaPipe labels it (for a non-mirrored photo).
    handedness_score: MediaPipe's handedness confidence in [0, 1].
    detection_score: the fraction of detection passes (full frame, crops) that found this
        hand, in [0, 1]; the legacy graph exposes no palm-detection score.
    bbox: XYXY pixels around the 21 landmarks.
    views: the names of the passes that found it, e.g. ["full", "crop"].
    """

    landmarks: np.ndarray
    handedness: str
    handedness_score: float
    detection_score: float
    bbox: Box
    views: list[str] = field(default_factory=list)

    @property
    def size(self) -> float:
        """Hand size in pixels: the diagonal of its landmark box."""
        x0, y0, x1, y1 = self.bbox
        return float(np.hypot(x1 - x0, y1 - y0))

    def to_json(self) -> dict[str, Any]:
        return {
            "handedness": self.handedness,
            "handedness_score": round(float(self.handedness_score), 4),
            "detection_score": round(float(self.detection_score), 4),
            "bbox": [round(float(v), 1) for v in self.bbox],
            "views": list(self.views),
            "landmarks": np.round(self.landmarks, 1).tolist(),
        }


def landmarks_bbox(landmarks: np.ndarray) -> Box:
    """XYXY box around (N, 2+) pixel landmarks."""
    x0, y0 = landmarks[:, 0].min(), landmarks[:, 1].min()
    x1, y1 = landmarks[:, 0].max(), landmarks[:, 1].max()
    return (float(x0), float(y0), float(x1), float(y1))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two XYXY boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def expand_box(box: Box, factor: float, min_side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square XYXY int box, ``factor`` times the box's longer side (at least ``min_side``),
    centred on ``box`` and shifted (not cut) to stay inside a ``width`` x ``height`` image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * factor
    side = min(max(side, min_side), float(max(width, height)))
    x0 = int(round(min(max(cx - side / 2, 0.0), max(width - side, 0.0))))
    y0 = int(round(min(max(cy - side / 2, 0.0), max(height - side, 0.0))))
    x1 = int(round(min(x0 + side, width)))
    y1 = int(round(min(y0 + side, height)))
    return x0, y0, x1, y1


class HandDetector:
    """MediaPipe Hands, built once, called per image.

    Args:
        max_num_hands: hands per pass (2).
        model_complexity: 0 (lite) or 1 (full landmark model).
        min_detection_confidence: palm-detector threshold of each pass.
        crop_size: the long side, in pixels, that a crop around the roi is resized to.
        crop_factor: the crop is this many times the roi's longer side.
        min_crop_side: a crop is at least this many pixels of the original image.
        refine_crops: also re-run on an upscaled crop around each hand found at full frame
            whose box is smaller than ``crop_size`` (finer landmarks for small hands).

    The detector is not thread safe (one MediaPipe graph); calls are serialized by a lock.
    """

    def __init__(
        self,
        max_num_hands: int = 2,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        crop_size: int = 512,
        crop_factor: float = 2.5,
        min_crop_side: int = 192,
        refine_crops: bool = False,
    ):
        import mediapipe as mp

        self.crop_size = int(crop_size)
        self.crop_factor = float(crop_factor)
        self.min_crop_side = int(min_crop_side)
        self.refine_crops = bool(refine_crops)
        self._hands = mp.solutions.hands.Hands(
            static_image_mode=True,
            max_num_hands=max_num_hands,
            model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._hands.close()

    # -- one MediaPipe pass -------------------------------------------------------------

    def detect_raw(self, image: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        """One pass on the whole of ``image``.

        Args:
            image: HxWx3 uint8 RGB.
        Returns:
            [(landmarks (21, 3) float32 in pixels of ``image``, z times the image width,
            handedness label, handedness score)].
        """
        h, w = image.shape[:2]
        with self._lock:
            result = self._hands.process(np.ascontiguousarray(image))
        found = []
        for lms, handed in zip(result.multi_hand_landmarks or [], result.multi_handedness or []):
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lms.landmark], dtype=np.float32)
            cls = handed.classification[0]
            found.append((pts, str(cls.label), float(cls.score)))
        return found

    def detect_crop(
        self, image: np.ndarray, box: tuple[int, int, int, int]
    ) -> list[tuple[np.ndarray, str, float]]:
        """One pass on ``image[box]`` resized so its long side is ``crop_size``; landmarks
        are mapped back to pixels of ``image``. ``box`` is XYXY int."""
        import cv2

        x0, y0, x1, y1 = box
        crop = image[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        if ch < 8 or cw < 8:
            return []
        scale = self.crop_size / max(ch, cw)
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        resized = cv2.resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))), interpolation=interp)
        found = []
        for pts, label, score in self.detect_raw(resized):
            pts = pts / scale  # z was scaled by the resized width: same factor
            pts[:, 0] += x0
            pts[:, 1] += y0
            found.append((pts.astype(np.float32), label, score))
        return found

    # -- the full detection -------------------------------------------------------------

    def detect(
        self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None
    ) -> list[DetectedHand]:
        """Find hands: the full frame, then an upscaled crop around ``roi``; duplicates merged.

        Args:
            image: HxWx3 uint8 RGB.
            roi: XYXY pixels where a hand is expected (e.g. a box around the grip), or None.
        Returns:
            Hands, largest first. Where several passes found the same hand, the landmarks
            of the pass that saw it largest (the crop) are kept.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"HandDetector.detect needs an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        # 1. full frame
        passes: list[tuple[str, float, list[tuple[np.ndarray, str, float]]]] = []
        passes.append(("full", 1.0, self.detect_raw(image)))
        # 2. upscaled crop around the expected grip
        crop_boxes: list[tuple[str, tuple[int, int, int, int]]] = []
        if roi is not None:
            crop_boxes.append(("crop", expand_box(tuple(map(float, roi)), self.crop_factor, self.min_crop_side, w, h)))
        # 3. optionally, finer crops around small hands found at full frame
        if self.refine_crops:
            for pts, _, _ in passes[0][2]:
                box = landmarks_bbox(pts)
                if max(box[2] - box[0], box[3] - box[1]) * 2.0 < self.crop_size:
                    crop_boxes.append(("refine", expand_box(box, 2.0, self.min_crop_side, w, h)))
        for name, box in crop_boxes:
            side = max(box[2] - box[0], box[3] - box[1])
            passes.append((name, self.crop_size / max(side, 1), self.detect_crop(image, box)))
        # 4. merge duplicates across passes
        return merge_hands(passes)


def merge_hands(
    passes: list[tuple[str, float, list[tuple[np.ndarray, str, float]]]], iou_same: float = 0.3
) -> list[DetectedHand]:
    """Merge hands found by several passes into distinct hands.

    Args:
        passes: [(pass name, its zoom factor, [(landmarks (21, 3) px, label, score)])].
        iou_same: two hands whose landmark boxes overlap this much are the same hand.
    """
    n_passes = len(passes)
    groups: list[dict[str, Any]] = []
    for name, zoom, found in passes:
        for pts, label, score in found:
            box = landmarks_bbox(pts)
            match = None
            for group in groups:
                if box_iou(box, group["box"]) >= iou_same and name not in group["views"]:
                    match = group
                    break
            if match is None:
                groups.append({"box": box, "pts": pts, "label": label, "score": score, "zoom": zoom, "views": [name]})
                continue
            match["views"].append(name)
            if zoom > match["zoom"]:  # the pass that saw it larger has finer landmarks
                match.update(box=box, pts=pts, label=label, score=score, zoom=zoom)
    hands = [
        DetectedHand(
            landmarks=g["pts"].astype(np.float32),
            handedness=g["label"],
            handedness_score=g["score"],
            detection_score=len(g["views"]) / n_passes,
            bbox=g["box"],
            views=g["views"],
        )
        for g in groups
    ]
    hands.sort(key=lambda hand: -hand.size)
    return hands

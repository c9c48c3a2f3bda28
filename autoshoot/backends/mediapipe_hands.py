"""MediaPipe hand, face and pose detection, and the hand-quality scorer built on it.

MediaPipe is a detector, not a judge of quality: its handedness confidence is as high on
AI-malformed hands as on real ones. ``HandDetector`` finds hands (full frame, then an
upscaled crop around the expected grip, where small hands are found that the full frame
misses) and returns landmarks in image pixels. ``MediaPipeHandScorer`` judges them from
their anatomy (``autoshoot.hands.anatomy``), the picture under the skeleton
(``autoshoot.hands.evidence``: a finger chain threaded through a gap between digits, two
chains on one finger), the grip
and the scene (faces and pose, and a second bag beside the product: MediaPipe has no bag model, so
that check runs a zero-shot detector from ``autoshoot.backends.bag_detector``).

On the sample photos the landmark model fits five plausible fingers even to generated hands
with fused or extra fingers, and a GrabCut silhouette seeded by the skeleton follows the same
five fingers, so what separates them is the skeleton's proportions: generated hands splay
their knuckles (palm breadth 1.3-1.5x that of a canonical palm of the same length, against
0.9-1.27x on real photos, also under flips, rotations, rescaling and JPEG) and grow long thumbs;
and, where the skeleton is plausible, whether the pixels under each finger chain are the hand's.
The detector's own signals do not help: on the samples it is as confident on clean generated
hands as on real ones, and their landmarks move less under flips, rotations and rescaling.

Uses the legacy ``mp.solutions`` graphs, whose models ship inside the mediapipe 0.10.21
wheel, so everything here runs offline on the CPU.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoshoot.hands.policy import combine_components, fail_closed, is_close_up, score_scene
from autoshoot.io import native_stderr_silenced
from autoshoot.run.models import ModelPool
from autoshoot.types import HandScore

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # XYXY pixels
# one hand of one MediaPipe pass: landmarks (21, 3) pixels, handedness label and score, and
# the world landmarks (21, 3) metres (None where the graph gave none)
Found = tuple[np.ndarray, str, float, "np.ndarray | None"]


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
    world: (21, 3) float32 or None; MediaPipe's world landmarks of the same pass, its 3D
        estimate of the hand in metres (origin at the hand's centre, axes as the image's).
    """

    landmarks: np.ndarray
    handedness: str
    handedness_score: float
    detection_score: float
    bbox: Box
    views: list[str] = field(default_factory=list)
    world: np.ndarray | None = None

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


def expand_box(
    box: Box, factor: float, min_side: float, width: int, height: int
) -> tuple[int, int, int, int]:
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


def count_covering(box: Box, regions: list[Box] | None, n_passes: int) -> int:
    """How many pass regions hold the centre of ``box`` (all passes when regions is None)."""
    if regions is None:
        return n_passes
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return sum(1 for r in regions if r[0] <= cx <= r[2] and r[1] <= cy <= r[3])


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

    def detect_raw(self, image: np.ndarray) -> list[Found]:
        """One pass on the whole of ``image``.

        Args:
            image: HxWx3 uint8 RGB.
        Returns:
            [(landmarks (21, 3) float32 in pixels of ``image``, z times the image width,
            handedness label, handedness score, world landmarks (21, 3) float32 metres)].
        """
        h, w = image.shape[:2]
        with self._lock:
            with native_stderr_silenced():
                result = self._hands.process(np.ascontiguousarray(image))
        found = []
        worlds = result.multi_hand_world_landmarks or [None] * len(result.multi_hand_landmarks or [])
        for lms, handed, wlms in zip(
            result.multi_hand_landmarks or [], result.multi_handedness or [], worlds, strict=False
        ):
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lms.landmark], dtype=np.float32)
            world = (
                None if wlms is None else np.array([(p.x, p.y, p.z) for p in wlms.landmark], dtype=np.float32)
            )
            cls = handed.classification[0]
            found.append((pts, str(cls.label), float(cls.score), world))
        return found

    def detect_crop(self, image: np.ndarray, box: tuple[int, int, int, int]) -> list[Found]:
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
        resized = cv2.resize(
            crop, (max(1, round(cw * scale)), max(1, round(ch * scale))), interpolation=interp
        )
        found = []
        for pts, label, score, world in self.detect_raw(resized):
            pts = pts / scale  # z was scaled by the resized width: same factor
            pts[:, 0] += x0
            pts[:, 1] += y0
            found.append((pts.astype(np.float32), label, score, world))  # world: metres, unmoved
        return found

    # -- the full detection -------------------------------------------------------------

    def detect(self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> list[DetectedHand]:
        """Find hands: the full frame, then an upscaled crop around ``roi``; duplicates merged.

        Args:
            image: HxWx3 uint8 RGB.
            roi: XYXY pixels where a hand is expected (e.g. a box around the grip), or None.
        Returns:
            Hands, largest first. Where several passes found the same hand, the landmarks
            of the pass that saw it largest (the crop) are kept.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"HandDetector.detect needs an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}"
            )
        h, w = image.shape[:2]
        # 1. full frame
        passes: list[tuple[str, float, list[Found]]] = []
        regions: list[Box] = [(0.0, 0.0, float(w), float(h))]
        passes.append(("full", 1.0, self.detect_raw(image)))
        # 2. upscaled crop around the expected grip
        crop_boxes: list[tuple[str, tuple[int, int, int, int]]] = []
        if roi is not None:
            crop_boxes.append(
                ("crop", expand_box(tuple(map(float, roi)), self.crop_factor, self.min_crop_side, w, h))
            )
        # 3. optionally, finer crops around small hands found at full frame
        if self.refine_crops:
            for pts, *_ in passes[0][2]:
                box = landmarks_bbox(pts)
                if max(box[2] - box[0], box[3] - box[1]) * 2.0 < self.crop_size:
                    crop_boxes.append(("refine", expand_box(box, 2.0, self.min_crop_side, w, h)))
        for name, box in crop_boxes:
            side = max(box[2] - box[0], box[3] - box[1])
            passes.append((name, self.crop_size / max(side, 1), self.detect_crop(image, box)))
            regions.append(tuple(float(v) for v in box))
        # 4. merge duplicates across passes
        return merge_hands(passes, regions)

    def detect_tiles(self, image: np.ndarray, grid: int = 3) -> list[DetectedHand]:
        """Hands in ``grid`` x ``grid`` overlapping tiles, each half the image's long side,
        upscaled to ``crop_size``: a slower search for small hands where the full frame found
        none. ``image``: HxWx3 uint8 RGB."""
        h, w = image.shape[:2]
        passes: list[tuple[str, float, list[Found]]] = []
        regions: list[Box] = []
        side = max(h, w) / 2
        for i in range(grid):
            for j in range(grid):
                cx, cy = w * (j + 0.5) / grid, h * (i + 0.5) / grid
                box = expand_box((cx, cy, cx, cy), 1.0, side, w, h)
                passes.append((f"tile{i}{j}", self.crop_size / side, self.detect_crop(image, box)))
                regions.append(tuple(float(v) for v in box))
        return merge_hands(passes, regions)


def merge_hands(
    passes: list[tuple[str, float, list[Found]]],
    regions: list[Box] | None = None,
    iou_same: float = 0.3,
) -> list[DetectedHand]:
    """Merge hands found by several passes into distinct hands.

    Args:
        passes: [(pass name, its zoom factor, [(landmarks (21, 3) px, label, score, world
            landmarks (21, 3) metres or None)])]; a hand keeps the world landmarks of the
            pass whose image landmarks it keeps.
        regions: the XYXY image region each pass saw; a hand's ``detection_score`` is the
            share of the passes whose region holds its centre that found it.
        iou_same: two hands whose landmark boxes overlap this much are the same hand.
    """
    groups: list[dict[str, Any]] = []
    for name, zoom, found in passes:
        for pts, label, score, world in found:
            box = landmarks_bbox(pts)
            match = None
            for group in groups:
                if box_iou(box, group["box"]) >= iou_same and name not in group["views"]:
                    match = group
                    break
            if match is None:
                groups.append(
                    {
                        "box": box,
                        "pts": pts,
                        "label": label,
                        "score": score,
                        "zoom": zoom,
                        "views": [name],
                        "world": world,
                    }
                )
                continue
            match["views"].append(name)
            if zoom > match["zoom"]:  # the pass that saw it larger has finer landmarks
                match.update(box=box, pts=pts, label=label, score=score, zoom=zoom, world=world)
    hands = [
        DetectedHand(
            landmarks=g["pts"].astype(np.float32),
            handedness=g["label"],
            handedness_score=g["score"],
            detection_score=len(g["views"])
            / max(count_covering(g["box"], regions, len(passes)), len(g["views"])),
            bbox=g["box"],
            views=g["views"],
            world=None if g["world"] is None else np.asarray(g["world"], dtype=np.float32),
        )
        for g in groups
    ]
    hands.sort(key=lambda hand: -hand.size)
    return hands


# ---------------------------------------------------------------------------------------
# Scene: faces and a body


@dataclass
class Scene:
    """Faces (XYXY pixel boxes with scores) and whether a body pose was found."""

    faces: list[tuple[Box, float]] = field(default_factory=list)
    body: bool = False
    body_box: Box | None = None  # XYXY around the visible pose landmarks
    person_fraction: float = 0.0  # share of pixels the person segmenter calls "person"
    wrists: list[tuple[float, float]] = field(default_factory=list)  # visible pose wrists, pixels

    @property
    def has_person(self) -> bool:
        """Any evidence of a person: a face, a body pose, or 2% of the pixels segmented as one."""
        return bool(self.faces) or self.body or self.person_fraction >= 0.02


class SceneDetector:
    """MediaPipe face detection (full range), Pose (complexity 1) and person segmentation, built once.

    The segmenter finds people that the face and pose detectors miss (a torso cut off at the
    neck, a figure seen from behind), so "no person at all" can be told apart from "no face".
    """

    def __init__(self, min_face_confidence: float = 0.5, min_pose_confidence: float = 0.3):
        import mediapipe as mp

        self._faces = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_face_confidence
        )
        # 0.3: at 0.5 the pose detector misses torsos whose head is out of frame
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, min_detection_confidence=min_pose_confidence
        )
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._faces.close()
        self._pose.close()
        self._segmenter.close()

    def detect(self, image: np.ndarray) -> Scene:
        """Args: image HxWx3 uint8 RGB."""
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image)
        with self._lock:
            with native_stderr_silenced():
                faces = self._faces.process(image)
                pose = self._pose.process(image)
                person = self._segmenter.process(image).segmentation_mask
        scene = Scene(person_fraction=float((person > 0.5).mean()) if person is not None else 0.0)
        for det in faces.detections or []:
            rb = det.location_data.relative_bounding_box
            box = (rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h)
            scene.faces.append((tuple(float(v) for v in box), float(det.score[0])))
        if pose.pose_landmarks is not None:
            pts = np.array([(p.x * w, p.y * h) for p in pose.pose_landmarks.landmark if p.visibility > 0.5])
            if len(pts) >= 4:
                scene.body = True
                scene.body_box = landmarks_bbox(pts)
            for k in (15, 16):  # the pose's left and right wrists
                p = pose.pose_landmarks.landmark[k]
                if p.visibility > 0.5 and 0 <= p.x <= 1 and 0 <= p.y <= 1:
                    scene.wrists.append((float(p.x * w), float(p.y * h)))
        return scene


# ---------------------------------------------------------------------------------------
# The hand-quality scorer


def polygon_distance(point: np.ndarray, polygon: np.ndarray) -> float:
    """Distance in pixels from ``point`` (2,) to a closed ``polygon`` (N, 2); 0 inside."""
    import cv2

    poly = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    d = cv2.pointPolygonTest(poly, (float(point[0]), float(point[1])), True)
    return max(0.0, -float(d))


class MediaPipeHandScorer:
    """Hand quality of one image: ``score(image, grip, erase_polygon) -> HandScore``.

    Components, each in [0, 1]:
      confidence  MediaPipe's handedness confidence and the share of passes that found the hand
                  (reported; weight 0 by default: it does not rank real above malformed hands)
      anatomy     ``autoshoot.hands.anatomy.check_anatomy`` of the worst hand (incl. palm vs face),
                  times the finger support of ``autoshoot.hands.evidence`` (and, with
                  ``score.finger_separation``, times its finger separation)
      separation  ``autoshoot.hands.evidence.check_finger_separation`` of the worst hand: two
                  neighbouring fingers with neither a gap nor a seam between them (reported, no
                  weight of its own: with ``score.finger_separation`` it is a factor of anatomy)
      stability   (``score.stability``, off by default, weight 0) landmarks of a horizontally
                  flipped crop agree with the originals
      grip        (only with a grip) the fingers are at the handle gap and wrap it
      scene       one face or body, no hands without a body, at most ``max_hands`` hands, and
                  no bag besides the product (``score.bag_detector``; "2 bags")

    ``hand_score`` is their weighted geometric mean (weights from the config), so one failed
    component (no hand at the grip, two people) sinks the score. The policy is
    ``autoshoot.hands.policy``: a close-up (``shot="close"``, or a hand filling the frame) is
    not a hand without a body, and the score fails closed: no hand found (after the grip
    crop, crops at the pose's wrists and 3x3 tiles), or nobody, is below the accept threshold.

    Args:
        config: a Config (or a ScoreConfig; the bag detector then picks its device itself).
        bag_detector: an already-built detector with ``detect(image) -> [BagDetection]``;
            by default ``score.bag_detector`` from ``autoshoot.backends.BAG_DETECTORS``.
            Not built when ``score.scene`` is off.
    """

    def __init__(self, config: Any, bag_detector: Any = None):
        from autoshoot.backends import BAG_DETECTORS
        from autoshoot.hands.anatomy import AnatomyLimits

        self.config = getattr(config, "score", config)  # a Config or a ScoreConfig
        c = self.config
        # a MediaPipe graph per concurrent call: SKUs and candidates scored at once run in parallel
        self.detector = ModelPool(
            lambda: HandDetector(
                max_num_hands=c.max_hands,
                model_complexity=c.model_complexity,
                min_detection_confidence=c.min_detection_confidence,
                crop_size=c.crop_size,
                crop_factor=c.crop_factor,
                refine_crops=c.refine_crops,
            )
        )
        self.scene_detector = ModelPool(SceneDetector) if c.scene else None
        with self.detector.instance():  # MediaPipe's errors (a missing model) surface here
            pass
        self.bag_detector = None
        if c.scene:
            self.bag_detector = (
                bag_detector if bag_detector is not None else BAG_DETECTORS.create(c.bag_detector, config)
            )
        self.limits = AnatomyLimits()

    def close(self) -> None:
        self.detector.close()
        if self.scene_detector is not None:
            self.scene_detector.close()
        if self.bag_detector is not None:
            self.bag_detector.close()

    # -- the recipe ---------------------------------------------------------------------

    def score(
        self,
        image: np.ndarray,
        grip: tuple[float, float] | None = None,
        erase_polygon: np.ndarray | list | None = None,
        file: str = "",
        product_box: Box | list | None = None,
        shot: str | None = None,
        detail_scale: float = 1.0,
    ) -> HandScore:
        """Score one image.

        Args:
            image: HxWx3 uint8 RGB (a PIL image is converted).
            grip: (x, y) pixels of the image where a hand should grip, or None.
            erase_polygon: (N, 2) pixels of the image: the handle gap the hand should fill.
            file: the name reported in the result.
            product_box: XYXY pixels of the image where the product was placed, or None; a
                detected bag that does not overlap it is a second bag.
            shot: the brief's shot ("close", "half_body", "full_body") or None; a close-up
                is not penalised for hands without a body.
            detail_scale: pixels of real detail per image pixel, at most 1 (a candidate
                upscaled f times from its render: 1/f); the finger separation judges a seam
                only where it can show (``autoshoot.hands.evidence.measure_finger_support``).
        Returns:
            ``autoshoot.types.HandScore``; ``hands`` hold each hand's landmarks and checks,
            ``bags`` the distinct bags found (empty when the bag rule is off).
        """
        image = prepare_image(image)
        h, w = image.shape[:2]
        c = self.config
        # 1. the scene: faces, a body, its wrists (also the person's scale for the palm check)
        scene = self.scene_detector.detect(image) if self.scene_detector is not None else None
        # 2. detect hands: full frame, plus an upscaled crop around the grip
        roi = None
        if grip is not None:
            half = c.grip_box_frac * max(h, w) / 2
            roi = (grip[0] - half, grip[1] - half, grip[0] + half, grip[1] + half)
        # two passes may find up to 2 * max_hands distinct hands; more than max_hands is
        # itself a finding (scene), but judging a few extra bounds the cost
        hands = self.detector.detect(image, roi=roi)[: max(c.max_hands, 1) + 2]
        if not hands and scene is not None and scene.wrists:
            hands = self.detect_at_wrists(image, scene)  # small or partly hidden hands
        if not hands and c.tile_search:  # look harder before failing closed
            hands = self.detector.detect_tiles(image)[: max(c.max_hands, 1) + 2]
        bags = self.count_bags(image, product_box)
        # 3. per-hand anatomy and stability
        reports = [self.check_hand(image, hand, scene, detail_scale) for hand in hands]
        # 4. components
        components: dict[str, float] = {}
        reasons: list[str] = []
        if reports:
            components["confidence"] = float(np.mean([r["confidence"] for r in reports]))
            worst = min(reports, key=lambda r: r["anatomy"])
            components["anatomy"] = float(worst["anatomy"])
            reasons += worst["reasons"]
            components["separation"] = float(min(r["separation"] for r in reports))
            if c.stability:
                components["stability"] = float(min(r["stability"] for r in reports))
                reasons += [
                    f"hand {i + 1} unstable under a flip"
                    for i, r in enumerate(reports)
                    if r["stability"] < 0.5
                ]
        if grip is not None:
            components["grip"], grip_reasons = self.score_grip(hands, reports, grip, erase_polygon)
            reasons += grip_reasons
        if scene is not None:
            close_up = is_close_up(shot, [hand.bbox for hand in hands], (w, h), c.close_up_frac)
            components["scene"], scene_reasons = score_scene(
                scene, hands, c.max_hands, bags, c.bag_penalty, close_up=close_up
            )
            reasons += scene_reasons
        # 5. combine, then fail closed: no hand, or nobody, is below the accept threshold
        hand_score = combine_components(components, c.weights) if components else 1.0
        has_person = None if scene is None else bool(hands) or scene.has_person
        hand_score, closed = fail_closed(
            hand_score, bool(hands), has_person, c.no_hand_score, c.no_person_factor
        )
        reasons += closed
        return HandScore(
            file=file,
            hand_score=round(hand_score, 4),
            hands=[{**hand.to_json(), **report} for hand, report in zip(hands, reports, strict=True)],
            reasons=dedupe(reasons),
            components={k: round(v, 4) for k, v in components.items()},
            bags=bags.to_json() if bags is not None else [],
        )

    # -- helpers ------------------------------------------------------------------------

    def detect_at_wrists(self, image: np.ndarray, scene: Scene) -> list[DetectedHand]:
        """Hands in upscaled crops around the pose's wrists (the full frame found none): a
        hand is about a face wide, so each crop is 2.5 face widths (or a fifth of the image)."""
        h, w = image.shape[:2]
        c = self.config
        side = 2.5 * max((f[0][2] - f[0][0] for f in scene.faces), default=0.08 * max(h, w))
        side = max(side, 0.2 * max(h, w))
        passes = []
        regions: list[Box] = []
        for k, (x, y) in enumerate(scene.wrists):
            box = expand_box((x, y, x, y), 1.0, side, w, h)
            zoom = c.crop_size / max(box[2] - box[0], 1)
            passes.append((f"wrist{k}", zoom, self.detector.detect_crop(image, box)))
            regions.append(tuple(float(v) for v in box))
        return merge_hands(passes, regions)[: max(c.max_hands, 1) + 2]

    def count_bags(self, image: np.ndarray, product_box: Box | list | None) -> Any:
        """The bags in the image and which of them are not the product (a ``BagCount``), or
        None when the bag rule is off."""
        from autoshoot.backends.bag_detector import find_second_bags

        if self.bag_detector is None:
            return None
        c = self.config
        box = None if product_box is None else tuple(float(v) for v in product_box)
        return find_second_bags(
            self.bag_detector.detect(image),
            box,  # type: ignore[arg-type]
            threshold=c.bag_threshold,
            nms_iou=c.bag_nms_iou,
            match_iou=c.bag_match_iou,
            match_contain=c.bag_match_contain,
        )

    def check_hand(
        self, image: np.ndarray, hand: DetectedHand, scene: Scene | None, detail_scale: float = 1.0
    ) -> dict[str, Any]:
        """Anatomy, confidence and stability of one hand (JSON-able dict); ``detail_scale`` as
        for ``score``."""
        from autoshoot.hands.anatomy import check_anatomy
        from autoshoot.hands.evidence import (
            check_finger_separation,
            check_finger_support,
            measure_finger_support,
        )

        face_width = nearest_face_width(scene, hand) if scene is not None else None
        anatomy = check_anatomy(hand.landmarks, face_width=face_width, limits=self.limits)
        # the picture under the skeleton: a finger chain threaded through a gap between digits
        support = measure_finger_support(image, hand.landmarks, limits=self.limits, detail_scale=detail_scale)
        anatomy.checks["support"], support_reasons = check_finger_support(support, self.limits)
        anatomy.reasons += support_reasons
        anatomy.score *= anatomy.checks["support"]
        # two neighbouring fingers with neither a gap nor a seam between them: one finger drawn
        # with two chains. Reported as "separation"; a factor of anatomy as fitted (see the config)
        separation, separation_reasons = check_finger_separation(support, self.limits)
        if self.config.finger_separation:
            anatomy.checks["separation"] = separation
            anatomy.reasons += separation_reasons
            anatomy.score *= separation
        confidence = 0.5 * hand.handedness_score + 0.5 * hand.detection_score
        out: dict[str, Any] = {
            "anatomy": round(anatomy.score, 4),
            "checks": {k: round(v, 4) for k, v in anatomy.checks.items()},
            "finger_support": None
            if support is None
            else {
                "support": [round(v, 3) for v in support.support],
                "quality": round(support.quality, 3),
                "separation": [None if v is None else round(v, 3) for v in support.separation],
            },
            "fingertips": anatomy.n_fingertips,
            "palm_px": round(anatomy.palm_length, 1),
            "confidence": round(confidence, 4),
            "reasons": list(anatomy.reasons),
            "separation": round(separation, 4),
            "separation_reasons": separation_reasons,
        }
        if self.config.stability:
            shift = self.measure_flip_shift(image, hand, anatomy.palm_length)
            out["flip_shift"] = None if shift is None else round(shift, 4)
            tol = self.config.stability_tolerance
            out["stability"] = 0.2 if shift is None else float(np.exp(-((max(shift - tol, 0.0) / tol) ** 2)))
        return out

    def measure_flip_shift(self, image: np.ndarray, hand: DetectedHand, palm: float) -> float | None:
        """Mean landmark shift, in palm lengths, between ``hand`` and the same hand found on a
        horizontally flipped crop around it (mapped back); None when the flip loses it."""
        h, w = image.shape[:2]
        box = expand_box(hand.bbox, 2.0, 64, w, h)
        x0, y0, x1, y1 = box
        flipped = np.ascontiguousarray(image[y0:y1, x0:x1][:, ::-1])
        found = self.detector.detect_crop(flipped, (0, 0, x1 - x0, y1 - y0))
        if not found:
            return None
        shifts = []
        for pts, *_ in found:
            back = pts[:, :2].copy()
            back[:, 0] = (x1 - x0) - back[:, 0] + x0
            back[:, 1] += y0
            shifts.append(float(np.linalg.norm(back - hand.landmarks[:, :2], axis=1).mean()))
        return min(shifts) / max(palm, 1e-6)

    def score_grip(
        self,
        hands: list[DetectedHand],
        reports: list[dict[str, Any]],
        grip: tuple[float, float],
        erase_polygon: np.ndarray | list | None,
    ) -> tuple[float, list[str]]:
        """The fingers are at the handle gap (distance to the erase polygon, or to the grip
        point) and wrap it: the hand covers the gap, or its fingers curl (round a handle seen
        edge-on, the curl is in depth and the cover shows it)."""
        if not hands:
            return 0.0, ["no hand at the grip"]
        gx, gy = float(grip[0]), float(grip[1])
        best = (0.0, "")
        for hand, report in zip(hands, reports, strict=True):
            fingers = hand.landmarks[[5, 6, 9, 10, 13, 14, 17, 18], :2].mean(axis=0)
            if erase_polygon is not None and len(erase_polygon) >= 3:
                dist = polygon_distance(fingers, np.asarray(erase_polygon, dtype=np.float32))
            else:
                dist = float(np.hypot(fingers[0] - gx, fingers[1] - gy))
            palm = max(report["palm_px"], 1.0)
            near = float(
                np.exp(-((max(dist / palm - self.config.grip_near, 0.0) / self.config.grip_near) ** 2))
            )
            wrap = max(measure_wrap(hand.landmarks), measure_cover(hand.landmarks, grip, erase_polygon))
            s = near * (0.6 + 0.4 * wrap)
            if s > best[0] or not best[1]:
                best = (
                    s,
                    f"hand {dist:.0f} px from handle gap"
                    if near < 0.7
                    else ("fingers do not wrap the handle" if wrap < 0.4 else ""),
                )
        return best[0], [best[1]] if best[1] else []


def measure_cover(
    landmarks: np.ndarray, grip: tuple[float, float], erase_polygon: np.ndarray | list | None
) -> float:
    """How much of the handle gap the hand covers, in [0, 1]: the share of the erase polygon
    inside the hand's outline (convex hull of its landmarks), doubled and clipped, so that a
    hand over half the gap counts as covering it. Without a polygon: 1 if the grip point is
    inside the outline, else 0."""
    import cv2

    hull = cv2.convexHull(np.ascontiguousarray(landmarks[:, :2], dtype=np.float32)).reshape(-1, 2)
    if erase_polygon is None or len(erase_polygon) < 3:
        return 1.0 if polygon_distance(np.asarray(grip, dtype=np.float32), hull) == 0.0 else 0.0
    poly = np.asarray(erase_polygon, dtype=np.float32).reshape(-1, 2)
    both = np.vstack([hull, poly])
    x0, y0 = np.floor(both.min(axis=0)).astype(int)
    x1, y1 = np.ceil(both.max(axis=0)).astype(int)
    step = max(1.0, max(x1 - x0, y1 - y0) / 256.0)  # rasterize at most 256 px across
    size = (int((y1 - y0) / step) + 2, int((x1 - x0) / step) + 2)
    hand_mask = np.zeros(size, np.uint8)
    gap_mask = np.zeros(size, np.uint8)
    cv2.fillPoly(hand_mask, [np.round((hull - (x0, y0)) / step).astype(np.int32)], 1)
    cv2.fillPoly(gap_mask, [np.round((poly - (x0, y0)) / step).astype(np.int32)], 1)
    inside = float((hand_mask & gap_mask).sum()) / max(int(gap_mask.sum()), 1)
    return float(min(1.0, 2.0 * inside))


def measure_wrap(landmarks: np.ndarray) -> float:
    """How much the four fingers curl, in [0, 1]: 0 straight, 1 bent ~90 deg at PIP+DIP."""
    from autoshoot.hands.anatomy import CHAINS

    bends = []
    for chain in CHAINS[1:]:
        v1 = landmarks[chain[2]] - landmarks[chain[1]]
        v2 = landmarks[chain[4]] - landmarks[chain[2]]
        cos = float(v1 @ v2 / max(np.linalg.norm(v1) * np.linalg.norm(v2), 1e-9))
        bends.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return float(np.clip(np.mean(bends) / 90.0, 0.0, 1.0))


def nearest_face_width(scene: Scene, hand: DetectedHand) -> float | None:
    """Width of the face box nearest the hand (its person's scale), or None."""
    if not scene.faces:
        return None
    hx, hy = (hand.bbox[0] + hand.bbox[2]) / 2, (hand.bbox[1] + hand.bbox[3]) / 2
    box, _ = min(
        scene.faces, key=lambda f: np.hypot((f[0][0] + f[0][2]) / 2 - hx, (f[0][1] + f[0][3]) / 2 - hy)
    )
    return float(box[2] - box[0])


def prepare_image(image: Any) -> np.ndarray:
    """PIL image or array → HxWx3 uint8 RGB (alpha composited onto white)."""
    if not isinstance(image, np.ndarray):
        from PIL import Image

        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = np.asarray(image.convert("RGB"))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image)


def dedupe(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item, None)
    return list(seen)


def draw_overlay(
    image: np.ndarray,
    hands: list[dict[str, Any]],
    grip: tuple[float, float] | None = None,
    erase_polygon: np.ndarray | list | None = None,
    label: str = "",
    bags: list[dict[str, Any]] | None = None,
) -> np.ndarray:
    """The image with each hand's skeleton, the grip, the erase polygon and the bags drawn on it.

    Args:
        image: HxWx3 uint8 RGB.
        hands: ``HandScore.hands`` entries (each with "landmarks" (21, 3) pixels and "anatomy").
        bags: ``HandScore.bags`` entries (each with "box" XYXY pixels and "is_product").
    Returns:
        HxWx3 uint8 RGB. Bones are green for a plausible hand, red for an implausible one; a
        bag's box is blue when it is the product, red when it is not, yellow when unknown.
    """
    import cv2

    from autoshoot.hands.anatomy import CHAINS

    out = np.ascontiguousarray(prepare_image(image).copy())
    thick = max(1, round(max(out.shape[:2]) / 400))
    if erase_polygon is not None and len(erase_polygon) >= 3:
        cv2.polylines(
            out, [np.asarray(erase_polygon, dtype=np.int32).reshape(-1, 1, 2)], True, (0, 160, 255), thick
        )
    if grip is not None:
        cv2.drawMarker(out, (int(grip[0]), int(grip[1])), (0, 160, 255), cv2.MARKER_CROSS, 8 * thick, thick)
    for bag in bags or []:
        x0, y0, x1, y1 = (int(round(v)) for v in bag["box"])
        colour = {True: (60, 90, 255), False: (255, 40, 40)}.get(bag.get("is_product"), (255, 200, 0))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
    for hand in hands:
        pts = np.asarray(hand["landmarks"], dtype=np.float32)
        ok = float(hand.get("anatomy", 1.0))
        colour = (int(255 * (1 - ok)), int(220 * ok), 40)
        for chain in CHAINS:
            for a, b in zip(chain[:-1], chain[1:], strict=True):
                cv2.line(
                    out,
                    (int(pts[a, 0]), int(pts[a, 1])),
                    (int(pts[b, 0]), int(pts[b, 1])),
                    colour,
                    thick,
                    cv2.LINE_AA,
                )
        for p in pts:
            cv2.circle(out, (int(p[0]), int(p[1])), thick + 1, (255, 255, 255), -1)
    if label:
        cv2.putText(
            out,
            label,
            (8, 12 + 12 * thick),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thick,
            (255, 255, 0),
            thick,
            cv2.LINE_AA,
        )
    return out

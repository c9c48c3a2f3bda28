"""Hand-scorer evaluation on the sample photos, fitted on one part and reported on the other.

    python bench/hands_eval.py [--samples DIR] [--json] [--all-cores] [--augment] [--bag-detector [owlv2|owlvit]]

Labels come from the hands, not the file names: ``bench/hand_labels.csv`` lists every hand
visible in the samples (its centre as a fraction of the image, and whether its anatomy is
real or malformed, as seen by eye). An image is "malformed" when any of its hands is, "real"
when it has hands and all are real, and "no hand" otherwise (bare packshots, a person whose
hands are out of sight). Every sample is scored, packshots included.

The split: the held-out part is the 8 hand photos added after the scorer's first rules were
written (C_hand_*_11..17: 4 real grips, 4 AI-malformed), every second bare packshot and the
person with no visible hand. The rest is the fit part. Every component is measured; the
component weights (``fit_weights``: a hand component that does not rank real above malformed
images on the fit part weighs 0) and the accept threshold (``fit_threshold``) are fitted on the
fit part only, then applied to the held-out part. The anatomy tolerances and the finger-evidence
constants are fixed numbers set from anatomy and the fit part's real hands; the held-out
pictures were looked at (the six-digit hand led to the finger-support check, the "boneless"
one, two chains on one finger, to the finger-separation check, whose contrasts were set with
every sample's values in view), so the held-out figures are not a blind test of these checks.

The finger separation (two neighbouring fingers with neither a gap nor a seam between them) is
a factor of anatomy or not (``score.finger_separation``), and that too is fitted on the fit
part (``fit_checks``). The fit part holds no hand with two chains on one digit, so its evidence
for this check is synthetic (``fused_finger_negatives``): on each real hand of the fit part, for
each extended finger on the hand and each neighbour, both chains' distal parts (PIP to tip) are
laid on that one real finger, 0.4 of a finger's breadth either side of its centre line (both
inside the digit, the way five chains spread over four digits put two on one). The pixels stay
the real photo's; only the skeleton claims a finger that is not there. These count as the fit
part's malformed hands for this check only; the held-out part is never edited. The check
counts in anatomy when it ranks the fit part's real images above its malformed ones and these
synthetic hands (AUC > 0.5), and when its verdicts hold under ``AUGMENTATIONS`` (``fit_checks``):
no synthetic hand it flags is judged separated in an augmented photo, and no real hand of the
fit part is flagged in one. An upscaled photo is scored with its ``detail_of`` (1/f), as the
score stage tells the scorer how far a candidate was enlarged from its render.

The kinematic model's residual is measured too, and not counted (``world_fit``): how far a
hand lies from the nearest anatomical skeleton (``autoshoot.hands.kinematic.fit_hand``'s
``moved``, in hand lengths), fitted both to the image landmarks (``moved``) and to MediaPipe's
world landmarks, its own 3D estimate of the hand (``world_residual``, the worst hand per image).
Its tolerance is the largest world residual on the fit part's real hands (photos as they are);
its evidence on the fit part is synthetic too (``anatomical_negatives``: on each real hand's
world landmarks, each finger 1.3, 1.45 and 1.6 times as long, the thumb 1.6 times, the knuckles
splayed, each finger bent 60 degrees backwards at its PIP). Printed: its AUC on both parts,
the synthetic hands past the tolerance, the held-out hands past it, and, for reference only,
the held-out figures were it a factor of anatomy (``world_what_if``). With --augment, per
augmentation the images whose world residual passes the fit part's tolerance.

Also a 3-fold cross-validation over every image (``cross_validate``; folds fixed by file name,
round-robin within each kind): weights and threshold fitted on two folds, the third scored,
and the out-of-fold figures pooled.

For reference only, the held-out figures with the fitted finger-separation choice reversed
(``held_out_other_choice``): what the scorer would do without (or with) it.

Printed per part: the AUC of ``hand_score`` between real and malformed images (ties count
half), the AUC without the scene component, the precision and recall of "accepted"
(``hand_score`` >= the threshold; the images that should be accepted are the real ones), the
malformed images accepted, each with a 95% bootstrap interval (images resampled within their
kind, 2000 times); and the per-hand AUC of the anatomy component against the hand labels.
With --augment, also the AUC under flips, rotations, rescaling (0.6, 1.5, 2) and JPEG, and
per augmentation which images the finger separation flags (``separation_robustness``): the
malformed ones it catches and the real ones it would send to review; and per augmentation the
verdicts at the fitted threshold that the augmentation turns wrong (``accepted_augmented``:
malformed images accepted, real ones refused), since a ranking can hold while a verdict flips.
Also the time per 1024x1024 candidate on one CPU core: the process is pinned to one core
unless --all-cores, and both wall time and CPU time are printed (on a busy machine the CPU
time is the fair number).

The second-bag rule is off here (``score.bag_detector = none``): these are hand photos, not
candidates with a placed product. ``--bag-detector`` adds the cost of that rule: the default
detector's architecture (OWLv2 base, patch 16, 960 px; or ``owlvit``: OWL-ViT base, patch 32,
768 px) built from its config with random weights (the time does not depend on the weights'
values; nothing is downloaded), run by the real ``ZeroShotBagDetector`` on 1024x1024
candidates with one torch thread.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's autoshoot, not whichever one is installed
DEFAULT_SAMPLES = REPO.parent / "shared" / "samples"
LABELS = Path(__file__).resolve().parent / "hand_labels.csv"
KINDS = ("real", "malformed", "no hand")
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(6, 19))  # 0.30 .. 0.90


def read_labels(path: Path = LABELS) -> dict[str, list[dict[str, Any]]]:
    """file -> [{"x", "y", "label"}] from the hand labels."""
    out: dict[str, list[dict[str, Any]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["file"], []).append(
                {"x": float(row["hand_x"]), "y": float(row["hand_y"]), "label": row["label"]}
            )
    return out


def image_kind(hands: list[dict[str, Any]]) -> str:
    """ "malformed" if any labelled hand is, "real" if all are, "no hand" without any."""
    if not hands:
        return "no hand"
    return "malformed" if any(h["label"] == "malformed" for h in hands) else "real"


def is_sample(name: str) -> bool:
    return bool(re.match(r"^(A|B|C)_.*\.(jpe?g|png)$", name, re.IGNORECASE))


def part_of(name: str, packshots: list[str]) -> str:
    """ "held_out" or "fit" (see the module docstring)."""
    m = re.match(r"^C_hand_.*_(\d+)\.", name)
    if m:
        return "held_out" if int(m.group(1)) >= 11 else "fit"
    if name.startswith("A_"):
        return "held_out" if packshots.index(name) % 2 else "fit"
    if name.startswith("B_carrying"):
        return "held_out"  # the person with no visible hand
    return "fit"


def label_of(name: str) -> int | None:
    """1 = a real-hand image, 0 = a malformed one, None = neither (by the hand labels)."""
    kind = image_kind(read_labels().get(name, []))
    return {"real": 1, "malformed": 0}.get(kind)


def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties count half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


AUGMENTATIONS = ("flip", "rot20", "rot-20", "scale0.6", "scale1.5", "scale2", "jpeg40")


def detail_of(name: str) -> float:
    """The ``detail_scale`` a scorer is told for an augmented photo: 1/f for an upscale by f
    (as the score stage tells it for a candidate upscaled from its render), else 1."""
    if name.startswith("scale") and float(name[5:]) > 1:
        return 1.0 / float(name[5:])
    return 1.0


def augment(image: Any, name: str) -> Any:
    """HxWx3 uint8 RGB → the same photo flipped, rotated (degrees), rescaled or re-encoded."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    if name == "flip":
        return np.ascontiguousarray(image[:, ::-1])
    if name.startswith("rot"):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(name[3:]), 1.0)
        return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    if name.startswith("scale"):
        f = float(name[5:])
        return cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    if name.startswith("jpeg"):
        ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(name[4:])])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")


def wrong_verdict(score: float, kind: str, threshold: float) -> str | None:
    """The wrong verdict at ``threshold`` for an image of ``kind`` ("real" or "malformed"):
    "malformed_accepted" or "real_refused"; None when the verdict is right."""
    accepted = score >= threshold
    if kind == "malformed" and accepted:
        return "malformed_accepted"
    if kind == "real" and not accepted:
        return "real_refused"
    return None


def evaluate_augmented(
    samples: Path, world_tolerance: float | None = None, threshold: float | None = None
) -> dict[str, Any]:
    """AUC over every sample under each augmentation (robustness of the ranking), and per
    augmentation the images whose finger separation flags a hand (``check_finger_separation``
    below 0.7: the level at which it gives a reason), and those whose world residual passes
    ``world_tolerance`` (the fit part's, from ``fit_world_fit``). An upscaled photo is scored
    with its ``detail_of`` (known, as for a candidate); ``separation_unknown_upscale`` holds the
    flags of the upscales scored as if the photo were sharp (a user's photo enlarged elsewhere).
    With ``threshold`` (the fitted one), ``accepted_augmented`` holds per augmentation the
    malformed images accepted and the real ones refused: whether a verdict survives a flip, a
    turn, a rescale or a re-encode, not only the ranking."""
    from PIL import Image

    from autoshoot.backends.mediapipe_hands import prepare_image

    scorer = measuring_scorer(hand_config())
    files = sorted(p for p in samples.iterdir() if label_of(p.name) is not None)
    per_aug: dict[str, float] = {}
    flagged: dict[str, dict[str, list[str]]] = {}
    past: dict[str, dict[str, list[str]]] = {}
    scores, labels = [], []
    unknown: dict[str, dict[str, list[str]]] = {}
    verdicts: dict[str, dict[str, list[str]]] = {}
    for name in ("original",) + AUGMENTATIONS:
        s_aug, l_aug = [], []
        flags: dict[str, list[str]] = {"malformed": [], "real": []}
        for path in files:
            with Image.open(path) as im:
                image = prepare_image(im)
            moved = image if name == "original" else augment(image, name)
            result = scorer.score(moved, detail_scale=detail_of(name))
            kind = "real" if label_of(path.name) == 1 else "malformed"
            if result.components.get("separation", 1.0) < FLAGGED:
                flags[kind].append(path.name)
            wrong = None if threshold is None else wrong_verdict(result.hand_score, kind, threshold)
            if wrong:
                verdicts.setdefault(name, {"malformed_accepted": [], "real_refused": []})[wrong].append(
                    f"{path.name} ({result.hand_score:.2f})"
                )
            if detail_of(name) < 1:
                sharp = scorer.score(moved)
                if sharp.components.get("separation", 1.0) < FLAGGED:
                    unknown.setdefault(name, {"malformed": [], "real": []})[kind].append(path.name)
            residual = world_residual_of(dataclasses.asdict(result))
            if world_tolerance is not None and residual is not None and residual > world_tolerance:
                past.setdefault(name, {"malformed": [], "real": []})[kind].append(
                    f"{path.name} ({residual:.3f})"
                )
            if name == "original":
                continue
            s_aug.append(result.hand_score)
            l_aug.append(label_of(path.name))
        flagged[name] = flags
        if name == "original":
            continue
        per_aug[name] = auc(s_aug, l_aug)
        scores += s_aug
        labels += l_aug
    scorer.close()
    return {
        "auc_per_augmentation": per_aug,
        "auc_all_augmented": auc(scores, labels),
        "separation_robustness": flagged,
        "separation_unknown_upscale": unknown,
        "world_past_tolerance": past,
        "accepted_augmented": {
            n: verdicts.get(n, {"malformed_accepted": [], "real_refused": []}) for n in flagged
        },
        "images_augmented": {
            "malformed": sum(label_of(p.name) == 0 for p in files),
            "real": sum(label_of(p.name) == 1 for p in files),
        },
    }


def hand_config(measure_all: bool = False) -> Any:
    """The default config without the second-bag rule (see the module docstring); with
    ``measure_all``, every hand component is measured (also those the defaults leave out), and
    anatomy without the finger separation, so that the weights and the checks can be fitted."""
    from autoshoot.config import load_config

    overrides: dict[str, Any] = {"score.bag_detector": "none"}
    if measure_all:
        overrides["score.stability"] = True
        overrides["score.finger_separation"] = False
    return load_config(overrides=overrides)


HAND_COMPONENTS = ("confidence", "anatomy", "stability")  # what the hand itself shows
# component -> the score.* switch that counts it in anatomy
ANATOMY_FACTORS = {"separation": "finger_separation"}
FUSED_OFFSET = 0.4  # synthetic fused finger: each chain this many finger breadths off the digit's centre line


def fuse_pair(landmarks: Any, host: int, other: int, offset: float = FUSED_OFFSET) -> Any:
    """(21, 3) landmarks with the distal parts (PIP, DIP, tip) of fingers ``host`` and
    ``other`` (1 index .. 4 little) both laid on the host finger's digit: each joint ``offset``
    finger breadths either side of the host's, on the side where each finger was."""
    import numpy as np

    from autoshoot.hands.anatomy import CHAINS, measure_palm_length
    from autoshoot.hands.evidence import FINGER_BREADTH

    pts = np.asarray(landmarks, dtype=np.float64)
    out = pts.copy()
    half = offset * FINGER_BREADTH * measure_palm_length(pts)
    for h, o in zip(CHAINS[host][2:], CHAINS[other][2:], strict=True):
        side = pts[o, :2] - pts[h, :2]
        side = side / max(float(np.linalg.norm(side)), 1e-9)
        out[h, :2] = pts[h, :2] - half * side
        out[o, :2] = pts[h, :2] + half * side
        out[o, 2] = pts[h, 2]
    return out


def augment_points(points: Any, name: str, shape: tuple[int, ...]) -> Any:
    """(N, 3) pixel points of an image of ``shape`` moved as ``augment(image, name)`` moves
    its pixels (z scales with x and y)."""
    import cv2
    import numpy as np

    pts = np.array(points, dtype=np.float64)
    h, w = shape[:2]
    if name == "flip":
        pts[:, 0] = w - 1 - pts[:, 0]
    elif name.startswith("rot"):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(name[3:]), 1.0)
        pts[:, :2] = pts[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    elif name.startswith("scale"):
        pts *= float(name[5:])
    return pts


def pair_verdict(found: Any, pair: int, limits: Any) -> float | None:
    """``check_finger_separation`` of one neighbouring pair (0 index-middle .. 2 ring-little)
    alone, or None where the check does not judge it (colours that cannot tell the hand from
    its background, curled fingers, a finger too few pixels of real detail wide for a seam)."""
    from autoshoot.hands.evidence import check_finger_separation

    if found is None or found.quality < limits.min_colour_quality or found.separation[pair] is None:
        return None
    alone = dataclasses.replace(
        found, separation=[v if i == pair else None for i, v in enumerate(found.separation)]
    )
    return round(check_finger_separation(alone, limits)[0], 4)


def fused_finger_negatives(image: Any, hands: list[dict[str, Any]]) -> list[dict[str, float | None]]:
    """Synthetic fused fingers built on one real photo's hands (see the module docstring): for
    every extended finger (index..little) on the hand (colour support >= ``min_pair_support``)
    and each of its neighbours, both chains on that finger. Per synthetic hand, the verdict on
    its fused pair (``pair_verdict``: None where not judged) on the photo ("original") and
    under each of ``AUGMENTATIONS`` (the photo and the synthetic skeleton moved together; an
    upscale's ``detail_of`` told, as the score stage tells it for a candidate)."""
    import numpy as np

    from autoshoot.hands.anatomy import TIPS, AnatomyLimits, measure_palm_length
    from autoshoot.hands.evidence import measure_finger_support

    limits = AnatomyLimits()
    fused, pairs = [], []
    for hand in hands:
        pts = np.asarray(hand["landmarks"], dtype=np.float64)
        found = measure_finger_support(image, pts, limits=limits)
        if found is None:
            continue
        palm = measure_palm_length(pts)
        centre = pts[[0, 5, 9, 13, 17]].mean(axis=0)
        for host in range(1, 5):
            extended = float(np.linalg.norm(pts[TIPS[host]] - centre)) >= limits.curled_tip * palm
            if extended and found.support[host - 1] >= limits.min_pair_support:
                for other in (host - 1, host + 1):
                    if 1 <= other <= 4:
                        fused.append(fuse_pair(pts, host, other))
                        pairs.append(min(host, other) - 1)
    out: list[dict[str, float | None]] = [{} for _ in fused]
    for name in ("original",) + AUGMENTATIONS:
        moved = image if name == "original" else augment(image, name)
        for result, pts, pair in zip(out, fused, pairs, strict=True):
            if name != "original":
                pts = augment_points(pts, name, image.shape)
            found = measure_finger_support(moved, pts, limits=limits, detail_scale=detail_of(name))
            result[name] = pair_verdict(found, pair, limits)
    return out


def real_separation_augmented(scorer: Any, image: Any) -> dict[str, float | None]:
    """The finger separation of a real photo's hands found afresh under each of
    ``AUGMENTATIONS`` (an upscale's ``detail_of`` told); None where no hand is found."""
    out: dict[str, float | None] = {}
    for name in AUGMENTATIONS:
        result = scorer.score(augment(image, name), detail_scale=detail_of(name))
        value = result.components.get("separation")
        out[name] = None if value is None else round(float(value), 4)
    return out


def judged_or_one(value: float | None) -> float:
    """A verdict as the scorer counts it: not judged is 1 (nothing against the hand)."""
    return 1.0 if value is None else float(value)


FLAGGED = 0.7  # a finger separation below this gives a reason: the hand is flagged


def fit_checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which anatomy factors (``ANATOMY_FACTORS``) count, fitted on ``rows``. A factor counts
    when all three hold on them:

    - it ranks the real images above the malformed ones plus the synthetic fused fingers built
      on the real ones (``synthetic_separation``, on the photos as they are): AUC > 0.5, with
      at least one synthetic hand flagged (else there is no evidence for it);
    - what it sees is the hand, not the pixels: no synthetic hand it flags on the photo is
      judged separated once the photo is flipped, rotated, rescaled or saved as JPEG
      (``AUGMENTATIONS``). Under an augmentation a flagged hand stays flagged or is not judged
      (shrunk or turned so that its fingers have too few pixels for a seam): abstaining is not
      a contradiction, it is the check saying it cannot see;
    - no real hand of the fit part, found afresh in each augmented photo
      (``real_separation_augmented``), is flagged.

    Returns {"checks": {name: bool}, "auc": {name: AUC}, "n_synthetic": count, "synthetic_flagged":
    count flagged on the photo, and per augmentation: "synthetic_kept" (still flagged),
    "synthetic_abstained" (not judged), "synthetic_contradicted" (judged separated),
    "real_flagged" (files)}."""
    pairs = [r for r in rows if r["kind"] in ("real", "malformed") and r["hands"]]
    synthetic = [v for r in pairs if r["kind"] == "real" for v in r.get("synthetic_separation", [])]
    flagged = [v for v in synthetic if judged_or_one(v["original"]) < FLAGGED]
    kept = {name: sum(v[name] is not None and v[name] < FLAGGED for v in flagged) for name in AUGMENTATIONS}
    abstained = {name: sum(v[name] is None for v in flagged) for name in AUGMENTATIONS}
    contradicted = {name: len(flagged) - kept[name] - abstained[name] for name in AUGMENTATIONS}
    real_flagged = {
        name: [
            r["file"]
            for r in pairs
            if r["kind"] == "real"
            and judged_or_one(r.get("real_separation_augmented", {}).get(name)) < FLAGGED
        ]
        for name in AUGMENTATIONS
    }
    checks, aucs = {}, {}
    for name in ANATOMY_FACTORS:
        if not all(name in r["components"] for r in pairs):
            continue
        values = [r["components"][name] for r in pairs] + [judged_or_one(v["original"]) for v in synthetic]
        labels = [1 if r["kind"] == "real" else 0 for r in pairs] + [0] * len(synthetic)
        aucs[name] = round(auc(values, labels), 4)
        robust = not any(contradicted.values()) and not any(real_flagged.values())
        checks[name] = aucs[name] > 0.5 and bool(flagged) and robust
    return {
        "checks": checks,
        "auc": aucs,
        "n_synthetic": len(synthetic),
        "synthetic_flagged": len(flagged),
        "synthetic_kept": kept,
        "synthetic_abstained": abstained,
        "synthetic_contradicted": contradicted,
        "real_flagged": real_flagged,
    }


def with_checks(row: dict[str, Any], checks: dict[str, bool]) -> dict[str, Any]:
    """``row`` with the anatomy factors that ``checks`` turns on multiplied into its anatomy."""
    c = dict(row["components"])
    for name, on in checks.items():
        if on and name in c and "anatomy" in c:
            c["anatomy"] = c["anatomy"] * c[name]
    return {**row, "components": c}


def fit_weights(rows: list[dict[str, Any]], weights: dict[str, float]) -> dict[str, Any]:
    """The component weights fitted on ``rows`` (the fit part): a hand component whose AUC
    between the real and the malformed images is not above chance (0.5) gets weight 0, the
    others keep theirs. Scene and grip judge the picture, not the hand, and are kept.
    Returns {"weights": fitted, "auc": {component: fit-part AUC}}."""
    pairs = [r for r in rows if r["kind"] in ("real", "malformed") and r["hands"]]
    labels = [1 if r["kind"] == "real" else 0 for r in pairs]
    aucs, fitted = {}, dict(weights)
    for name in HAND_COMPONENTS:
        if not all(name in r["components"] for r in pairs):
            continue
        aucs[name] = round(auc([r["components"][name] for r in pairs], labels), 4)
        if not aucs[name] > 0.5:
            fitted[name] = 0.0
    return {"weights": fitted, "auc": aucs}


def rescore(row: dict[str, Any], weights: dict[str, float], config: Any) -> float:
    """``hand_score`` of a scored row recombined with other ``weights`` (the scorer's policy:
    weighted geometric mean, then the fail-closed rules)."""
    from autoshoot.hands.policy import NO_PERSON, combine_components, fail_closed

    c = config.score
    components = row["components"]
    score = combine_components(components, weights) if components else 1.0
    score, _ = fail_closed(
        score, bool(row["hands"]), NO_PERSON not in row["reasons"], c.no_hand_score, c.no_person_factor
    )
    return round(score, 4)


def accept_metrics(scores: list[float], kinds: list[str], threshold: float) -> dict[str, float]:
    """Precision and recall of "accepted" (score >= threshold) for the real images, and the
    share of malformed images accepted."""
    acc = [s >= threshold for s in scores]
    tp = sum(a and k == "real" for a, k in zip(acc, kinds, strict=True))
    n_acc = sum(acc)
    n_real = sum(k == "real" for k in kinds)
    n_bad = sum(k == "malformed" for k in kinds)
    bad_acc = sum(a and k == "malformed" for a, k in zip(acc, kinds, strict=True))
    return {
        "precision": tp / n_acc if n_acc else float("nan"),
        "recall": tp / n_real if n_real else float("nan"),
        "malformed_accepted": bad_acc / n_bad if n_bad else float("nan"),
        "no_hand_accepted": sum(a and k == "no hand" for a, k in zip(acc, kinds, strict=True)),
    }


def fit_threshold(scores: list[float], kinds: list[str], grid: tuple[float, ...] = THRESHOLD_GRID) -> float:
    """The accept threshold fitted on one part: among the grid values that accept no malformed
    image and no image without a hand, those with the best recall of real images; the centre
    of that range (rounded to the grid), so the threshold sits in the gap rather than on an edge."""
    safe = [t for t in grid if not any(s >= t and k != "real" for s, k in zip(scores, kinds, strict=True))]
    if not safe:
        return grid[-1]
    best = max(accept_metrics(scores, kinds, t)["recall"] for t in safe)
    tied = [t for t in safe if accept_metrics(scores, kinds, t)["recall"] == best]
    centre = (min(tied) + max(tied)) / 2
    return min(grid, key=lambda t: (abs(t - centre), -t))


def part_metrics(rows: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    """AUCs and accept metrics of one set of scored images."""
    pairs = [(r["hand_score"], r["hand_only"], r["kind"]) for r in rows if r["kind"] != "no hand"]
    labels = [1 if k == "real" else 0 for _, _, k in pairs]
    return {
        "auc": auc([p[0] for p in pairs], labels),
        "auc_hand_only": auc([p[1] for p in pairs], labels),
        **accept_metrics([r["hand_score"] for r in rows], [r["kind"] for r in rows], threshold),
    }


def bootstrap(
    rows: list[dict[str, Any]], threshold: float, n: int = 2000, seed: int = 0
) -> dict[str, list[float]]:
    """95% percentile intervals of ``part_metrics``: images resampled within their kind."""
    import numpy as np

    rng = np.random.default_rng(seed)
    groups = [[r for r in rows if r["kind"] == k] for k in KINDS]
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        sample = [g[i] for g in groups if g for i in rng.integers(0, len(g), len(g))]
        for key, value in part_metrics(sample, threshold).items():
            draws.setdefault(key, []).append(value)
    return {
        key: [round(float(np.nanpercentile(v, 2.5)), 3), round(float(np.nanpercentile(v, 97.5)), 3)]
        for key, v in draws.items()
        if not np.all(np.isnan(v))
    }


def hand_level(rows: list[dict[str, Any]], labels: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each labelled hand with the anatomy of the detected hand nearest it (within 0.15 of
    the image), or None when the detector missed it."""
    out = []
    for r in rows:
        h, w = r["size"]
        for lab in labels.get(r["file"], []):
            best, dist = None, 0.15
            for hand in r["hands"]:
                x0, y0, x1, y1 = hand["bbox"]
                d = ((x0 + x1) / 2 / w - lab["x"]) ** 2 + ((y0 + y1) / 2 / h - lab["y"]) ** 2
                if d**0.5 < dist:
                    best, dist = hand, d**0.5
            out.append(
                {
                    "file": r["file"],
                    "part": r["part"],
                    "label": lab["label"],
                    "anatomy": None if best is None else best["anatomy"],
                    "moved": None if best is None else best.get("moved"),
                }
            )
    return out


def measuring_scorer(config: Any) -> Any:
    """The hand scorer, with each hand's report also holding its world landmarks (``world``,
    metres) and their kinematic residual (``world_residual``, hand lengths; None without)."""
    from autoshoot.backends.mediapipe_hands import MediaPipeHandScorer
    from autoshoot.hands.kinematic import fit_hand

    class WorldMeasuringScorer(MediaPipeHandScorer):
        def check_hand(self, image: Any, hand: Any, scene: Any, detail_scale: float = 1.0) -> dict[str, Any]:
            out = super().check_hand(image, hand, scene, detail_scale)
            out["world"] = (
                None if hand.world is None else [[round(float(v), 5) for v in p] for p in hand.world]
            )
            out["world_residual"] = None if hand.world is None else round(fit_hand(hand.world).moved, 4)
            return out

    return WorldMeasuringScorer(config)


WORLD_SOFT = 0.25  # what-if factor: _soft of the log excess over the tolerance, as for an over-long bone


def anatomical_negatives(landmarks: Any) -> dict[str, Any]:
    """The issue's malformations made on one real hand's (21, 3) landmarks: each finger's
    distal chain 1.3, 1.45 and 1.6 times as long (from its knuckle), the thumb 1.6 times (from
    its CMC), the knuckles splayed (each finger moved out from the knuckles' centre by 0.6 of
    its distance, in x and y), and each finger bent 60 degrees backwards at its PIP (about the
    knuckle line, away from the side the fingers curl to)."""
    import numpy as np

    from autoshoot.hands.anatomy import CHAINS

    pts = np.asarray(landmarks, dtype=np.float64)
    out: dict[str, Any] = {}
    for f in range(5):
        base, idx = CHAINS[f][1], list(CHAINS[f][2:])
        for k in (1.3, 1.45, 1.6) if f else (1.6,):
            h = pts.copy()
            h[idx] = pts[base] + k * (pts[idx] - pts[base])
            out[f"{'thumb' if f == 0 else f'finger {f}'} {k}x"] = h
    h = pts.copy()
    centre = pts[[5, 9, 13, 17]].mean(axis=0)
    for chain in CHAINS[1:]:
        h[list(chain[1:])] += 0.6 * (pts[chain[1]] - centre) * np.array([1.0, 1.0, 0.0])
    out["splayed knuckles"] = h
    axis = pts[17] - pts[5]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    normal = np.cross(pts[5] - pts[0], pts[17] - pts[0])
    normal = normal / max(float(np.linalg.norm(normal)), 1e-9)
    curl = np.sign(np.mean([(pts[c[4]] - pts[c[1]]) @ normal for c in CHAINS[1:]])) or 1.0
    for f in range(1, 5):
        pip, idx = pts[CHAINS[f][2]], list(CHAINS[f][3:])
        best = None
        for sign in (1.0, -1.0):
            a = sign * np.radians(60.0)
            v = pts[idx] - pip  # Rodrigues' rotation about the knuckle line
            moved = (
                pip
                + v * np.cos(a)
                + np.cross(axis, v) * np.sin(a)
                + np.outer(v @ axis, axis) * (1 - np.cos(a))
            )
            back = float((moved[-1] - pts[idx[-1]]) @ normal) * curl  # < 0: away from the curl
            if best is None or back < best[0]:
                best = (back, moved)
        h = pts.copy()
        h[idx] = best[1]
        out[f"finger {f} bent backwards"] = h
    return out


def world_residual_of(row: dict[str, Any]) -> float | None:
    """The worst (largest) world residual of an image's hands, None without one."""
    values = [h["world_residual"] for h in row["hands"] if h.get("world_residual") is not None]
    return max(values) if values else None


def fit_world_fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The kinematic residuals measured on ``rows`` (see the module docstring): the tolerance
    fitted on the fit part's real hands, the AUCs on each part (real images above malformed
    ones and, on the fit part, the synthetic ``anatomical_negatives`` of its real hands), and
    which hands pass the tolerance."""
    import numpy as np

    from autoshoot.hands.kinematic import fit_hand

    def pairs(part: str, key: str) -> tuple[list[float], list[int], list[str]]:
        scored = [r for r in rows if r["part"] == part and r["kind"] in ("real", "malformed")]
        scored = [r for r in scored if any(h.get(key) is not None for h in r["hands"])]
        values = [-max(h[key] for h in r["hands"] if h.get(key) is not None) for r in scored]
        return values, [1 if r["kind"] == "real" else 0 for r in scored], [r["file"] for r in scored]

    fit_real = [
        r for r in rows if r["part"] == "fit" and r["kind"] == "real" and world_residual_of(r) is not None
    ]
    tolerance = max(world_residual_of(r) for r in fit_real)
    synthetic: dict[str, list[float]] = {}
    for r in fit_real:
        for hand in r["hands"]:
            if hand.get("world") is None:
                continue
            for name, pts in anatomical_negatives(hand["world"]).items():
                synthetic.setdefault(name, []).append(round(fit_hand(pts).moved, 4))
    out: dict[str, Any] = {"tolerance": tolerance, "auc": {}, "past_tolerance": {}}
    for key in ("moved", "world_residual"):
        for part in ("fit", "held_out"):
            values, labels, _ = pairs(part, key)
            if key == "world_residual" and part == "fit":
                out["auc"]["world_residual fit, with synthetic"] = round(
                    auc(
                        values + [-v for vs in synthetic.values() for v in vs],
                        labels + [0] * sum(map(len, synthetic.values())),
                    ),
                    4,
                )
            out["auc"][f"{key} {part}"] = round(auc(values, labels), 4)
    for part in ("fit", "held_out"):
        out["past_tolerance"][part] = {
            kind: [
                r["file"]
                for r in rows
                if r["part"] == part and r["kind"] == kind and (world_residual_of(r) or 0) > tolerance
            ]
            for kind in ("real", "malformed")
        }
    n_syn = sum(map(len, synthetic.values()))
    out["synthetic"] = {
        "n": n_syn,
        "past_tolerance": sum(v > tolerance for vs in synthetic.values() for v in vs),
        "per_kind": {name: f"{sum(v > tolerance for v in vs)}/{len(vs)}" for name, vs in synthetic.items()},
        "median": round(float(np.median([v for vs in synthetic.values() for v in vs])), 4) if n_syn else None,
    }
    return out


def world_factor(row: dict[str, Any], tolerance: float) -> float:
    """The what-if anatomy factor of an image's worst world residual (1 without one)."""
    import numpy as np

    from autoshoot.hands.anatomy import _soft

    r = world_residual_of(row)
    return 1.0 if r is None else _soft(float(np.log(max(r, 1e-9) / tolerance)), WORLD_SOFT)


def score_samples(samples: Path) -> list[dict[str, Any]]:
    """Every sample scored (bag rule off), with its kind, part and the hand-only score."""
    from PIL import Image

    from autoshoot.backends.mediapipe_hands import combine_components, prepare_image
    from autoshoot.hands.kinematic import fit_hand

    config = hand_config(measure_all=True)
    scorer = measuring_scorer(config)
    labels = read_labels()
    files = sorted(p for p in samples.iterdir() if is_sample(p.name))
    if not any(p.name.startswith("C_hand") for p in files):
        raise SystemExit(f"no hand samples (C_hand_*, B_*) in {samples}")
    packshots = [p.name for p in files if p.name.startswith("A_")]
    rows = []
    try:
        for path in files:
            with Image.open(path) as im:
                image = prepare_image(im)
            result = scorer.score(image, file=path.name)
            hand_only = {k: v for k, v in result.components.items() if k != "scene"}
            no_scene = combine_components(hand_only, config.score.weights) if hand_only else result.hand_score
            row = {
                **dataclasses.asdict(result),
                "kind": image_kind(labels.get(path.name, [])),
                "part": part_of(path.name, packshots),
                "hand_only": round(min(no_scene, result.hand_score if not result.hands else 1.0), 4),
                "size": list(image.shape[:2]),
            }
            for hand in row["hands"]:
                hand["moved"] = round(fit_hand(hand["landmarks"]).moved, 4)
            if row["kind"] == "real":  # evidence for the finger separation (see fit_checks)
                row["synthetic_separation"] = fused_finger_negatives(image, row["hands"])
                row["real_separation_augmented"] = real_separation_augmented(scorer, image)
            rows.append(row)
    finally:
        scorer.close()
    return rows


CV_FOLDS = 3


def fold_of(rows: list[dict[str, Any]], k: int = CV_FOLDS) -> dict[str, int]:
    """file -> fold, fixed by file name: within each kind, files in name order go round the
    ``k`` folds in turn (so every fold holds real, malformed and no-hand images)."""
    folds: dict[str, int] = {}
    for kind in KINDS:
        for i, name in enumerate(sorted(r["file"] for r in rows if r["kind"] == kind)):
            folds[name] = i % k
    return folds


def cross_validate(rows: list[dict[str, Any]], config: Any, k: int = CV_FOLDS) -> dict[str, Any]:
    """Every image scored by weights and a threshold fitted on the other folds (``fold_of``),
    whichever part it is in; the pooled out-of-fold metrics with bootstrap intervals.
    (The anatomy limits and the finger-evidence constants are fixed, not refitted per fold; the
    anatomy factors are, with the synthetic fused fingers of the training folds' real images.)"""
    folds = fold_of(rows, k)
    out_of_fold: list[dict[str, Any]] = []
    per_fold = []
    for fold in range(k):
        train = [r for r in rows if folds[r["file"]] != fold]
        test = [r for r in rows if folds[r["file"]] == fold]
        checks = fit_checks(train)["checks"]
        weights = fit_weights(train, config.score.weights)["weights"]
        train_scores = [rescore(with_checks(r, checks), weights, config) for r in train]
        threshold = fit_threshold(train_scores, [r["kind"] for r in train])
        per_fold.append({"fold": fold, "threshold": threshold, "weights": weights, "checks": checks})
        for r in test:
            score = rescore(with_checks(r, checks), weights, config)
            out_of_fold.append({**r, "hand_score": score, "cv_accepted": score >= threshold})
    scored = [r for r in out_of_fold if r["kind"] != "no hand"]
    labels = [1 if r["kind"] == "real" else 0 for r in scored]
    accepted = [r["cv_accepted"] for r in out_of_fold]
    kinds = [r["kind"] for r in out_of_fold]
    # each fold has its own threshold: "accepted" is 1.0/0.0, judged at 0.5, so folds pool
    metrics = accept_metrics([1.0 if a else 0.0 for a in accepted], kinds, 0.5)
    as_accept = [{**r, "hand_score": 1.0 if r["cv_accepted"] else 0.0, "hand_only": 0.0} for r in out_of_fold]
    intervals = bootstrap(as_accept, 0.5)
    auc_draws = bootstrap([{**r, "hand_only": r["hand_score"]} for r in out_of_fold], 0.5)["auc"]
    return {
        "folds": k,
        "per_fold": per_fold,
        "auc": round(auc([r["hand_score"] for r in scored], labels), 4),
        "auc_interval_95": auc_draws,
        **{key: round(v, 4) for key, v in metrics.items()},
        "interval_95": {
            key: intervals[key] for key in ("precision", "recall", "malformed_accepted") if key in intervals
        },
        "malformed_accepted_files": [
            r["file"] for r in out_of_fold if r["kind"] == "malformed" and r["cv_accepted"]
        ],
    }


def evaluate(samples: Path, time_runs: int = 1) -> dict[str, Any]:
    """Score every sample; fit the threshold on the fit part; metrics per part with bootstrap
    intervals; per-hand anatomy AUC; timing."""
    from PIL import Image

    from autoshoot.backends.mediapipe_hands import MediaPipeHandScorer, prepare_image
    from autoshoot.hands.policy import combine_components

    # 1. score each sample, every component measured (anatomy without its optional factors)
    measured = score_samples(samples)
    # 2. fit the anatomy factors and the component weights on the fit part only, and recombine
    # every score with them
    config = hand_config()
    checks = fit_checks([r for r in measured if r["part"] == "fit"])
    rows = [with_checks(r, checks["checks"]) for r in measured]
    fit = [r for r in rows if r["part"] == "fit"]
    held = [r for r in rows if r["part"] == "held_out"]
    weights = fit_weights(fit, config.score.weights)
    for r in rows:
        r["measured_score"] = r["hand_score"]
        r["hand_score"] = rescore(r, weights["weights"], config)
        hand_only = {k: v for k, v in r["components"].items() if k != "scene"}
        if hand_only:
            r["hand_only"] = round(
                min(
                    combine_components(hand_only, weights["weights"]),
                    r["hand_score"] if not r["hands"] else 1.0,
                ),
                4,
            )
    # 3. fit the accept threshold on the fit part only
    threshold = fit_threshold([r["hand_score"] for r in fit], [r["kind"] for r in fit])
    parts = {}
    for name, part in (("fit", fit), ("held_out", held)):
        parts[name] = {
            "n": {k: sum(r["kind"] == k for r in part) for k in KINDS},
            **{k: (round(v, 4) if v == v else None) for k, v in part_metrics(part, threshold).items()},
            "interval_95": bootstrap(part, threshold),
            "malformed_accepted_files": [
                r["file"] for r in part if r["kind"] == "malformed" and r["hand_score"] >= threshold
            ],
        }
    # 3b. for reference only (not the scorer's figures): each fitted anatomy factor's choice
    # reversed, the threshold refitted on the fit part
    what_if = {}
    for name in checks["checks"]:
        other = {**checks["checks"], name: not checks["checks"][name]}
        scored = [with_checks(r, other) for r in measured]
        for r in scored:
            r["hand_score"] = rescore(r, weights["weights"], config)
        t = fit_threshold([r["hand_score"] for r in scored if r["part"] == "fit"], [r["kind"] for r in fit])
        part = [r for r in scored if r["part"] == "held_out"]
        what_if[name] = {
            "counted": other[name],
            "threshold": t,
            **{k: round(v, 4) for k, v in part_metrics(part, t).items() if v == v},
            "interval_95": bootstrap(part, t),
            "malformed_accepted_files": [
                r["file"] for r in part if r["kind"] == "malformed" and r["hand_score"] >= t
            ],
        }
    # 3c. the kinematic residuals, measured and not counted; for reference only, the held-out
    # figures were the world residual a factor of anatomy (tolerance from the fit part)
    world = fit_world_fit(rows)
    scored = []
    for r in rows:
        c = dict(r["components"])
        if "anatomy" in c:
            c["anatomy"] = c["anatomy"] * world_factor(r, world["tolerance"])
        scored.append({**r, "components": c})
    for r in scored:
        r["hand_score"] = rescore(r, weights["weights"], config)
    t = fit_threshold([r["hand_score"] for r in scored if r["part"] == "fit"], [r["kind"] for r in fit])
    world["what_if"] = {}
    for name in ("fit", "held_out"):
        part = [r for r in scored if r["part"] == name]
        world["what_if"][name] = {
            "threshold": t,
            **{k: round(v, 4) for k, v in part_metrics(part, t).items() if v == v},
            "interval_95": bootstrap(part, t),
            "malformed_accepted_files": [
                r["file"] for r in part if r["kind"] == "malformed" and r["hand_score"] >= t
            ],
            "real_refused_files": [r["file"] for r in part if r["kind"] == "real" and r["hand_score"] < t],
        }
    # 4. cross-validation over every image, folds fixed by file name
    cv = cross_validate(measured, config)
    # 5. per hand: the anatomy component against the hand labels
    hands = hand_level(rows, read_labels())
    for name in ("fit", "held_out"):
        found = [h for h in hands if h["part"] == name and h["anatomy"] is not None]
        parts[name]["hands_labelled"] = sum(h["part"] == name for h in hands)
        parts[name]["hands_found"] = len(found)
        parts[name]["auc_anatomy_per_hand"] = auc(
            [h["anatomy"] for h in found], [1 if h["label"] == "real" else 0 for h in found]
        )
    # 6. timing (the default config): each hand sample resized to a 1024x1024 candidate, with a grip at its first hand
    scorer = MediaPipeHandScorer(config)
    candidates = []
    for row in rows:
        if row["kind"] == "no hand":
            continue
        with Image.open(samples / row["file"]) as im:
            resized = prepare_image(im.resize((1024, 1024)))
        grip = None
        if row["hands"]:
            x0, y0, x1, y1 = row["hands"][0]["bbox"]
            h, w = row["size"]
            grip = ((x0 + x1) / 2 * 1024 / w, (y0 + y1) / 2 * 1024 / h)
        candidates.append((resized, grip))
    scorer.score(candidates[0][0], grip=candidates[0][1])  # warm-up
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(time_runs):
        for image, grip in candidates:
            scorer.score(image, grip=grip)
    n = time_runs * len(candidates)
    ms = (time.perf_counter() - start) * 1000 / n
    cpu_ms = (time.process_time() - start_cpu) * 1000 / n  # all threads: robust to a busy machine
    scorer.close()
    return {
        "rows": rows,
        "hands": hands,
        "threshold": threshold,
        "config_threshold": config.score.accept_threshold,
        "cross_validation": cv,
        "held_out_other_choice": what_if,
        "world_fit": world,
        "checks": checks["checks"],
        "config_checks": {name: getattr(config.score, key) for name, key in ANATOMY_FACTORS.items()},
        "check_auc_fit": checks["auc"],
        "n_synthetic_fit": checks["n_synthetic"],
        "synthetic_flagged_fit": checks["synthetic_flagged"],
        "synthetic_kept_fit": checks["synthetic_kept"],
        "synthetic_abstained_fit": checks["synthetic_abstained"],
        "synthetic_contradicted_fit": checks["synthetic_contradicted"],
        "real_flagged_augmented_fit": checks["real_flagged"],
        "weights": weights["weights"],
        "config_weights": dict(config.score.weights),
        "component_auc_fit": weights["auc"],
        "parts": parts,
        "ms_per_1024_candidate": round(ms, 1),
        "cpu_ms_per_1024_candidate": round(cpu_ms, 1),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def candidates_1024(samples: Path, n: int) -> list[Any]:
    """The first ``n`` hand samples resized to 1024x1024 candidates (HxWx3 uint8 RGB)."""
    from PIL import Image

    from autoshoot.backends.mediapipe_hands import prepare_image

    files = sorted(p for p in samples.iterdir() if label_of(p.name) is not None)[:n]
    images = []
    for path in files:
        with Image.open(path) as im:
            images.append(prepare_image(im.resize((1024, 1024))))
    return images


BAG_DETECTOR_ARCHS = {
    # hub id whose architecture is built: (vision image size, patch size)
    "owlv2": ("google/owlv2-base-patch16-ensemble", 960, 16),  # the default
    "owlvit": ("google/owlvit-base-patch32", 768, 32),  # a lighter choice for CPU-only machines
}


def full_size_bag_detector(arch: str = "owlv2") -> tuple[Any, Any]:
    """A bag detector's full-size architecture (``BAG_DETECTOR_ARCHS``: ViT-B vision tower,
    12-layer 512-wide text tower) with random weights, and its image processor with an offline
    byte-level tokenizer. Built in code: no download."""
    import torch
    import transformers

    from autoshoot.backends.sdxl_tiny import build_byte_tokenizers

    _, image_size, patch = BAG_DETECTOR_ARCHS[arch]
    prefix = {"owlv2": "Owlv2", "owlvit": "OwlViT"}[arch]
    _, tokenizer = build_byte_tokenizers()
    tokenizer.model_max_length = 16
    config = getattr(transformers, f"{prefix}Config")(
        vision_config={"image_size": image_size, "patch_size": patch}
    )
    torch.manual_seed(0)
    model = getattr(transformers, f"{prefix}ForObjectDetection")(config).eval()
    size = {"height": image_size, "width": image_size}
    image_processor = getattr(transformers, f"{prefix}ImageProcessor")(size=size)
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=image_processor, tokenizer=tokenizer
    )
    return model, processor


def time_bag_detector(
    images: list[Any], model: Any, processor: Any, runs: int = 1, threads: int = 1
) -> dict[str, Any]:
    """ms per candidate of ``ZeroShotBagDetector.detect`` (pre-shrink, processor, model, boxes)
    on ``images`` (HxWx3 uint8 RGB), on the CPU with ``threads`` torch threads; one warm-up."""
    import torch

    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    config = hand_config()
    config = dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, device="cpu"),
        score=dataclasses.replace(config.score, bag_detector="zeroshot"),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        detector = ZeroShotBagDetector(config, model=model, processor=processor)
        detector.detect(images[0])  # warm-up
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(runs):
            for image in images:
                detector.detect(image)
        n = runs * len(images)
        ms = (time.perf_counter() - start) * 1000 / n
        cpu_ms = (time.process_time() - start_cpu) * 1000 / n
    finally:
        torch.set_num_threads(before)
    return {
        "bag_detector": type(model).__name__,
        "bag_detector_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "bag_detector_ms_per_1024_candidate": round(ms, 1),
        "bag_detector_cpu_ms_per_1024_candidate": round(cpu_ms, 1),
        "bag_detector_threads": threads,
    }


def reference_figures(p: dict[str, Any]) -> str:
    """A what-if's threshold, AUC with its interval, precision, recall and accepted malformed
    hands, as one line's tail."""
    lo, hi = p["interval_95"].get("auc", [float("nan")] * 2)
    return (
        f"(threshold {p['threshold']:.2f}): AUC {p['auc']:.3f} [{lo:.3f}, {hi:.3f}], "
        f"precision {p['precision']:.3f}, recall {p['recall']:.3f}, "
        f"malformed accepted {p['malformed_accepted_files']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one CPU core")
    parser.add_argument("--time-runs", type=int, default=3)
    parser.add_argument(
        "--augment", action="store_true", help="also the AUC under flips, rotations, rescale, JPEG"
    )
    parser.add_argument(
        "--bag-detector",
        nargs="?",
        const="owlv2",
        choices=sorted(BAG_DETECTOR_ARCHS),
        help="also time a full-size second-bag detector (random weights, one thread); default owlv2",
    )
    parser.add_argument("--bag-detector-images", type=int, default=3, help="candidates to time it on")
    args = parser.parse_args(argv)
    if not args.all_cores:
        pin_one_core()
    result = evaluate(args.samples, time_runs=args.time_runs)
    if args.augment:
        result.update(evaluate_augmented(args.samples, result["world_fit"]["tolerance"], result["threshold"]))
    if args.bag_detector:
        model, processor = full_size_bag_detector(args.bag_detector)
        images = candidates_1024(args.samples, max(1, args.bag_detector_images))
        result.update(time_bag_detector(images, model, processor))
        result["bag_detector_arch"] = BAG_DETECTOR_ARCHS[args.bag_detector][0]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'file':40s} {'part':8s} {'kind':9s} {'score':>6s} {'hand':>6s}  reasons")
    for r in result["rows"]:
        if r["kind"] == "no hand" and r["file"].startswith("A_"):
            continue
        print(
            f"{r['file']:40s} {r['part']:8s} {r['kind']:9s} {r['hand_score']:6.3f} {r['hand_only']:6.3f}  {'; '.join(r['reasons'])}"
        )
    packs = [r for r in result["rows"] if r["file"].startswith("A_")]
    print(f"{len(packs)} bare packshots: highest score {max(r['hand_score'] for r in packs):.3f}")
    print(
        f"\ncomponent AUC on the fit part: {result['component_auc_fit']}; weights fitted there: "
        f"{result['weights']} (config: {result['config_weights']})"
    )
    print(
        f"anatomy factors fitted on the fit part ({result['n_synthetic_fit']} synthetic fused fingers on its real "
        f"hands): AUC {result['check_auc_fit']}; counted: {result['checks']} (config: {result['config_checks']})"
    )
    print(
        f"  synthetic fused fingers flagged on the photo: {result['synthetic_flagged_fit']}; augmented, still "
        f"flagged {result['synthetic_kept_fit']}, not judged {result['synthetic_abstained_fit']}, judged "
        f"separated {result['synthetic_contradicted_fit']}"
    )
    print(f"  real hands of the fit part flagged once augmented: {result['real_flagged_augmented_fit']}")
    print(
        f"accept threshold fitted on the fit part: {result['threshold']:.2f} (config: {result['config_threshold']:.2f})"
    )
    for name, p in result["parts"].items():
        ci = p["interval_95"]

        def fmt(key: str, p: dict = p, ci: dict = ci) -> str:
            value = p[key]
            if value is None:
                return "n/a"
            lo_hi = ci.get(key)
            return f"{value:.3f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")

        print(f"\n{name}: {p['n']}")
        print(f"  AUC (hand_score)         {fmt('auc')}   target >= 0.9 on held_out")
        print(f"  AUC (without scene)      {fmt('auc_hand_only')}")
        print(f"  accepted: precision      {fmt('precision')}")
        print(f"  accepted: recall         {fmt('recall')}")
        print(
            f"  malformed accepted       {fmt('malformed_accepted')}   target 0 on held_out {p['malformed_accepted_files']}"
        )
        print(f"  no-hand images accepted  {p['no_hand_accepted']}")
        print(
            f"  per hand: {p['hands_found']}/{p['hands_labelled']} labelled hands found, anatomy AUC {p['auc_anatomy_per_hand']:.3f}"
        )
    for name, w in result["held_out_other_choice"].items():
        print(
            f"\nnot fitted, for reference: held_out with '{name}' {'counted' if w['counted'] else 'not counted'} "
            f"in anatomy {reference_figures(w)}"
        )
    w = result["world_fit"]
    print(
        f"\nkinematic residual (measured, not counted): AUC {w['auc']}; world-residual tolerance fitted on "
        f"the fit part's real hands {w['tolerance']:.3f}"
    )
    syn = w["synthetic"]
    print(
        f"  synthetic malformations of the fit part's real hands past it: {syn['past_tolerance']}/{syn['n']} "
        f"(median residual {syn['median']}): {syn['per_kind']}"
    )
    print(f"  images past it: {w['past_tolerance']}")
    for name, p in w["what_if"].items():
        print(
            f"  for reference, {name} with it a factor of anatomy {reference_figures(p)}, "
            f"real refused {p['real_refused_files']}"
        )
    cv = result["cross_validation"]
    print(f"\n{cv['folds']}-fold cross-validation, folds fixed by file name (every image out of fold once):")
    print(
        f"  AUC (hand_score)         {cv['auc']:.3f} [{cv['auc_interval_95'][0]:.3f}, {cv['auc_interval_95'][1]:.3f}]"
    )
    for key in ("precision", "recall", "malformed_accepted"):
        lo_hi = cv["interval_95"].get(key, [float("nan")] * 2)
        print(f"  {key:24s} {cv[key]:.3f} [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]")
    print(
        f"  malformed accepted: {cv['malformed_accepted_files']}; no-hand images accepted {cv['no_hand_accepted']}"
    )
    print(f"  thresholds per fold: {[f['threshold'] for f in cv['per_fold']]}")
    if "auc_all_augmented" in result:
        per = ", ".join(f"{k} {v:.3f}" for k, v in result["auc_per_augmentation"].items())
        print(f"AUC augmented            {result['auc_all_augmented']:.3f}   ({per})")
        print("finger separation flags (< 0.7), per augmentation:")
        for name, flags in result["separation_robustness"].items():
            print(f"  {name:9s} malformed caught {flags['malformed']}; real flagged {flags['real']}")
        print("  upscales scored as if sharp (detail_scale 1: a photo enlarged before it reached us):")
        for name, flags in result["separation_unknown_upscale"].items():
            print(f"  {name:9s} malformed caught {flags['malformed']}; real flagged {flags['real']}")
        print(
            f"world residual past the fit part's tolerance ({result['world_fit']['tolerance']:.3f}), per augmentation:"
        )
        for name, flags in result["world_past_tolerance"].items():
            print(f"  {name:9s} malformed {flags['malformed']}; real {flags['real']}")
        n = result["images_augmented"]
        views = {k: v for k, v in result["accepted_augmented"].items() if k != "original"}
        bad = sum(len(v["malformed_accepted"]) for v in views.values())
        refused = sum(len(v["real_refused"]) for v in views.values())
        print(
            f"verdicts at the threshold {result['threshold']}, augmented: malformed accepted {bad} of "
            f"{n['malformed'] * len(views)} views, real refused {refused} of {n['real'] * len(views)}"
        )
        for name, v in result["accepted_augmented"].items():
            print(
                f"  {name:9s} malformed accepted {v['malformed_accepted']}; real refused {v['real_refused']}"
            )
    print(
        f"per 1024x1024 candidate on {result['cores']} core(s): {result['ms_per_1024_candidate']} ms wall, "
        f"{result['cpu_ms_per_1024_candidate']} ms CPU   target <= 150"
    )
    if "bag_detector_ms_per_1024_candidate" in result:
        print(
            f"  + second-bag detector ({result['bag_detector_arch']} shape, {result['bag_detector_params_m']} M params, "
            f"{result['bag_detector_threads']} thread): {result['bag_detector_ms_per_1024_candidate']} ms wall, "
            f"{result['bag_detector_cpu_ms_per_1024_candidate']} ms CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the hand scorer's evidence becomes ``hand_score``: the project's scoring policy.

The scorer (``autoshoot.backends.mediapipe_hands``) measures; this module judges:

- components combine as a weighted geometric mean, so one failed component sinks the score;
- the scene wants one person, and hands with a body, unless the shot is a close-up (asked
  for by the brief, or a hand that fills the frame): then the body is out of frame by design;
- it fails closed: a picture where a hand should be seen and none is found, or where no
  person is found at all, scores below the accept threshold and says why. "No hand" is a
  finding, not a neutral score: a generated hand so malformed that the detector misses it
  must not pass, nor may a bare packshot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NO_HAND = "no hand found where one should be visible"
NO_PERSON = "no person found"
HANDS_WITHOUT_BODY = "hands without a body"
CLOSE_SHOTS = ("close",)  # brief.shot values whose framing leaves the body out


def combine_components(components: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted geometric mean of the components present (each floored at 0.01)."""
    total, acc = 0.0, 0.0
    for name, value in components.items():
        wgt = float(weights.get(name, 0.0))
        if wgt <= 0:
            continue
        total += wgt
        acc += wgt * np.log(max(float(value), 0.01))
    return float(np.exp(acc / total)) if total > 0 else 0.0


def is_close_up(shot: str | None, hand_boxes: list[Any], size: tuple[int, int], frame_frac: float) -> bool:
    """The shot asked for a close-up, or a hand fills the frame: its box's diagonal is at
    least ``frame_frac`` of the image's (``size`` = (width, height))."""
    if shot and str(shot).lower() in CLOSE_SHOTS:
        return True
    diag = float(np.hypot(*size))
    return any(np.hypot(b[2] - b[0], b[3] - b[1]) >= frame_frac * diag for b in hand_boxes)


def score_scene(
    scene: Any,
    hands: list[Any],
    max_hands: int,
    bags: Any = None,
    bag_penalty: float = 0.35,
    close_up: bool = False,
) -> tuple[float, list[str]]:
    """Exactly one person: one face (or a body seen from behind), no hands without a body
    (unless ``close_up``); and no bag besides the product (``bags``: a ``BagCount`` from
    ``find_second_bags``, or None when the rule is off): ``bag_penalty`` per second bag."""
    score = 1.0
    reasons = []
    n_faces = len(scene.faces)
    if n_faces > 1:
        score *= 0.35 ** (n_faces - 1)
        reasons.append(f"{n_faces} faces")
    if hands and n_faces == 0 and not scene.body and not close_up:
        score *= 0.7
        reasons.append(HANDS_WITHOUT_BODY)
    if len(hands) > max_hands:
        score *= 0.4
        reasons.append(f"{len(hands)} hands")
    if bags is not None and bags.second:
        score *= bag_penalty ** len(bags.second)
        reasons.append(f"{bags.n_bags} bags")
    return max(score, 0.0), reasons


def fail_closed(
    hand_score: float,
    found_hand: bool,
    has_person: bool | None,
    no_hand_score: float,
    no_person_factor: float,
) -> tuple[float, list[str]]:
    """The score after the fail-closed rules, and their reasons.

    No hand found: at most ``no_hand_score`` (below the accept threshold). No person found
    (``has_person`` False; None = the scene was not looked at): times ``no_person_factor``.
    """
    reasons = []
    if not found_hand:
        hand_score = min(hand_score, no_hand_score)
        reasons.append(NO_HAND)
    if has_person is False:
        hand_score *= no_person_factor
        reasons.append(NO_PERSON)
    return hand_score, reasons

"""Config of the ``score`` and ``rank`` stages. Owned by the hand-scorer code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreConfig:
    scorer: str = "mediapipe"  # name in autoshoot.backends.HAND_SCORERS
    accept_threshold: float = 0.6  # best candidate >= this → accepted, else review


PROFILES: dict[str, dict] = {
    "default": {},
    "tiny": {},
}

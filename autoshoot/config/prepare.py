"""Config of the ``prepare`` stage (geometry). Owned by the geometry code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrepareConfig:
    segmenter: str = "auto"  # auto | plain | birefnet | rembg


PROFILES: dict[str, dict] = {
    "default": {},
    "tiny": {"segmenter": "plain"},
}

"""Config of the ``analyze`` stage (the brief). Owned by the brief/VLM code."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AnalyzeConfig:
    vlm: str = "rules"  # name in autoshoot.backends.VLMS
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id or local folder
    batch_size: int = 8  # SKUs per VLM generate call
    brands: dict[str, dict[str, str]] = field(default_factory=dict)  # brand → fixed brief fields


PROFILES: dict[str, dict] = {
    "default": {"vlm": "qwen"},
    "tiny": {"vlm": "rules"},
}

"""The data that flows between stages. Each stage writes one of these to ``stage.json`` in
its folder (``to_json``) and the next stage reads it back (``from_json``).

Coordinates are pixels, x to the right, y down, origin top-left. Boxes are XYXY.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

HandleKind = Literal["top_loop", "twin_loops", "strap_loop", "none"]
Status = Literal["accepted", "review", "failed"]


class JsonMixin:
    def to_json(self) -> dict[str, Any]:
        """A shallow dict of the fields (containers copied); nested dataclasses become dicts."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, JsonMixin):
                value = value.to_json()
            elif isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, (list, tuple)):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Placement(JsonMixin):
    """canvas_xy = input_xy * scale + offset."""

    scale: float
    offset: tuple[float, float]

    def to_canvas(self, x: float, y: float) -> tuple[float, float]:
        return (x * self.scale + self.offset[0], y * self.scale + self.offset[1])


@dataclass(frozen=True)
class Candidate(JsonMixin):
    """One rendered image of a SKU. ``image`` is relative to the stage folder that wrote it."""

    index: int
    seed: int
    image: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HandScore(JsonMixin):
    """The ``autoshoot score`` contract: hand_score in [0, 1], higher is a better hand."""

    file: str
    hand_score: float
    hands: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    bags: list[dict[str, Any]] = field(default_factory=list)  # {box, score, label, is_product}


@dataclass(frozen=True)
class ShotResult(JsonMixin):
    """One row of results.csv. Paths are relative to the RUN folder."""

    row: int
    sku: str
    status: Status
    reason: str = ""
    best_image: str = ""
    hand_score: float | None = None
    n_candidates: int = 0
    seconds: float = 0.0
    flags: str = ""  # ';'-joined notes such as "no_handle", "brief_fallback"
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # empty when this run rendered the row, else the name of the run it was reused from
    reused: str = ""
    # new | changed | reused: what tonight's work on the row was (the report's head counts)
    change: str = ""

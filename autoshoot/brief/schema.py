"""The brief: everything a person wrote by hand in the reference workflow, as one strict schema.

A VLM (or the ``rules`` backend, ``brief/rules.py``) reads the product photo and returns a
``Brief``; catalog override columns and brand profiles then fix fields per row
(``brief/overrides.py``); the prompt templates in ``prompts/`` turn it into the render prompt
(``brief/prompt.py``).

Strictness: every model forbids extra keys and validates JSON data strictly (no "38" for a
number). Validate dicts with ``Brief.from_data`` (it goes through JSON, so lists become the
tuples the schema holds).

Coordinates: ``product.handle_box`` is XYXY in pixels of the INPUT image (x right, y down,
origin top-left), or null.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoshoot.vocab import (
    CATEGORIES,
    GRIP_POSES,
    HANDLES,
    HOLD_POSES,
    NON_GRIP_POSES,
    SHOTS,
)

Category = Literal[CATEGORIES]  # type: ignore[valid-type]
Handle = Literal[HANDLES]  # type: ignore[valid-type]
HoldPose = Literal[HOLD_POSES]  # type: ignore[valid-type]
Shot = Literal[SHOTS]  # type: ignore[valid-type]
GENDER_PRESENTATIONS = ("feminine", "masculine", "androgynous")
GenderPresentation = Literal[GENDER_PRESENTATIONS]  # type: ignore[valid-type]
# Adults only: the schema has no age range below 20.
AGE_RANGES = ("20s", "30s", "40s", "50s", "60s")
AgeRange = Literal[AGE_RANGES]  # type: ignore[valid-type]

# Words that describe a minor. Free text (overrides, a VLM's persona) containing one is refused.
_MINOR_WORDS = re.compile(
    r"\b(child|children|kid|kids|teen|teens|teenage|teenager|teenagers|boy|boys|girl|girls|toddler|baby|"
    r"babies|schoolgirl|schoolboy|minor|minors|underage|youngster|juvenile|adolescent|infant|pupil)\b",
    re.IGNORECASE,
)
_YEARS_OLD = re.compile(r"\b(\d{1,2})\s*(?:-\s*)?(?:years?|yrs?|y/o|yo)\b(?:[\s-]*old)?", re.IGNORECASE)

SIZE_MIN_CM, SIZE_MAX_CM = 5.0, 150.0


def check_adult_text(text: str) -> str:
    """Refuse text that describes a minor; return the text unchanged otherwise."""
    match = _MINOR_WORDS.search(text)
    if match:
        raise ValueError(
            f"{text!r} describes a minor ({match.group(0)!r}); models are always adults, "
            "write e.g. 'woman', 'man' or 'person in their 20s'"
        )
    for years in _YEARS_OLD.findall(text):
        if int(years) < 18:
            raise ValueError(f"{text!r} gives an age under 18; models are always adults (20s to 60s)")
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Product(_Strict):
    category: Category
    description: str = Field(
        min_length=3, max_length=200, description="short, e.g. 'black leather tote with gold zip'"
    )
    colours: list[str] = Field(min_length=1, max_length=5, description="main colours, most dominant first")
    material: str = Field(min_length=2, max_length=60)
    handle: Handle
    size_cm: tuple[float, float] = Field(description="estimated real [width_cm, height_cm] of the bag body")
    handle_box: tuple[float, float, float, float] | None = Field(
        default=None, description="carry handle XYXY in input-image pixels, or null"
    )
    grip_point: tuple[float, float] | None = Field(
        default=None, description="where a hand grips the handle, (x, y) in input-image pixels, or null"
    )

    @field_validator("size_cm")
    @classmethod
    def _check_size(cls, value: tuple[float, float]) -> tuple[float, float]:
        for v in value:
            if not SIZE_MIN_CM <= v <= SIZE_MAX_CM:
                raise ValueError(
                    f"each size must be between {SIZE_MIN_CM:g} and {SIZE_MAX_CM:g} cm, got {v:g}"
                )
        return value

    @field_validator("handle_box")
    @classmethod
    def _check_box(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            x0, y0, x1, y1 = value
            if x1 <= x0 or y1 <= y0 or min(value) < 0:
                raise ValueError(
                    f"handle_box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {list(value)}"
                )
        return value

    @field_validator("grip_point")
    @classmethod
    def _check_point(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and min(value) < 0:
            raise ValueError(f"grip_point must be [x, y] inside the image, got {list(value)}")
        return value

    @field_validator("colours")
    @classmethod
    def _check_colours(cls, value: list[str]) -> list[str]:
        if any(not c.strip() for c in value):
            raise ValueError("colours must be non-empty words")
        return value


class Persona(_Strict):
    gender_presentation: GenderPresentation
    age_range: AgeRange = Field(description="adults only")
    skin_tone: str = Field(min_length=3, max_length=60)
    features: str = Field(min_length=3, max_length=120, description="face and physical features")
    build: str = Field(min_length=3, max_length=40)
    hair: str = Field(min_length=3, max_length=80)
    garments: list[str] = Field(min_length=1, max_length=6, description="each garment with its colour")
    custom: str | None = Field(
        default=None,
        max_length=300,
        description="free-text persona from an override; replaces the generated one",
    )

    @field_validator("skin_tone", "features", "build", "hair", "custom")
    @classmethod
    def _adult(cls, value: str | None) -> str | None:
        return check_adult_text(value) if value else value

    @field_validator("garments")
    @classmethod
    def _check_garments(cls, value: list[str]) -> list[str]:
        if any(len(g.strip()) < 3 for g in value):
            raise ValueError("each garment must be described, e.g. 'white linen shirt'")
        for g in value:
            check_adult_text(g)
        return value


class Brief(_Strict):
    product: Product
    persona: Persona
    setting: str = Field(min_length=3, max_length=160, description="the background")
    lighting: str = Field(min_length=3, max_length=100)
    hold_pose: HoldPose
    shot: Shot
    gaze: str = Field(min_length=3, max_length=80)
    expression: str = Field(min_length=3, max_length=80)
    rationale: str = Field(min_length=3, max_length=300, description="one sentence")

    @model_validator(mode="after")
    def _pose_needs_handle(self) -> Brief:
        if self.product.handle == "none" and self.hold_pose in GRIP_POSES:
            raise ValueError(
                f"hold_pose {self.hold_pose!r} grips a handle but product.handle is 'none'; "
                f"use one of {', '.join(NON_GRIP_POSES)}"
            )
        return self

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Brief:
        """Validate a JSON-like dict (lists for tuples) strictly."""
        return cls.model_validate_json(json.dumps(data))

    def to_data(self) -> dict[str, Any]:
        """JSON-able dict: ``product.size_cm`` is ``[width_cm, height_cm]``, boxes are lists."""
        return self.model_dump(mode="json")


def brief_json_schema() -> dict[str, Any]:
    return Brief.model_json_schema()


# ---------------------------------------------------------------------------------------
# What a backend is asked and what it answers


@dataclass
class BriefRequest:
    """One SKU for a VLM backend.

    ``image`` is a local file path or a PIL image (any mode; backends convert to RGB).
    ``seed`` rotates personas and settings; by default it is derived from the SKU (``sku_seed``).
    ``handle_hint`` is a handle kind already known (e.g. from geometry), or None.
    """

    image: Any
    sku: str
    title: str = ""
    category: str = ""
    brand: str = ""
    notes: str = ""
    seed: int | None = None  # None → ``sku_seed(sku)``
    handle_hint: str | None = None

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = sku_seed(self.sku)

    def catalog_fields(self) -> dict[str, str]:
        """The catalog text a VLM instruction shows beside the photo."""
        return {"title": self.title, "category": self.category, "brand": self.brand, "notes": self.notes}


@dataclass
class BriefResult:
    brief: Brief
    backend: str
    fallback_fields: list[str] = field(default_factory=list)  # dotted paths filled by ``rules``
    flags: list[str] = field(default_factory=list)
    raw: str = ""  # the model's last answer, for debugging
    seconds: float = 0.0


def sku_seed(sku: str) -> int:
    """A stable 32-bit seed from the SKU text (same SKU → same persona on every machine)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(sku.encode("utf-8")).digest()[:4], "big")


def open_rgb(image: Any) -> Any:
    """A path or PIL image → an RGB PIL image (EXIF rotation applied for files)."""
    from PIL import Image, ImageOps

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    return image.convert("RGB")

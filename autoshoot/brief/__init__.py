"""The brief: what the shoot needs to know about a product, from the photo to the prompts.

- ``schema``: the strict ``Brief`` (product, persona, pose, shot), what a VLM backend is
  asked (``BriefRequest``) and what it answers (``BriefResult``).
- ``overrides``: catalog override columns and brand profiles fix fields per row.
- ``parse``: a VLM's text answer → a valid ``Brief`` (extract, repair, retry, fill from rules).
- ``rules``: the project's own deterministic brief, without any model (the ``rules`` backend).
- ``prompt``: the Jinja2 templates of ``prompts/``: the VLM instruction and the render prompts.

``from autoshoot.brief import Brief`` and the other names below are the schema and overrides.
"""

from autoshoot.brief.overrides import (
    OverrideError,
    apply_overrides,
    brand_overrides,
    first_error,
    parse_size_cm,
    split_garments,
)
from autoshoot.brief.schema import (
    AGE_RANGES,
    GENDER_PRESENTATIONS,
    SIZE_MAX_CM,
    SIZE_MIN_CM,
    AgeRange,
    Brief,
    BriefRequest,
    BriefResult,
    Category,
    GenderPresentation,
    Handle,
    HoldPose,
    Persona,
    Product,
    Shot,
    brief_json_schema,
    check_adult_text,
    open_rgb,
    sku_seed,
)

__all__ = [
    "AGE_RANGES",
    "GENDER_PRESENTATIONS",
    "SIZE_MAX_CM",
    "SIZE_MIN_CM",
    "AgeRange",
    "Brief",
    "BriefRequest",
    "BriefResult",
    "Category",
    "GenderPresentation",
    "Handle",
    "HoldPose",
    "OverrideError",
    "Persona",
    "Product",
    "Shot",
    "apply_overrides",
    "brand_overrides",
    "brief_json_schema",
    "check_adult_text",
    "first_error",
    "open_rgb",
    "parse_size_cm",
    "sku_seed",
    "split_garments",
]

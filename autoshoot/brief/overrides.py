"""Overrides: catalog columns and brand profiles fix fields of a ``Brief`` per row.

``apply_overrides`` checks the columns of ``vocab.OVERRIDE_COLUMNS`` and their values, applies
them and validates the result; ``brand_overrides`` finds a brand profile's fixed fields.
Every error is an ``OverrideError`` that names the column, the value and the fix.
"""

from __future__ import annotations

import re

from autoshoot.brief.schema import SIZE_MAX_CM, SIZE_MIN_CM, Brief, check_adult_text
from autoshoot.vocab import GRIP_POSES, NON_GRIP_POSES, OVERRIDE_COLUMNS


class OverrideError(ValueError):
    """An override value cannot be applied; the message names the column, the value and the fix."""


def parse_size_cm(text: str) -> tuple[float, float]:
    """``"38x30"`` (also ``"38 x 30"``, ``"38×30"``, ``"38X30cm"``) → (38.0, 30.0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX×*]\s*(\d+(?:\.\d+)?)\s*(?:cm)?\s*", text)
    if not match:
        raise OverrideError(f"size_cm {text!r}: write WIDTHxHEIGHT in cm, e.g. 38x30")
    w, h = float(match.group(1)), float(match.group(2))
    for v in (w, h):
        if not SIZE_MIN_CM <= v <= SIZE_MAX_CM:
            raise OverrideError(
                f"size_cm {text!r}: each size must be between {SIZE_MIN_CM:g} and {SIZE_MAX_CM:g} cm"
            )
    return (w, h)


def split_garments(text: str) -> list[str]:
    """``"white shirt; navy trousers"`` or ``"white shirt, navy trousers"`` → a list of garments."""
    sep = ";" if ";" in text else ","
    return [part.strip() for part in text.split(sep) if part.strip()]


def brand_overrides(brands: dict[str, dict[str, str]], brand: str) -> dict[str, str]:
    """The brand profile's fixed fields for ``brand`` (case-insensitive), or {}."""
    key = brand.strip().casefold()
    if not key:
        return {}
    for name, fields in brands.items():
        if name.strip().casefold() == key:
            return dict(fields)
    return {}


def apply_overrides(brief: Brief, overrides: dict[str, str]) -> Brief:
    """Return a new brief with catalog override columns applied (empty values are ignored).

    Columns are those of ``vocab.OVERRIDE_COLUMNS``. ``persona`` is free text that replaces the
    generated persona description; ``garments`` is a ``;``- or ``,``-separated list;
    ``size_cm`` is ``WIDTHxHEIGHT``. When ``handle`` becomes ``none`` and the pose grips a
    handle, the pose becomes ``cradled`` unless ``hold_pose`` is overridden too.
    Raises ``OverrideError`` naming the column and value when one is invalid.
    """
    # 1. check the columns
    overrides = {k: v.strip() for k, v in overrides.items() if v is not None and str(v).strip()}
    unknown = sorted(set(overrides) - set(OVERRIDE_COLUMNS))
    if unknown:
        raise OverrideError(
            f"unknown override {unknown[0]!r}; valid override columns are: {', '.join(OVERRIDE_COLUMNS)}"
        )
    for column, value in overrides.items():
        allowed = OVERRIDE_COLUMNS[column]
        if allowed is not None and value not in allowed:
            raise OverrideError(
                f"{column} {value!r} is not allowed; allowed values are: {', '.join(allowed)}"
            )
    if not overrides:
        return brief

    # 2. apply them to a plain dict
    data = brief.to_data()
    product, persona = data["product"], data["persona"]
    for column, value in overrides.items():
        if column in ("category", "handle"):
            product[column] = value
        elif column == "size_cm":
            product["size_cm"] = list(parse_size_cm(value))
        elif column == "persona":
            try:
                persona["custom"] = check_adult_text(value)
            except ValueError as err:
                raise OverrideError(f"persona: {err}") from None
        elif column == "garments":
            persona["garments"] = split_garments(value)
        else:  # hold_pose, shot, setting, lighting, gaze, expression
            data[column] = value

    # 3. keep the pose consistent with the handle
    if product["handle"] == "none" and data["hold_pose"] in GRIP_POSES:
        if "hold_pose" in overrides:
            raise OverrideError(
                f"hold_pose {data['hold_pose']!r} grips a handle but handle is 'none'; "
                f"use one of {', '.join(NON_GRIP_POSES)} or leave hold_pose empty"
            )
        data["hold_pose"] = "cradled"
    if product["handle"] != brief.product.handle:
        product["handle_box"] = product["handle_box"] if product["handle"] != "none" else None
        product["grip_point"] = product.get("grip_point") if product["handle"] != "none" else None

    try:
        return Brief.from_data(data)
    except Exception as err:  # pydantic ValidationError: say which override broke it
        raise OverrideError(f"overrides {overrides} make an invalid brief: {first_error(err)}") from None


def first_error(err: Exception) -> str:
    """A one-line message from a pydantic ValidationError (or any exception)."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        items = errors()
        if items:
            e = items[0]
            loc = ".".join(str(p) for p in e.get("loc", ())) or "brief"
            return f"{loc}: {e.get('msg', '')}"
    return str(err)

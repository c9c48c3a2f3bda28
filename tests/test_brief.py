"""The Brief schema: strict validation, adults only, overrides and brand profiles."""

from __future__ import annotations

import pytest

from autoshoot.brief import (
    Brief,
    OverrideError,
    apply_overrides,
    brand_overrides,
    check_adult_text,
    parse_size_cm,
    sku_seed,
)
from autoshoot.brief.prompt import EXAMPLE_BRIEF


def example() -> dict:
    import copy

    return copy.deepcopy(EXAMPLE_BRIEF)


def test_example_is_valid_and_serializes_the_contract_paths():
    brief = Brief.from_data(example())
    data = brief.to_data()
    assert data["product"]["size_cm"] == [38.0, 32.0]
    assert data["product"]["handle_box"] is None
    assert data["hold_pose"] == "forearm_crook" and data["shot"] == "full_body"
    assert Brief.from_data(data) == brief  # round trip


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        (("product", "category"), "wallet", "product.category"),
        (("product", "size_cm"), ["38", 30], "product.size_cm"),  # strict: no numeric strings
        (("product", "size_cm"), [38, 300], "between"),
        (("product", "handle_box"), [50, 50, 10, 10], "x0 < x1"),
        (("persona", "age_range"), "10s", "persona.age_range"),
        (("persona", "garments"), [], "persona.garments"),
        (("persona", "hair"), "pigtails like a schoolgirl", "minor"),
        (("shot",), "wide", "shot"),
    ],
)
def test_invalid_fields_are_rejected(path, value, fragment):
    data = example()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(Exception) as info:
        Brief.from_data(data)
    assert fragment in str(info.value)


def test_extra_keys_are_forbidden():
    data = example()
    data["camera"] = "85mm"
    with pytest.raises(Exception, match="camera"):
        Brief.from_data(data)


def test_grip_pose_needs_a_handle():
    data = example()
    data["product"]["handle"] = "none"
    with pytest.raises(Exception, match="cradled"):
        Brief.from_data(data)
    data["hold_pose"] = "under_arm"
    assert Brief.from_data(data).hold_pose == "under_arm"


def test_adult_text_check():
    assert check_adult_text("a woman in her 40s") == "a woman in her 40s"
    for text in ("a teenage model", "a 16-year-old", "young girl with a bag", "a kid"):
        with pytest.raises(ValueError):
            check_adult_text(text)


def test_overrides_apply_and_keep_the_pose_consistent():
    brief = Brief.from_data(example())
    out = apply_overrides(
        brief,
        {
            "shot": "close",
            "size_cm": "40 x 35",
            "garments": "white shirt; navy trousers",
            "persona": "A woman in her 50s with short silver hair",
            "handle": "none",
            "setting": "a beach at dawn",
            "gaze": "",  # empty: ignored
        },
    )
    assert out.shot == "close"
    assert out.product.size_cm == (40.0, 35.0)
    assert out.persona.garments == ["white shirt", "navy trousers"]
    assert out.persona.custom == "A woman in her 50s with short silver hair"
    assert out.product.handle == "none" and out.hold_pose == "cradled"  # grip pose dropped
    assert out.setting == "a beach at dawn" and out.gaze == brief.gaze
    assert apply_overrides(brief, {}) is brief


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"shot": "wide"}, "shot 'wide' is not allowed; allowed values are: close, half_body, full_body"),
        ({"size_cm": "big"}, "size_cm 'big': write WIDTHxHEIGHT in cm, e.g. 38x30"),
        ({"handle": "none", "hold_pose": "beside_hip"}, "hold_pose 'beside_hip' grips a handle"),
        ({"persona": "a teenager"}, "describes a minor"),
        ({"colour": "red"}, "unknown override 'colour'"),
    ],
)
def test_bad_overrides_say_how_to_fix(overrides, message):
    with pytest.raises(OverrideError) as info:
        apply_overrides(Brief.from_data(example()), overrides)
    assert message in str(info.value)


def test_size_and_brand_helpers():
    assert parse_size_cm("38x30") == (38.0, 30.0)
    assert parse_size_cm("38×30cm") == (38.0, 30.0)
    brands = {"Acme Bags": {"setting": "a white cyclorama", "persona": "a man in his 30s"}}
    assert brand_overrides(brands, "acme bags")["setting"] == "a white cyclorama"
    assert brand_overrides(brands, "Other") == {} and brand_overrides(brands, "") == {}
    assert sku_seed("SKU-1") == sku_seed("SKU-1") != sku_seed("SKU-2")

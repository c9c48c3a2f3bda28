"""Parsing realistic VLM answers: fences, prose, wrong enums, cut-off JSON, both coordinate conventions."""

from __future__ import annotations

import copy
import json

import pytest

from autoshoot.brief import Brief
from autoshoot.brief.parse import AnswerError, convert_box, extract_json, fill_from_rules, parse_answer
from autoshoot.brief.prompt import EXAMPLE_BRIEF

GOOD = json.dumps(EXAMPLE_BRIEF)
SEEN, INPUT = (812, 1008), (1080, 1340)


def answer_with(**changes) -> dict:
    data = copy.deepcopy(EXAMPLE_BRIEF)
    for dotted, value in changes.items():
        target = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return data


def test_markdown_fence_and_prose_around_it():
    text = f"Sure! Here is the brief:\n```json\n{json.dumps(EXAMPLE_BRIEF, indent=2)}\n```\nLet me know if you need changes."
    outcome = parse_answer(text, "pixels", SEEN, INPUT)
    assert outcome.errors == []
    assert outcome.brief.product.category == "tote"


def test_trailing_prose_with_braces_and_trailing_commas():
    text = GOOD[:-1] + ",}\n\nNote: {the bag} looks premium."
    assert extract_json(text)["shot"] == "full_body"


def test_cut_off_answer_is_closed_and_reported():
    text = GOOD[: GOOD.index('"rationale"')] + '"rationale": "A tote that'
    outcome = parse_answer(text, "pixels", SEEN, INPUT)
    assert outcome.brief is not None  # closing the string and object was enough
    assert outcome.brief.rationale == "A tote that"


def test_no_json_at_all():
    with pytest.raises(AnswerError, match="no JSON object"):
        extract_json("I cannot help with that.")
    outcome = parse_answer("8p_d8p_d", "pixels", SEEN, INPUT)
    assert outcome.brief is None and outcome.data is None and "no JSON object" in outcome.errors[0]


def test_enum_spellings_are_normalized():
    data = answer_with(
        product__category="Laptop Bag",
        product__handle="two handles",
        hold_pose="Forearm-Crook",
        shot="Full Body",
        persona__gender_presentation="Female",
        persona__age_range="early 30s",
        product__size_cm="40 x 30 cm",
    )
    outcome = parse_answer(json.dumps(data), "pixels", SEEN, INPUT)
    brief = outcome.brief
    assert outcome.errors == []
    assert (brief.product.category, brief.product.handle, brief.hold_pose, brief.shot) == (
        "laptop_bag",
        "twin_loops",
        "forearm_crook",
        "full_body",
    )
    assert brief.persona.gender_presentation == "feminine" and brief.persona.age_range == "30s"
    assert brief.product.size_cm == (40.0, 30.0)


def test_wrong_enum_values_give_errors_for_the_retry_and_rules_fills_them():
    data = answer_with(product__category="wallet", shot="extreme wide", persona__age_range="teen")
    outcome = parse_answer(json.dumps(data), "pixels", SEEN, INPUT)
    assert outcome.brief is None
    joined = "\n".join(outcome.errors)
    assert "product.category: must be one of" in joined and "shot: must be one of" in joined
    assert "persona.age_range" in joined
    rules = Brief.from_data(
        answer_with(product__category="handbag", shot="half_body", persona__age_range="40s")
    )
    brief, filled = fill_from_rules(outcome.data, rules)
    assert filled == ["persona.age_range", "product.category", "shot"]
    assert (brief.product.category, brief.shot, brief.persona.age_range) == ("handbag", "half_body", "40s")
    assert brief.setting == EXAMPLE_BRIEF["setting"]  # the valid fields stay the model's


def test_missing_and_extra_fields_are_repaired_from_rules():
    data = answer_with()
    del data["persona"]["hair"]
    data["camera"] = "85mm"
    data["product"]["handle"] = "none"  # conflicts with a grip pose
    rules = Brief.from_data(answer_with(persona__hair="short grey hair"))
    brief, filled = fill_from_rules(data, rules)
    assert brief.persona.hair == "short grey hair"
    assert "persona.hair" in filled and ("hold_pose" in filled or "product.handle" in filled)
    assert fill_from_rules(None, rules) == (rules, ["*"])


def test_qwen25_pixels_are_scaled_to_input_pixels():
    data = answer_with(product__handle_box=[300, 150, 500, 260])  # pixels of the 812x1008 image
    brief = parse_answer(json.dumps(data), "pixels", SEEN, INPUT).brief
    x0, y0, x1, y1 = brief.product.handle_box
    assert x0 == pytest.approx(300 * 1080 / 812, abs=0.1) and y1 == pytest.approx(260 * 1340 / 1008, abs=0.1)


def test_qwen3_relative_1000_is_scaled_to_input_pixels():
    data = answer_with(product__handle_box=[250, 100, 750, 200])
    brief = parse_answer(json.dumps(data), "rel1000", SEEN, INPUT).brief
    assert brief.product.handle_box == (270.0, 134.0, 810.0, 268.0)


def test_box_edge_cases():
    assert convert_box([10, 10, 5, 5], "pixels", (100, 100), (200, 200)) == [
        10.0,
        10.0,
        20.0,
        20.0,
    ]  # swapped
    assert convert_box([0, 0, 5000, 10], "rel1000", (100, 100), (200, 200)) == [
        0.0,
        0.0,
        200.0,
        2.0,
    ]  # clipped
    assert convert_box([1, 2, 3], "pixels", (100, 100), (200, 200)) is None
    assert convert_box([5, 5, 5, 9], "pixels", (100, 100), (200, 200)) is None  # empty
    with pytest.raises(ValueError, match="use one of"):
        convert_box([0, 0, 1, 1], "norm", (1, 1), (1, 1))


@pytest.mark.parametrize(
    ("convention", "point", "expected"),
    [
        ("pixels", [406, 126], (406 * 1080 / 812, 126 * 1340 / 1008)),  # Qwen2.5-VL: pixels it saw
        ("rel1000", [500, 100], (540.0, 134.0)),  # Qwen3-VL: 0..1000
    ],
)
def test_the_grip_point_is_converted_like_the_handle_box(convention, point, expected):
    data = answer_with(product__grip_point=point)
    brief = parse_answer(json.dumps(data), convention, SEEN, INPUT).brief
    assert brief.product.grip_point == pytest.approx(expected, abs=0.1)
    # outside the image: dropped rather than trusted
    data = answer_with(product__grip_point=[5000, 10] if convention == "pixels" else [1200, 10])
    assert parse_answer(json.dumps(data), convention, SEEN, INPUT).brief.product.grip_point is None

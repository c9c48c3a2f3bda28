"""The model-free ``rules`` brief on the sample packshots: sensible category, colours, variety."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from PIL import Image

from autoshoot.brief import BriefRequest
from autoshoot.brief.rules import RulesVLM, colour_name, read_image_facts

pytestmark = pytest.mark.samples

# What a person sees in each photo (checked by eye): colour words the brief must start with.
EXPECTED_COLOURS = {
    "A_packshot_backpack_white_01.jpg": {"blue"},
    "A_packshot_backpack_white_04.jpg": {"black", "charcoal"},
    "A_packshot_messenger_white_03.jpg": {"charcoal", "grey"},
    "A_packshot_tote_white_01.jpg": {"black", "charcoal"},
    "A_packshot_tote_white_02.jpg": {"beige", "tan"},
    "A_packshot_backpack_photobg_02.jpg": {"red", "burgundy"},
}


def truth_rows(samples_dir):
    with open(samples_dir / "GEOMETRY_TRUTH.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_category_from_catalog_text_and_colours_from_pixels(samples_dir):
    rows = truth_rows(samples_dir)
    requests = [
        BriefRequest(image=samples_dir / r["file"], sku=r["file"], title=f"Everyday {r['bag_type']}")
        for r in rows
    ]
    results = RulesVLM().describe(requests)
    for row, result in zip(rows, results, strict=True):
        brief = result.brief
        assert brief.product.category == row["bag_type"], row["file"]
        assert result.backend == "rules" and result.fallback_fields == []
        if row["file"] in EXPECTED_COLOURS:
            # plain background: the first colour is the product's; on a photo it is among the three
            found = brief.product.colours[:1] if row["background"] == "plain" else brief.product.colours
            assert EXPECTED_COLOURS[row["file"]] & set(found), (row["file"], brief.product.colours)
        if brief.product.category == "tote":
            assert brief.product.handle == "twin_loops"


def grey_studio_renders(samples_dir) -> set[str]:
    """Packshots that MANIFEST.csv describes as renders on a light grey studio background."""
    with open(samples_dir / "MANIFEST.csv", newline="") as f:
        return {r["file"] for r in csv.DictReader(f) if "light grey studio" in r["description"]}


def box_is_close(samples_dir, row) -> bool:
    facts = read_image_facts(samples_dir / row["file"])
    truth = [int(row[k]) for k in ("x0", "y0", "x1", "y1")]
    tolerance = 0.06 * max(facts.width, facts.height)
    return all(abs(a - b) <= tolerance for a, b in zip(facts.bbox, truth, strict=True))


def test_product_box_on_plain_backgrounds_is_close_to_the_truth(samples_dir):
    grey = grey_studio_renders(samples_dir)
    rows = [r for r in truth_rows(samples_dir) if r["background"] == "plain" and r["file"] not in grey]
    assert len(rows) >= 15
    assert [r["file"] for r in rows if not box_is_close(samples_dir, r)] == []


def test_product_box_on_grey_studio_renders(samples_dir):
    """A grey studio backdrop with a vignette and deep floor shadows: the box is the product's."""
    grey = grey_studio_renders(samples_dir)
    rows = [r for r in truth_rows(samples_dir) if r["file"] in grey]
    assert rows and all(box_is_close(samples_dir, r) for r in rows)


def test_personas_vary_across_a_catalog_and_repeat_per_sku(samples_dir):
    image = Image.open(samples_dir / "A_packshot_tote_white_01.jpg").convert("RGB").resize((270, 335))
    requests = [BriefRequest(image=image, sku=f"SKU-{i:03d}", category="tote") for i in range(40)]
    briefs = [r.brief for r in RulesVLM().describe(requests)]
    genders = Counter(b.persona.gender_presentation for b in briefs)
    ages = Counter(b.persona.age_range for b in briefs)
    skins = Counter(b.persona.skin_tone for b in briefs)
    assert len(genders) >= 2 and max(genders.values()) <= 30
    assert len(ages) >= 4 and len(skins) >= 5
    assert all(b.persona.garments for b in briefs)
    again = RulesVLM().describe(requests[:3])
    assert [r.brief for r in again] == briefs[:3]  # same SKU → same brief


def test_colour_names():
    assert colour_name([10, 10, 10]) == "black"
    assert colour_name([250, 250, 250]) == "white"
    assert colour_name([200, 20, 30]) == "red"
    assert colour_name([30, 60, 200]) == "blue"
    assert colour_name([20, 30, 70]) == "navy"

"""The prompt templates: reference format, chunking, the VLM instruction and the version key."""

from __future__ import annotations

import copy

from autoshoot.brief import Brief, apply_overrides
from autoshoot.prompting import (
    EXAMPLE_BRIEF,
    PROMPT_VERSION,
    prompt_chunks,
    prompt_version,
    render_negative_prompt,
    render_prompt,
    render_repair,
    render_vlm_instruction,
)
from autoshoot.vocab import HOLD_POSES


def brief(**changes) -> Brief:
    data = copy.deepcopy(EXAMPLE_BRIEF)
    data.update(changes)
    return Brief.from_data(data)


def test_render_prompt_follows_the_reference_format():
    prompt = render_prompt(brief())
    assert prompt.startswith(
        "An adult woman in her 30s, fashion model with deep brown skin, high cheekbones and natural makeup, "
        "slim build, short natural curls, wearing cream silk blouse, navy wide-leg trousers, white leather sneakers, "
        "soft diffused daylight, a sunlit city street with pale stone facades, softly blurred. "
        "She holds the tan pebbled-leather tote with two rolled handles by both of its handles in one hand, "
        "elbow bent at waist height. Full body shot. Looking at the camera, relaxed natural smile. "
    )
    assert prompt.endswith(
        "Only one person and only the specified item in her hand. "
        "Highly photorealistic image, tack-sharp focus, high definition."
    )
    assert "  " not in prompt and "\n" not in prompt


def test_every_pose_and_persona_renders():
    for pose in HOLD_POSES:
        handle = "none" if pose in ("cradled", "under_arm") else "top_loop"
        data = copy.deepcopy(EXAMPLE_BRIEF)
        data["product"]["handle"] = handle
        data["hold_pose"] = pose
        data["persona"]["gender_presentation"] = "masculine"
        prompt = render_prompt(Brief.from_data(data))
        assert "An adult man in his 30s" in prompt and " his hand." in prompt
    custom = apply_overrides(brief(), {"persona": "A man in his 60s with a white beard"})
    assert render_prompt(custom).startswith("A man in his 60s with a white beard, wearing cream silk blouse")


def test_chunks_split_on_sentences_and_keep_every_word():
    prompt = render_prompt(brief())
    chunks = prompt_chunks(prompt, max_words=30)
    assert len(chunks) >= 3
    assert " ".join(chunks).split() == prompt.split()
    assert all(len(c.split()) <= 30 for c in chunks)


def test_negative_prompt_keeps_minors_and_bad_hands_out():
    negative = render_negative_prompt(brief())
    for word in ("child", "teenager", "extra fingers", "fused fingers", "two people", "watermark"):
        assert word in negative


def test_instruction_carries_schema_catalog_and_coordinates():
    text = render_vlm_instruction({"title": "Rails tote", "notes": "cotton"}, (812, 1008), "pixels", seed=7)
    assert "title: Rails tote" in text and "notes: cotton" in text and "brand: -" in text
    assert "pixels of this 812x1008 image" in text
    for value in ("laptop_bag", "twin_loops", "forearm_crook", "half_body", "60s"):
        assert value in text
    assert '"rationale": "A mid-size tote' in text  # the example
    rel = render_vlm_instruction({}, (812, 1008), "rel1000", seed=7)
    assert "relative coordinates from 0 to 1000" in rel
    hints = {
        render_vlm_instruction({}, (8, 8), seed=s).split("the model for this product is ")[1][:40]
        for s in range(12)
    }
    assert len(hints) >= 6  # the persona hint rotates with the seed
    assert "- shot: must be one of" in render_repair(["shot: must be one of ['close']"])


def test_prompt_version_names_the_template_contents():
    version = prompt_version()
    assert version.startswith(PROMPT_VERSION + "-") and len(version) > len(PROMPT_VERSION) + 6

"""The prompt templates: reference format, chunking, the VLM instruction and the version key."""

from __future__ import annotations

import copy
import json

from autoshoot.brief import Brief, apply_overrides
from autoshoot.brief.prompt import (
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


# --- where the templates are found ---------------------------------------------------------


def test_the_templates_live_in_the_top_level_prompts_folder():
    from pathlib import Path

    from autoshoot.brief.prompt import TEMPLATES, prompts_dir, shipped_prompts_dir

    root = Path(__file__).resolve().parent.parent
    assert shipped_prompts_dir() == root / "prompts" == prompts_dir()
    assert all((root / "prompts" / name).is_file() for name in TEMPLATES)


def copy_templates(folder):
    import shutil

    from autoshoot.brief.prompt import TEMPLATES, shipped_prompts_dir

    folder.mkdir()
    for name in TEMPLATES:
        shutil.copy(shipped_prompts_dir() / name, folder / name)
    return folder


def test_a_users_own_prompts_folder(tmp_path, monkeypatch):
    from autoshoot.brief.prompt import PROMPTS_ENV, use_prompts_dir

    # empty = the shipped templates; recorded first, so teardown restores the variable as it
    # was (a delenv of an absent variable records nothing, and a later one would restore ours)
    monkeypatch.setenv(PROMPTS_ENV, "")
    shipped_version, shipped_negative = prompt_version(), render_negative_prompt()
    mine = copy_templates(tmp_path / "mine")
    (mine / "negative_prompt.j2").write_text("blurry, a second bag\n")
    use_prompts_dir(mine)
    assert render_negative_prompt() == "blurry, a second bag"
    assert prompt_version() != shipped_version  # the briefs' cache key follows the templates
    monkeypatch.delenv(PROMPTS_ENV)
    assert render_negative_prompt() == shipped_negative and prompt_version() == shipped_version


def test_a_prompts_folder_missing_a_template_is_refused(tmp_path, monkeypatch):
    import pytest

    from autoshoot.brief.prompt import PROMPTS_ENV, use_prompts_dir
    from autoshoot.errors import ConfigError

    # empty = the shipped templates; recorded first, so teardown restores the variable as it
    # was (a delenv of an absent variable records nothing, and a later one would restore ours)
    monkeypatch.setenv(PROMPTS_ENV, "")
    mine = copy_templates(tmp_path / "mine")
    (mine / "vlm_repair.j2").unlink()
    with pytest.raises(ConfigError, match="vlm_repair.j2 missing there.*fix: copy the shipped ones"):
        use_prompts_dir(mine)
    import os

    assert os.environ[PROMPTS_ENV] == ""  # unchanged: the refused folder is not used


def test_prompts_option_on_the_command_line(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image

    from autoshoot.brief.prompt import PROMPTS_ENV
    from autoshoot.cli import main

    # empty = the shipped templates; recorded first, so teardown restores the variable as it
    # was (a delenv of an absent variable records nothing, and a later one would restore ours)
    monkeypatch.setenv(PROMPTS_ENV, "")
    mine = copy_templates(tmp_path / "mine")
    (mine / "negative_prompt.j2").write_text("studio negative\n")
    image = tmp_path / "red.png"
    Image.new("RGB", (300, 300), (200, 30, 30)).save(image)
    res = CliRunner().invoke(
        main, ["analyze", str(image), "--profile", "tiny", "--json", "--prompts", str(mine)]
    )
    monkeypatch.delenv(PROMPTS_ENV, raising=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["negative_prompt"] == "studio negative"
    (mine / "render_prompt.j2").unlink()
    res = CliRunner().invoke(main, ["analyze", str(image), "--profile", "tiny", "--prompts", str(mine)])
    monkeypatch.delenv(PROMPTS_ENV, raising=False)
    assert res.exit_code != 0 and "render_prompt.j2 missing there" in str(res.exception)


def test_a_non_editable_install_finds_the_templates(tmp_path):
    """Build the wheel (no network: the installed setuptools, no build isolation), install it
    into a bare folder, and render from there with the source tree off the path."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment (needed to build the wheel offline)")
    root = Path(__file__).resolve().parent.parent
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(root)],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("autoshoot-*.whl")
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stderr
    code = (
        "import autoshoot.brief.prompt as p; "
        "print(p.__file__); print(p.prompts_dir()); print(p.render_negative_prompt()[:40])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOSHOOT_PROMPTS")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    module, folder, negative = run.stdout.splitlines()
    assert module.startswith(str(site)) and folder == str(site / "autoshoot" / "prompts")
    assert negative  # rendered from the wheel's copy

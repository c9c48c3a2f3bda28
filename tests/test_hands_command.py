"""`autoshoot hands`: detected and corrected landmarks, anatomy before and after, guidance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from autoshoot.cli import main

pytest.importorskip("mediapipe")


@pytest.mark.samples
def test_json_contract_and_guidance_pictures(samples_dir, tmp_path):
    image = samples_dir / "C_hand_real_grip_01.png"
    out = tmp_path / "guidance"
    result = CliRunner().invoke(main, ["hands", str(image), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["file"] for d in data] == [str(image)]
    hand = data[0]["hands"][0]
    assert hand["source"] == "detected" and hand["handedness"] in ("Left", "Right")
    assert np.asarray(hand["landmarks"]).shape == (21, 3)
    assert np.asarray(hand["corrected"]).shape == (21, 3)
    assert hand["reasons_before"] == [] and hand["reasons_after"] == []
    assert 0.0 < hand["moved"] < 0.08
    for name in ("crop", "depth", "scribble", "mask"):
        picture = np.asarray(Image.open(out / hand["guidance"][name]))
        assert picture.shape[:2] == (1024, 1024) and picture.max() > 0, name


def test_no_hand_at_the_grip_gives_the_canonical_gripping_hand(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((400, 400, 3), 230, np.uint8)).save(blank)
    result = CliRunner().invoke(main, ["hands", str(blank), "--json", "--grip", "200,220"])
    assert result.exit_code == 0, result.output
    (hand,) = json.loads(result.output)[0]["hands"]
    assert hand["source"] == "canonical grip" and hand["landmarks"] is None
    assert hand["reasons_before"] == ["no hand found near the grip"] and hand["reasons_after"] == []
    corrected = np.asarray(hand["corrected"])
    assert np.linalg.norm(corrected[:, :2].mean(axis=0) - (200, 220)) < 60


def test_unreadable_image_exits_1_and_names_the_file(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    result = CliRunner().invoke(main, ["hands", str(bad)])
    assert result.exit_code == 1
    assert f"cannot read {str(bad)!r}" in result.output

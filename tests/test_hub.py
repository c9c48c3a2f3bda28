"""One reading of "offline" for every model loader: --offline, or HF_HUB_OFFLINE as huggingface_hub reads it."""

from __future__ import annotations

import pytest

from autoshoot.config import load_config
from autoshoot.hub import is_offline


@pytest.mark.parametrize(
    ("value", "offline"),
    [("1", True), ("ON", True), ("yes", True), ("true", True), ("0", False), ("", False), ("false", False)],
)
def test_hf_hub_offline_values(monkeypatch, value, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert is_offline(load_config("tiny")) is offline
    assert is_offline() is offline  # no config: the environment alone


def test_offline_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert is_offline(load_config("tiny", overrides={"run.offline": True}))


def test_one_wording_for_every_missing_model(monkeypatch):
    """Every hub model's fix reads the same, names its size and HF_HOME, and mentions --offline
    only when --offline is what stopped the download."""
    from autoshoot.commands.models import model_entries_with_fixes
    from autoshoot.hub import download_hint

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", "/data/hf")
    online = load_config("default")
    entries = model_entries_with_fixes(online)
    fixes = [fix for entry, fix in entries if entry.kind != "rembg"]
    assert len(fixes) == 5  # SDXL base, ControlNet, VAE, upscaler, bag detector (hub models)
    # the photo segmenter is rembg's file, which rembg downloads itself into ~/.u2net
    (rembg_fix,) = [fix for entry, fix in entries if entry.kind == "rembg"]
    assert rembg_fix.startswith("run once online (rembg downloads it into ")
    for fix in fixes:
        assert fix.startswith("run `autoshoot models download` (about ")
        assert "copy the Hugging Face cache of a machine that ran it into HF_HOME (/data/hf)" in fix
        assert "offline" not in fix.lower() and "huggingface-cli" not in fix
    offline = load_config("default", overrides={"run.offline": True})
    assert download_hint("google/owlv2-base-patch16-ensemble", offline).endswith(
        ", or run without --offline to let it download"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_hint("x/y", online).endswith(", or unset HF_HUB_OFFLINE to let it download")
    assert download_hint("./models/x") == "put the model at ./models/x, or fix the path in your profile"

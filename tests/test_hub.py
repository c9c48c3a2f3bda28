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

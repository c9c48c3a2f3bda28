"""`autoshoot models` and the stages' model checks: nothing is fetched (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from autoshoot.cli import main
from autoshoot.config import load_config
from autoshoot.errors import ModelMissingError
from autoshoot.stages.refine import RefineStage
from autoshoot.stages.render import RenderStage


def test_default_profile_offline_names_every_missing_model_and_the_fix():
    config = load_config("default", overrides={"run.offline": True})
    missing = RenderStage().check_models(config)

    roles = [m[0] for m in missing]
    assert roles == [
        "SDXL base",
        "ControlNet union (promax)",
        "VAE override",
        "upscaler (ESRGAN family, through spandrel)",
    ]
    sources = [m[1] for m in missing]
    assert sources[0].startswith("SG161222/RealVisXL_V5.0 (not in the cache")  # the photoreal default
    assert "diffusion_pytorch_model_promax.safetensors" in sources[1]
    assert sources[3].startswith("ai-forever/Real-ESRGAN (not in the cache: RealESRGAN_x2.pth")
    assert all("autoshoot models download" in m[2] for m in missing)
    text = str(ModelMissingError(missing))
    assert "nothing was run" in text and "madebyollin/sdxl-vae-fp16-fix" in text
    assert RefineStage().check_models(config) == missing


def test_plain_sdxl_base_is_one_setting_away():
    config = load_config("default", overrides={"run.offline": True, "render.model_set": "sdxl-base"})
    missing = RenderStage().check_models(config)
    assert missing[0][1].startswith("stabilityai/stable-diffusion-xl-base-1.0 (not in the cache")
    config = load_config("default", overrides={"run.offline": True, "render.model_set": "juggernaut"})
    assert RenderStage().check_models(config)[0][1].startswith("RunDiffusion/Juggernaut-XL-v9")


def test_tiny_profile_needs_nothing():
    config = load_config("tiny")
    assert RenderStage().check_models(config) == []
    assert [s.source for s in RenderStage().models(config)] == ["tiny"]


def test_local_paths_are_checked_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # fetching allowed: only local files are checked
    lora = tmp_path / "hands.safetensors"
    config = load_config(
        "default",
        overrides={
            "render.model_sets": {
                "default": {
                    "base": str(tmp_path / "juggernaut.safetensors"),
                    "loras": [{"path": str(lora), "weight": 0.5}],
                }
            },
            "run.offline": False,
        },
    )
    missing = RenderStage().check_models(config)
    # hub models may be fetched on first use (online); the local files must exist
    assert [m[0] for m in missing] == ["SDXL base (single file)", "LoRA 1 (weight 0.5)"]
    assert str(lora) in missing[1][1] and "change the path" in missing[1][2]


def test_models_check_cli_exit_codes(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["models", "check"])
    assert res.exit_code == 1
    assert "MISSING SDXL base: SG161222/RealVisXL_V5.0" in res.output
    assert "fix: `autoshoot models download` fetches it" in res.output

    res = runner.invoke(main, ["models", "check", "--profile", "tiny"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ok ")


def test_models_check_loads_local_configs_without_weights(tmp_path):
    from autoshoot.backends.sdxl import tiny_model_set_on_disk

    ms = tiny_model_set_on_disk()
    profile = tmp_path / "local.yaml"
    profile.write_text(
        "base: default\nanalyze:\n  vlm: rules\nrender:\n  model_sets:\n    default:\n"
        f"      base: {ms.base}\n      variant: ''\n      controlnet: {ms.controlnet}\n"
        "      controlnet_weights: ''\n      controlnet_config: ''\n      vae: ''\n"
        "  upscaler: lanczos\n"
        "score:\n  bag_detector: none\n"  # the bag detector's folder is checked in test_bag_detector.py
    )
    res = CliRunner().invoke(main, ["models", "check", "--profile", str(profile)])
    assert res.exit_code == 0, res.output
    assert "ok      SDXL base" in res.output and "ok      ControlNet union" in res.output


@pytest.mark.parametrize("cmd", ["list", "download"])
def test_models_list_and_download_offline(cmd):
    res = CliRunner().invoke(main, ["models", cmd, "--profile", "tiny"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["models", cmd])
    if cmd == "list":
        assert "not downloaded" in res.output and "fix:" in res.output
        assert res.output.startswith("VLM (brief)") and "Qwen/Qwen2.5-VL-7B-Instruct" in res.output
    else:  # offline: nothing fetched, the error lists what is missing
        assert isinstance(res.exception, ModelMissingError)

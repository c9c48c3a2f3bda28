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
    assert str(lora) in missing[1][1] and "fix the path in your profile" in missing[1][2]


def test_models_check_cli_exit_codes(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["models", "check"])
    assert res.exit_code == 1
    assert "MISSING SDXL base: SG161222/RealVisXL_V5.0" in res.output
    assert "fix: run `autoshoot models download` (about 7 GB; it needs network)" in res.output
    assert "MISSING rembg segmenter birefnet-general, for photos whose border is not uniform: " in res.output

    res = runner.invoke(main, ["models", "check", "--profile", "tiny"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ok ")


def test_models_check_loads_local_configs_without_weights(tmp_path):
    from autoshoot.backends.sdxl_tiny import tiny_model_set_on_disk

    ms = tiny_model_set_on_disk()
    profile = tmp_path / "local.yaml"
    profile.write_text(
        "base: default\nanalyze:\n  vlm: rules\nrender:\n  model_sets:\n    default:\n"
        f"      base: {ms.base}\n      variant: ''\n      controlnet: {ms.controlnet}\n"
        "      controlnet_weights: ''\n      controlnet_config: ''\n      vae: ''\n"
        "  upscaler: lanczos\n"
        "score:\n  bag_detector: none\n"  # the bag detector's folder is checked in test_bag_detector.py
        "prepare:\n  segmenter: plain\n"
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
        assert "rembg segmenter birefnet-general" in res.output and "birefnet-general.onnx" in res.output
    else:  # offline: nothing fetched, one line per model, then the fix
        assert res.exit_code == 1 and res.exception is None or isinstance(res.exception, SystemExit)
        lines = res.output.splitlines()
        assert lines[:6] == [
            "FAILED  VLM (brief): Qwen/Qwen2.5-VL-7B-Instruct (about 16.6 GB): not in the cache, and downloads are off",
            "FAILED  SDXL base: SG161222/RealVisXL_V5.0 (about 7 GB): not in the cache, and downloads are off",
            "FAILED  ControlNet union (promax): xinsir/controlnet-union-sdxl-1.0 (about 2.5 GB): not in the cache, and downloads are off",
            "FAILED  VAE override: madebyollin/sdxl-vae-fp16-fix (about 0.3 GB): not in the cache, and downloads are off",
            "FAILED  upscaler (ESRGAN family, through spandrel): ai-forever/Real-ESRGAN (about 0.07 GB): "
            "not in the cache, and downloads are off",
            "FAILED  bag detector (scene: no second bag): google/owlv2-base-patch16-ensemble (about 0.6 GB): "
            "not in the cache, and downloads are off",
        ]
        assert lines[6].startswith(
            "FAILED  rembg segmenter birefnet-general, for photos whose border is not uniform: "
        )
        assert lines[6].endswith("birefnet-general.onnx: not downloaded, and downloads are off")
        assert lines[7].startswith(
            "7 models not downloaded; fix: unset HF_HUB_OFFLINE and run this again, or copy "
        )
        assert "Traceback" not in res.output


def test_models_download_that_cannot_reach_the_hub_says_so_per_model(monkeypatch):
    """Fetching allowed, but the hub cannot be reached (huggingface_hub was imported offline, so
    it refuses at once, as it does without a network): a line per model, no traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # prepare.segmenter=plain: rembg's own download would reach the network (hub models are
    # refused at once, since huggingface_hub was imported offline)
    res = CliRunner().invoke(
        main, ["models", "download", "--set", "analyze.vlm=rules", "--set", "prepare.segmenter=plain"]
    )
    assert res.exit_code == 1, res.output
    failed = [line for line in res.output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 5, res.output
    assert all(": not fetched: " in line for line in failed)
    assert "Traceback" not in res.output and "Error:" not in res.output
    assert "5 models not downloaded; fix: check the network and run this again" in res.output


def test_fetch_problems_are_said_in_words():
    import socket

    from huggingface_hub.errors import LocalEntryNotFoundError

    from autoshoot.hub import fetch_problem

    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except OSError as err:
            raise LocalEntryNotFoundError("An error happened while trying to locate the files") from err
    except LocalEntryNotFoundError as err:
        assert fetch_problem(err) == "the Hugging Face hub cannot be reached (no network?)"
    assert fetch_problem(OSError(28, "No space left on device")) == "the disk is full"
    assert fetch_problem(ValueError("something else\nmore")) == "something else"

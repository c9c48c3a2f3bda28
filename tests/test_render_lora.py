"""LoRAs are applied: tiny LoRAs built in code, saved as diffusers (with adapter metadata) and
kohya (with alpha) safetensors, loaded through load_lora_weights and fused at their weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from render_fixtures import tiny_config

from autoshoot.backends.sdxl import SDXLRenderer, load_components
from autoshoot.backends.sdxl_tiny import tiny_model_set_on_disk
from autoshoot.config.render import LoraSpec

TARGET = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
RANK, ALPHA = 4, 8


def make_lora_state(unet) -> dict[str, torch.Tensor]:
    """Random LoRA A/B for the attention projections of ``unet`` (diffusers/peft key names)."""
    gen = torch.Generator().manual_seed(3)
    state = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn1.to_q", "attn1.to_k", "attn2.to_v", "attn1.to_out.0")):
            out_f, in_f = module.weight.shape
            state[f"{name}.lora_A.weight"] = torch.randn(RANK, in_f, generator=gen) * 0.5
            state[f"{name}.lora_B.weight"] = torch.randn(out_f, RANK, generator=gen) * 0.5
    return state


def save_diffusers_lora(path, state):
    from diffusers import StableDiffusionXLPipeline

    meta = {
        "r": RANK,
        "lora_alpha": ALPHA,
        "target_modules": sorted({k.rsplit(".lora_", 1)[0] for k in state}),
    }
    StableDiffusionXLPipeline.save_lora_weights(
        str(path.parent), unet_lora_layers=state, unet_lora_adapter_metadata=meta, weight_name=path.name
    )


def save_kohya_lora(path, state):
    from safetensors.torch import save_file

    out = {}
    for key, value in state.items():
        module, kind = key.rsplit(".lora_", 1)
        base = "lora_unet_" + module.replace(".", "_")
        out[f"{base}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = value.contiguous()
        out[f"{base}.alpha"] = torch.tensor(float(ALPHA))
    save_file(out, str(path))


@pytest.fixture(scope="module")
def base_and_state(tmp_path_factory):
    ms = tiny_model_set_on_disk()
    base = load_components(ms, torch.float32, offline=True)
    return ms, base, make_lora_state(base.unet)


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_lora_is_fused_at_its_weight_with_its_alpha(tmp_path, base_and_state, fmt):
    ms, base, state = base_and_state
    path = tmp_path / f"hands_{fmt}.safetensors"
    (save_diffusers_lora if fmt == "diffusers" else save_kohya_lora)(path, state)

    loaded = load_components(
        dataclasses.replace(ms, loras=(LoraSpec(str(path), 0.75),)), torch.float32, offline=True
    )

    w0 = dict(base.unet.named_parameters())[f"{TARGET}.weight"]
    w1 = dict(loaded.unet.named_parameters())[f"{TARGET}.weight"]
    expected = 0.75 * (ALPHA / RANK) * state[f"{TARGET}.lora_B.weight"] @ state[f"{TARGET}.lora_A.weight"]
    torch.testing.assert_close(w1 - w0, expected, rtol=1e-4, atol=1e-5)
    assert not any(".lora_" in n for n, _ in loaded.unet.named_parameters())  # fused, adapters dropped


def test_two_loras_change_the_picture(tmp_path, base_and_state):
    ms, base, state = base_and_state
    a, b = tmp_path / "people.safetensors", tmp_path / "hands.safetensors"
    save_diffusers_lora(a, state)
    save_kohya_lora(b, {k: v.flip(0) if "lora_B" in k else v for k, v in state.items()})
    with_loras = load_components(
        dataclasses.replace(ms, loras=(LoraSpec(str(a), 0.75), LoraSpec(str(b), 0.5))),
        torch.float32,
        offline=True,
    )
    config = tiny_config()
    h = w = 256
    img = np.full((h, w, 3), 255, np.uint8)
    mask = np.full((h, w), 255, np.uint8)
    from autoshoot.backends.sdxl import DenoiseRequest

    req = DenoiseRequest(
        images=[img], masks=[mask], controls=[[("canny", np.zeros((h, w), np.uint8))]], prompt="a woman",
        negative_prompt="", seeds=[9], steps=3, scales=[[0.9]] * 3, cfg=6.0,
    )  # fmt: skip
    plain = SDXLRenderer(config, components=load_components(ms, torch.float32, offline=True)).denoise(req)
    lora = SDXLRenderer(config, components=with_loras).denoise(req)
    assert np.abs(plain.images[0].astype(np.int16) - lora.images[0].astype(np.int16)).mean() > 1.0


def test_missing_lora_file_names_the_path(tmp_path, base_and_state):
    from autoshoot.errors import ModelMissingError

    ms, _, _ = base_and_state
    with pytest.raises(ModelMissingError, match="nope.safetensors"):
        load_components(
            dataclasses.replace(ms, loras=(LoraSpec(str(tmp_path / "nope.safetensors"), 0.5),)),
            torch.float32,
            True,
        )

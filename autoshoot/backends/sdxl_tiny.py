"""Tiny random SDXL components for tests, the demo and the install check.

Built in code with a fixed seed (no download), saved once to the user's cache folder in the
diffusers layout, and loaded back through the same ``from_pretrained`` path as a real model set
(``render.model_set = "tiny"``). The tokenizers are byte-level CLIP tokenizers made offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autoshoot.backends.sdxl import Components
from autoshoot.config.render import ModelSet

TINY_VERSION = "1"


def tiny_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autoshoot" / f"tiny-sdxl-v{TINY_VERSION}"


def tiny_model_set_on_disk(folder: Path | None = None) -> ModelSet:
    """Save the tiny components once (diffusers layout) and describe them as a local model set."""
    folder = folder or tiny_cache_dir()
    if not (folder / "model_index.json").is_file() or not (folder / "controlnet" / "config.json").is_file():
        save_tiny_components(folder)
    return ModelSet(
        base=str(folder),
        base_config="",
        variant="",
        controlnet=str(folder / "controlnet"),
        controlnet_weights="",
        vae="",
        loras=(),
    )


def save_tiny_components(folder: Path) -> None:
    import shutil
    import tempfile

    comps = build_tiny_components()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    save_components(comps, tmp)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def save_components(comps: Components, folder: Path) -> None:
    """Components as a diffusers SDXL pipeline folder, the ControlNet in ``folder/controlnet``:
    the layout the loaders read a local model set from."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        text_encoder_2=comps.text_encoder_2,
        tokenizer=comps.tokenizer,
        tokenizer_2=comps.tokenizer_2,
        unet=comps.unet,
        scheduler=comps.scheduler,
    )
    pipe.save_pretrained(folder)
    comps.controlnet.save_pretrained(Path(folder) / "controlnet")


def build_tiny_components(seed: int = 0) -> Components:
    """Random tiny SDXL: 2-level UNet (cross-attention 64), union ControlNet from it, 4-block VAE
    (×8 like SDXL's), two 32-wide CLIP text encoders and a byte-level tokenizer. Seconds on a CPU."""
    import torch
    from diffusers import AutoencoderKL, ControlNetUnionModel, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 × 8 time ids + 32 pooled text
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    torch.manual_seed(seed + 1)
    controlnet = ControlNetUnionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=8,
        conditioning_embedding_out_channels=(8, 8, 16, 16),
        num_control_type=8,
        num_trans_channel=32,
        num_trans_head=2,
        num_proj_channel=32,
    )
    # ControlNet outputs are zero-initialised; give them weights so control changes the image
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if p.abs().max() == 0 and (
                "controlnet_" in name or "spatial_ch_projs" in name or "conv_out" in name
            ):
                p.normal_(0.0, 0.05)
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    tokenizer, tokenizer_2 = build_byte_tokenizers()
    vocab_size = len(tokenizer)
    te_config = CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=vocab_size,
        hidden_act="gelu",
        projection_dim=32,
        max_position_embeddings=77,
    )
    torch.manual_seed(seed + 3)
    text_encoder = CLIPTextModel(te_config)
    torch.manual_seed(seed + 4)
    text_encoder_2 = CLIPTextModelWithProjection(te_config)
    return Components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=scheduler,
        controlnet=controlnet,
    )


def build_byte_tokenizers() -> tuple[Any, Any]:
    """Two offline byte-level CLIP tokenizers (no merges): 256 byte symbols, their word-end forms,
    BOS and EOS (ids 512, 513). The second pads with "!" like SDXL's tokenizer_2."""
    import json
    import tempfile

    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    names = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {s: i for i, s in enumerate(names)}
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path, merges_path = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_path.write_text(json.dumps(vocab))
        merges_path.write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77)
        tokenizer_2 = CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77, pad_token="!")
    return tokenizer, tokenizer_2


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte → printable-character table, as a list of 256 symbols."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]

"""Fallbacks: NaN/black fp16 VAE output is decoded again in fp32; out-of-memory halves the batch."""

from __future__ import annotations

import numpy as np
import torch
from render_fixtures import tiny_config

from autoshoot.backends.sdxl import DenoiseRequest, SDXLRenderer
from autoshoot.backends.sdxl_tiny import build_tiny_components


def test_fp16_vae_overflow_is_decoded_again_in_fp32():
    renderer = SDXLRenderer(tiny_config(), components=build_tiny_components())
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latents[1] *= 5e4  # overflows fp16 inside the decoder, fine in fp32
    renderer.c.vae.to(torch.float16)
    try:
        with torch.inference_mode():
            raw = renderer.c.vae.decode((latents / renderer.c.vae.config.scaling_factor).half()).sample
            assert not torch.isfinite(raw[1]).all()  # the failure this guards against
            images, notes = renderer.decode_latents(latents)
    finally:
        renderer.c.vae.to(torch.float32)
    assert notes == ["fp32 VAE retry for 1 image(s)"]
    assert all(im.dtype == np.uint8 and im.shape == (64, 64, 3) for im in images)
    assert renderer.c.vae.dtype == torch.float32


def test_out_of_memory_halves_the_batch(monkeypatch):
    renderer = SDXLRenderer(tiny_config(**{"render.batch_size": 4}), components=build_tiny_components())
    real = renderer.denoise_batch
    sizes = []

    def limited(req):  # a GPU that only fits two candidates at a time
        sizes.append(len(req.seeds))
        if len(req.seeds) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(req)

    monkeypatch.setattr(renderer, "denoise_batch", limited)
    h = w = 64
    img = np.full((h, w, 3), 255, np.uint8)
    req = DenoiseRequest(
        images=[img] * 4, masks=[np.full((h, w), 255, np.uint8)] * 4,
        controls=[[("canny", np.zeros((h, w), np.uint8))]] * 4, prompt="a bag", negative_prompt="",
        seeds=[1, 2, 3, 4], steps=2, scales=[[0.9]] * 2, cfg=6.0,
    )  # fmt: skip
    res = renderer.denoise(req)
    assert sizes == [4, 2, 2]
    assert len(res.images) == 4 and res.notes[0] == "out of memory: batch size lowered to 2"
    # the next call starts at the size that fitted: no second out-of-memory try
    again = renderer.denoise(req)
    assert sizes == [4, 2, 2, 2, 2] and again.notes == []

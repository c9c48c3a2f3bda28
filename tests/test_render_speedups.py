"""The renderer's exact speed-ups (tiny components, CPU): fused attention projections, scales as
tensors (no torch.compile recompile per value), contiguous latents, the prompt-encoding cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from render_fixtures import shared_tiny_renderer

from autoshoot.backends.sdxl import (
    ControlScaleHook,
    DenoiseRequest,
    build_tiny_components,
    fuse_attention_projections,
)


def unet_inputs():
    g = torch.Generator().manual_seed(0)
    return dict(
        sample=torch.randn(2, 4, 32, 32, generator=g),
        timestep=torch.tensor(500),
        encoder_hidden_states=torch.randn(2, 77, 64, generator=g),
        added_cond_kwargs={
            "text_embeds": torch.randn(2, 32, generator=g),
            "time_ids": torch.randn(2, 6, generator=g),
        },
    )


def test_fused_projections_give_the_same_unet_output():
    c = build_tiny_components()
    args = unet_inputs()
    with torch.no_grad():
        before = c.unet(**args).sample
        n = fuse_attention_projections(c.unet)
        after = c.unet(**args).sample
    assert n == 8  # self- and cross-attention of the tiny UNet's four transformer blocks
    assert (
        type(next(m for m in c.unet.modules() if hasattr(m, "to_qkv")).processor).__name__
        == "FusedAttnProcessor2_0"
    )
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert fuse_attention_projections(c.unet) == 0  # already fused: left alone
    assert fuse_attention_projections(c.controlnet) > 0


def test_scale_hook_passes_one_cached_tensor_per_value():
    hook = ControlScaleHook(torch.device("cpu"))
    hook.schedule = [[0.4], [0.4], [0.9]]
    got = []
    for step in range(3):
        hook.step = step
        _, kwargs = hook(None, (), {})
        got.append(kwargs["conditioning_scale"])
    assert all(isinstance(v, list) and torch.is_tensor(v[0]) and v[0].ndim == 0 for v in got)
    assert [float(v[0]) for v in got] == pytest.approx([0.4, 0.4, 0.9])
    assert got[0][0] is got[1][0]  # same value, same tensor: no host → device copy per step
    assert hook.seen == [[0.4], [0.4], [0.9]]
    # separate ControlNets get a single value, their own
    hook.schedule, hook.step, hook.index = [[1.0, 0.8]], 0, 1
    _, kwargs = hook(None, (), {})
    assert torch.is_tensor(kwargs["conditioning_scale"]) and float(
        kwargs["conditioning_scale"]
    ) == pytest.approx(0.8)


def test_batch_latents_are_contiguous():
    r = shared_tiny_renderer()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    lat = r.encode_images(images)
    assert lat.shape == (2, 4, 8, 8)
    assert lat.is_contiguous()  # an NHWC-strided batch would recompile every compiled model


def test_prompt_encoding_is_cached_per_prompt_pair():
    r = shared_tiny_renderer()
    r.prompt_cache.clear()
    calls = []
    handle = r.c.text_encoder_2.register_forward_hook(lambda *a: calls.append(1))
    try:
        e1, p1 = r.encode_prompt("a woman holding a bag", "blurry", 2)
        n_first = len(calls)
        e2, p2 = r.encode_prompt("a woman holding a bag", "blurry", 3)
        assert len(calls) == n_first  # the text encoders did not run again
        r.encode_prompt("another prompt", "blurry", 1)
        assert len(calls) > n_first
    finally:
        handle.remove()
    assert e1.shape[0] == 4 and e2.shape[0] == 6 and p2.shape[0] == 6
    torch.testing.assert_close(e2[:2], e1[:2])  # negative half first
    torch.testing.assert_close(e2[3:5], e1[2:4])


def test_low_vram_mode_batches_by_its_own_size():
    r = shared_tiny_renderer()
    old_config, old_low = r.config, r.low_vram
    sizes = []
    real = r.denoise_batch
    rc = dataclasses.replace(old_config.render, batch_size=4, low_vram_batch_size=2)
    r.config = dataclasses.replace(old_config, render=rc)
    r.denoise_batch = lambda req: (sizes.append(len(req.seeds)), real(req))[1]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    req = DenoiseRequest(
        images=[image] * 3,
        masks=[np.full((64, 64), 255, np.uint8)] * 3,
        controls=[[("canny", image)]] * 3,
        prompt="a bag",
        negative_prompt="",
        seeds=[1, 2, 3],
        steps=2,
        scales=[[0.5], [0.5]],
        cfg=2.0,
    )
    try:
        r.low_vram = True  # as with render.vram <= 8 on a GPU
        res = r.denoise(req)
        r.low_vram = False
        r.denoise(req)
    finally:
        r.config, r.low_vram = old_config, old_low
        del r.denoise_batch
    assert sizes == [2, 1, 3]  # low-VRAM: batches of low_vram_batch_size; else batch_size
    assert len(res.images) == 3 and res.images[0].shape == (64, 64, 3)

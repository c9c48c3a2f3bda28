"""The renderer's exact speed-ups (tiny components, CPU): fused attention projections, scales as
tensors (no torch.compile recompile per value), contiguous latents, the prompt-encoding cache."""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import pytest
import torch
from render_fixtures import shared_tiny_renderer

from autoshoot.backends.sdxl import ControlScaleHook, DenoiseRequest, pad_chunks, tokenize_chunks
from autoshoot.backends.sdxl_speed import fuse_attention_projections
from autoshoot.backends.sdxl_tiny import build_tiny_components


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


def one_image_request(seeds: list[int], steps: int, modes=("canny",), negative: str = "", seed: int = 0):
    """A request in stage 1's shape: one random 64² image as every candidate's canvas and as
    each of its control images, fully masked, CFG on."""
    image = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    n = len(seeds)
    return DenoiseRequest(
        images=[image] * n,
        masks=[np.full((64, 64), 255, np.uint8)] * n,
        controls=[[(mode, image) for mode in modes]] * n,
        prompt="a bag",
        negative_prompt=negative,
        seeds=list(seeds),
        steps=steps,
        scales=[[0.5] * len(modes)] * steps,
        cfg=2.0,
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
    req = one_image_request([1, 2, 3], steps=2)
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


def test_controlnet_takes_its_conditioning_features_computed_once():
    """The union ControlNet fed precomputed conditioning features (what the renderer does: the
    embedding once per batch, the nets an identity in its place) gives the stock call's output."""
    c = build_tiny_components()
    g = torch.Generator().manual_seed(1)
    args = unet_inputs()
    image = torch.rand(2, 3, 256, 256, generator=g)
    ctype = torch.zeros(2, 8)
    ctype[:, 3] = 1
    common = dict(
        control_type=ctype,
        control_type_idx=[3],
        conditioning_scale=[0.9],
        return_dict=False,
        encoder_hidden_states=args["encoder_hidden_states"],
        added_cond_kwargs=args["added_cond_kwargs"],
    )
    with torch.no_grad():
        down_ref, mid_ref = c.controlnet(args["sample"], args["timestep"], controlnet_cond=[image], **common)
        embedder = c.controlnet.controlnet_cond_embedding
        features = embedder(image)
        c.controlnet.controlnet_cond_embedding = torch.nn.Identity()
        down, mid = c.controlnet(args["sample"], args["timestep"], controlnet_cond=[features], **common)
    torch.testing.assert_close(mid, mid_ref)
    for a, b in zip(down, down_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_renderer_runs_each_conditioning_embedding_once_per_batch():
    r = shared_tiny_renderer()
    embedder = r.cond_embedders["union"]
    assert isinstance(r.c.controlnet.controlnet_cond_embedding, torch.nn.Identity)
    calls = []
    handle = embedder.register_forward_hook(lambda m, a, out: calls.append(tuple(a[0].shape)))
    req = one_image_request([1, 2], steps=3, modes=("canny", "depth"))
    image = req.images[0]
    try:
        res = r.denoise(req)
    finally:
        handle.remove()
    assert len(res.scales_seen) == 3  # the ControlNet ran at every step...
    # ...its embedding once per control; one image for every candidate (stage 1) is embedded once
    assert calls == [(1, 3, 64, 64)] * 2
    calls.clear()
    other = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    handle = embedder.register_forward_hook(lambda m, a, out: calls.append(tuple(a[0].shape)))
    try:
        r.denoise(
            dataclasses.replace(req, controls=[[("canny", image)], [("canny", other)]], scales=[[0.5]] * 3)
        )
    finally:
        handle.remove()
    assert calls == [(2, 3, 64, 64)]  # different images per candidate (stage 2): embedded together


def test_fp8_linear_uses_row_wise_scales():
    """fp8 Linears (run on the CPU here; tensor cores on Ada/Hopper): close to the fp16/32 layer,
    any number of rows, and one scale per row keeps a row with an outlier from flattening the others."""
    from autoshoot.backends.fp8 import use_fp8_linears

    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.add_module("attentions", torch.nn.Module())
    holder.attentions.add_module("ff", torch.nn.Linear(128, 256))
    holder.add_module("time_embedding", torch.nn.Linear(128, 256))
    x = torch.randn(3, 37, 128)  # 111 rows: not a multiple of 16
    x[0, 0] *= 1e5  # one outlier token
    with torch.no_grad():
        ref = holder.attentions.ff(x)
        assert use_fp8_linears(holder) == 1  # only the attention blocks' Linears
        got = holder.attentions.ff(x)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert type(holder.time_embedding) is torch.nn.Linear
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    # e4m3 keeps 3 mantissa bits: a few % per matmul; per-tensor scaling would zero most rows here
    assert rel(got[1:], ref[1:]) < 0.06
    assert rel(got[0, 1:], ref[0, 1:]) < 0.06


def test_compile_blocks_compiles_each_block_kind_once_per_module():
    """Regional compilation wires torch.compile onto every transformer, resnet and resampler of
    the UNet and the ControlNet, and leaves the networks' own forwards eager. (Compiling runs
    lazily at the first call; bench/render_gpu.py times it on a GPU.)"""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    from autoshoot.backends.sdxl_speed import compile_blocks

    c = build_tiny_components()
    kinds = (Transformer2DModel, ResnetBlock2D, Downsample2D, Upsample2D)
    blocks = [m for net in (c.unet, c.controlnet) for m in net.modules() if isinstance(m, kinds)]
    assert compile_blocks([c.unet, c.controlnet], None) == len(blocks) > 10
    assert all(m._compiled_call_impl is not None for m in blocks)
    assert c.unet._compiled_call_impl is None and c.controlnet._compiled_call_impl is None
    assert torch._dynamo.config.cache_size_limit >= 64  # a graph per block shape fits


def test_fp8_geglu_feed_forward_stays_close_to_diffusers_feed_forward():
    """SDXL's feed-forward (GEGLU, then a Linear) becomes one fp8 module: projection, then
    GEGLU with the bias and the row-wise quantisation in one pass, then the output matmul."""
    from diffusers.models.attention import FeedForward

    from autoshoot.backends.fp8 import FP8GegluFeedForward, FP8Linear, use_fp8_linears

    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.add_module("attentions", torch.nn.Module())
    holder.attentions.add_module("ff", FeedForward(64, mult=4, activation_fn="geglu"))
    holder.attentions.add_module("gelu_ff", FeedForward(64, mult=4, activation_fn="gelu"))
    x = torch.randn(2, 45, 64)  # 90 rows: not a multiple of 16
    one_by_one = copy.deepcopy(holder.attentions.ff)
    one_by_one.net[0].proj = FP8Linear(one_by_one.net[0].proj)
    one_by_one.net[2] = FP8Linear(one_by_one.net[2])
    with torch.no_grad():
        ref = holder.attentions.ff(x)
        ref_gelu = holder.attentions.gelu_ff(x)
        linear_by_linear = one_by_one(x)
        # the GEGLU feed-forward's two Linears, and the plain-GELU one's two, one by one
        assert use_fp8_linears(holder) == 4
        got = holder.attentions.ff(x)
        got_gelu = holder.attentions.gelu_ff(x)
    assert type(holder.attentions.ff) is FP8GegluFeedForward
    assert type(holder.attentions.gelu_ff) is FeedForward  # another activation: Linears swapped alone
    assert got.shape == ref.shape and got.dtype == ref.dtype
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    # two fp8 matmuls in a row: a few % (e4m3 keeps 3 mantissa bits), and no worse than the
    # same two Linears swapped one by one
    assert rel(got, ref) < 0.08 and rel(got_gelu, ref_gelu) < 0.08
    assert rel(got, ref) <= 1.05 * rel(linear_by_linear, ref)


@pytest.mark.parametrize("width", [160, 128])  # two pieces (128 + 32 lanes), one piece
def test_geglu_fp8_triton_kernel_matches_the_reference_in_tritons_interpreter(width):
    """The Triton kernel behind ``geglu_fp8`` on CUDA, run here by Triton's CPU interpreter as
    the op launches it, for a width that is not a power of two and one that is: the same
    scales, and the same values before the fp8 cast. (The interpreter's own fp8 cast rounds
    toward zero, unlike the GPU's round-to-nearest, so here the kernel writes float32;
    tests/test_render_cuda.py checks the cast, and the op under torch.compile, on a GPU.)"""
    import subprocess
    import sys

    pytest.importorskip("triton")
    code = f"""
import torch
from autoshoot.backends.fp8 import FP8_MAX, _geglu_fp8_kernel, geglu_block_sizes, geglu_fp8_reference
torch.manual_seed(0)
h = (torch.randn(40, 2 * {width}) * 3).half()
bias = torch.randn(2 * {width})
q = torch.full((40, {width}), float("nan"))
scale = torch.full((40, 1), float("nan"))
block, block_b = geglu_block_sizes({width})
_geglu_fp8_kernel[(40,)](h, bias, q, scale, {width}, BLOCK=block, BLOCK_B=block_b)
hidden, gate = (h.float() + bias).chunk(2, dim=-1)
y = hidden * torch.nn.functional.gelu(gate)
_, ref_scale = geglu_fp8_reference(h, bias)
torch.testing.assert_close(scale, ref_scale, rtol=1e-5, atol=0)
torch.testing.assert_close(q, (y / ref_scale).clamp(-FP8_MAX, FP8_MAX), rtol=1e-4, atol=1e-3)
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_geglu_block_sizes_cover_each_row_once():
    from autoshoot.backends.fp8 import geglu_block_sizes

    assert geglu_block_sizes(5120) == (4096, 1024) and geglu_block_sizes(2560) == (2048, 512)
    assert geglu_block_sizes(4096) == (4096, 0) and geglu_block_sizes(160) == (128, 32)
    for n in range(1, 300):
        first, rest = geglu_block_sizes(n)
        assert first <= n <= first + rest and (rest == 0 or rest < 2 * (n - first))


def test_geglu_op_runs_the_reference_off_cuda_eager_and_compiled():
    """``geglu_fp8`` is a triton_op: off CUDA its body is the torch reference, and
    torch.compile traces into it (no opaque call left in the graph)."""
    from autoshoot.backends.fp8 import geglu_fp8, geglu_fp8_reference

    torch.manual_seed(0)
    h, bias = torch.randn(32, 2 * 48), torch.randn(2 * 48)
    ref_q, ref_scale = geglu_fp8_reference(h, bias)
    q, scale = geglu_fp8(h, bias)
    cq, cscale = torch.compile(geglu_fp8, dynamic=False, fullgraph=True)(h, bias)
    assert q.dtype == cq.dtype == torch.float8_e4m3fn and q.shape == cq.shape == (32, 48)
    torch.testing.assert_close(scale, ref_scale, rtol=0, atol=0)
    torch.testing.assert_close(q.float(), ref_q.float(), rtol=0, atol=0)
    # compiled: inductor's own erf may round a value across an e4m3 step (1/8 relative)
    torch.testing.assert_close(cscale, ref_scale)
    torch.testing.assert_close(cq.float(), ref_q.float(), rtol=0.125, atol=2.0**-9)


def test_shared_context_cross_attention_gives_the_same_outputs():
    """Prompt embeddings with one row per CFG half give the UNet's and the union ControlNet's
    outputs for the same prompts repeated per candidate (the renderer's order: q/k/v fused
    first, then the processors swapped)."""
    from autoshoot.backends.sdxl_speed import SharedContextAttnProcessor, share_cross_attention_context

    c = build_tiny_components()
    n = 3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2 * n, 4, 32, 32, generator=g)
    context = torch.randn(2, 77, 64, generator=g)
    repeated = torch.cat([context[:1].repeat(n, 1, 1), context[1:].repeat(n, 1, 1)])
    cond = dict(text_embeds=torch.randn(2 * n, 32, generator=g), time_ids=torch.randn(2 * n, 6, generator=g))
    t = torch.tensor(500)
    features = c.controlnet.controlnet_cond_embedding(torch.rand(1, 3, 256, 256, generator=g)).repeat(
        2 * n, 1, 1, 1
    )
    c.controlnet.controlnet_cond_embedding = torch.nn.Identity()
    cn_args = dict(controlnet_cond=[features], control_type=torch.ones(2 * n, 8), control_type_idx=[3])
    with torch.no_grad():
        ref_eps = c.unet(x, t, encoder_hidden_states=repeated, added_cond_kwargs=cond).sample
        ref_down, ref_mid = c.controlnet(
            x, t, encoder_hidden_states=repeated, added_cond_kwargs=cond, **cn_args, return_dict=False
        )
        for m in (c.unet, c.controlnet):
            fuse_attention_projections(m)
            assert share_cross_attention_context(m)
        eps = c.unet(x, t, encoder_hidden_states=context, added_cond_kwargs=cond).sample
        down, mid = c.controlnet(
            x, t, encoder_hidden_states=context, added_cond_kwargs=cond, **cn_args, return_dict=False
        )
        eps_full = c.unet(x, t, encoder_hidden_states=repeated, added_cond_kwargs=cond).sample
    cross = [m for m in c.unet.modules() if getattr(m, "is_cross_attention", False)]
    assert cross and all(type(m.processor) is SharedContextAttnProcessor for m in cross)
    assert all(hasattr(m, "to_kv") for m in cross)  # the fused k/v projection is the one used
    torch.testing.assert_close(eps, ref_eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_full, ref_eps, rtol=1e-5, atol=1e-5)  # one row per latent still works
    torch.testing.assert_close(mid, ref_mid, rtol=1e-5, atol=1e-5)
    for a, b in zip(down, ref_down, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shared_context_is_left_off_where_a_layer_has_its_own_processor():
    from diffusers.models.attention_processor import AttnProcessor

    from autoshoot.backends.sdxl_speed import share_cross_attention_context

    c = build_tiny_components()
    cross = [m for m in c.unet.modules() if getattr(m, "is_cross_attention", False)]
    cross[0].set_processor(AttnProcessor())  # e.g. an adapter's processor
    assert not share_cross_attention_context(c.unet)
    assert type(cross[1].processor).__name__ == "AttnProcessor2_0"  # the model is left as it was


def test_renderer_passes_one_prompt_row_per_cfg_half_and_renders_the_same():
    """The renderer's shared prompt context against the same request with the prompt repeated
    per candidate: the same pictures (CPU, fp32)."""
    r = shared_tiny_renderer()
    assert r.shared_context
    seen = []
    handle = r.c.unet.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["encoder_hidden_states"].shape[0]), with_kwargs=True
    )
    req = one_image_request([5, 6], steps=2, negative="blurry", seed=3)
    try:
        shared = r.denoise(req)
        r.shared_context = False
        repeated = r.denoise(req)
    finally:
        r.shared_context = True
        handle.remove()
    assert seen == [2, 2, 4, 4]  # 2 prompt rows for 4 latents at each step, then 4 for 4
    for a, b in zip(shared.images, repeated.images, strict=True):
        assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_prompt_and_negative_encode_in_one_call_per_text_encoder():
    r = shared_tiny_renderer()
    r.prompt_cache.clear()
    calls = []
    handle = r.c.text_encoder_2.register_forward_hook(lambda m, a, out: calls.append(tuple(a[0].shape)))
    try:
        embeds, pooled = r.encode_prompt_pair("a woman holding a bag " * 20, "blurry")
    finally:
        handle.remove()
    k = len(calls) and calls[0][0] // 2
    assert calls == [(2 * k, 77)] and k > 1  # both prompts, all chunks, one call
    with torch.no_grad():  # each half alone gives the same embeddings
        for half, text in enumerate(("a woman holding a bag " * 20, "blurry")):
            ids = torch.tensor(pad_chunks(r.c.tokenizer_2, tokenize_chunks(r.c.tokenizer_2, text), k))
            out = r.c.text_encoder_2(ids, output_hidden_states=True)
            torch.testing.assert_close(pooled[half], out[0][0].to(pooled.dtype))
            alone = out.hidden_states[-2].reshape(-1, out.hidden_states[-2].shape[-1])
            torch.testing.assert_close(embeds[half, :, -alone.shape[-1] :], alone.to(embeds.dtype))

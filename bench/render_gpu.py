"""GPU benchmark of the render stages with full-size random-weight SDXL at 1024².

    python bench/render_gpu.py                 # stock baseline + ours eager + low-VRAM modes
    python bench/render_gpu.py --compile       # ours with --compile (the first call compiles)
    python bench/render_gpu.py --json out.json # also write the numbers
    python bench/render_gpu.py --skip-stock --variants exact --low-vram-methods layerwise_fp8 \
        --low-vram-batches 2,1 --low-vram-cap   # low-VRAM batch sizes under an 8 GiB allocator cap

Models are built from SDXL's configs in code, directly on the GPU in fp16 (no download):
the UNet, a full-size union ControlNet (ControlNetUnionModel, promax layout), the SDXL VAE,
both CLIP text encoders (with a byte-level tokenizer). Speed depends on shapes, not values.
Random weights draw no hands, so stage 2 is forced onto a fixed hand window (synthetic
landmarks at the canvas centre).

Baseline, timed in the same run: diffusers' StableDiffusionXLControlNetInpaintPipeline, fp16,
batch 1, no compile, 30 steps, CFG 6, one full-size ControlNetModel, FreeU on (as ours).
Low-VRAM modes run in child processes so that their peak memory is their own.

Variants are "+"-joined parts (`--variants exact,cl,fp8+blocks`): exact (the config's
defaults), cudnn/flash/sdpa-default (SDPA backend), fp8 (fp8 matmuls), blocks (regional
compile), model (whole-model compile), cl/nocl (channels_last on/off), cn-cond-only and every2
(the ControlNet shortcuts), cfg-interval (guidance on steps 5-26 of 30), prompt-per-latent (the prompt repeated for every latent, as before
cross-attention shared it); `--compile` adds the config's compile to every variant.
`--profile` first prints an eager step's CUDA time by kernel kind; `--repeat 3` times each
stage three times (one timing moved by up to 8% in run 12).

Measured on H200s (torch 2.11, diffusers 0.42.1), 4 candidates per SKU, s per candidate. Each
row's ratio is against the stock run of the same process; stock itself moved between 3.08 and
5.42 s across nineteen runs (batch 1 is bound by the host as much as the GPU), so compare rows
of one run, not ratios across runs.

    run  variant                               stage 1  vs stock  stage 2  SKU (4)  peak GiB  warm-up
    1    stock diffusers, batch 1               3.86       1x        -        -      13.9
    1    exact, eager, channels_last            1.89     2.05x     0.90    11.15     19.4       20 s
    1    cudnn, eager, channels_last            1.88     2.05x     0.88    11.09     19.4
    1    fp8+cudnn+model compile, chan_last     1.35     2.85x     0.71     8.14     12.9      429 s
    2    stock                                  5.42       1x
    2    fp8+cudnn+blocks, channels_last        1.55     3.49x     0.72     8.56     12.9       88 s
    2    low-VRAM fp8 layerwise, batch 2,       3.42     1.58x     1.33    17.77      6.4 (7.7 reserved)
           8 GiB cap (2.08x the SKU time of the row above)
    3    stock                                  5.23       1x
    3    exact, eager, channels_last            1.88     2.78x     0.91    11.25     19.4
    3    exact, eager, no channels_last         1.79     2.92x     0.84    10.56     19.4
    3    cudnn+blocks, channels_last            1.55     3.37x     0.74     9.17     16.9
    4    stock                                  4.95       1x
    4    cudnn+blocks, no channels_last         1.49     3.32x     0.75     9.01     16.9      113 s
    4    fp8+cudnn+blocks, no channels_last     1.32     3.74x     0.67     7.95     12.9       52 s*

    5    stock                                  3.15       1x
    5    blocks (cudnn, no channels_last)       1.47     2.15x     0.69     8.67     16.9       83 s
    5    blocks + CUDA graphs of each step      1.47     2.14x     0.69     8.55     18.1
    5    fp8 Linear by Linear+blocks+graphs     1.30     2.42x     0.66     7.84     14.1       38 s*
    6    stock                                  3.55       1x
    6    blocks                                 1.46     2.44x     0.70     8.64     16.9       25 s+
    6    fp8 (fused GEGLU) + blocks             1.24     2.88x     0.61     7.44     12.9       28 s+
    6    fp8 (fused GEGLU) + blocks + cl        1.25     2.85x     0.62     7.56     12.9       70 s
    7    fp8, GEGLU kernel in column chunks     1.27       -       0.61     7.53     12.9   (blocks 1.47)
    8    stock                                  4.69       1x
    8    blocks (`--compile`)                   1.46     3.21x     0.68     8.65     16.9       26 s+
    8    fp8 (fused GEGLU) + blocks             1.26     3.71x     0.61     7.53     12.9       32 s+
           (`--compile --fp8`)
    9    stock                                  3.35       1x
    9    fp8 + blocks, GEGLU kernel autotuned   1.25     2.67x     0.64     7.49     12.9       48 s+
           among row layouts (kept: two pieces, 8 warps)
    10   stock                                  3.28       1x
    10   blocks (`--compile`)                   1.46     2.24x     0.70     8.62     16.9       25 s+
    10   fp8 + blocks (`--compile --fp8`)       1.22     2.69x     0.61     7.29     12.9       29 s+
    11   stock                                  4.29       1x
    11   fp8 + blocks                           1.21     3.53x     0.65     7.39     12.9       21 s+
    12   stock                                  3.62       1x
    12   blocks, cross-attention shares the     1.44     2.52x     0.69     8.57     16.9       36 s+
           prompt (one row per CFG half)
    12   fp8 + blocks, shared prompt            1.18     3.06x     0.62     7.31     12.9       31 s+
    12   fp8 + blocks, prompt per latent        1.28*    2.82x     0.61     7.16     12.9
    13   stock                                  3.63       1x
    13   blocks, shared prompt (`--compile`),   1.42     2.55x     0.68     8.45     16.9       37 s+
           --repeat 3
    13   fp8 + blocks, shared prompt, GEGLU     1.19     3.06x     0.61     7.19     12.9       27 s+
           as a triton_op (`--compile --fp8`)
    13   low-VRAM fp8 layerwise, batch 2,       3.80     0.95x     1.28    18.84      6.4 (7.5 reserved)
           8 GiB cap (2.23x the SKU time of `--compile`, 2.62x that of `--compile --fp8`)
    14   stock                                  3.51       1x
    14   exact, eager (the default), --repeat 2 1.73     2.03x     0.83    10.17     19.4       20 s
    15   stock                                  3.10       1x
    15   blocks (`--compile`), --repeat 2       1.45     2.14x     0.67     8.49     16.9       87 s
    15   fp8 + blocks (`--compile --fp8`)       1.20     2.58x     0.60     7.22     12.9       32 s*
    15   low-VRAM fp8 layerwise, batch 2,       2.89     1.07x     1.12    15.16      6.4 (7.5 reserved)
           8 GiB cap (1.78x the SKU time of `--compile`, 2.10x that of `--compile --fp8`)
    17   stock                                  3.11       1x
    17   fp8 + blocks (`--compile --fp8`)       1.21     2.57x     0.61     7.27     12.9       23 s+
    17   fp8 + blocks + cn-cond-only + every2   0.96     3.23x     0.55     6.12     12.9       43 s+
           (both ControlNet shortcuts; image effect unmeasured, so they stay off)
    18   stock                                  3.42       1x
    18   fp8 + blocks (`--compile --fp8`)       1.21     2.83x     0.61     7.29     12.9       25 s+
    18   fp8 + blocks + cfg-interval            1.07     3.19x     0.55     6.76     12.9       66 s+
           (guidance on steps 5-26 of 30)
    18   fp8 + blocks + cn-cond-only + every2   0.93     3.69x     0.54     5.71     12.9        6 s*
           + cfg-interval (all three shortcuts)
    19   stock                                  3.08       1x
    19   fp8 + blocks + cn-cond-only + every2,  0.96     3.22x     0.50     5.84     12.9       57 s+
           --repeat 2
    19   ... + cfg-interval (all three)         0.86     3.56x     0.46     5.32     12.9       19 s*
           (run 18's 0.93 was one timing; here the interval took 10% off the denoise loop)

    * compiled after the row above in the same process: part of its graphs were cached.
      In run 12: one timing, an outlier (its SKU, which holds a stage 1, took 7.16 s); its
      kernels took 153.9 ms per step against the shared prompt's 149.7.
    + with an inductor cache from earlier runs carried over (TORCHINDUCTOR_CACHE_DIR; run 17's
      came from run 15); 83-87 s without (runs 5 and 15).

Runs 5-8: `--profile-variants` put the GPU's kernels at 100% of the step's wall time (189.6 ms
of kernels, prepare and decode included, against 186 ms per step), so CUDA graphs of the whole
step gained nothing and were dropped. In the fp8 step, torch.compile's quantisation of the
GEGLU output (a reduction reading the widest activation twice) took 27 ms per step, more than
fp8 saved on that matmul; `geglu_fp8` (one Triton pass: bias, GEGLU, row-wise quantisation)
takes 15.6 ms, and the step went from 163.6 to 156-158 ms. Reading a row's columns in chunks
(two passes) was slower (19.4 ms). channels_last stayed no faster with fp8 in the same run.
Run 9, `--geglu-probe`: holding a 5120-wide row as 4096 + 1024 lanes instead of 8192 (3072
masked) at 8 warps made the kernel alone 94 µs instead of 124 (8192 rows) and 191 instead of
258 (32768 rows × 2560), yet the step stayed at 157 ms (1.25 s per candidate). Timed back to
back, one call at the 5120 width took 269 µs against the kernel's 94, so the call's host side
(the custom op's dispatch, the autotuner, the launch) costs more than the kernel; whether it
now bounds the step was not measured.
Kernel time per step in run 8, ms, blocks / fp8 + blocks: matmuls 81.8 / 42.6, the GEGLU
kernel - / 15.6, convs 38.6 / 37.1, attention 28.3 / 26.3, norms 18.6 / 19.4, other
elementwise 21.4 / 16.9. fp8 error with the fused GEGLU, random weights: 3.9-4.1% for one
whole UNet call (4.0% before).
Runs 10-13. Run 10 re-ran the autotuned GEGLU kernel: 11.7 ms per step (15.6 in run 8), 1.22 s
per candidate. Sharing the prompt in cross-attention (run 12, same run): the fp8 step's
kernels 149.7 ms against 153.9 with the prompt per latent. Called eagerly, the GEGLU op costs
270 µs per call for a 95 µs kernel (runs 9 and 13; about 100 calls a step), and as a custom op
the compiled blocks called it the same way; as a triton_op (run 13, --geglu-probe) a compiled
call costs 98 µs, the kernel launched from the graph's own code. The step did not move with
it (150.1 ms of wall time per step in run 12, 150.3 in run 13): the GPU bounds it (run 13:
152.9 ms of kernels per step with prepare and decode against 150.3 of wall time in the
denoise loop alone).
Several rows per GEGLU program (run 12) were slower: 119-159 µs against 107 at 8192 × 5120.
Stage 1's preparation (prompt, VAE encode, control embedding) went from 0.12-0.13 to 0.10 s
per batch when the text encoders took prompt and negative in one call and the shared control
image was embedded once; the batched decode of 4 images takes 0.15 s.
Kernel time per step in run 13, ms, blocks / fp8 + blocks: matmuls 79.9 / 41.7, GEGLU - /
11.6, convs 38.2 / 36.7, attention 28.2 / 26.2, norms 17.8 / 20.1, other elementwise 21.7 /
16.6. fp8 error, random weights: 4.1% for one whole UNet call.
Run 14, --sdpa-probe with cross-attention as the renderer now runs it (4 latents folded onto
each prompt row): cuDNN 0.078 ms (64² level) and 0.041 ms (32² level) per call against 0.085
and 0.047 with a prompt row per latent (run 11); 16.7 ms of attention per UNet call in all.
Run 16, `--set compile_mode=max-autotune-no-cudagraphs` with `--compile --fp8`: the 9-minute
call ran out with 11 shapes settled, so it was not timed. Of those, cuDNN kept all four 3x3
convs (Triton's best 1.2-1.4x slower) and cuBLAS's _scaled_mm the three fp8 matmuls of 65-202
µs (Triton's best 1.1-2.4x slower); Triton won four fp16 matmuls of 11-43 µs. Its warm-up
alone rules it out for a nightly worker.
Attention (--sdpa-probe, runs 10-11, one UNet call's shapes at 4 candidates): cuDNN 474
TFLOP/s on the 4096² self-attention and 394-411 on the 1024² one; PyTorch's flash backend 300
and 271 in run 10 but 462 and 402 in run 11; memory-efficient 133 and 123. flash-attn-4
(4.0.0b36, CuTe DSL, called directly) reached 516 on the 4096² shape but 358 on the 1024²
one and was 2-4x slower on cross-attention, so it would lose overall; PyTorch 2.11's own
FlashAttention-4 hook failed against that release ("too many values to unpack"). cuDNN stays.

The defaults follow from these rows: channels_last off, cuDNN attention first, regional
("blocks") compile for --compile; fp8 stays an option (`shoot --fp8`). `--profile` (run 2,
eager, channels_last) showed where an eager step went: 46% elementwise and copies (layout
copies around GroupNorm alone 14%), 24% matmuls, 14% convs, 9% attention, 6% norms.
fp8 error, random weights: 3.7% relative for one 1280→10240 Linear, 4.0% for one whole UNet
call. The ControlNet's conditioning embedding runs once per batch (not 2N × steps times), and
once per SKU in stage 1, whose candidates share one control image.

Earlier, on one H100 80GB (channels_last on, flash attention, conditioning embedding per step):
stock 4.9-5.6 s; exact eager 1.98 s (SKU 11.7 s, 17.5 GiB); ControlNet cond-half + every 2nd
step, compiled, fused q/k/v: 1.19 s (SKU 7.3 s, warm-up 267 s); low-VRAM fp8 layerwise batch 2
under an 8 GiB cap: SKU 25.4 s (2.16x exact eager), 6.4 GiB (7.6 reserved); group offload with
streams: 20.0 s per candidate, 5.0 GiB (10.1 reserved), so fp8 layerwise is the low-VRAM method.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoshoot.config.render import SHORTCUTS  # noqa: E402  (after the path; imports no torch)

# A prompt of the reference template's length: two 77-token chunks with the byte tokenizer.
PROMPT = (
    "a woman, dark hair, linen blouse, soft window light, grey studio. "
    "She holds the bag beside her hip. Half body. Calm smile. One person. Photorealistic."
)
NEGATIVE = "blurry, extra fingers"
GiB = 1024**3


# ---------------------------------------------------------------------------------------
# full-size random SDXL


def unet_config() -> dict:
    return dict(
        sample_size=128, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048, transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    )  # fmt: skip


def controlnet_config() -> dict:
    cfg = unet_config()
    for key in ("sample_size", "out_channels", "up_block_types"):
        cfg.pop(key)
    cfg["conditioning_embedding_out_channels"] = (16, 32, 96, 256)
    return cfg


def build_full_components(stock_controlnet: bool = False):
    """Full-size random SDXL built on the GPU in fp16. Returns (Components, ControlNetModel|None)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        ControlNetUnionModel,
        EulerDiscreteScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from autoshoot.backends.sdxl import Components
    from autoshoot.backends.sdxl_tiny import build_byte_tokenizers

    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            unet = UNet2DConditionModel(**unet_config())
            union = ControlNetUnionModel(
                **controlnet_config(), num_control_type=8, num_trans_channel=320, num_trans_head=8,
                num_trans_layer=1, num_proj_channel=320,
            )  # fmt: skip
            stock = ControlNetModel(**controlnet_config()) if stock_controlnet else None
            vae = AutoencoderKL(
                block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=4, layers_per_block=2, sample_size=1024, scaling_factor=0.13025, force_upcast=False,
            )  # fmt: skip
            tok, tok2 = build_byte_tokenizers()
            common = dict(
                vocab_size=49408,
                bos_token_id=512,
                eos_token_id=513,
                pad_token_id=513,
                max_position_embeddings=77,
            )
            te = CLIPTextModel(
                CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                               projection_dim=768, hidden_act="quick_gelu", **common)
            )  # fmt: skip
            te2 = CLIPTextModelWithProjection(
                CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                               projection_dim=1280, hidden_act="gelu", **common)
            )  # fmt: skip
    finally:
        torch.set_default_dtype(old)
    for m in (unet, union, vae, te, te2, stock):
        if m is not None:
            m.to(torch.float16).eval().requires_grad_(False)
    sched = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    comps = Components(
        unet=unet, vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
        scheduler=sched, controlnet=union,
    )  # fmt: skip
    return comps, stock


def make_inputs(size: int = 1024):
    """Canvas (RGB uint8), inpaint mask (255 inpaint), canny (uint8) of a bag in the lower middle."""
    import cv2

    canvas = np.full((size, size, 3), 255, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.rectangle(mask, (380, 600), (700, 900), 255, -1)
    cv2.ellipse(mask, (540, 600), (110, 140), 0, 180, 360, 255, 24)
    canvas[mask > 0] = (120, 70, 35)
    inpaint = np.where(mask > 0, 0, 255).astype(np.uint8)
    canny = cv2.Canny(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), 50, 150)
    return canvas, inpaint, canny


def sync():
    import torch

    torch.cuda.synchronize()


def timed(fn, repeat: int = 1):
    """(mean seconds over ``repeat`` runs after the call before, result of the last)."""
    out = None
    sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    sync()
    return (time.perf_counter() - t0) / repeat, out


def make_config(**render):
    from autoshoot.config import load_config

    overrides = {"run.device": "cuda", "render.fp32_vae_retry": False}
    overrides.update({f"render.{k}": v for k, v in render.items()})
    return load_config("default", overrides=overrides)


# ---------------------------------------------------------------------------------------
# measurements


def bench_stock(comps, stock_cn, canvas, inpaint, canny) -> dict:
    import torch
    from diffusers import StableDiffusionXLControlNetInpaintPipeline
    from PIL import Image

    pipe = StableDiffusionXLControlNetInpaintPipeline(
        vae=comps.vae, text_encoder=comps.text_encoder, text_encoder_2=comps.text_encoder_2,
        tokenizer=comps.tokenizer, tokenizer_2=comps.tokenizer_2, unet=comps.unet, controlnet=stock_cn,
        scheduler=comps.scheduler,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.3, b2=1.4)
    args = dict(
        prompt=PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(canvas), mask_image=Image.fromarray(inpaint),
        control_image=Image.fromarray(np.stack([canny] * 3, -1)), num_inference_steps=30, guidance_scale=6.0,
        strength=1.0, controlnet_conditioning_scale=0.9, height=1024, width=1024, output_type="np",
    )  # fmt: skip
    pipe(**args, generator=torch.Generator("cuda").manual_seed(0))  # warm-up
    torch.cuda.reset_peak_memory_stats()
    sec, _ = timed(lambda: pipe(**args, generator=torch.Generator("cuda").manual_seed(1)), repeat=2)
    comps.unet.disable_freeu()
    return {"stock_s": sec, "stock_peak_gib": torch.cuda.max_memory_allocated() / GiB}


def hand_windows(n: int):
    from autoshoot.backends.hand_mesh import synthetic_hand_landmarks
    from autoshoot.stages.refine import HandWindow, hand_window_box

    lms = synthetic_hand_landmarks((540, 560), 190.0, angle_deg=10.0)
    box = hand_window_box(lms, (1024, 1024), 2.6, 96)
    return [HandWindow(box, lms) for _ in range(n)]


def bench_ours(
    renderer, rc, canvas, inpaint, canny, n: int, label: str, repeat: int = 1, profile: bool = False
) -> dict:
    """Stage 1 for n candidates, stage 2 for the same n, and a whole SKU (both + paste). With
    ``profile``, one more stage 1 under the profiler: kernel time per step against the wall
    time per step (the GPU's idle share). ``_images`` holds stage 1's pictures (not for JSON)."""
    import torch

    from autoshoot.backends.hand_mesh import CapsuleHandMesh
    from autoshoot.stages.refine import refine_windows
    from autoshoot.stages.render import candidate_seeds, render_candidates

    seeds = candidate_seeds(10, n)
    mesh = CapsuleHandMesh()
    wins = hand_windows(n)

    def stage1():
        # a new SKU brings a new prompt: stage 1 pays the text encoders (stage 2 reuses them)
        renderer.prompt_cache.clear()
        return render_candidates(renderer, rc, canvas, inpaint, canny, PROMPT, NEGATIVE, seeds)

    def stage2(images):
        return refine_windows(renderer, mesh, rc, images, wins, PROMPT, NEGATIVE, seeds)

    t0 = time.perf_counter()
    images, info = stage1()  # warm-up (and compile, when on)
    stage2(images)
    warm = time.perf_counter() - t0
    graphs = compiled_graphs()
    torch.cuda.reset_peak_memory_stats()
    s1, (images, info) = timed(stage1, repeat)
    s2, _ = timed(lambda: stage2(images), repeat)
    sku, _ = timed(lambda: stage2(stage1()[0]), repeat)
    nan = sum(int(not np.isfinite(im.astype(np.float32)).all()) for im in images)
    extra = {}
    if profile:
        kinds = kernel_profile(stage1, rc.steps, label, top=12)
        wall_ms = 1e3 * info["seconds"]["denoise_s"] / rc.steps
        extra = {"profile_ms_per_step": kinds, "denoise_wall_ms_per_step": round(wall_ms, 2)}
        print(f"  denoise wall {wall_ms:.1f} ms per step; kernel time above includes prepare and decode")
    return {
        **extra,
        "_images": images,
        "label": label,
        "n": n,
        "repeat": repeat,
        "warmup_s": warm,
        "stage1_s": s1,
        "stage1_per_candidate_s": s1 / n,
        "stage2_s": s2,
        "stage2_per_candidate_s": s2 / n,
        "sku_s": sku,
        "peak_gib": torch.cuda.max_memory_allocated() / GiB,
        "reserved_peak_gib": torch.cuda.max_memory_reserved() / GiB,
        "stage1_breakdown_s": {k: round(v, 3) for k, v in info["seconds"].items()},
        "scales_seen": info["scales_seen"],
        "nan_images": nan,
        "notes": info.get("notes", []),
        "compiled_graphs": graphs,
        "graphs_after_timing": compiled_graphs(),  # more than after warm-up = a recompile while timed
    }


def compiled_graphs() -> int:
    """Graphs torch.compile has made so far in this process (each one a compile or recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def time_sdpa_backends(batch: int = 8) -> dict[str, dict]:
    """One SDXL UNet call's attention (batch = 2 × 4 candidates, 1024²) per SDPA backend tried
    first: 10 layers at 64² tokens (10 heads), 60 at 32² (20 heads), each a self-attention and
    a cross-attention over 2 prompt chunks (154 tokens), the cross-attention as the renderer
    runs it (4 latents folded onto each prompt row). Per backend: ms per UNet call in all, and
    ms and TFLOP/s per call of each shape. Where flash-attn-4 is installed, its kernels are
    timed too, called directly. A backend that cannot take a shape is left out."""
    import torch

    from autoshoot.backends.sdxl_speed import sdpa_context

    # (heads, batch, query tokens, key tokens, layers per UNet call)
    shapes = [
        (10, batch, 4096, 4096, 10),
        (10, 2, 4096 * batch // 2, 154, 10),
        (20, batch, 1024, 1024, 60),
        (20, 2, 1024 * batch // 2, 154, 60),
    ]
    tensors = []
    for heads, b, nq, nk, _count in shapes:
        q = torch.randn(b, heads, nq, 64, device="cuda", dtype=torch.float16)
        k = torch.randn(b, heads, nk, 64, device="cuda", dtype=torch.float16)
        tensors.append((q, k, k.clone()))

    def table(call) -> tuple[float, dict, list]:
        outs = [call(q, k, v) for q, k, v in tensors]  # warm-up (plans, JIT)
        total, per_shape = 0.0, {}
        for (q, k, v), (heads, b, nq, nk, count) in zip(tensors, shapes, strict=True):
            sec, _ = timed(lambda q=q, k=k, v=v: call(q, k, v), 20)
            total += sec * count
            tflops = 4 * b * heads * nq * nk * 64 / sec / 1e12
            per_shape[f"{heads}h {b}x{nq}x{nk}"] = {"ms": round(sec * 1e3, 3), "TFLOP/s": round(tflops)}
        return total * 1e3, per_shape, outs

    out: dict[str, dict] = {}
    reference = None
    for name in ("flash", "cudnn", "efficient"):
        try:
            with torch.inference_mode(), sdpa_context(name):
                ms, per_shape, outs = table(torch.nn.functional.scaled_dot_product_attention)
            reference = reference or outs
            err = max(float((a.float() - b.float()).abs().max()) for a, b in zip(outs, reference))
            out[name] = {"ms_per_unet_call": round(ms, 2), "shapes": per_shape, "max_abs_diff": err}
            print(f"sdpa {name}: {out[name]}", flush=True)
        except RuntimeError as err:
            print(f"sdpa {name}: not usable ({str(err).splitlines()[0][:200]})", flush=True)
    try:
        from flash_attn.cute import flash_attn_func  # flash-attn-4 (Hopper, Blackwell), if installed

        def fa4(q, k, v):  # it takes (batch, tokens, heads, dim)
            return flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))[0].transpose(1, 2)

        with torch.inference_mode():
            ms, per_shape, _ = table(fa4)
        out["flash-attn-4"] = {"ms_per_unet_call": round(ms, 2), "shapes": per_shape}
        print(f"flash-attn-4, called directly: {out['flash-attn-4']}", flush=True)
    except Exception as err:  # noqa: BLE001 - optional, and young: reported, never fatal
        print(f"flash-attn-4: not usable ({str(err).splitlines()[0][:200]})", flush=True)
    return out


def run_main(args) -> dict:
    import torch

    from autoshoot.backends.sdxl import SDXLRenderer

    torch.backends.cuda.matmul.allow_tf32 = True
    import diffusers

    results: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "runs": [],
    }
    t0 = time.perf_counter()
    comps, stock_cn = build_full_components(stock_controlnet=not args.skip_stock)
    results["build_s"] = time.perf_counter() - t0
    canvas, inpaint, canny = make_inputs()
    sets = parse_sets(args.set)
    if args.sdpa:
        sets["sdpa_backend"] = args.sdpa
    results["render_overrides"] = sets
    if stock_cn is not None:
        results.update(bench_stock(comps, stock_cn, canvas, inpaint, canny))
        print(
            f"stock: {results['stock_s']:.2f} s/image, peak {results['stock_peak_gib']:.1f} GiB", flush=True
        )
        del stock_cn
        gc.collect()
        torch.cuda.empty_cache()
    if args.profile:
        results["profile_ms_per_step"] = profile_denoise(comps, canvas, inpaint, canny, sets)
    if args.ff_probe:
        results["feed_forward_us"] = time_feed_forward()
    if args.geglu_probe:
        results["geglu_fp8"] = time_geglu()
    variants = [parse_variant(name) for name in (args.variants or DEFAULT_VARIANTS).split(",")]
    # fp8 swaps modules and compile wraps forwards, neither undone: eager and bf16/fp16 first
    variants.sort(key=lambda v: (v[1].get("fp8_matmul", False), v[1].get("compile", False)))
    renderer, built_for, shares_context = None, None, False
    first_images, first_label = None, ""
    for label, extra in variants:
        if args.compile and not extra.get("compile"):
            extra = {**extra, "compile": True}
            label += "+compile"
        bench_only = {k: extra[k] for k in extra if k.startswith("_")}  # renderer attributes, not config
        config = make_config(
            batch_size=4, **{**sets, **{k: v for k, v in extra.items() if k not in bench_only}}
        )
        rc = config.render
        if rc.fp8_matmul and "fp8_linear_rel_err" not in results:
            results["fp8_linear_rel_err"] = fp8_error()
            results["fp8_model_rel_err"] = fp8_model_error(comps, rc.fuse_qkv)
        # a new SDPA backend too: compiled graphs hold the backend chosen when they were traced
        key = (
            rc.fp8_matmul,
            rc.compile,
            rc.compile_mode,
            rc.compile_scope,
            rc.channels_last,
            rc.sdpa_backend,
        )
        if renderer is None or key != built_for:  # new speed-ups: set the models up again
            if renderer is not None:
                renderer.close()
                uncompile(comps)
            renderer, built_for = SDXLRenderer(config, components=comps), key
            shares_context = renderer.shared_context
        else:  # same models; only the sampling options change
            renderer.config = config
        renderer.shared_context = bench_only.get("_shared_context", shares_context)
        try:
            res = bench_ours(
                renderer, config.render, canvas, inpaint, canny, 4, label, args.repeat, args.profile_variants
            )
        except Exception as err:  # keep the numbers measured so far (one GPU run is precious)
            import traceback

            traceback.print_exc()
            print(f"{label} failed: {err!r}", flush=True)
            continue
        images = res.pop("_images")
        if first_images is None:
            first_images, first_label = images, label
        # same seeds: how far this variant's pictures are from the first variant's (0-255); the
        # random ControlNet's output convs are zero, so the ControlNet shortcuts show 0 here
        res["max_px_diff_vs_" + first_label] = int(
            max(np.abs(a.astype(np.int16) - b.astype(np.int16)).max() for a, b in zip(images, first_images))
        )
        results["runs"].append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "scales_seen"}), flush=True)
        if args.json:  # after every variant: a run cut short keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=2))
    if args.sdpa_probe:  # last: a backend that breaks cannot cost the numbers above
        try:
            results["sdpa_ms_per_unet_call"] = time_sdpa_backends()
            print(
                f"sdpa ms per UNet call, by backend tried first: {results['sdpa_ms_per_unet_call']}",
                flush=True,
            )
        except Exception as err:
            print(f"sdpa probe failed: {err!r}", flush=True)
    return results


DEFAULT_VARIANTS = "exact,cl,cn-cond-only+every2,fp8"
# a variant is a "+"-joined list of these parts ("exact" alone: the config's defaults)
VARIANT_PARTS = {
    "exact": {},
    "cudnn": {"sdpa_backend": "cudnn"},
    "flash": {"sdpa_backend": "flash"},
    "sdpa-default": {"sdpa_backend": "default"},
    "fp8": {"fp8_matmul": True},
    "blocks": {"compile": True, "compile_scope": "blocks"},
    "model": {"compile": True, "compile_scope": "model"},
    "cl": {"channels_last": True},
    "nocl": {"channels_last": False},
    **SHORTCUTS,  # cn-cond-only, every2, cfg-interval (autoshoot.config.render)
    # the prompt's embeddings repeated for every latent, as before cross-attention shared them
    "prompt-per-latent": {"_shared_context": False},
}


def parse_variant(name: str) -> tuple[str, dict]:
    """A name like "fp8+cudnn+compile" → (name, render overrides)."""
    extra: dict = {}
    for part in name.split("+"):
        if part not in VARIANT_PARTS:
            raise SystemExit(f"unknown variant part {part!r} in {name!r}; parts: {', '.join(VARIANT_PARTS)}")
        extra.update(VARIANT_PARTS[part])
    return name, extra


KERNEL_KINDS = [  # (kind, substrings of CUDA kernel names), first match wins
    ("fp8 GEGLU + quantise", ("geglu",)),
    ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")),
    ("fp8 matmul", ("f8", "fp8", "e4m3")),
    ("conv", ("conv", "fprop", "dgrad", "implicit", "winograd", "nchwtonhwc", "nhwctonchw")),
    ("matmul", ("gemm", "sm90_xmma", "cutlass", "cublas", "nvjet")),
    ("norm", ("norm", "welford")),
]


def profile_denoise(comps, canvas, inpaint, canny, sets: dict, steps: int = 4) -> dict[str, float]:
    """Eager, exact settings, 4 candidates: CUDA time per denoise step by kernel kind (torch
    profiler), and the 25 costliest kernels. Shows where a step's time goes before tuning."""
    from autoshoot.backends.sdxl import SDXLRenderer
    from autoshoot.stages.render import candidate_seeds, render_candidates

    config = make_config(batch_size=4, steps=steps, **sets)
    renderer = SDXLRenderer(config, components=comps)
    seeds = candidate_seeds(10, 4)
    render_candidates(renderer, config.render, canvas, inpaint, canny, PROMPT, NEGATIVE, seeds)  # warm-up
    sync()
    by_kind = kernel_profile(
        lambda: render_candidates(renderer, config.render, canvas, inpaint, canny, PROMPT, NEGATIVE, seeds),
        steps,
        "eager, 4 candidates",
    )
    renderer.close()
    return by_kind


def kernel_profile(fn, steps: int, label: str, top: int = 25) -> dict[str, float]:
    """CUDA kernel time of one ``fn()`` (a stage-1 call) per denoise step, by kernel kind; prints
    the ``top`` costliest kernels. The VAE and text encoders are in the totals too."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    by_kind: dict[str, float] = {}
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    for e in events:
        name = e.key.lower()
        kind = next((k for k, subs in KERNEL_KINDS if any(x in name for x in subs)), "elementwise/other")
        by_kind[kind] = by_kind.get(kind, 0.0) + e.device_time_total / 1e3 / steps
    total = sum(by_kind.values())
    print(f"\nprofile, {label}: {total:.1f} ms of CUDA time per step (with VAE, text encoders)")
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<20}{ms:>9.1f} ms  {100 * ms / total:5.1f}%")
    for e in sorted(events, key=lambda e: -e.device_time_total)[:top]:
        print(f"  {e.device_time_total / 1e3 / steps:>8.2f} ms/step  x{e.count:<5} {e.key[:110]}")
    return {k: round(v, 2) for k, v in by_kind.items()}


def uncompile(comps) -> None:
    """Drop the compiled forwards and the memory format a renderer put on the models."""
    import torch

    for m in (comps.unet, comps.controlnet, comps.vae.decoder):
        if m is not None:
            m.__dict__.pop("forward", None)
            for block in m.modules():  # compile_scope "blocks"
                block.__dict__.pop("_compiled_call_impl", None)
    for m in (comps.unet, comps.controlnet):  # the next renderer sets channels_last again, if on
        m.to(memory_format=torch.contiguous_format)
    torch._dynamo.reset()  # graphs compiled for the old weight strides must not be reused


def fp8_model_error(comps, fuse_qkv: bool) -> dict[str, float]:
    """Relative error of one ControlNet + UNet call (batch 2, 1024², a mid-schedule timestep)
    after the fp8 swap, against the same call before it, on the same random inputs. Random
    weights: a proxy for how much fp8 rounding the blocks add up, not an image metric (and the
    random ControlNet's zero-initialised output convs give the UNet zero residuals)."""
    import torch

    from autoshoot.backends.fp8 import use_fp8_linears
    from autoshoot.backends.sdxl_speed import fuse_attention_projections

    if fuse_qkv:  # as the renderer does, before the fp8 swap (fusing reads the Linear weights)
        fuse_attention_projections(comps.unet)
        fuse_attention_projections(comps.controlnet)
    g = torch.Generator("cuda").manual_seed(0)
    kw = dict(
        encoder_hidden_states=torch.randn(2, 154, 2048, device="cuda", generator=g).half(),
        added_cond_kwargs={
            "text_embeds": torch.randn(2, 1280, device="cuda", generator=g).half(),
            "time_ids": torch.tensor([[1024, 1024, 0, 0, 1024, 1024]] * 2, device="cuda").half(),
        },
    )
    x = torch.randn(2, 4, 128, 128, device="cuda", generator=g).half()
    t = torch.tensor(500, device="cuda")
    cond = torch.rand(2, 3, 1024, 1024, device="cuda", generator=g).half()
    net = comps.controlnet
    embed = comps.cond_embedders.get("union", net.controlnet_cond_embedding)
    with torch.inference_mode():
        feats = embed(cond)
        saved = net.controlnet_cond_embedding
        net.controlnet_cond_embedding = torch.nn.Identity()
        ctype = torch.zeros(2, 8, device="cuda").half()
        ctype[:, 3] = 1

        def run():
            down, mid = net(
                x, t, controlnet_cond=[feats], control_type=ctype, control_type_idx=[3],
                conditioning_scale=[0.9], return_dict=False, **kw,
            )  # fmt: skip
            eps = comps.unet(
                x, t, down_block_additional_residuals=down, mid_block_additional_residual=mid,
                return_dict=False, **kw,
            )[0]  # fmt: skip
            return eps.float()

        ref_eps = run()
        use_fp8_linears(comps.unet)
        use_fp8_linears(comps.controlnet)
        got_eps = run()
        net.controlnet_cond_embedding = saved
    return {"unet_eps": float((got_eps - ref_eps).norm() / ref_eps.norm())}


def parse_sets(items: list[str]) -> dict:
    """``--set fuse_qkv=false --set compile_mode=max-autotune-no-cudagraphs`` → render overrides."""
    out: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


def time_feed_forward(reps: int = 20) -> dict[str, dict]:
    """Microseconds per call of one SDXL feed-forward (GEGLU, then a Linear), compiled as the
    blocks are, at both transformer levels of a 4-candidate batch (CFG: 8 images at 1024²):
    fp16; fp8 with each Linear swapped alone (its GEGLU output quantised by whatever
    torch.compile makes of it); fp8 with ``geglu_fp8`` (what ``--fp8`` uses). Each figure is
    the median of 5 timings of ``reps`` calls back to back. (Runs 5-8 below timed single calls
    and synchronised after each, so their figures also held each call's launch latency and
    moved by up to 25% between runs; they are not quoted.)"""
    import copy

    import torch
    from diffusers.models.attention import FeedForward

    from autoshoot.backends.fp8 import FP8Linear, use_fp8_linears

    out: dict[str, dict] = {}
    for rows, dim in ((8 * 32 * 32, 1280), (8 * 64 * 64, 640)):
        torch.manual_seed(0)
        holder = torch.nn.Module()
        holder.add_module("attentions", torch.nn.Module())
        holder.attentions.add_module("ff", FeedForward(dim, mult=4, activation_fn="geglu"))
        holder = holder.to("cuda", torch.float16).eval()
        by_linear = copy.deepcopy(holder.attentions.ff)
        by_linear.net[0].proj = FP8Linear(by_linear.net[0].proj)
        by_linear.net[2] = FP8Linear(by_linear.net[2])
        fp16 = copy.deepcopy(holder.attentions.ff)
        use_fp8_linears(holder)
        x = torch.randn(rows, dim, device="cuda", dtype=torch.float16)
        times = {}
        for name, module in (
            ("fp16", fp16),
            ("fp8 Linear by Linear", by_linear),
            ("fp8 fused GEGLU", holder.attentions.ff),
        ):
            fn = torch.compile(module, dynamic=False)
            with torch.inference_mode():
                for _ in range(3):
                    fn(x)
                samples = []
                for _ in range(5):  # reps calls back to back: GPU time, not one call's launch latency
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    for _ in range(reps):
                        fn(x)
                    b.record()
                    b.synchronize()
                    samples.append(a.elapsed_time(b) * 1e3 / reps)
            times[name] = round(float(np.median(samples)), 1)
        out[f"{rows}x{dim}"] = times
        print(f"feed-forward {rows}x{dim}, us per call (compiled): {times}", flush=True)
    return out


def time_geglu(reps: int = 50) -> dict[str, dict]:
    """The GEGLU kernel at SDXL's two widths for a 4-candidate batch, microseconds per call over
    ``reps`` calls back to back: the kernel launched alone, ``geglu_fp8`` called eagerly, and
    ``geglu_fp8`` inside a torch.compile'd function (as the compiled blocks call it). The gap
    to the kernel is each call's host cost. GB/s of the kernel alone (it reads the (rows, 2N)
    fp16 projection once and writes (rows, N) fp8)."""
    out: dict[str, dict] = {}
    for rows, width in ((8 * 32 * 32, 5120), (8 * 64 * 64, 2560)):
        out[f"{rows}x{width}"] = row = geglu_timings(rows, width, reps)
        print(f"geglu_fp8 {rows}x{width}: {row}", flush=True)
    return out


def geglu_timings(rows: int, width: int, reps: int) -> dict[str, float]:
    import torch

    from autoshoot.backends.fp8 import FP8, _geglu_fp8_kernel, geglu_block_sizes, geglu_fp8

    def per_call(fn) -> float:
        fn()
        sec, _ = timed(lambda: [fn() for _ in range(reps)])
        return sec / reps * 1e6

    h = torch.randn(rows, 2 * width, device="cuda", dtype=torch.float16)
    bias = torch.randn(2 * width, device="cuda")
    q = torch.empty(rows, width, device="cuda", dtype=FP8)
    scale = torch.empty(rows, 1, device="cuda")
    block, block_b = geglu_block_sizes(width)
    compiled = torch.compile(lambda h, bias: geglu_fp8(h, bias), dynamic=False)
    with torch.inference_mode():
        kernel_us = per_call(
            lambda: _geglu_fp8_kernel[(rows,)](h, bias, q, scale, width, BLOCK=block, BLOCK_B=block_b)
        )
        return {
            "kernel_us": round(kernel_us, 1),
            "eager_op_us": round(per_call(lambda: geglu_fp8(h, bias)), 1),
            "compiled_op_us": round(per_call(lambda: compiled(h, bias)), 1),
            "GB/s": round(rows * width * 5 / kernel_us / 1e3),
        }


def fp8_error() -> float:
    """Relative error of one fp8 Linear (1280 → 10240, the GEGLU projection) on N(0, 1) input."""
    import torch

    from autoshoot.backends.fp8 import use_fp8_linears

    holder = torch.nn.Module()
    holder.add_module("attentions", torch.nn.Module())
    holder.attentions.add_module("ff", torch.nn.Linear(1280, 10240, device="cuda", dtype=torch.float16))
    x = torch.randn(8192, 1280, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        ref = holder.attentions.ff(x).float()
        use_fp8_linears(holder)
        got = holder.attentions.ff(x).float()
    return float((got - ref).norm() / ref.norm())


def run_low_vram(method: str, batch: int, n: int, cap: bool) -> dict:
    """n candidates (a SKU) through both stages with the low-VRAM mode at ``batch`` candidates per
    call (0: the config's default); peak after setup. With ``cap`` the allocator is held to the
    8 GiB budget, so an over-budget batch runs out of memory and halves (recorded in ``notes``)."""
    import torch

    from autoshoot.backends.sdxl import SDXLRenderer

    comps, _ = build_full_components()  # built in fp16 on the GPU: above 8 GiB until cast
    if method == "group_offload":
        for m in (comps.unet, comps.controlnet, comps.text_encoder, comps.text_encoder_2):
            m.to("cpu")
    gc.collect()
    torch.cuda.empty_cache()
    extra = {"low_vram_batch_size": batch} if batch > 0 else {}
    config = make_config(vram=8, low_vram_method=method, **extra)
    batch = config.render.low_vram_batch_size
    renderer = SDXLRenderer(config, components=comps)
    gc.collect()
    torch.cuda.empty_cache()
    setup_gib = torch.cuda.memory_allocated() / GiB
    if cap:  # from here on, as on an 8 GiB card (the CUDA context aside)
        torch.cuda.set_per_process_memory_fraction(8 * GiB / torch.cuda.get_device_properties(0).total_memory)
    torch.cuda.reset_peak_memory_stats()
    canvas, inpaint, canny = make_inputs()
    label = f"low-vram {method}, batch {batch}" + (", 8 GiB cap" if cap else "")
    res = bench_ours(renderer, config.render, canvas, inpaint, canny, n, label)
    res.pop("_images")
    res["batch"] = batch
    res["resident_gib"] = setup_gib
    res["reserved_peak_gib"] = torch.cuda.max_memory_reserved() / GiB
    return res


def print_table(results: dict) -> None:
    print(
        f"\nSDXL render benchmark: {results.get('device')} (torch {results.get('torch')}), 1024², 30 steps, CFG 6"
    )
    stock = results.get("stock_s")
    if stock:
        print(
            f"stock diffusers ControlNet inpaint, fp16, batch 1: {stock:.2f} s/candidate, peak {results['stock_peak_gib']:.1f} GiB"
        )
    hdr = (
        f"{'variant':<44}{'n':>3}{'st1 s/cand':>11}{'vs stock':>9}{'st2 s/cand':>11}{'SKU s':>8}"
        f"{'peak GiB':>9}{'reserved':>9}{'warm s':>8}{'graphs':>7}"
    )
    print(hdr)
    for r in results["runs"]:
        ratio = f"{stock / r['stage1_per_candidate_s']:.2f}x" if stock else "-"
        print(
            f"{r['label']:<44}{r['n']:>3}{r['stage1_per_candidate_s']:>11.2f}{ratio:>9}"
            f"{r['stage2_per_candidate_s']:>11.2f}{r['sku_s']:>8.2f}{r['peak_gib']:>9.2f}"
            f"{r.get('reserved_peak_gib', 0):>9.2f}{r['warmup_s']:>8.1f}{r.get('graphs_after_timing', 0):>7}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet and ControlNet")
    ap.add_argument("--skip-stock", action="store_true")
    ap.add_argument("--skip-low-vram", action="store_true")
    ap.add_argument(
        "--variants",
        default="",
        help=f"comma list of variants, each parts joined by + (parts: {', '.join(VARIANT_PARTS)}); "
        f"default {DEFAULT_VARIANTS}",
    )
    ap.add_argument("--sdpa", default="", help="SDPA backend tried first: default|cudnn|flash|efficient")
    ap.add_argument(
        "--sdpa-probe", action="store_true", help="at the end, time one UNet call's attention per backend"
    )
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each stage (mean)")
    ap.add_argument("--profile", action="store_true", help="first, CUDA time per step by kernel kind")
    ap.add_argument(
        "--profile-variants", action="store_true", help="profile each variant's stage 1 after timing it"
    )
    ap.add_argument(
        "--ff-probe", action="store_true", help="time one feed-forward: fp16, fp8 by Linear, fused"
    )
    ap.add_argument(
        "--geglu-probe", action="store_true", help="time the GEGLU kernel alone and its op's calls"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="render config override")
    ap.add_argument("--low-vram", choices=["layerwise_fp8", "group_offload"], help=argparse.SUPPRESS)
    ap.add_argument(
        "--low-vram-methods", default="layerwise_fp8,group_offload", help="comma list of low-VRAM methods"
    )
    ap.add_argument(
        "--low-vram-batches", default="0", help="comma list of low-VRAM batch sizes (0: the config default)"
    )
    ap.add_argument("--low-vram-candidates", type=int, default=4, help="candidates per low-VRAM SKU")
    ap.add_argument(
        "--low-vram-cap", action="store_true", help="hold each low-VRAM child's allocator to 8 GiB"
    )
    ap.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)  # child: low-VRAM batch
    ap.add_argument("--json", default="", help="write the numbers here")
    args = ap.parse_args()
    if args.low_vram:  # child process
        res = run_low_vram(args.low_vram, args.batch, args.low_vram_candidates, args.low_vram_cap)
        print("RESULT " + json.dumps(res), flush=True)
        return
    results = run_main(args)
    if not args.skip_low_vram:
        import torch

        gc.collect()
        torch.cuda.empty_cache()
        # the allocator grows segments instead of keeping fragments: reserved stays near allocated
        env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", **os.environ}
        children = [
            (method, int(batch))
            for method in args.low_vram_methods.split(",")
            for batch in args.low_vram_batches.split(",")
        ]
        for method, batch in children:
            cmd = [sys.executable, __file__, "--low-vram", method, "--batch", str(batch)]
            cmd += ["--low-vram-candidates", str(args.low_vram_candidates)]
            cmd += ["--low-vram-cap"] if args.low_vram_cap else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if line:
                res = json.loads(line[-1][7:])
                results["runs"].append(res)
                print(json.dumps({k: v for k, v in res.items() if k != "scales_seen"}), flush=True)
            else:
                print(f"low-vram {method} batch {batch} failed:\n{proc.stderr[-3000:]}", flush=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

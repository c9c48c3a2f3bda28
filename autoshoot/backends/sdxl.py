"""SDXL renderer: stage 1 (person and grip) and stage 2 (hand refine) on diffusers components.

The sampling loop is our own (Euler, epsilon or v prediction), so that one ControlNet can take
a per-step scale, candidates run batched with classifier-free guidance in one UNet call, and
stage 2 can start part-way through a schedule from injected latent noise. The components are
diffusers' models, loaded the usual ways:

    base       hub id | local diffusers folder | single .safetensors (from_single_file)
    controlnet ControlNetUnionModel ("promax") for every mode, or one ControlNetModel per mode
    LoRAs      local kohya or diffusers files, through load_lora_weights, then fused
    VAE        optional override (the fp16-fix VAE by default)

The per-step ControlNet scale is set by a forward pre-hook (``ControlScaleHook``), which also
records the scale each step saw. Long prompts are encoded in chunks of 75 tokens (compel's
scheme), never truncated.

The speed tricks (regional compile, the CFG interval, shared cross-attention context, fused
projections, the attention kernel) live in ``sdxl_speed``, fp8 storage in ``fp8``, and the
``tiny`` model set (random components built in code) in ``sdxl_tiny``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoshoot.backends.sdxl_speed import (
    SharedContextAttnProcessor,  # noqa: F401  (re-exported: its home was here)
    cfg_steps,
    compile_blocks,
    fuse_attention_projections,
    prompt_half,
    sdpa_context,
    share_cross_attention_context,
)
from autoshoot.config.render import TINY_MODEL_SET, UNION_MODES, ModelSet
from autoshoot.errors import ConfigError, ModelMissingError
from autoshoot.hub import download_hint, is_local_source, is_offline
from autoshoot.run.models import one_call_at_a_time

if TYPE_CHECKING:
    import torch

    from autoshoot.config import Config

logger = logging.getLogger(__name__)

CHUNK = 75  # prompt tokens per CLIP chunk (77 with BOS and EOS)


# ---------------------------------------------------------------------------------------
# requests and results


@dataclass
class DenoiseRequest:
    """One batched denoise over N candidates. All images at the model resolution (H, W multiples of 64).

    images:   N × (H, W, 3) uint8 RGB: the starting picture of each candidate.
    masks:    N × (H, W) uint8, 255 = repaint, 0 = keep.
    controls: N × list of (mode, (H, W, 3) uint8 RGB) in the same order for every candidate;
              mode is a UNION_MODES key (canny, depth, scribble, ...).
    scales:   per step, one scale per control (len == steps - start_step).
    seeds:    one per candidate; candidate i's noise comes from its own torch.Generator(seeds[i]).
    start_step / steps: run steps start_step..steps of a ``steps``-step schedule; 0 = from noise.
    noise_strength: extra latent noise (raw VAE-latent units) injected before a partial run.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    controls: list[list[tuple[str, np.ndarray]]]
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    scales: list[list[float]]
    cfg: float
    start_step: int = 0
    noise_strength: float = 0.0


@dataclass
class DenoiseResult:
    images: list[np.ndarray]  # N × (H, W, 3) uint8 RGB
    scales_seen: list[list[float]]  # per ControlNet call, the scales the pre-hook applied
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class PendingBatch:
    """A batch whose work the GPU has queued (``SDXLRenderer.denoise_batch``) and whose pictures
    reach the host when ``done`` fires (``SDXLRenderer.collect``)."""

    pixels: Any  # (N, H, W, 3) uint8 on the host (pinned on a GPU), filled when ``done`` fires
    bad: Any  # (N,) bool on the host: the picture decoded NaN or black
    latents: Any  # the final latents, on the device (an fp32 decode again for ``bad`` ones)
    marks: GpuMarks  # start, prepared, denoised, decoded
    done: Any  # a CUDA event after the copies to the host; None on the CPU
    scales_seen: list[list[float]]


class GpuMarks:
    """Points in a batch's GPU work, timed without a synchronisation: CUDA events on a GPU
    (their times are the GPU's, read once the work is done), ``perf_counter`` on the CPU. A
    synchronising timer would empty the GPU's queue at every mark while the model's lock is held."""

    def __init__(self, device: Any) -> None:
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.points: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.points.append(event)
        else:
            self.points.append(time.perf_counter())

    def seconds(self, names: tuple[str, ...]) -> dict[str, float]:
        """Seconds between consecutive marks, one name per interval (the work must be done)."""
        pairs = zip(self.points, self.points[1:], strict=False)
        if self.cuda:
            values = [a.elapsed_time(b) / 1000.0 for a, b in pairs]
        else:
            values = [b - a for a, b in pairs]
        return dict(zip(names, values, strict=False))


@dataclass
class Components:
    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    scheduler: Any  # EulerDiscreteScheduler
    controlnet: Any = None  # ControlNetUnionModel (union)
    controlnets: dict[str, Any] = field(default_factory=dict)  # mode → ControlNetModel (separate)
    # the ControlNets' conditioning embeddings, taken out of the nets (SDXLRenderer.take_cond_embedders)
    cond_embedders: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# the per-step ControlNet scale


class ControlScaleHook:
    """Forward pre-hook on the ControlNet: sets ``conditioning_scale`` from a per-step schedule
    and records what each call got. The sampler sets ``step`` before each step.

    The scales reach the ControlNet as 0-d float32 tensors on ``device`` (one cached tensor per
    value), not Python floats: torch.compile specialises on a float's value, so 0.4 → 0.9
    recompiled the whole ControlNet; a tensor's value is a graph input."""

    def __init__(self, device: Any = None) -> None:
        self.schedule: list[list[float]] = []
        self.step = 0
        self.index: int | None = None  # separate ControlNets: which control this call serves
        self.seen: list[list[float]] = []
        self.device = device
        self.tensors: dict[float, Any] = {}

    def __call__(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        scales = [float(s) for s in self.schedule[self.step]]
        if self.index is not None:
            scales = [scales[self.index]]
        values = [self.scale_tensor(s) for s in scales]
        # union: a list (one per control); ControlNetModel: one value
        kwargs["conditioning_scale"] = values[0] if self.index is not None else values
        self.seen.append(scales)
        return args, kwargs

    def scale_tensor(self, value: float) -> Any:
        import torch

        if value not in self.tensors:  # made once: a host → device copy per step would sync
            self.tensors[value] = torch.tensor(value, dtype=torch.float32, device=self.device)
        return self.tensors[value]


def control_schedule(steps: int, early: float, late: float, switch_at: float) -> list[float]:
    """Scale per step: ``early`` for the first ``switch_at`` fraction of the steps, ``late`` after."""
    n_early = int(round(steps * switch_at))
    return [early if i < n_early else late for i in range(steps)]


# ---------------------------------------------------------------------------------------
# the renderer


class SDXLRenderer:
    """Build once per run (``SDXLRenderer(config)``), then call ``denoise`` per batch."""

    def __init__(self, config: Config, components: Components | None = None):
        import torch

        self.config = config
        rc = config.render
        # 1. device and dtype
        self.device = pick_device(config.run.device)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[rc.dtype]
        if self.device.type == "cpu":
            self.dtype = torch.float32
        self.model_set = resolve_model_set(rc)
        # 2. load (or take) the components
        t0 = time.perf_counter()
        self.c = components or load_components(self.model_set, self.dtype, offline=is_offline(config))
        self.load_seconds = time.perf_counter() - t0
        # 3. place, speed up, hook
        self.low_vram = self.device.type == "cuda" and 0 < rc.vram <= 8
        self.prompt_cache: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.batch_limit = 0  # candidates per call after an out-of-memory error (0: no limit)
        self.eager_vae_decoder: Any = None  # the VAE decoder's own forward, when compiled
        self.shared_context = False  # cross-attention takes one prompt row per CFG half
        self.cond_embedders = self.take_cond_embedders()
        self.prepare_models()
        self.hook = ControlScaleHook(self.device)
        self.hook_handles = [
            net.register_forward_pre_hook(self.hook, with_kwargs=True) for net in self.control_nets()
        ]

    # -- setup ----------------------------------------------------------------------------

    def control_nets(self) -> list[Any]:
        return [self.c.controlnet] if self.c.controlnet is not None else list(self.c.controlnets.values())

    def take_cond_embedders(self) -> dict[str, Any]:
        """Take each ControlNet's conditioning embedding (the small conv net that turns a control
        image into features at the latent size) out of the net and leave an identity in its place.
        The embedding depends neither on the step nor on the CFG half, so ``prepare_controls`` runs
        it once per batch on the N control images and the nets take its features as their
        ``controlnet_cond``: the same sums, once instead of 2N × steps times.

        Returns (and keeps in the Components) {"union": embedder} or {mode: embedder}."""
        import torch

        c = self.c
        if not c.cond_embedders:  # not yet taken by an earlier renderer of these components
            nets = {"union": c.controlnet} if c.controlnet is not None else dict(c.controlnets)
            for key, net in nets.items():
                c.cond_embedders[key] = net.controlnet_cond_embedding.eval().requires_grad_(False)
                net.controlnet_cond_embedding = torch.nn.Identity()
        return c.cond_embedders

    def prepare_models(self) -> None:
        import torch

        rc = self.config.render
        c = self.c
        nets = [c.unet, *self.control_nets()]
        for m in (c.unet, c.vae, c.text_encoder, c.text_encoder_2, *self.control_nets()):
            m.eval().requires_grad_(False)
        for m in self.cond_embedders.values():  # small: on the GPU in every mode
            move_model(m, self.device, self.dtype)
        if rc.freeu_enabled:
            b1, b2, s1, s2 = rc.freeu
            c.unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
        if self.low_vram:
            self.apply_low_vram(nets)
        else:
            for m in (*nets, c.vae, c.text_encoder, c.text_encoder_2):
                move_model(m, self.device, self.dtype)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convs
        if rc.channels_last and self.device.type == "cuda" and not self.low_vram:
            for m in nets:
                m.to(memory_format=torch.channels_last)
        if rc.fuse_qkv and not self.low_vram:
            for m in nets:
                n_fused = fuse_attention_projections(m)
                logger.info("fused q/k/v projections in %d attention layers of %s", n_fused, type(m).__name__)
        if rc.fp8_matmul and (self.device.type != "cuda" or self.low_vram):
            logger.warning("render.fp8_matmul is for a CUDA GPU outside the low-VRAM mode; left off here")
        if rc.fp8_matmul and self.device.type == "cuda" and not self.low_vram:
            if torch.cuda.get_device_capability(self.device) < (8, 9):
                raise ConfigError(
                    "render.fp8_matmul needs an Ada or Hopper GPU (compute capability 8.9+); turn it off"
                )
            from autoshoot.backends.fp8 import use_fp8_linears

            for m in nets:
                n_fp8 = use_fp8_linears(m)
                logger.info("fp8 matmuls in %d linear layers of %s", n_fp8, type(m).__name__)
        # cross-attention reads each prompt's embeddings once for all candidates (same sums)
        self.shared_context = all([share_cross_attention_context(m) for m in nets])
        if rc.compile:
            import torch._inductor.config as inductor_config

            # the 1×1 shortcut convs as matmuls, fused with their neighbours
            inductor_config.conv_1x1_as_mm = True
            mode = None if rc.compile_mode in ("", "default") else rc.compile_mode
            if rc.compile_scope == "blocks":
                n_blocks = compile_blocks(nets, mode)
                logger.info("compiled %d transformer, resnet and resampling blocks one by one", n_blocks)
            else:  # forward only: the ControlNet's scale pre-hook stays in eager Python
                for m in nets:
                    m.forward = torch.compile(m.forward, dynamic=False, mode=mode)
            if rc.compile_vae and not self.low_vram:
                # decode only (fixed batch and size); the encoder runs once per batch
                self.eager_vae_decoder = c.vae.decoder.forward
                c.vae.decoder.forward = torch.compile(c.vae.decoder.forward, dynamic=False, mode=mode)

    def apply_low_vram(self, nets: list[Any]) -> None:
        """≤ 8 GiB: fp8 weight storage (or group offload with streams), text encoders visit the
        GPU only to encode, the VAE sliced (one image at a time) and tiled (only above its
        1024² tile size: at 1024² the whole image is one tile, no seams, no extra time)."""
        import torch

        rc = self.config.render
        c = self.c
        if rc.low_vram_method == "layerwise_fp8":
            from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

            # the union ControlNet's nn.MultiheadAttention reads its weights directly: keep it fp16
            skip = (*DEFAULT_SKIP_MODULES_PATTERN, "transformer_layes")
            for m in nets:
                move_model(m, self.device, self.dtype)
                m.enable_layerwise_casting(
                    storage_dtype=torch.float8_e4m3fn, compute_dtype=self.dtype, skip_modules_pattern=skip
                )
        else:
            for m in nets:
                move_model(m, torch.device("cpu"), self.dtype)
                # block level: a block's weights arrive together (also those read without a call)
                m.enable_group_offload(
                    onload_device=self.device,
                    offload_type="block_level",
                    num_blocks_per_group=1,
                    use_stream=True,
                    record_stream=True,
                )
        c.vae.to(self.device, self.dtype)
        c.vae.enable_tiling()
        c.vae.enable_slicing()  # a batch decodes image by image: the decoder's peak stays that of one
        for te in (c.text_encoder, c.text_encoder_2):
            te.to("cpu", self.dtype)

    # -- prompts --------------------------------------------------------------------------

    def encode_prompt(
        self, prompt: str, negative: str, n: int, shared: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunked CLIP encoding of both text encoders.

        Returns (embeds, pooled) with the negative half first when CFG is on:
        embeds (2n, 77·k, 2048), pooled (2n, 1280), in the model dtype on the device. With
        ``shared``, embeds holds one row per half, (2, 77·k, 2048), for cross-attention that
        serves n latents from one context row (``SharedContextAttnProcessor``).
        """
        import torch

        key = (prompt, negative)
        if key not in self.prompt_cache:
            if len(self.prompt_cache) >= 8:
                self.prompt_cache.pop(next(iter(self.prompt_cache)))
            self.prompt_cache[key] = self.encode_prompt_pair(prompt, negative)
        embeds_t, pooled = self.prompt_cache[key]
        # CFG order: negative first, then prompt; each repeated n times
        rows = 1 if shared else n
        embeds_t = torch.cat([embeds_t[1:2].repeat(rows, 1, 1), embeds_t[0:1].repeat(rows, 1, 1)])
        pooled = torch.cat([pooled[1:2].repeat(n, 1), pooled[0:1].repeat(n, 1)])
        return embeds_t, pooled

    def encode_prompt_pair(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both text encoders on [prompt, negative]: embeds (2, 77·k, 2048), pooled (2, 1280),
        model dtype, on the device. Stage 1 and stage 2 of a SKU share one encoding."""
        import torch

        c = self.c
        tokens = [
            tokenize_chunks(tok, text) for tok in (c.tokenizer, c.tokenizer_2) for text in (prompt, negative)
        ]
        k = max(len(t) for t in tokens)
        tokens = [
            pad_chunks(tok, t, k)
            for tok, t in zip([c.tokenizer] * 2 + [c.tokenizer_2] * 2, tokens, strict=False)
        ]
        embeds, pooled = [], None
        offload = self.low_vram
        with torch.inference_mode():
            for te_index, te in enumerate((c.text_encoder, c.text_encoder_2)):
                if offload:
                    te.to(self.device)
                # prompt and negative in one call: 2k chunks of 77 tokens (CLIP has no padding
                # mask, so each chunk's output is the one it gets alone)
                ids = self.upload(torch.tensor(tokens[te_index * 2] + tokens[te_index * 2 + 1]))
                out = te(ids, output_hidden_states=True)
                hidden = out.hidden_states[-2]  # (2k, 77, d)
                embeds.append(hidden.reshape(2, -1, hidden.shape[-1]))  # (2, 77k, d)
                if te_index == 1:
                    pooled = out[0][0 :: len(ids) // 2]  # text_embeds of each half's first chunk
                if offload:
                    te.to("cpu")
            embeds_t = torch.cat(embeds, dim=-1)  # [prompt, negative]
            if not negative.strip():  # SDXL base: zeros for an empty negative prompt
                embeds_t[1] = 0
                pooled[1] = 0
            embeds_t = embeds_t.to(self.dtype)
            pooled = pooled.to(self.dtype)
        return embeds_t, pooled

    # -- the denoise loop ------------------------------------------------------------------

    def denoise(self, req: DenoiseRequest) -> DenoiseResult:
        """Run a request in batches of ``render.batch_size`` (``render.low_vram_batch_size`` in the
        low-VRAM mode); on out-of-memory halve the batch.

        The model's turn (``enqueue``: one call at a time, see ``one_call_at_a_time``) ends when
        the GPU has every batch queued; the pictures are then awaited outside it (``collect``).
        Another SKU's call queues its work behind this one meanwhile, so the GPU need not idle
        while a caller waits for its pictures, converts them or does its CPU work. The
        activations are still never held twice: the GPU runs the queue in order, and a call's
        memory is freed for the next in that order."""
        batches, notes = self.enqueue(req)
        return self.collect(batches, notes)

    @one_call_at_a_time
    def enqueue(self, req: DenoiseRequest) -> tuple[list[PendingBatch], list[str]]:
        import torch

        check_request(req)
        rc = self.config.render
        batch = max(1, rc.low_vram_batch_size if self.low_vram else rc.batch_size)
        # an out-of-memory batch size is not tried again by later calls: each try ran until its
        # activations outgrew the budget, and the next call's would too
        batch = min(batch, self.batch_limit or batch)
        pending: list[PendingBatch] = []
        notes: list[str] = []
        i = 0
        while i < len(req.seeds):
            part = slice_request(req, i, i + batch)
            try:
                pending.append(self.denoise_batch(part))
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch = self.batch_limit = max(1, batch // 2)
                notes.append(f"out of memory: batch size lowered to {batch}")
                logger.warning(
                    "out of GPU memory; retrying with batch size %d, and keeping it for the rest of the run",
                    batch,
                )
                torch.cuda.empty_cache()
                continue
            i += len(part.seeds)
        return pending, notes

    def collect(self, batches: list[PendingBatch], notes: list[str]) -> DenoiseResult:
        """Wait for the queued batches and take their pictures; a picture that decoded NaN or
        black is decoded again in fp32 (``render.fp32_vae_retry``)."""
        import torch

        images: list[np.ndarray] = []
        seen: list[list[float]] = []
        seconds: dict[str, float] = {}
        notes = list(notes)
        for b in batches:
            if b.done is not None:
                b.done.synchronize()  # this SKU's pictures only; the GIL is free meanwhile
            pixels = b.pixels.numpy().copy()  # off the pinned buffer, which the next copy reuses
            bad = np.flatnonzero(b.bad.numpy())
            if len(bad) and self.config.render.fp32_vae_retry and self.c.vae.dtype != torch.float32:
                logger.warning("VAE gave NaN/black for %d image(s); decoding again in fp32", len(bad))
                notes.append(f"fp32 VAE retry for {len(bad)} image(s)")
                pixels[bad] = self.decode_fp32(b.latents[bad.tolist()])
            images += [pixels[k] for k in range(pixels.shape[0])]
            seen += b.scales_seen
            for key, value in b.marks.seconds(("prepare_s", "denoise_s", "decode_s")).items():
                seconds[key] = seconds.get(key, 0.0) + value
        return DenoiseResult(images=images, scales_seen=seen, seconds=seconds, notes=notes)

    def denoise_batch(self, req: DenoiseRequest) -> PendingBatch:
        """Queue one batch's work on the GPU: inputs copied from pinned memory without waiting,
        no synchronisation anywhere, the pictures copied back to the host asynchronously."""
        import torch

        rc = self.config.render
        c = self.c
        n = len(req.seeds)
        h, w = req.images[0].shape[:2]
        do_cfg = req.cfg > 1.0
        marks = GpuMarks(self.device)
        marks.mark()
        with (
            torch.inference_mode(),
            sdpa_context(rc.sdpa_backend if self.device.type == "cuda" else "default"),
        ):
            # 1. encode the prompt (chunked) and the SDXL size conditioning
            embeds, pooled = self.encode_prompt(
                req.prompt, req.negative_prompt, n, shared=self.shared_context
            )
            if not do_cfg:
                embeds, pooled = prompt_half(embeds), prompt_half(pooled)
            time_ids = self.upload(torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype))
            time_ids = time_ids.repeat(pooled.shape[0], 1)
            # 2. the schedule
            sigmas, timesteps = self.schedule(req.steps)
            sigmas, timesteps = sigmas[req.start_step :], timesteps[req.start_step :]
            # 3. encode the images, prepare masks and noise (one generator per candidate)
            image_latents = self.encode_images(req.images)
            lat_h, lat_w = image_latents.shape[-2:]
            mask = self.upload(prepare_masks(req.masks, (lat_h, lat_w)))
            noise = self.upload(prepare_noise(req.seeds, image_latents.shape[1:]))
            extra = self.upload(prepare_noise([s + 1_000_003 for s in req.seeds], image_latents.shape[1:]))
            if req.start_step == 0:
                latents = noise * sigmas[0]
            else:
                latents = image_latents + noise * sigmas[0]
            if req.noise_strength:
                latents = latents + extra * req.noise_strength * float(c.vae.config.scaling_factor)
            latents = mask * latents + (1 - mask) * (image_latents + noise * sigmas[0])
            # 4. the control images, the union's control-type vector
            cond = self.prepare_controls(req.controls, do_cfg)
            marks.mark()
            # 5. denoise
            self.hook.seen = []
            self.hook.schedule = req.scales
            cached: tuple[Any, Any] | None = None
            cached_key = None
            # the text inputs of a guided step (both CFG halves) and of an unguided one
            text_in = {True: (embeds, pooled, time_ids)}
            text_in[False] = tuple(map(prompt_half, text_in[True])) if do_cfg else text_in[True]
            guided_steps = cfg_steps(req.steps, rc.cfg_start, rc.cfg_stop) if do_cfg else range(0)
            history: list[Any] = []  # the x0 predictions so far (multistep samplers)
            for i in range(len(sigmas) - 1):
                sigma, t = sigmas[i], timesteps[i]
                guided = req.start_step + i in guided_steps
                emb, pool, tids = text_in[guided]
                x_in = torch.cat([latents, latents]) if guided else latents
                x_in = (x_in / (sigma**2 + 1) ** 0.5).to(self.dtype)
                # 5a. ControlNet residuals (recomputed every k steps, and whenever the scale or
                # the guidance changes)
                self.hook.step = i
                key = (tuple(req.scales[i]), guided)
                if cached is None or i % rc.controlnet_every == 0 or key != cached_key:
                    cached = self.run_controlnets(x_in, t, emb, pool, tids, cond, guided, n)
                    cached_key = key
                down, mid = cached
                # 5b. UNet, with classifier-free guidance in one batch on guided steps
                pred = c.unet(
                    x_in,
                    t,
                    encoder_hidden_states=emb,
                    added_cond_kwargs={"text_embeds": pool, "time_ids": tids},
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                    return_dict=False,
                )[0].float()
                if guided:
                    uncond, text = pred.chunk(2)
                    pred = uncond + req.cfg * (text - uncond)
                # 5c. sampler step (render.sampler: Euler, or DPM++ 2M)
                x0 = self.predict_x0(latents, pred, sigma)
                sigma_next = sigmas[i + 1]
                latents = sampler_step(rc.sampler, latents, x0, sigmas, i, history)
                history.append(x0)
                # 5d. keep the unmasked area: the source latents noised to the next sigma
                latents = mask * latents + (1 - mask) * (image_latents + noise * sigma_next)
            marks.mark()
            # 6. decode in batch; the pictures and their NaN/black flags go to the host
            pixels, bad = self.decode_pixels(latents)
            marks.mark()
            pixels, bad, done = self.download(pixels), self.download(bad), None
            if self.device.type == "cuda":
                done = torch.cuda.Event()
                done.record()
        return PendingBatch(
            pixels=pixels,
            bad=bad,
            latents=latents,
            marks=marks,
            done=done,
            scales_seen=list(self.hook.seen),
        )

    def upload(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor to the device without waiting: from pinned memory, asynchronously (a copy
        from pageable memory would wait for everything the GPU has queued)."""
        if self.device.type != "cuda":
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)

    def download(self, t: torch.Tensor) -> torch.Tensor:
        """A device tensor to pinned host memory, asynchronously; valid once the batch's ``done``
        event fires."""
        if self.device.type != "cuda":
            return t.cpu()
        import torch

        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        return host

    def schedule(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmas (steps + 1, last 0) and timesteps (steps) from the model's scheduler config:
        its own spacing, or Karras et al.'s (rho 7) when ``render.sampler`` ends in ``_karras``."""
        sched = self.c.scheduler
        if sampler_spec(self.config.render.sampler)[1] and not sched.config.get("use_karras_sigmas"):
            sched = type(sched).from_config(sched.config, use_karras_sigmas=True)
        sched.set_timesteps(steps, device="cpu")
        return self.upload(sched.sigmas.float()), self.upload(sched.timesteps)

    def predict_x0(self, x: torch.Tensor, pred: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        kind = self.c.scheduler.config.prediction_type
        if kind == "epsilon":
            return x - sigma * pred
        if kind == "v_prediction":
            return x / (sigma**2 + 1) - pred * sigma / (sigma**2 + 1) ** 0.5
        raise ConfigError(
            f"prediction type {kind!r} is not supported; use an epsilon or v-prediction SDXL model"
        )

    def prepare_controls(self, controls: list[list[tuple[str, np.ndarray]]], do_cfg: bool) -> dict[str, Any]:
        import torch

        modes = [mode for mode, _ in controls[0]]
        for mode in modes:
            if mode not in UNION_MODES:
                raise ConfigError(f"unknown control mode {mode!r}; valid modes are: {', '.join(UNION_MODES)}")
        features = []
        for j, mode in enumerate(modes):
            images = [cands[j][1] for cands in controls]
            # stage 1: one control image for every candidate, embedded once
            same = all(im is images[0] for im in images)
            arr = np.stack([to_rgb(im) for im in (images[:1] if same else images)])  # (1 or n, H, W, 3)
            image = self.upload(torch.from_numpy(arr)).permute(0, 3, 1, 2).to(self.dtype) / 255.0
            embedder = self.cond_embedders["union" if "union" in self.cond_embedders else mode]
            feats = embedder(image.contiguous())
            if same:
                feats = feats.repeat(len(images), 1, 1, 1)
            features.append(feats.contiguous())  # (n, C, H/8, W/8)
        out: dict[str, Any] = {"modes": modes, "features": features}
        if self.c.controlnet is not None:
            n_types = self.c.controlnet.config.num_control_type
            vec = torch.zeros(n_types)
            for mode in modes:
                vec[UNION_MODES[mode]] = 1
            out["control_type"] = self.upload(vec.to(self.dtype))
            out["control_type_idx"] = [UNION_MODES[m] for m in modes]
        return out

    def run_controlnets(self, x_in, t, embeds, pooled, time_ids, cond, do_cfg: bool, n: int):
        """Residuals of the ControlNet(s) for this step. With ``controlnet_cond_only`` the net runs
        on the prompt half of the CFG batch and its residuals serve both halves."""
        import torch

        half = self.config.render.controlnet_cond_only and do_cfg
        if half:
            x_in, embeds, pooled, time_ids = x_in[n:], prompt_half(embeds), pooled[n:], time_ids[n:]
        reps = 1 if (half or not do_cfg) else 2
        images = [f.repeat(reps, 1, 1, 1) for f in cond["features"]]  # embedded controls
        kwargs = dict(
            encoder_hidden_states=embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        )
        if self.c.controlnet is not None:
            ctype = cond["control_type"].reshape(1, -1).repeat(x_in.shape[0], 1)
            down, mid = self.c.controlnet(
                x_in,
                t,
                controlnet_cond=images,
                control_type=ctype,
                control_type_idx=cond["control_type_idx"],
                return_dict=False,
                **kwargs,
            )
        else:
            down, mid = None, None
            for j, mode in enumerate(cond["modes"]):
                net = self.c.controlnets[mode]
                self.hook.index = j
                try:
                    d, m = net(x_in, t, controlnet_cond=images[j], return_dict=False, **kwargs)
                finally:
                    self.hook.index = None
                down = d if down is None else [a + b for a, b in zip(down, d, strict=False)]
                mid = m if mid is None else mid + m
        if half:
            down = [torch.cat([d, d]) for d in down]
            mid = torch.cat([mid, mid])
        return down, mid

    # -- VAE --------------------------------------------------------------------------------

    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        """N × (H, W, 3) uint8 RGB → (N, 4, H/8, W/8) float32 scaled latents (distribution mode)."""
        import torch

        vae = self.c.vae
        if len(images) > 1 and all(
            im is images[0] for im in images
        ):  # stage 1: one canvas for every candidate
            return self.encode_images(images[:1]).repeat(len(images), 1, 1, 1)
        arr = np.stack([to_rgb(im) for im in images])
        x = self.upload(torch.from_numpy(arr)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        lat = vae.encode(x.to(vae.dtype)).latent_dist.mode().float()
        if getattr(vae.config, "shift_factor", None):
            lat = lat - vae.config.shift_factor
        # contiguous: an NHWC-strided batch (from the permuted pixels) would make torch.compile
        # recompile the UNet, the ControlNet and the decoder for stage 2 (strides are guarded)
        return (lat * vae.config.scaling_factor).contiguous()

    def decode_pixels(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch decode on the device: (N, H, W, 3) uint8 pictures and (N,) bool flags of those
        that came out NaN or black (``collect`` decodes them again in fp32). Nothing waits."""
        vae = self.c.vae
        img = vae.decode(self.vae_input(latents).to(vae.dtype), return_dict=False)[0].float()
        flat = img.flatten(1)
        bad = ~flat.isfinite().all(dim=1) | (flat.amax(dim=1) <= -0.99)
        return to_pixels(img), bad

    @one_call_at_a_time
    def decode_fp32(self, latents: torch.Tensor) -> np.ndarray:
        """Decode again in fp32 (a rare retry: the compiled decoder stays fp16, the eager one runs)."""
        import torch

        vae = self.c.vae
        old = vae.dtype
        compiled = vae.decoder.forward
        vae.to(torch.float32)
        if self.eager_vae_decoder is not None:  # no fp32 recompile for a rare retry
            vae.decoder.forward = self.eager_vae_decoder
        try:
            with torch.inference_mode():
                img = vae.decode(self.vae_input(latents).float(), return_dict=False)[0].float()
                return to_pixels(img).cpu().numpy()
        finally:
            vae.to(old)
            vae.decoder.forward = compiled

    def vae_input(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.c.vae
        z = latents / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            z = z + vae.config.shift_factor
        return z

    def decode_latents(self, latents: torch.Tensor) -> tuple[list[np.ndarray], list[str]]:
        """Batch decode, waiting for the pictures; one that comes out NaN or black is decoded again
        in fp32."""
        import torch

        with torch.inference_mode():
            pixels, bad = self.decode_pixels(latents)
        marks = GpuMarks(self.device)
        pending = PendingBatch(pixels.cpu(), bad.cpu(), latents, marks, None, [])
        res = self.collect([pending], [])
        return res.images, res.notes

    def close(self) -> None:
        for handle in self.hook_handles:
            handle.remove()
        self.hook_handles = []
        self.c = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------
# helpers: devices, requests, tensors


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device is {name!r} but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def move_model(model: Any, device: Any, dtype: Any) -> None:
    """``model.to(device, dtype)``, skipping the dtype cast when it is already right."""
    if next(model.parameters()).dtype == dtype:
        model.to(device)
    else:
        model.to(device, dtype)


def resolve_model_set(rc: Any) -> ModelSet:
    if rc.model_set in rc.model_sets:
        return rc.model_sets[rc.model_set]
    if rc.model_set == "tiny":
        return TINY_MODEL_SET
    raise ConfigError(
        f"render.model_set {rc.model_set!r} is not defined; valid names are: {', '.join(sorted(rc.model_sets))}"
    )


def check_request(req: DenoiseRequest) -> None:
    n = len(req.seeds)
    if not (len(req.images) == len(req.masks) == len(req.controls) == n) or n == 0:
        raise ValueError("images, masks, controls and seeds must have one entry per candidate")
    h, w = req.images[0].shape[:2]
    if h % 64 or w % 64:
        raise ValueError(f"model-resolution images must have sides that are multiples of 64, got {w}x{h}")
    if len(req.scales) < req.steps - req.start_step:
        raise ValueError("scales needs one entry per step that is run")


def slice_request(req: DenoiseRequest, a: int, b: int) -> DenoiseRequest:
    import dataclasses

    return dataclasses.replace(
        req, images=req.images[a:b], masks=req.masks[a:b], controls=req.controls[a:b], seeds=req.seeds[a:b]
    )


def prepare_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(N, *shape) float32 standard normal; row i comes from torch.Generator().manual_seed(seeds[i])
    on the CPU, so a candidate re-renders alone, on any device, from its seed."""
    import torch

    rows = [torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(rows)


def prepare_masks(masks: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """N × (H, W) uint8 (255 repaint) → (N, 1, h, w) float in {0, 1} at the latent size (area
    average, then any coverage counts as repaint)."""
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.stack(masks).astype(np.float32) / 255.0)[:, None]
    m = F.adaptive_avg_pool2d(m, size) if m.shape[-2:] != size else m
    return (m > 0.01).float()


def to_pixels(img: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [-1, 1] → (N, H, W, 3) uint8, contiguous, on its device."""
    import torch

    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def tokenize_chunks(tokenizer: Any, text: str) -> list[list[int]]:
    """Token ids in chunks of 77: BOS, up to 75 tokens, EOS, padding. Never truncated."""
    ids = tokenizer(text, truncation=False, add_special_tokens=False, verbose=False).input_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)] or [[]]
    return [[bos, *ch, eos] + [pad] * (CHUNK - len(ch)) for ch in chunks]


def pad_chunks(tokenizer: Any, chunks: list[list[int]], k: int) -> list[list[int]]:
    empty = tokenize_chunks(tokenizer, "")[0]
    return chunks + [empty] * (k - len(chunks))


def sampler_spec(name: str) -> tuple[str, bool]:
    """``render.sampler`` → (step rule, Karras spacing): "dpmpp_2m_karras" → ("dpmpp_2m", True)."""
    from autoshoot.config.render import SAMPLERS

    if name not in SAMPLERS:
        raise ConfigError(f"unknown render.sampler {name!r}; valid names are: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]["rule"], bool(SAMPLERS[name]["karras"])


def sampler_step(name: str, x: Any, x0: Any, sigmas: Any, i: int, history: list[Any]) -> Any:
    """One step from sigmas[i] to sigmas[i + 1] given the model's x0 prediction (k-diffusion form).

    euler     x + (x - x0) / sigma · (sigma_next - sigma)   (EulerDiscreteScheduler)
    dpmpp_2m  DPM-Solver++(2M) (Lu et al. 2022), second order from the previous x0 prediction
              (``history[-1]``), first order on the first step and into sigma = 0
              (DPMSolverMultistepScheduler, dpmsolver++, order 2)
    """
    import torch

    rule, _ = sampler_spec(name)
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    if rule == "euler":
        return x + (x - x0) / sigma * (sigma_next - sigma)
    # dpmpp_2m, in t = -log(sigma)
    if i == len(sigmas) - 2:  # into sigma = 0 (the schedule's last; read without a synchronisation)
        return x0
    t, t_next = -torch.log(sigma), -torch.log(sigma_next)
    h = t_next - t
    denoised = x0
    if history and i > 0:
        h_last = t - (-torch.log(sigmas[i - 1]))
        r = h_last / h
        denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * history[-1]
    return (sigma_next / sigma) * x - torch.expm1(-h) * denoised


def fit_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Model-resolution (w, h): the long side scaled to ``long_side``, both rounded to multiples of 64."""
    s = long_side / max(width, height)
    return max(64, int(round(width * s / 64)) * 64), max(64, int(round(height * s / 64)) * 64)


# ---------------------------------------------------------------------------------------
# loading


def load_components(ms: ModelSet, dtype: Any, offline: bool) -> Components:
    """Load every model of a model set (see ``autoshoot models check`` for what is missing)."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
    )

    if ms.tiny:
        from autoshoot.backends.sdxl_tiny import tiny_model_set_on_disk

        ms = tiny_model_set_on_disk()
    # 1. base: a single .safetensors file or a diffusers folder / hub id
    base = os.path.expanduser(ms.base)
    try:
        if base.endswith((".safetensors", ".ckpt")):
            kwargs: dict[str, Any] = {"dtype": dtype}
            if ms.base_config:
                kwargs["config"] = ms.base_config
            pipe = StableDiffusionXLPipeline.from_single_file(base, local_files_only=offline, **kwargs)
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                base, dtype=dtype, variant=ms.variant or None, local_files_only=offline
            )
    except (OSError, ValueError) as err:
        from autoshoot.hub import fetch_problem

        where = f"{ms.base} ({fetch_problem(err)})"
        raise ModelMissingError([("SDXL base", where, fetch_hint(ms.base))]) from err
    # 2. VAE override
    if ms.vae:
        try:
            pipe.vae = AutoencoderKL.from_pretrained(
                os.path.expanduser(ms.vae), dtype=dtype, local_files_only=offline
            )
        except OSError as err:
            raise ModelMissingError([("VAE", ms.vae, fetch_hint(ms.vae))]) from err
    # 3. LoRAs, fused into the weights (no per-step cost)
    apply_loras(pipe, ms.loras)
    # 4. ControlNet(s)
    controlnet, controlnets = None, {}
    if ms.controlnet_kind == "union":
        controlnet = load_union_controlnet(ms, dtype, offline)
    else:
        for mode, source in ms.controlnets.items():
            try:
                controlnets[mode] = ControlNetModel.from_pretrained(
                    os.path.expanduser(source), dtype=dtype, local_files_only=offline
                )
            except OSError as err:
                raise ModelMissingError([(f"ControlNet ({mode})", source, fetch_hint(source))]) from err
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return Components(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        text_encoder_2=pipe.text_encoder_2,
        tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2,
        scheduler=scheduler,
        controlnet=controlnet,
        controlnets=controlnets,
    )


def load_union_controlnet(ms: ModelSet, dtype: Any, offline: bool) -> Any:
    """A ControlNetUnionModel from a folder/hub id, optionally naming its weights and config files
    (xinsir's repo keeps the promax files beside the plain ones)."""
    from diffusers import ControlNetUnionModel

    source = os.path.expanduser(ms.controlnet)
    try:
        if not ms.controlnet_weights:
            return ControlNetUnionModel.from_pretrained(source, dtype=dtype, local_files_only=offline)
        cfg_path = resolve_file(source, ms.controlnet_config or "config.json", offline)
        weights_path = resolve_file(source, ms.controlnet_weights, offline)
    except OSError as err:
        raise ModelMissingError(
            [("ControlNet (union promax)", ms.controlnet, fetch_hint(ms.controlnet))]
        ) from err
    from safetensors.torch import load_file

    config = ControlNetUnionModel.load_config(str(cfg_path))
    model = ControlNetUnionModel.from_config(config)
    missing, unexpected = model.load_state_dict(load_file(str(weights_path)), strict=False)
    if missing:
        raise ConfigError(
            f"{weights_path} does not fit {cfg_path}: {len(missing)} weights are missing, e.g. {missing[0]}"
        )
    return model.to(dtype)


def resolve_file(source: str, filename: str, offline: bool) -> Path:
    if is_local_source(source):
        path = Path(source) / filename
        if not path.is_file():
            raise OSError(f"{path} does not exist")
        return path
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source, filename, local_files_only=offline))


def apply_loras(pipe: Any, loras: tuple) -> list[str]:
    """Load local LoRA files (kohya or diffusers), set their weights, fuse them, drop the adapters."""
    if not loras:
        return []
    names, weights = [], []
    for i, spec in enumerate(loras):
        path = Path(os.path.expanduser(spec.path))
        if not path.is_file():
            raise ModelMissingError(
                [
                    (
                        f"LoRA {i + 1}",
                        spec.path,
                        "put the .safetensors file there or fix the path in your profile",
                    )
                ]
            )
        name = spec.name or f"{path.stem.replace('.', '_')}_{i}"
        with warnings.catch_warnings():
            # peft warns whenever a second adapter joins a model: two adapters are the point here
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipe.load_lora_weights(str(path), adapter_name=name)
        names.append(name)
        weights.append(spec.weight)
    pipe.set_adapters(names, adapter_weights=weights)
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()
    logger.info("fused LoRAs %s at %s", names, weights)
    return names


def fetch_hint(source: str) -> str:
    """``download_hint``: the one wording of how to provide a model (it says how to allow
    fetching when --offline or HF_HUB_OFFLINE forbade it)."""
    return download_hint(source)


def __getattr__(name: str) -> Any:
    """The tiny components moved to ``autoshoot.backends.sdxl_tiny``; their old names here stay
    as re-exports (imported on first use: that module imports this one)."""
    if name in _MOVED_TO_TINY:
        from autoshoot.backends import sdxl_tiny

        return getattr(sdxl_tiny, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MOVED_TO_TINY = (
    "TINY_VERSION",
    "build_byte_tokenizers",
    "build_tiny_components",
    "byte_symbols",
    "save_components",
    "save_tiny_components",
    "tiny_cache_dir",
    "tiny_model_set_on_disk",
)

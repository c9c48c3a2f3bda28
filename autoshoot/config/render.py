"""Config of the ``render``, ``refine`` and ``composite`` stages and the SDXL model sets.

The defaults are the reference workflow's parameters (see DESIGN.md):

    stage 1   Euler, 30 steps, CFG 6, LoRAs 0.75 / 0.5, FreeU v2 (1.3, 1.4, 0.9, 0.2),
              ONE union ControlNet on canny: scale 0.4 for the first 20% of the steps, then 0.9
    stage 2   latent noise 2.5 injected, steps 30→40 of a 40-step schedule re-run on a window
              around the hand, union ControlNet on depth 1.0 + scribble 0.8 + canny 0.35
    composite the original product pasted back at ×1.01 about its centre, outline feathered 1.5 px

Model sets are named; ``model_set`` picks one. A model is a hub id (``owner/name``), a local
folder in diffusers layout, or a local single ``.safetensors`` file. LoRAs are local files
(kohya or diffusers format); the reference's two LoRAs are not on the hub, so the default
set has none and a user adds them in a profile file::

    # my.toml   (autoshoot shoot bags.csv --profile my.toml)
    base = "default"
    [render.model_sets.default]
    base = "/models/juggernautXL_ragnarok.safetensors"
    [[render.model_sets.default.loras]]
    path = "/models/people_holding_bags.safetensors"
    weight = 0.75
    [[render.model_sets.default.loras]]
    path = "/models/hands_gripping_handles.safetensors"
    weight = 0.5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Control modes of the SDXL union ("promax") ControlNet, as trained by its authors.
UNION_MODES = {
    "openpose": 0,
    "depth": 1,
    "scribble": 2,
    "canny": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "inpaint": 7,
}


# Samplers: the step rule (autoshoot.backends.sdxl.sampler_step), Karras sigma spacing, and the
# step counts that come with them (stage 1's steps; stage 2 re-runs the last quarter of a
# schedule a third longer, as the reference's 30 → 40 of 40). DPM++ 2M Karras at 25 steps is
# what photoreal SDXL finetunes such as RealVisXL recommend; Euler at 30 is the reference.
SAMPLERS: dict[str, dict] = {
    "euler": {
        "rule": "euler",
        "karras": False,
        "steps": 30,
        "refine_steps_total": 40,
        "refine_start_step": 30,
    },
    "euler_karras": {
        "rule": "euler",
        "karras": True,
        "steps": 30,
        "refine_steps_total": 40,
        "refine_start_step": 30,
    },
    "dpmpp_2m": {
        "rule": "dpmpp_2m",
        "karras": False,
        "steps": 25,
        "refine_steps_total": 33,
        "refine_start_step": 25,
    },
    "dpmpp_2m_karras": {
        "rule": "dpmpp_2m",
        "karras": True,
        "steps": 25,
        "refine_steps_total": 33,
        "refine_start_step": 25,
    },
}
STEP_KEYS = ("steps", "refine_steps_total", "refine_start_step")


# SDXL's training buckets near 1 MP (w, h), portrait and square; the landscape forms swap them.
_PORTRAIT_BUCKETS = ((1024, 1024), (896, 1152), (832, 1216), (768, 1344), (640, 1536))
SDXL_BUCKETS = _PORTRAIT_BUCKETS + tuple((h, w) for w, h in _PORTRAIT_BUCKETS[1:])


@dataclass(frozen=True)
class LoraSpec:
    path: str  # local .safetensors, kohya or diffusers format
    weight: float = 1.0
    name: str = ""  # adapter name; defaults to the file's stem


@dataclass(frozen=True)
class ModelSet:
    """Where the SDXL models come from. Every entry is a hub id, a local folder or a local file."""

    # The photoreal default: RealVisXL V5.0 (an SDXL finetune for photographs of people), in
    # diffusers layout with fp16 weights on the hub. Why: plain SDXL base renders people with
    # waxy skin and a painterly look; the reference workflow uses a photoreal finetune
    # (Juggernaut XL); RealVisXL V5.0 is published in diffusers format with an fp16 variant, so it
    # loads like SDXL base through the same code. Others are one setting away (MODEL_SETS):
    # --set render.model_set=sdxl-base (plain SDXL base) or =juggernaut (Juggernaut XL v9).
    base: str = "SG161222/RealVisXL_V5.0"
    # For a single-file ``base`` (e.g. Juggernaut XL): a diffusers SDXL folder or hub id whose
    # configs and tokenizers describe the checkpoint (no weights are read from it).
    base_config: str = "stabilityai/stable-diffusion-xl-base-1.0"
    variant: str = "fp16"  # weight files of a diffusers folder: "fp16" → *.fp16.safetensors; "" plain
    controlnet_kind: Literal["union", "separate"] = "union"
    # union: one ControlNetUnionModel for every mode. The promax weights sit beside the plain
    # ones in xinsir's repo, so the file names are given explicitly.
    controlnet: str = "xinsir/controlnet-union-sdxl-1.0"
    controlnet_weights: str = "diffusion_pytorch_model_promax.safetensors"
    controlnet_config: str = "config_promax.json"
    # separate: one ControlNetModel per mode (canny, depth, scribble), hub ids or local folders.
    controlnets: dict[str, str] = field(default_factory=dict)
    # The VAE: the finetunes above keep SDXL's own VAE, which overflows to NaN in fp16 (black
    # pictures); sdxl-vae-fp16-fix is that VAE rescaled to decode the same pictures in fp16, the
    # VAE these checkpoints are paired with for fp16 inference. "" keeps the base model's VAE.
    vae: str = "madebyollin/sdxl-vae-fp16-fix"
    loras: tuple[LoraSpec, ...] = ()
    tiny: bool = False  # random tiny components built in code (tests, demo); no download


# Named SDXL model sets: ``--set render.model_set=NAME`` (a profile file can add its own).
SDXL_BASE_MODEL_SET = ModelSet(base="stabilityai/stable-diffusion-xl-base-1.0")
JUGGERNAUT_MODEL_SET = ModelSet(base="RunDiffusion/Juggernaut-XL-v9", variant="")

TINY_MODEL_SET = ModelSet(
    base="tiny",
    base_config="",
    variant="",
    controlnet="tiny",
    controlnet_weights="",
    controlnet_config="",
    vae="",
    tiny=True,
)


@dataclass(frozen=True)
class RenderConfig:
    backend: str = "sdxl"  # name in autoshoot.backends.RENDERERS
    model_set: str = "default"  # key in model_sets
    model_sets: dict[str, ModelSet] = field(
        default_factory=lambda: {
            "default": ModelSet(),
            "sdxl-base": SDXL_BASE_MODEL_SET,
            "juggernaut": JUGGERNAUT_MODEL_SET,
            "tiny": TINY_MODEL_SET,
        }
    )
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"  # fp32 on the CPU whatever this says
    # the model's working scale: stage 1 renders at SDXL's ~1 MP bucket nearest the canvas's
    # shape (SDXL_BUCKETS) times long_side / 1024; stage 2's square hand window is long_side px
    long_side: int = 1024

    # -- stage 1 --------------------------------------------------------------------------
    steps: int = 30
    cfg: float = 6.0
    # "euler" (the reference), "euler_karras", "dpmpp_2m", "dpmpp_2m_karras" (SAMPLERS); choosing
    # one with --set render.sampler=NAME also brings its step counts unless steps are set too
    sampler: str = "euler"
    control_mode: str = "canny"  # UNION_MODES key of the stage-1 condition
    control_scale_early: float = 0.4
    control_scale_late: float = 0.9
    control_switch_at: float = 0.2  # fraction of the steps run at the early scale
    freeu: tuple[float, float, float, float] = (1.3, 1.4, 0.9, 0.2)  # b1, b2, s1, s2 (FreeU v2)
    freeu_enabled: bool = True
    batch_size: int = 4  # candidates per UNet call (CFG doubles it); halved on out-of-memory
    # Speed options with a quality trade-off, off by default (timed by bench/render_gpu.py;
    # judged on real weights by bench/shortcut_quality.py; SHORTCUTS below names them):
    controlnet_cond_only: bool = False  # run the ControlNet on the prompt half of CFG only
    controlnet_every: int = 1  # recompute the ControlNet residuals every k steps, reuse between
    # classifier-free guidance only on steps cfg_start·N <= i < cfg_stop·N of an N-step schedule
    # (fractions, as diffusers' ClassifierFreeGuidance(start, stop)); on the other steps the
    # UNet and ControlNet run the prompt half alone, at half the cost. Kynkäänniemi et al.
    # (NeurIPS 2024) find guidance harmful at high noise and of little use at low noise; their
    # SDXL setting, as we read it, guides sigma in (0.28, 5.42]: at 30 Euler steps that is
    # cfg_start = 0.17, cfg_stop = 0.9 (steps 5..26 of 30: 22 guided, 8 on the prompt alone;
    # stage 2 takes the same fractions of its own 40-step schedule, so its steps 36..39 are not
    # guided). bench/shortcut_quality.py measures what it does to real pictures
    cfg_start: float = 0.0
    cfg_stop: float = 1.0

    # -- stage 2: hand refine ---------------------------------------------------------------
    refine_enabled: bool = True
    refine_steps_total: int = 40
    refine_start_step: int = 30  # re-run steps start..total of the schedule
    refine_noise_strength: float = 2.5  # latent noise added, in raw VAE-latent units
    refine_scales: dict[str, float] = field(
        default_factory=lambda: {"depth": 1.0, "scribble": 0.8, "canny": 0.35}
    )
    refine_window: float = 2.6  # crop side = this × the hand's landmark extent
    refine_min_window: int = 96  # px of the canvas
    refine_mask_dilate: float = 0.35  # hand mask grown by this × the hand extent
    refine_feather_px: int = 12  # paste-back feather
    hand_mesh: str = (
        "kinematic"  # name in autoshoot.backends.HAND_MESHES ("capsule": the landmarks as detected)
    )
    hand_search_pad: float = 0.2  # ROI around the grip, as a fraction of the canvas's long side

    # -- composite: the delivered picture ---------------------------------------------------
    composite_scale: float = 1.01  # about the product's centre
    composite_feather_px: float = 1.5  # outline only; inside the mask pixels are exact
    output_long_side: int = 2048  # px; each refined candidate is upscaled to this, then composited
    # name in autoshoot.backends.UPSCALERS: esrgan | sdxl-tile | lanczos | tiny
    # (autoshoot/backends/upscaler.py says why esrgan is the default; bench/upscale_gpu.py times them)
    upscaler: str = "esrgan"
    # esrgan: a hub repo and the weights file in it, or a local .pth/.safetensors (file then "")
    upscaler_model: str = "ai-forever/Real-ESRGAN"
    upscaler_file: str = "RealESRGAN_x2.pth"  # Real-ESRGAN x2 (RRDB, 16.7 M parameters)
    upscaler_tile: int = 0  # esrgan: run on tiles of this many input px (bounds memory); 0 = whole
    # sdxl-tile: img2img strength, its schedule's steps, the union ControlNet's tile-mode scale
    upscale_strength: float = 0.3
    upscale_steps: int = 20
    upscale_tile_control: float = 1.0

    # -- speed / memory -----------------------------------------------------------------------
    compile: bool = False  # torch.compile the UNet and ControlNet (slow first call; cached)
    compile_mode: str = "default"  # torch.compile mode, e.g. "max-autotune-no-cudagraphs" (longer warm-up)
    # "blocks": each transformer, resnet and resampler alone, blocks of one shape sharing a graph
    # (warm-up about 1-2 min); "model": each network's whole forward (warm-up about 7 min on an
    # H200, and no faster in bench/render_gpu.py: 1.35 against 1.32 s per candidate with fp8)
    compile_scope: Literal["model", "blocks"] = "blocks"
    compile_vae: bool = True  # with ``compile``: also compile the VAE decoder (batched decode)
    # Exact speed-up (same maths, fp rounding aside), on by default on the GPU:
    fuse_qkv: bool = True  # one matmul for q, k, v (self-attention) and for k, v (cross-attention)
    # scaled-dot-product attention kernel tried first on CUDA: "default" (PyTorch's order),
    # "cudnn", "flash" or "efficient"; same maths (bench/render_gpu.py --sdpa-probe times them)
    # (cuDNN's kernels are Hopper's fastest for SDXL's 64-wide heads; others stay as fallbacks)
    sdpa_backend: Literal["default", "cudnn", "flash", "efficient"] = "cudnn"
    # fp8 tensor-core matmuls in the attention blocks (Ada/Hopper; `shoot --fp8`): a speed option
    # with a small accuracy cost (row-wise scales; about 4% relative change of one UNet call).
    # The feed-forward's GEGLU and the quantisation of its output run as one Triton kernel
    # (autoshoot.backends.fp8)
    fp8_matmul: bool = False
    # channels_last convs: off by default. PyTorch's GroupNorm takes NCHW, so in eager mode every
    # norm converted the layout back and forth (copies were 14% of a step); measured 5% slower
    # eager and 4-15% slower with compile_scope "blocks" on an H200 (bench/render_gpu.py)
    channels_last: bool = False
    # 1..8: the low-VRAM render mode (fp8 weight storage, small batches); set from the run's
    # budget (run.vram, `--vram`) by autoshoot.budget when left at 0
    vram: int = 0
    low_vram_method: Literal["layerwise_fp8", "group_offload"] = "layerwise_fp8"
    # candidates per UNet call in the low-VRAM mode (CFG doubles it); halved on out-of-memory.
    # fp8 storage keeps the weights near 3 GiB, so a batch of 2 still fits 8 GiB (the VAE
    # decodes one image at a time) and runs fewer, fuller calls (bench/render_gpu.py)
    low_vram_batch_size: int = 2
    fp32_vae_retry: bool = True  # decode again in fp32 when fp16 gives NaN or black

    def __post_init__(self) -> None:
        check_speed_options(self)


def check_speed_options(rc: RenderConfig) -> None:
    """Reject speed and output settings that cannot run when the config is built, before any
    SKU starts, naming the setting and the fix."""
    from autoshoot.backends import UPSCALERS
    from autoshoot.errors import ConfigError

    UPSCALERS.check(rc.upscaler)  # an unknown name lists the valid ones
    if rc.sampler not in SAMPLERS:
        raise ConfigError(
            f"unknown render.sampler {rc.sampler!r}; valid names are: {', '.join(SAMPLERS)}; "
            "fix: e.g. --set render.sampler=dpmpp_2m_karras"
        )
    if rc.output_long_side < 64:
        raise ConfigError(
            f"render.output_long_side is {rc.output_long_side}; the delivered picture needs at least "
            "64 px on its long side; fix: --set render.output_long_side=2048"
        )
    if rc.upscaler_tile and rc.upscaler_tile < 32:
        raise ConfigError(
            f"render.upscaler_tile is {rc.upscaler_tile}; tiles need at least 32 px (0 runs the whole "
            "picture at once); fix: --set render.upscaler_tile=512"
        )
    if not 0.0 < rc.upscale_strength <= 1.0:
        raise ConfigError(
            f"render.upscale_strength is {rc.upscale_strength}; it is a fraction in (0, 1]; fix: "
            "--set render.upscale_strength=0.3"
        )

    if rc.controlnet_every < 1:
        raise ConfigError(
            f"render.controlnet_every is {rc.controlnet_every}; it must be 1 or more "
            "(1 runs the ControlNet at every step); fix: --set render.controlnet_every=1"
        )
    if not 0.0 <= rc.cfg_start <= rc.cfg_stop <= 1.0:
        raise ConfigError(
            f"render.cfg_start and render.cfg_stop are {rc.cfg_start} and {rc.cfg_stop}; they are "
            "fractions of the steps with 0 <= cfg_start <= cfg_stop <= 1; fix: e.g. "
            "--set render.cfg_start=0 --set render.cfg_stop=1 (guidance at every step)"
        )


# The speed options that change the picture, by name (bench/render_gpu.py variants, and
# bench/shortcut_quality.py, which measures what each does to the pictures and hand scores).
SHORTCUTS: dict[str, dict] = {
    "cn-cond-only": {"controlnet_cond_only": True},
    "every2": {"controlnet_every": 2},
    "cfg-interval": {"cfg_start": 0.17, "cfg_stop": 0.9},  # guided steps 5..26 of 30
}

# Options whose non-default values make pictures that differ from the reference settings'.
PICTURE_OPTIONS = ("fp8_matmul", "controlnet_cond_only", "controlnet_every", "cfg_start", "cfg_stop")


def picture_changing_options(rc: RenderConfig) -> list[str]:
    """The speed options set away from the reference, as ``--set`` would write them, e.g.
    ``["render.cfg_start=0.17", "render.cfg_stop=0.9"]``; empty at the reference settings."""
    out = []
    for name in PICTURE_OPTIONS:
        value = getattr(rc, name)
        if value != RenderConfig.__dataclass_fields__[name].default:
            shown = str(value).lower() if isinstance(value, bool) else value
            out.append(f"render.{name}={shown}")
    if 0 < rc.vram <= 8 and rc.low_vram_method == "layerwise_fp8":  # weights stored in fp8
        out.append(f"render.vram={rc.vram} (fp8 weight storage on a GPU)")
    return out


PROFILES: dict[str, dict] = {
    "default": {},
    "tiny": {
        "model_set": "tiny",
        "dtype": "fp32",
        "long_side": 256,
        "steps": 4,
        "refine_steps_total": 4,
        "refine_start_step": 2,
        "batch_size": 2,
        "refine_min_window": 64,
        "upscaler": "tiny",  # the default final size, from a tiny ESRGAN built in code
    },
}

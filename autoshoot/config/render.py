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


@dataclass(frozen=True)
class LoraSpec:
    path: str  # local .safetensors, kohya or diffusers format
    weight: float = 1.0
    name: str = ""  # adapter name; defaults to the file's stem


@dataclass(frozen=True)
class ModelSet:
    """Where the SDXL models come from. Every entry is a hub id, a local folder or a local file."""

    base: str = "stabilityai/stable-diffusion-xl-base-1.0"
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
    vae: str = "madebyollin/sdxl-vae-fp16-fix"  # "" keeps the base model's VAE
    loras: tuple[LoraSpec, ...] = ()
    tiny: bool = False  # random tiny components built in code (tests, demo); no download


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
        default_factory=lambda: {"default": ModelSet(), "tiny": TINY_MODEL_SET}
    )
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"  # fp32 on the CPU whatever this says
    long_side: int = 1024  # the model's working resolution (long side, multiple of 64)

    # -- stage 1 --------------------------------------------------------------------------
    steps: int = 30
    cfg: float = 6.0
    sampler: Literal["euler"] = "euler"
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
    hand_mesh: str = "capsule"  # name in autoshoot.backends.HAND_MESHES
    hand_search_pad: float = 0.2  # ROI around the grip, as a fraction of the canvas's long side

    # -- composite --------------------------------------------------------------------------
    composite_scale: float = 1.01  # about the product's centre
    composite_feather_px: float = 1.5  # outline only; inside the mask pixels are exact

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
    """Reject speed settings that cannot run when the config is built, before any SKU starts,
    naming the setting and the fix."""
    from autoshoot.errors import ConfigError

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
    },
}

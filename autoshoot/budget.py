"""What runs under a GPU memory budget (``--vram``): the VLM and the render mode per budget.

``fit_to_budget(config)`` runs once at the start of a run. It resolves ``run.vram`` ("auto":
the GPU's free memory now) to a number of GiB and picks, for that budget:

    budget    VLM (analyze.model)              render
    40+ GiB   Qwen2.5-VL-7B, bf16              fp16 weights, 4 candidates per UNet call
    20-40     Qwen2.5-VL-7B, bf16              same; the VLM moves to CPU memory while rendering
    14-20     Qwen2.5-VL-3B, bf16              fp16 weights, 2 candidates per call
    10-14     Qwen2.5-VL-3B, bf16              fp8 weight storage (render.vram=8), 2 per call
    < 10      Qwen3-VL-2B, bf16                fp8 weight storage, 1 candidate per call

Only what the user left at its default is changed: the VLM when ``analyze.model`` is the model
``analyze.vram_models`` names for the largest budget (name another model, or set
``analyze.vram_models`` to ``{}``, to keep yours whatever the budget), a render setting when it
still has its default value. The CPU path is unchanged (no budget).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoshoot.run.models import parse_vram

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger("autoshoot.residency")


@dataclass(frozen=True)
class Tier:
    min_gib: float
    name: str
    render: dict[str, Any] = field(default_factory=dict)


# the render settings per budget; the VLM comes from analyze.vram_models
TIERS = (
    Tier(40, "40+ GiB"),
    Tier(20, "24 GiB"),
    Tier(14, "16 GiB", {"batch_size": 2}),
    Tier(10, "12 GiB", {"vram": 8, "low_vram_batch_size": 2}),
    Tier(0, "8 GiB", {"vram": 8, "low_vram_batch_size": 1}),
)


def tier_for(gib: float) -> Tier:
    return next(t for t in TIERS if gib >= t.min_gib)


def vlm_for(vram_models: dict[str, str], gib: float) -> str | None:
    """The model ``vram_models`` ({min GiB: model}) names for this budget; None when empty."""
    fitting = sorted(((float(k), v) for k, v in vram_models.items()), reverse=True)
    for min_gib, model in fitting:
        if gib >= min_gib:
            return model
    return fitting[-1][1] if fitting else None


def largest_vlm(vram_models: dict[str, str]) -> str | None:
    if not vram_models:
        return None
    return max(((float(k), v) for k, v in vram_models.items()))[1]


def uses_gpu(config: Config) -> bool:
    device = str(config.run.device)
    if device == "cpu":
        return False
    from autoshoot.run.models import free_gpu_gib

    return free_gpu_gib() is not None


def resolve_budget(config: Config) -> float | None:
    """``run.vram`` in GiB: a number as given, "auto" → the GPU's free memory; None: no limit."""
    value = parse_vram(config.run.vram)
    if value == 0:
        return None
    if value is None:
        from autoshoot.run.models import free_gpu_gib

        free = free_gpu_gib(config.run.device if str(config.run.device).startswith("cuda") else "cuda")
        return None if free is None else round(free, 1)
    return value


def fit_to_budget(config: Config, gib: float | None = None) -> Config:
    """The config for this run's budget (see the module docstring). ``gib``: the budget, when
    already known (tests); else resolved from ``run.vram`` and the GPU."""
    if gib is None:
        if not uses_gpu(config):
            return config
        gib = resolve_budget(config)
        if gib is None:  # no limit
            return dataclasses.replace(config, run=dataclasses.replace(config.run, vram="0"))
    tier = tier_for(gib)
    changes: list[str] = []
    analyze = config.analyze
    if analyze.vlm == "qwen" and analyze.model == largest_vlm(analyze.vram_models):
        model = vlm_for(analyze.vram_models, gib)
        if model and model != analyze.model:
            analyze = dataclasses.replace(analyze, model=model)
            changes.append(f"analyze.model={model}")
    render = config.render
    defaults = {f.name: f.default for f in dataclasses.fields(render)}
    updates = {k: v for k, v in tier.render.items() if getattr(render, k) == defaults[k]}
    if updates:
        render = dataclasses.replace(render, **updates)
        changes += [f"render.{k}={v}" for k, v in updates.items()]
    run = dataclasses.replace(config.run, vram=f"{gib:g}")
    logger.info(
        "GPU budget %g GiB (%s tier): %s", gib, tier.name, ", ".join(changes) or "the settings as configured"
    )
    return dataclasses.replace(config, run=run, analyze=analyze, render=render)


def out_of_memory_fix(budget_label: str, gib: float | None) -> str:
    """The message part that names the budget and the setting that fixes an out-of-memory."""
    if gib:
        lower = max(4, int(gib * 0.75))
        return (
            f"out of GPU memory within the {budget_label} budget (run.vram); other programs or "
            f"activations took more than planned: fix: pass a lower budget, e.g. --vram {lower} "
            "(models leave the GPU sooner, smaller render batches), or --set render.batch_size=1"
        )
    return (
        "out of GPU memory with no budget set (--vram 0): fix: pass the GPU's size, e.g. --vram 24 "
        "(models then share the GPU in turn), or --vram auto"
    )


def is_out_of_memory(err: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or an allocator message saying so), without importing torch."""
    return type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(err)

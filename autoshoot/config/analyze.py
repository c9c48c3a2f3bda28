"""Config of the ``analyze`` stage (the brief): which VLM, how it is run, and brand profiles."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class OpenAIConfig:
    """Any OpenAI-compatible chat endpoint (e.g. vLLM serving Qwen2.5-VL)."""

    base_url: str = "http://localhost:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable; unset → no key sent
    timeout_s: float = 60.0  # per HTTP request
    retries: int = 3  # extra tries after a timeout, a connection error, 429 or 5xx
    backoff_s: float = 1.0  # first wait between tries; doubles each time
    concurrency: int = 4  # requests in flight at once
    json_schema: bool = True  # ask for JSON-schema guided decoding (response_format)
    coords: Literal["pixels", "rel1000"] = "pixels"  # Qwen2.5-VL: pixels; Qwen3-VL: rel1000


VRAM_MODELS = {
    "20": "Qwen/Qwen2.5-VL-7B-Instruct",  # 15.5 GiB of bf16 weights
    "10": "Qwen/Qwen2.5-VL-3B-Instruct",  # 7.0 GiB
    "0": "Qwen/Qwen3-VL-2B-Instruct",  # 4.0 GiB
}


@dataclass(frozen=True)
class AnalyzeConfig:
    vlm: str = "rules"  # name in autoshoot.backends.VLMS: rules | qwen | openai
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id or local folder (Qwen2.5-VL or Qwen3-VL)
    batch_size: int = 8  # SKUs per VLM generate call (left padding)
    # visual tokens are bounded by the resized image's pixels (one token per 28x28 for Qwen2.5-VL)
    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1280 * 28 * 28
    max_new_tokens: int = 512  # a brief is about 200-300 tokens of JSON
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    repair_retries: int = 1  # re-asks with the validation errors before ``rules`` fills fields
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    # brand → fixed brief fields (override columns: persona, garments, setting, lighting, ...),
    # applied to every SKU of that brand before the row's own override columns
    brands: dict[str, dict[str, str]] = field(default_factory=dict)
    # the VLM per GPU budget ({min GiB: model}, autoshoot.budget): used while ``model`` is the
    # entry for the largest budget; name another model, or set {} to keep yours at any budget
    vram_models: dict[str, str] = field(default_factory=lambda: dict(VRAM_MODELS))


class _CopyingProfiles(dict):
    """Hands out deep copies, so a config load that merges into a profile never changes it."""

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(super().__getitem__(key))

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(super().get(key, default))


PROFILES: dict[str, dict] = _CopyingProfiles(
    {
        "default": {"vlm": "qwen", "model": "Qwen/Qwen2.5-VL-7B-Instruct"},
        "tiny": {"vlm": "rules"},
    }
)

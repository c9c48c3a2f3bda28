"""``qwen``: Qwen2.5-VL or Qwen3-VL through transformers and qwen-vl-utils.

The model is loaded once per run (``QwenVLM(config)``); ``describe`` batches SKUs through one
``generate`` call per ``analyze.batch_size`` with left padding, parses the JSON answers, re-asks
the invalid ones with their errors and lets ``rules`` fill what is still invalid.

Coordinates: Qwen2.5-VL answers in absolute pixels of the image it saw (after qwen-vl-utils'
``smart_resize``), Qwen3-VL in 0..1000 relative values; both are converted to input pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autoshoot.brief import BriefRequest, BriefResult, open_rgb
from autoshoot.brief.parse import Pending, describe_with_repair
from autoshoot.brief.prompt import render_vlm_instruction
from autoshoot.hub import download_hint, is_local_source, is_offline
from autoshoot.run.models import on_own_stream

logger = logging.getLogger(__name__)

# model_type → (coordinate convention, vision patch size)
MODEL_FAMILIES = {
    "qwen2_vl": ("pixels", 14),
    "qwen2_5_vl": ("pixels", 14),
    "qwen3_vl": ("rel1000", 16),
    "qwen3_vl_moe": ("rel1000", 16),
}
SPATIAL_MERGE = 2


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def resolve_attention(name: str, device: str) -> str:
    """flash_attention_2 only where the package and a GPU are there; sdpa otherwise."""
    if name == "flash_attention_2":
        import importlib.util

        if not device.startswith("cuda") or importlib.util.find_spec("flash_attn") is None:
            logger.warning("flash_attention_2 is not available here (needs CUDA and flash-attn); using sdpa")
            return "sdpa"
    return name


class QwenVLM:
    """The ``qwen`` backend. ``QwenVLM(config)`` loads ``config.analyze.model`` (hub id or folder)."""

    name = "qwen"

    def __init__(self, config: Any, model: Any = None, processor: Any = None):
        self.config = config
        self.settings = config.analyze
        if not 0 < self.settings.min_pixels <= self.settings.max_pixels:
            from autoshoot.errors import ConfigError

            raise ConfigError(
                f"analyze.min_pixels ({self.settings.min_pixels}) must be positive and at most analyze.max_pixels "
                f"({self.settings.max_pixels}); e.g. min 200704 (256 visual tokens), max 1003520 (1280 tokens)"
            )
        self.device = resolve_device(config.run.device)
        if model is None or processor is None:
            model, processor = self.load(config)
        self.model = model
        self.processor = processor
        model_type = getattr(model.config, "model_type", "qwen2_5_vl")
        if model_type not in MODEL_FAMILIES:
            logger.warning("unknown Qwen-VL model type %r; assuming Qwen2.5-VL conventions", model_type)
        self.convention, self.patch_size = MODEL_FAMILIES.get(model_type, ("pixels", 14))

    # -- loading ------------------------------------------------------------------------

    @staticmethod
    def load(config: Any) -> tuple[Any, Any]:
        """Load model and processor with ``from_pretrained`` (hub id, cache or local folder)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        settings = config.analyze
        device = resolve_device(config.run.device)
        source = settings.model
        local_only = is_offline(config)
        logger.info("loading VLM %s on %s", source, device)
        try:
            processor = AutoProcessor.from_pretrained(
                source,
                size={"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
                local_files_only=local_only,
            )
            model = AutoModelForImageTextToText.from_pretrained(
                source,
                dtype=resolve_dtype(settings.dtype, device),
                attn_implementation=resolve_attention(settings.attn_implementation, device),
                device_map=device if device.startswith("cuda") else None,
                local_files_only=local_only,
            )
        except OSError as err:  # not in the cache and not fetchable, or a broken folder
            from autoshoot.errors import ModelMissingError

            raise ModelMissingError(
                [
                    (
                        "vlm (brief)",
                        f"{source}: {str(err).splitlines()[0]}",
                        missing_model_fix(source),
                    )
                ]
            ) from err
        if not device.startswith("cuda"):
            model = model.to(device)
        model.eval()
        return model, processor

    # -- the work -----------------------------------------------------------------------

    def describe(self, requests: list[BriefRequest]) -> list[BriefResult]:
        """One brief per request, in order; batches of ``analyze.batch_size`` per generate."""
        results: list[BriefResult] = []
        size = max(1, self.settings.batch_size)
        for start in range(0, len(requests), size):
            chunk = [self.prepare_request(r) for r in requests[start : start + size]]
            results.extend(
                describe_with_repair(
                    chunk,
                    self.ask,
                    convention=self.convention,
                    backend=self.name,
                    repair_retries=self.settings.repair_retries,
                )
            )
        return results

    def prepare_request(self, request: BriefRequest) -> Pending:
        """Resize the photo as qwen-vl-utils will and write the instruction for that size."""
        from qwen_vl_utils import smart_resize

        image = open_rgb(request.image)
        width, height = image.size
        new_h, new_w = smart_resize(
            height,
            width,
            factor=self.patch_size * SPATIAL_MERGE,
            min_pixels=self.settings.min_pixels,
            max_pixels=self.settings.max_pixels,
        )
        seen = image.resize((new_w, new_h)) if (new_w, new_h) != (width, height) else image
        fields = request.catalog_fields()
        instruction = render_vlm_instruction(
            fields, (new_w, new_h), coords=self.convention, seed=int(request.seed or 0)
        )
        return Pending(request=request, image=seen, input_size=(width, height), instruction=instruction)

    def build_messages(self, item: Pending) -> list[dict[str, Any]]:
        """The chat for one item: the image and instruction, then any repair turns."""
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "image": item.image,
                        "min_pixels": self.settings.min_pixels,
                        "max_pixels": self.settings.max_pixels,
                    },
                    {"type": "text", "text": item.instruction},
                ],
            }
        ]
        for role, text in item.history:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
        return messages

    def ask(self, items: list[Pending], min_new_tokens: int | None = None) -> list[str | BaseException]:
        """One batched generate over ``items``; returns the decoded answers (or the error for all)."""
        try:
            return self.generate([self.build_messages(item) for item in items], min_new_tokens=min_new_tokens)
        except Exception as err:  # OOM, a broken processor: every item of the batch failed
            logger.exception("Qwen-VL generate failed for %d item(s)", len(items))
            return [err for _ in items]

    @on_own_stream
    def generate(
        self, conversations: list[list[dict[str, Any]]], min_new_tokens: int | None = None
    ) -> list[str]:
        """Chat template + ``process_vision_info`` + processor (left padding) + greedy ``generate``."""
        import torch
        from qwen_vl_utils import process_vision_info

        # 1. texts and images, in batch order
        texts = [
            self.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            for conv in conversations
        ]
        images, _videos = process_vision_info(conversations, image_patch_size=self.patch_size)
        # 2. tokenize with left padding so that every answer starts at the same column
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        # 3. greedy decoding
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.settings.max_new_tokens,
            "do_sample": False,
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if min_new_tokens:
            kwargs["min_new_tokens"] = min_new_tokens
            kwargs["max_new_tokens"] = max(min_new_tokens, kwargs["max_new_tokens"])
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].cpu()  # on this stream: its work only
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def close(self) -> None:
        import gc

        self.model = None
        self.processor = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # closing must never raise
            pass


# What from_pretrained reads of a Qwen-VL repo: configs, tokenizer, chat template, weights.
MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")


def fetch_model(source: str, offline: bool) -> str:
    """Download a hub model that is not in the cache yet; '' when it is there, else why not.

    A local folder, a cached model or offline mode fetch nothing (``model_is_available``
    judges those). Progress bars and resume come from huggingface_hub.
    """
    path = Path(source).expanduser()
    if offline or path.exists() or source.startswith((".", "/", "~")):
        return ""
    try:
        from huggingface_hub import snapshot_download, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return ""
        snapshot_download(source, allow_patterns=list(MODEL_FILES))
    except Exception as err:  # no network, a wrong id, a gated repo
        from autoshoot.hub import fetch_problem

        return f"not fetched: {fetch_problem(err)}"
    return ""


def missing_model_fix(source: str, config: Any = None) -> str:
    """What to do when the VLM at ``source`` (a hub id or a local folder) is not there."""
    other = "" if is_local_source(source) else "; or set analyze.model to a local folder"
    return f"{download_hint(source, config)}{other}; or use the model-free brief with --set analyze.vlm=rules"


def model_is_available(source: str, offline: bool) -> tuple[bool, str]:
    """Whether ``from_pretrained(source)`` can work here, without importing transformers.

    A local folder needs config.json; a hub id needs to be in the HF cache when offline.
    """
    if is_local_source(source):
        if (Path(source).expanduser() / "config.json").is_file():
            return True, ""
        return False, f"the folder {source} has no config.json"
    if not offline:
        return True, ""  # from_pretrained will fetch it
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
    except Exception:  # a malformed id, a broken cache
        cached = None
    if isinstance(cached, str):
        return True, ""
    return False, f"{source} is not in the Hugging Face cache and downloads are off"

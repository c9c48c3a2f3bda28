"""Optional aesthetic / prompt-alignment scorers that break ties between candidates.

A scorer is anything with ``score(images, prompt) -> list[float]`` (higher is better), built
by a factory ``factory(config)`` registered in ``autoshoot.backends.AESTHETIC_SCORERS``.
The hand score stays the ranking's first key; ``score.aesthetic_weight`` (0 by default)
decides whether this one only breaks ties or also mixes in.

Shipped adapters (their weights are not bundled; the user provides them):
  clip         CLIP image-text similarity (CLIPScore). Also loads HPS-style fine-tuned CLIP
               checkpoints saved in the transformers format: ``score.aesthetic_model``.
  imagereward  ImageReward through its own package (``pip install image-reward``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import numpy as np

from autoshoot.run.models import one_call_at_a_time

logger = logging.getLogger(__name__)


@runtime_checkable
class AestheticScorer(Protocol):
    def score(self, images: list[np.ndarray], prompt: str) -> list[float]:
        """images: HxWx3 uint8 RGB each. Returns one score per image, higher is better."""
        ...


def _model_source(config: Any, default: str) -> str:
    score_config = getattr(config, "score", config)
    return score_config.aesthetic_model or default


class ClipAlignmentScorer:
    """Cosine similarity of CLIP image and text embeddings, in [-1, 1].

    Args:
        config: a Config (uses ``score.aesthetic_model``, default ``openai/clip-vit-large-patch14``),
        model / processor: already-built transformers objects (tests pass tiny ones).
    """

    def __init__(self, config: Any = None, model: Any = None, processor: Any = None):
        import torch  # noqa: F401  (heavy: only when this scorer is used)
        from transformers import CLIPModel, CLIPProcessor

        source = _model_source(config, "openai/clip-vit-large-patch14") if config is not None else ""
        self.model = model if model is not None else CLIPModel.from_pretrained(source)
        self.processor = processor if processor is not None else CLIPProcessor.from_pretrained(source)
        self.model.eval()

    @one_call_at_a_time
    def score(self, images: list[np.ndarray], prompt: str) -> list[float]:
        import torch

        inputs = self.processor(
            text=[prompt], images=list(images), return_tensors="pt", padding=True, truncation=True
        )
        with torch.no_grad():
            img = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            txt = self.model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
            )
        img = torch.nn.functional.normalize(getattr(img, "pooler_output", img), dim=-1)
        txt = torch.nn.functional.normalize(getattr(txt, "pooler_output", txt), dim=-1)
        return [float(v) for v in (img @ txt.T)[:, 0]]


class ImageRewardScorer:
    """ImageReward (Xu et al. 2023) through the ``image-reward`` package."""

    def __init__(self, config: Any = None):
        try:
            import ImageReward as reward  # type: ignore[import-not-found]
        except ImportError as err:
            from autoshoot.errors import ConfigError

            raise ConfigError(
                "score.aesthetic = 'imagereward' needs the image-reward package: pip install image-reward, "
                "or set score.aesthetic = '' to rank by hand score alone"
            ) from err
        self.model = reward.load(_model_source(config, "ImageReward-v1.0"))

    @one_call_at_a_time
    def score(self, images: list[np.ndarray], prompt: str) -> list[float]:
        from PIL import Image

        return [float(self.model.score(prompt, Image.fromarray(im))) for im in images]

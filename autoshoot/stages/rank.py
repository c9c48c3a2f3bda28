"""The ``rank`` stage: pick each SKU's best candidate, and accept it or send it to review.

The ranking key is the hand score; scores within ``score.tie_margin`` of each other are
tied and the tie is broken by secondary scores: the optional aesthetic / prompt-alignment
scorer (``score.aesthetic``), then the anatomy, grip and scene components, then fewer
reasons, then the lower index. Returns::

    {"status": "accepted" | "review", "reason": str, "best_index": int, "hand_score": float,
     "n_candidates": int, "order": [indices, best first], "secondary": {index: score}}
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.stages.base import Job, ModelSpec, Stage

if TYPE_CHECKING:
    from autoshoot.config import Config
    from autoshoot.config.score import ScoreConfig

logger = logging.getLogger(__name__)

SECONDARY_COMPONENTS = ("anatomy", "grip", "scene", "stability", "confidence")


class RankStage(Stage):
    name: ClassVar[str] = "rank"
    version: ClassVar[str] = "1"
    config_sections: ClassVar[tuple[str, ...]] = ("score",)

    def models(self, config: Config) -> list[ModelSpec]:
        if not config.score.aesthetic:
            return []
        source = config.score.aesthetic_model or f"the {config.score.aesthetic} default weights"
        return [
            ModelSpec(
                f"aesthetic scorer: {config.score.aesthetic}",
                source,
                "set score.aesthetic_model to local weights",
            )
        ]

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        if config.score.aesthetic:
            from autoshoot.backends import AESTHETIC_SCORERS

            AESTHETIC_SCORERS.check(config.score.aesthetic)
        return []

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        config = job.config.score
        # 1. the scored candidates
        scored = job.input_json("score").get("candidates", [])
        if not scored:
            raise RuntimeError("the score stage produced no candidates to rank")
        # 2. optional aesthetic / prompt-alignment scores
        secondary = self.score_aesthetic(job, scored) if config.aesthetic else {}
        # 3. rank and decide
        return rank_candidates(scored, config, secondary)

    def score_aesthetic(self, job: Job, scored: list[dict[str, Any]]) -> dict[int, float]:
        """Aesthetic scores by candidate index (images read from the score stage's paths)."""
        import numpy as np
        from PIL import Image

        from autoshoot.backends import AESTHETIC_SCORERS

        name = job.config.score.aesthetic
        scorer = job.sessions.get(f"aesthetic:{name}", lambda: AESTHETIC_SCORERS.create(name, job.config))
        from autoshoot.stages.prepare import final_prompt

        prompt = final_prompt(job)[0]
        score_dir = job.input_dir("score")
        images = []
        for cand in scored:
            with Image.open(score_dir / cand["image"]) as im:
                images.append(np.asarray(im.convert("RGB")))
        values = scorer.score(images, prompt)
        return {int(c["index"]): float(v) for c, v in zip(scored, values, strict=True)}


def rank_key(cand: dict[str, Any], config: ScoreConfig, secondary: dict[int, float]) -> tuple:
    """Sort key, larger is better: (tie bucket of the hand score, secondary scores, ...)."""
    hand = float(cand.get("hand_score") or 0.0)
    aesthetic = secondary.get(int(cand["index"]), 0.0)
    primary = hand + config.aesthetic_weight * aesthetic
    bucket = round(primary / config.tie_margin) if config.tie_margin > 0 else primary
    components = cand.get("components") or {}
    return (
        bucket,
        aesthetic,
        *(float(components.get(name, 0.0)) for name in SECONDARY_COMPONENTS),
        primary,
        -len(cand.get("reasons") or []),
        -int(cand["index"]),
    )


def rank_candidates(
    scored: list[dict[str, Any]], config: ScoreConfig, secondary: dict[int, float] | None = None
) -> dict[str, Any]:
    """Order candidates best first and decide accepted / review (see the module doc)."""
    secondary = secondary or {}
    ordered = sorted(scored, key=lambda c: rank_key(c, config, secondary), reverse=True)
    best = ordered[0]
    hand = float(best.get("hand_score") or 0.0)
    accepted = hand >= config.accept_threshold
    if accepted:
        reason = f"hand score {hand:.2f}"
    else:
        why = "; ".join((best.get("reasons") or [])[:3]) or "low hand score"
        reason = f"hand score {hand:.2f} < {config.accept_threshold:.2f}: {why}"
    result = {
        "status": "accepted" if accepted else "review",
        "reason": reason,
        "best_index": int(best["index"]),
        "hand_score": round(hand, 4),
        "n_candidates": len(scored),
        "order": [int(c["index"]) for c in ordered],
    }
    if secondary:
        result["secondary"] = {str(k): round(v, 4) for k, v in secondary.items()}
    return result

"""The rank stage: best candidate, accepted vs review, tie-breaks, the aesthetic hook."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoshoot.backends import AESTHETIC_SCORERS
from autoshoot.catalog import Row
from autoshoot.config import Config
from autoshoot.config.score import ScoreConfig
from autoshoot.errors import ConfigError
from autoshoot.io import atomic_write_json
from autoshoot.stages.base import Job, Sessions
from autoshoot.stages.rank import RankStage, rank_candidates


def cand(index: int, score: float, **components: float) -> dict:
    return {
        "index": index,
        "image": f"c{index}.png",
        "hand_score": score,
        "components": components,
        "reasons": [f"r{index}"] if score < 0.5 else [],
    }


def test_best_first_and_accepted():
    result = rank_candidates([cand(0, 0.4), cand(1, 0.91), cand(2, 0.75)], ScoreConfig())
    assert result["best_index"] == 1
    assert result["order"] == [1, 2, 0]
    assert result["status"] == "accepted"
    assert result["hand_score"] == 0.91 and result["n_candidates"] == 3
    assert result["reason"] == "hand score 0.91"


def test_below_threshold_goes_to_review_with_reasons():
    result = rank_candidates([cand(0, 0.3), cand(1, 0.45)], ScoreConfig(accept_threshold=0.7))
    assert result["status"] == "review"
    assert result["best_index"] == 1
    assert result["reason"] == "hand score 0.45 < 0.70: r1"


def test_ties_are_broken_by_secondary_components():
    # 0.800 and 0.805 are within the tie margin: the better anatomy wins, not the 0.005
    a = cand(0, 0.805, anatomy=0.7, grip=1.0)
    b = cand(1, 0.800, anatomy=0.95, grip=0.9)
    assert rank_candidates([a, b], ScoreConfig())["best_index"] == 1
    # outside the margin the hand score decides
    assert rank_candidates([a, b], ScoreConfig(tie_margin=0.001))["best_index"] == 0
    # a full tie falls back to the lower index, so the result is stable
    assert rank_candidates([cand(3, 0.8), cand(2, 0.8)], ScoreConfig())["order"] == [2, 3]


def test_aesthetic_scores_break_ties_first():
    scored = [cand(0, 0.8, anatomy=1.0), cand(1, 0.8, anatomy=0.9)]
    result = rank_candidates(scored, ScoreConfig(), {0: 0.1, 1: 0.3})
    assert result["best_index"] == 1
    assert result["secondary"] == {"0": 0.1, "1": 0.3}
    # with a weight, a clearly better aesthetic score can outweigh a small hand lead
    mixed = [cand(0, 0.85), cand(1, 0.80)]
    assert rank_candidates(mixed, ScoreConfig(aesthetic_weight=0.5), {0: 0.0, 1: 0.3})["best_index"] == 1


class RecordingAesthetic:
    """A real AestheticScorer: mean brightness; records what it was asked."""

    calls: list = []

    def __init__(self, config):
        self.config = config

    def score(self, images, prompt):
        RecordingAesthetic.calls.append((len(images), prompt))
        return [float(np.asarray(im).mean()) / 255.0 for im in images]


@pytest.fixture
def recording_scorer():
    AESTHETIC_SCORERS.register("recording", RecordingAesthetic)
    RecordingAesthetic.calls = []
    yield RecordingAesthetic
    AESTHETIC_SCORERS._factories.pop("recording", None)


def make_job(tmp_path: Path, config: Config) -> Job:
    score = tmp_path / "score"
    score.mkdir()
    scored = []
    for i, grey in enumerate((40, 220)):
        Image.new("RGB", (32, 32), (grey, grey, grey)).save(score / f"c{i}.png")
        scored.append({**cand(i, 0.8), "image": f"c{i}.png"})
    atomic_write_json(score / "stage.json", {"candidates": scored})
    analyze = tmp_path / "analyze"
    analyze.mkdir()
    atomic_write_json(analyze / "stage.json", {"prompt": "a woman holding a tote"})
    row = Row(row_number=2, sku="S", image="x.png", fields={})
    return Job(
        row=row,
        image_path=tmp_path / "x.png",
        image_sha256="0",
        seed=0,
        candidates=2,
        work_dir=tmp_path,
        config=config,
        sessions=Sessions(),
        inputs={"score": score, "analyze": analyze},
    )


def test_rank_stage_without_aesthetic(tmp_path):
    job = make_job(tmp_path, Config())
    result = RankStage().run(job, tmp_path)
    assert result["best_index"] == 0 and result["status"] == "accepted"
    assert RankStage().models(Config()) == []


def test_rank_stage_uses_the_registered_aesthetic_scorer(tmp_path, recording_scorer):
    config = dataclasses.replace(Config(), score=ScoreConfig(aesthetic="recording"))
    job = make_job(tmp_path, config)
    result = RankStage().run(job, tmp_path)
    assert result["best_index"] == 1  # the brighter image wins the tie
    assert recording_scorer.calls == [(2, "a woman holding a tote")]
    assert RankStage().models(config)[0].role == "aesthetic scorer: recording"


def test_unknown_aesthetic_scorer_lists_valid_names():
    config = dataclasses.replace(Config(), score=ScoreConfig(aesthetic="nope"))
    with pytest.raises(ConfigError, match="valid names are: clip, imagereward"):
        RankStage().check_models(config)


def test_clip_alignment_scorer_on_a_tiny_random_clip():
    transformers = pytest.importorskip("transformers")
    import torch

    from autoshoot.backends.aesthetic import AestheticScorer, ClipAlignmentScorer

    torch.manual_seed(0)
    text = dict(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=16,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )
    vision = dict(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=16,
    )
    model = transformers.CLIPModel(
        transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    )

    class TinyProcessor:
        def __call__(self, text, images, return_tensors, padding, truncation):
            pixels = torch.tensor(
                np.stack([np.asarray(Image.fromarray(im).resize((32, 32))) for im in images])
            )
            pixels = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            ids = torch.tensor([[1 + (ord(c) % 90) for c in t[:10]] for t in text])
            return {"pixel_values": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids)}

    scorer = ClipAlignmentScorer(model=model, processor=TinyProcessor())
    assert isinstance(scorer, AestheticScorer)
    images = [np.full((48, 48, 3), v, dtype=np.uint8) for v in (10, 128, 250)]
    scores = scorer.score(images, "a bag")
    assert len(scores) == 3 and all(-1.0 <= s <= 1.0 for s in scores)
    assert len(set(round(s, 6) for s in scores)) == 3

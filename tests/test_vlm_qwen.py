"""The real ``qwen`` code path on a tiny random-weight Qwen2.5-VL saved to a temp folder.

from_pretrained(local) + AutoProcessor, the chat template, qwen-vl-utils' process_vision_info,
left-padded batched generate. The random model answers garbage, so every brief goes through
the retry and then the rules fallback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from qwen_chat import CHAT_TEMPLATE, SPECIAL_TOKENS

from autoshoot.backends import VLMS
from autoshoot.brief import Brief, BriefRequest
from autoshoot.config import load_config


def build_tiny_tokenizer():
    """A character-level tokenizer with Qwen's special tokens and a minimal chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_qwen(folder: Path, family: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """Save a ~0.1M-parameter Qwen2.5-VL (or Qwen3-VL) with processor and chat template into ``folder``."""
    import torch
    import transformers as tf

    # 1. tokenizer and the ids the model config must agree with
    tokenizer = build_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=32,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )

    # 2. a tiny model of the real architecture, and its processor
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
        vision.update(patch_size=14, window_size=56, fullatt_block_indexes=[1])
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)
        model_cls, processor_cls, video = (
            tf.Qwen2_5_VLForConditionalGeneration,
            tf.Qwen2_5_VLProcessor,
            tf.Qwen2VLVideoProcessor(),
        )
        image_processor = tf.Qwen2VLImageProcessor()
    else:
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        text.update(
            head_dim=8,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        )
        vision.update(patch_size=16, num_position_embeddings=64, deepstack_visual_indexes=[1])
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **token_ids)
        model_cls, processor_cls, video = (
            tf.Qwen3VLForConditionalGeneration,
            tf.Qwen3VLProcessor,
            Qwen3VLVideoProcessor(),
        )
        image_processor = tf.Qwen2VLImageProcessor(patch_size=16)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    processor = processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video,
        chat_template=CHAT_TEMPLATE,
    )

    # 3. save everything, as a hub snapshot would be laid out
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_qwen_overrides(folder: Path) -> dict:
    """Config overrides that run the qwen backend on the tiny model saved in ``folder``."""
    return {
        "analyze.vlm": "qwen",
        "analyze.model": str(folder),
        "analyze.min_pixels": 112 * 112,
        "analyze.max_pixels": 28 * 28 * 64,
        "analyze.max_new_tokens": 12,
        "analyze.batch_size": 2,
        "run.offline": True,
    }


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    return load_config(
        "tiny", overrides=tiny_qwen_overrides(build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen")))
    )


@pytest.fixture(scope="module")
def qwen(tiny_config):
    vlm = VLMS.create("qwen", tiny_config)
    yield vlm
    vlm.close()


def photos():
    return [
        Image.new("RGB", (400, 300), (30, 30, 30)),
        Image.new("RGB", (300, 520), (200, 180, 150)),
        Image.new("RGB", (256, 256), (20, 40, 160)),
    ]


def test_loads_from_a_local_folder_with_the_real_classes(qwen):
    assert type(qwen.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(qwen.processor).__name__ == "Qwen2_5_VLProcessor"
    assert qwen.convention == "pixels" and qwen.patch_size == 14


def test_garbage_answers_are_retried_then_filled_from_rules(qwen):
    requests = [
        BriefRequest(image=img, sku=f"SKU-{i}", title=t)
        for i, (img, t) in enumerate(
            zip(photos(), ["Black tote", "Canvas backpack", "Blue briefcase"], strict=True)
        )
    ]
    results = qwen.describe(requests)  # batch_size 2: two generate batches
    assert [r.brief.product.category for r in results] == ["tote", "backpack", "briefcase"]
    for result in results:
        assert isinstance(result.brief, Brief)
        assert result.backend == "qwen"
        assert result.fallback_fields == ["*"]
        assert result.flags == ["brief_fallback", "vlm_retry"]
        assert result.raw  # the model's last (garbage) answer is kept for debugging


def test_left_padded_batch_matches_single_answers(qwen):
    items = [qwen.prepare_request(BriefRequest(image=img, sku=f"S{i}")) for i, img in enumerate(photos()[:2])]
    conversations = [qwen.build_messages(item) for item in items]
    batched = qwen.generate(conversations)
    single = [qwen.generate([conv])[0] for conv in conversations]
    assert batched == single
    # the instruction names the size the model sees, a multiple of 28 within the pixel bounds
    w, h = items[1].seen_size
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 28 * 28 * 64
    assert f"{w}x{h} image" in items[1].instruction


def test_a_missing_model_folder_is_reported_before_loading(tmp_path):
    from autoshoot.stages.analyze import AnalyzeStage

    config = load_config("tiny", overrides={"analyze.vlm": "qwen", "analyze.model": str(tmp_path / "nope")})
    missing = AnalyzeStage().check_models(config)
    assert len(missing) == 1 and "has no config.json" in missing[0][1]
    assert "fix the path" in missing[0][2] and "models download" not in missing[0][2]
    offline_hub = load_config(
        "default", overrides={"run.offline": True, "analyze.model": "example/not-cached-vl"}
    )
    (what, where, fix) = AnalyzeStage().check_models(offline_hub)[0]
    assert (
        "not in the Hugging Face cache" in where
        and "autoshoot models download" in fix
        and "example/not-cached-vl" in where
        and "HF_HOME" in fix
    )


def test_pixel_bounds_are_checked_before_loading():
    from autoshoot.backends.qwen_vl import QwenVLM
    from autoshoot.errors import ConfigError

    config = load_config("tiny", overrides={"analyze.min_pixels": 500_000, "analyze.max_pixels": 200_000})
    with pytest.raises(ConfigError, match=r"analyze.min_pixels \(500000\) must be positive and at most"):
        QwenVLM(config, model=object(), processor=object())


def test_qwen3_vl_uses_its_patch_size_and_relative_coordinates(tmp_path):
    folder = build_tiny_qwen(tmp_path / "tiny-qwen3", family="qwen3_vl")
    config = load_config(
        "tiny",
        overrides={
            "analyze.vlm": "qwen",
            "analyze.model": str(folder),
            "analyze.min_pixels": 128 * 128,
            "analyze.max_pixels": 32 * 32 * 64,
            "analyze.max_new_tokens": 8,
            "run.offline": True,
        },
    )
    vlm = VLMS.create("qwen", config)
    assert type(vlm.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert (vlm.convention, vlm.patch_size) == ("rel1000", 16)
    item = vlm.prepare_request(BriefRequest(image=Image.new("RGB", (400, 300)), sku="Q3", title="Red tote"))
    assert item.seen_size[0] % 32 == 0 and "relative coordinates from 0 to 1000" in item.instruction
    (result,) = vlm.describe([BriefRequest(image=Image.new("RGB", (400, 300)), sku="Q3", title="Red tote")])
    assert result.brief.product.category == "tote" and "brief_fallback" in result.flags

"""Brief VLM speed on a GPU: seconds per product at batch 1 and batch 8, and peak VRAM.

A random-weight model of the Qwen2.5-VL-7B-Instruct shape (bf16, SDPA) is built on the GPU
from its config (nothing is downloaded; speed depends on shapes, not on weight values). It
runs through the real ``QwenVLM.generate`` path: chat template, qwen-vl-utils'
``process_vision_info``, the Qwen2.5-VL processor with left padding, and ``generate``.
Each product is a 1024x1024 photo plus the real VLM instruction, and the answer is forced to
exactly ``--new-tokens`` tokens (a brief is about 150-300 tokens of JSON), because random
weights may stop early.

    python bench/vlm_gpu.py                      # 7B shape on cuda, batches 1 and 8
    python bench/vlm_gpu.py --tiny --device cpu  # a smoke test of this script

Measured on one H100 80GB (torch 2.11, transformers 5.17, bf16, sdpa; best of 2 after warm-up):

    | visual tokens | batch | s per product | peak VRAM GiB |
    |          1225 |     1 |          4.15 |          16.0 |
    |          1225 |     8 |          0.95 |          18.9 |
    |          1225 |    16 |          0.58 |          22.4 |
    |           484 |     8 |          0.75 |          17.7 |

Decoding is launch-bound (about 28 ms per step at batch 1), so batching SKUs is what pays.
The first full-length generate of a process takes 12-17 s (allocator growth); later ones do not.

The tokenizer is a word-level stand-in (Qwen's BPE cannot be downloaded here); the prompt's
token count is printed so it can be compared with the real tokenizer (about 1 token per word).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from qwen_chat import CHAT_TEMPLATE, SPECIAL_TOKENS  # noqa: E402

# Qwen2.5-VL-7B-Instruct's config.json
QWEN25_VL_7B = {
    "text": dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    ),
    "vision": dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=3584,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    ),
}
TINY = {
    "text": dict(
        vocab_size=4096,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
    ),
    "vision": dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=64,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[1],
    ),
}


def build_tokenizer(vocab_size: int, text: str):
    """Word-level tokenizer: Qwen's special tokens, the instruction's words, filler up to vocab_size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]+", text)) | {"user", "assistant", "system"})
    tokens = list(SPECIAL_TOKENS) + words
    tokens += [f"w{i}" for i in range(vocab_size - len(tokens))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(re.compile(r"(<\|[a-z_]+\|>)").pattern, "isolated"),
            pre_tokenizers.Whitespace(),
        ]
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_model_and_processor(shape: dict, tokenizer, device: str, dtype):
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            shape["text"],
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(shape["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    # build the weights directly on the device, in the target dtype (no slow CPU init)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model.eval()
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def synthetic_photo(seed: int, size: int):
    """A size x size RGB packshot stand-in: a coloured bag shape on white with some texture."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(20, 200, 3))
    draw.rounded_rectangle([size * 0.2, size * 0.35, size * 0.8, size * 0.9], radius=size // 20, fill=colour)
    draw.arc([size * 0.35, size * 0.12, size * 0.65, size * 0.55], 180, 360, fill=colour, width=size // 40)
    noise = rng.integers(-12, 12, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype("uint8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (a smoke test on the CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=150)
    parser.add_argument("--image", type=int, default=1024, help="side of the square photo, pixels")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--max-pixels", type=int, nargs="+", default=None, help="analyze.max_pixels values to try"
    )
    args = parser.parse_args()

    import torch

    from autoshoot.backends.qwen_vl import QwenVLM
    from autoshoot.brief import BriefRequest
    from autoshoot.brief.prompt import render_vlm_instruction
    from autoshoot.config import load_config

    # 1. config, tokenizer, model
    overrides = {"run.device": args.device, "analyze.vlm": "qwen", "analyze.batch_size": max(args.batches)}
    config = load_config("default", overrides=overrides)
    shape = TINY if args.tiny else QWEN25_VL_7B
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    sample_text = (
        render_vlm_instruction({"title": "Leather tote"}, (980, 980), seed=1)
        + " "
        + render_vlm_instruction({}, (980, 980), "rel1000", seed=2)
    )
    tokenizer = build_tokenizer(shape["text"]["vocab_size"], sample_text)
    start = time.perf_counter()
    model, processor = build_model_and_processor(shape, tokenizer, args.device, dtype)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    vlm = QwenVLM(config, model=model, processor=processor)

    # 2. products: photo + instruction, prepared exactly as in a run; 3. time each batch size
    import dataclasses

    photos = [synthetic_photo(i, args.image) for i in range(max(args.batches))]
    print(
        f"model: Qwen2.5-VL-{'tiny' if args.tiny else '7B'} shape, {params / 1e9:.2f} B params, {dtype}, sdpa, "
        f"built on {args.device} in {build_s:.1f} s",
        flush=True,
    )
    rows = []
    for max_pixels in args.max_pixels or [config.analyze.max_pixels]:
        vlm.settings = dataclasses.replace(vlm.settings, max_pixels=max_pixels)
        items = [
            vlm.prepare_request(BriefRequest(image=p, sku=f"SKU-{i}", title="Leather tote", notes="gold zip"))
            for i, p in enumerate(photos)
        ]
        conversations = [vlm.build_messages(item) for item in items]
        text = processor.apply_chat_template(conversations[0], tokenize=False, add_generation_prompt=True)
        text_tokens = len(tokenizer(text.replace("<|image_pad|>", "")).input_ids)
        seen = items[0].seen_size
        visual = (seen[0] // 28) * (seen[1] // 28)
        print(
            f"input: {args.image}x{args.image} photo -> {seen[0]}x{seen[1]} seen (max_pixels {max_pixels}) = "
            f"{visual} visual tokens; {text_tokens} text tokens; {args.new_tokens} new tokens forced",
            flush=True,
        )
        for batch in args.batches:
            convs = conversations[:batch]
            start = time.perf_counter()
            vlm_generate_exact(vlm, convs, 4)  # first call at this shape: kernels, allocator
            first_s = time.perf_counter() - start
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                vlm_generate_exact(vlm, convs, args.new_tokens)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            peak = (
                torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
            )
            best = min(times)
            rows.append((visual, batch, best, best / batch, batch * args.new_tokens / best, peak))
            print(
                f"batch {batch}: warm-up {first_s:.2f} s, then {', '.join(f'{t:.2f}' for t in times)} s",
                flush=True,
            )

    # 4. the table
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"\n{device_name}, torch {torch.__version__}")
    print("| visual tokens | batch | s per batch | s per product | new tokens/s | peak VRAM GiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for visual, batch, total, per, tps, peak in rows:
        print(f"| {visual} | {batch} | {total:.2f} | {per:.3f} | {tps:.0f} | {peak:.1f} |")


def vlm_generate_exact(vlm, conversations, new_tokens: int):
    """``QwenVLM.generate`` with exactly ``new_tokens`` new tokens (min = max)."""
    import dataclasses

    settings = vlm.settings
    vlm.settings = dataclasses.replace(settings, max_new_tokens=new_tokens)
    try:
        return vlm.generate(conversations, min_new_tokens=new_tokens)
    finally:
        vlm.settings = settings


if __name__ == "__main__":
    main()

"""End to end on a GPU: the real ``autoshoot shoot`` over a catalog, once per VRAM budget.

    python bench/e2e_gpu.py --models DIR                  # build the models, then every budget
    python bench/e2e_gpu.py --models DIR --budgets 24,8   # some budgets
    python bench/e2e_gpu.py --models DIR --budgets 24x1,24  # run.lanes=1 (the baseline), then 2
    python bench/e2e_gpu.py --models DIR --tiny --device cpu --budgets uncapped  # a smoke test

1. Builds full-size random-weight models and saves them as local folders (once per DIR), so
   every loader of the run reads them as it reads a user's: a Qwen2.5-VL-7B-shaped VLM and the
   smaller ones the budget table picks below 20 GiB (Qwen2.5-VL-3B- and Qwen3-VL-2B-shaped),
   SDXL (UNet, both text encoders, VAE) in diffusers' layout, the union ControlNet (promax
   layout), OWLv2 base patch16 (the second-bag rule), a BiRefNet-sized segmenter and the
   composite's Real-ESRGAN x2 upscaler (to the 2048-px final). Tokenizers
   are built offline (word- or byte-level stand-ins). A profile file names the folders.
2. Writes a catalog of ``--skus`` synthetic bag packshots (1024²).
3. Per budget, in a fresh process: ``torch.cuda.set_per_process_memory_fraction`` caps the
   process at the budget (uncapped: no cap, ``--vram auto``), then the real CLI runs
   ``autoshoot shoot CATALOG --out RUN --profile PROFILE --vram N -v``. It reports peak
   allocated and reserved memory (torch's counters in that process, with the caching
   allocator's retries at the cap, each of which frees its cache and synchronises), SKUs per
   hour (whole run, model loading included, and steady state: after the first SKU), seconds
   per stage (summed over the SKUs, from their manifests) and the share of the wall time the
   GPU was busy (NVML's utilisation, sampled every 0.1 s; steady state after the first SKU,
   and again after the first ``--warmup-skus``, a chunk: a cold compile still traces shapes
   when the first SKU ends). The samples go to ``busy-BUDGET.csv`` beside the budget's log,
   and the steady state's idle stretches (under 50% for 0.4 s or more, with their clock
   times, to set beside the log's) into the JSON.

Bench-only settings (random weights cannot do these parts; each is said where it is set):
- stage 2 is forced onto a fixed hand window at the grip (random renders draw no hands);
- the BiRefNet-sized segmenter runs its full network (its time and memory) and then returns
  the non-white pixels as its mask, so that the geometry downstream has a product to place;
- the VLM's invalid answers are not re-asked (``analyze.repair_retries=0``; a real VLM's
  answers are valid JSON) and answers stop at ``analyze.max_new_tokens`` (256 here);
- ``--steps`` (default 15, half the default 30; stage 2 likewise 5 instead of 10) keeps five
  budgets inside one 10-minute GPU job: render time per SKU scales about linearly with it.

Every budget runs with ``run.reuse="off"`` (an earlier budget's RUN folder beside it would
otherwise be reused). ``--thread-profile`` samples where each thread of the run is every 20 ms
(the GPU lane waiting on a model's lock, its own CPU work, the scoring, ...) and writes the
shares per thread pool to ``stats-BUDGET.threads.txt`` beside the budget's log.

Each run's exit code is 1: the random VLM's answers are never valid briefs, so every brief
falls back to the rules and the run says so at its end (a real VLM's do not). ``130``: the
run was stopped at ``--deadline`` (Ctrl-C; the SKUs in hand finish first).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

GIB = 1024**3
# the compiled uncapped run last: its first SKU waits minutes for the compile (no cache)
BUDGETS = ("24", "8", "16", "12", "uncapped")

QWEN25_VL_3B = {
    "text": dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    ),
    "vision": dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    ),
}
QWEN3_VL_2B = {
    "text": dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=262144,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    ),
    "vision": dict(
        depth=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[5, 11, 17],
    ),
}
TINY_QWEN3 = {
    "text": dict(
        vocab_size=4096,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    ),
    "vision": dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=64,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
    ),
}

# The BiRefNet-sized stand-in, loaded by transformers' trust_remote_code as BiRefNet is
STANDIN_CODE = '''"""A BiRefNet-sized network (about 220 M parameters, BiRefNet's Swin-L count) for timing runs.

Random weights cannot segment: the network runs in full (its time and memory), then the
logits are those of the non-white pixels of the input, so that the geometry has a product."""

import torch
from transformers import PretrainedConfig, PreTrainedModel


class StandInConfig(PretrainedConfig):
    model_type = "birefnet_standin"

    def __init__(self, width=1024, layers=24, **kwargs):
        self.width = width
        self.layers = layers
        super().__init__(**kwargs)


class StandIn(PreTrainedModel):
    config_class = StandInConfig

    def __init__(self, config):
        super().__init__(config)
        w = config.width
        self.stem = torch.nn.Conv2d(3, w, 32, stride=32)
        self.body = torch.nn.ModuleList(torch.nn.Conv2d(w, w, 3, padding=1) for _ in range(config.layers))
        self.head = torch.nn.Conv2d(w, 1, 1)
        self.post_init()

    def forward(self, x):
        h = self.stem(x)
        for conv in self.body:
            h = h + torch.nn.functional.gelu(conv(h)) * 1e-3
        net = torch.nn.functional.interpolate(self.head(h), size=x.shape[-2:], mode="bilinear")
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        rgb = x * std + mean
        darkness = (1.0 - rgb.min(dim=1, keepdim=True).values).float()
        logits = (darkness - 0.12) * 40.0 + net.float() * 0.0
        return [logits.to(x.dtype)]
'''


# ---------------------------------------------------------------------------------------
# 1. the model folders


def model_paths(folder: Path) -> dict[str, str]:
    names = ("vlm-7b", "vlm-3b", "vlm-2b", "sdxl", "owlv2", "birefnet", "esrgan")
    paths = {name: str(folder / name) for name in names}
    paths["controlnet"] = str(folder / "sdxl" / "controlnet")
    paths["esrgan"] = str(folder / "esrgan" / "RealESRGAN_x2.pth")
    return paths


def split_budget(budget: str) -> tuple[str, int]:
    """``24`` or ``uncapped``, optionally with ``xN``: ``run.lanes=N`` (``24x1``: one SKU in
    the GPU lane at a time, the baseline of ``run.lanes``)."""
    base, _, lanes = budget.partition("x")
    return base, int(lanes) if lanes else 0


def vlm_for_budget(budget: str) -> str:
    """The VLM folder the budget table picks (analyze.vram_models below)."""
    budget = split_budget(budget)[0]
    gib = 1000.0 if budget == "uncapped" else float(budget)
    return "vlm-7b" if gib >= 20 else "vlm-3b" if gib >= 10 else "vlm-2b"


def build_models(folder: Path, tiny: bool, device: str, vlms: set[str]) -> None:
    """The model folders (each built once; a folder with a DONE file is kept): the VLMs named
    in ``vlms`` and every other model."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    folder.mkdir(parents=True, exist_ok=True)
    from vlm_gpu import QWEN25_VL_7B, TINY

    shapes = {"vlm-7b": QWEN25_VL_7B, "vlm-3b": QWEN25_VL_3B, "vlm-2b": QWEN3_VL_2B}
    for name in sorted(vlms):
        shape = (TINY_QWEN3 if name == "vlm-2b" else TINY) if tiny else shapes[name]
        built(folder / name, lambda p, s=shape, n=name: save_vlm(p, s, n, device, dtype))
    built(folder / "sdxl", lambda p: save_sdxl(p, tiny, device))
    built(folder / "owlv2", lambda p: save_owlv2(p, tiny))
    built(folder / "birefnet", lambda p: save_standin(p, tiny))
    built(folder / "esrgan", lambda p: save_esrgan(p, tiny))


def save_esrgan(path: Path, tiny: bool) -> None:
    """The composite's upscaler: Real-ESRGAN x2's layout (RRDB, 16.7 M parameters; tiny: 8
    filters, one block), random weights, as the .pth file spandrel reads."""
    import torch

    from autoshoot.backends.upscaler import realesrgan_x2plus

    descriptor = realesrgan_x2plus(num_filters=8, num_blocks=1) if tiny else realesrgan_x2plus()
    torch.save(descriptor.model.state_dict(), path / "RealESRGAN_x2.pth")


def built(path: Path, make: Any) -> Path:
    if not (path / "DONE").is_file():
        started = time.perf_counter()
        path.mkdir(parents=True, exist_ok=True)
        make(path)
        (path / "DONE").write_text("ok")
        print(f"built {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def save_vlm(path: Path, shape: dict, name: str, device: str, dtype: Any) -> None:
    import torch

    from autoshoot.brief.prompt import render_vlm_instruction

    text = (
        render_vlm_instruction({"title": "tote bag 1"}, (980, 980), seed=1)
        + render_vlm_instruction({}, (980, 980), "rel1000", seed=2)
        + " tote bag 0 1 2 3 4 5 6 7"
    )
    from vlm_gpu import build_model_and_processor, build_tokenizer

    tokenizer = build_tokenizer(shape["text"]["vocab_size"], text)
    if name == "vlm-2b":
        model, processor = build_qwen3(shape, tokenizer, device, dtype)
    else:
        model, processor = build_model_and_processor(shape, tokenizer, device, dtype)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def build_qwen3(shape: dict, tokenizer: Any, device: str, dtype: Any) -> tuple[Any, Any]:
    import torch
    from qwen_chat import CHAT_TEMPLATE, SPECIAL_TOKENS
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
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
        tie_word_embeddings=shape["text"].get("tie_word_embeddings", False),
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2),
        chat_template=CHAT_TEMPLATE,
    )
    return model.eval(), processor


def save_sdxl(path: Path, tiny: bool, device: str) -> None:
    import torch

    from autoshoot.backends.sdxl_tiny import build_tiny_components, save_components

    if tiny:
        comps = build_tiny_components()
    else:
        from render_gpu import build_full_components

        comps, _ = build_full_components()
    save_components(comps, path)
    del comps
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def save_owlv2(path: Path, tiny: bool) -> None:
    if tiny:
        from autoshoot.backends.bag_detector import build_tiny_detector

        model, processor = build_tiny_detector()
    else:
        from hands_eval import full_size_bag_detector

        model, processor = full_size_bag_detector("owlv2")
    model.save_pretrained(path)
    processor.save_pretrained(path)


def save_standin(path: Path, tiny: bool) -> None:
    import importlib.util

    (path / "standin.py").write_text(STANDIN_CODE)
    spec = importlib.util.spec_from_file_location("standin", path / "standin.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    config = module.StandInConfig(width=64 if tiny else 1024, layers=2 if tiny else 24)
    config.auto_map = {
        "AutoConfig": "standin.StandInConfig",
        "AutoModelForImageSegmentation": "standin.StandIn",
    }
    model = module.StandIn(config)
    n = sum(p.numel() for p in model.parameters())
    print(f"segmenter stand-in: {n / 1e6:.0f} M parameters", flush=True)
    model.save_pretrained(path)
    config.save_pretrained(path)


# ---------------------------------------------------------------------------------------
# 2. the profile and the catalog


def write_profile(folder: Path, paths: dict[str, str], steps: int, tiny: bool) -> Path:
    refine_total = max(2, round(steps * 4 / 3))
    lines = [
        'base = "tiny"' if tiny else 'base = "default"',
        "[run]",
        "candidates = 4",
        "[analyze]",
        'vlm = "qwen"',
        f'model = "{paths["vlm-7b"]}"',
        "max_new_tokens = 256",
        "repair_retries = 0  # bench-only: a real VLM answers valid JSON",
        "[analyze.vram_models]",
        f'"20" = "{paths["vlm-7b"]}"',
        f'"10" = "{paths["vlm-3b"]}"',
        f'"0" = "{paths["vlm-2b"]}"',
        "[prepare]",
        'segmenter = "birefnet"',
        f'birefnet_model = "{paths["birefnet"]}"',
        "[render]",
        'model_set = "bench"',
        f"steps = {steps}",
        f"refine_steps_total = {refine_total}",
        f"refine_start_step = {steps}",
        'upscaler = "esrgan"',
        f'upscaler_model = "{paths["esrgan"]}"',
        "[render.model_sets.bench]",
        f'base = "{paths["sdxl"]}"',
        'base_config = ""',
        'variant = ""',
        f'controlnet = "{paths["controlnet"]}"',
        'controlnet_weights = ""',
        'controlnet_config = ""',
        'vae = ""',
        "[score]",
        'bag_detector = "zeroshot"',
        f'bag_model = "{paths["owlv2"]}"',
    ]
    path = folder / "profile.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_catalog(folder: Path, n: int, size: int) -> Path:
    from PIL import Image
    from synthetic_bags import draw_bag

    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = ["sku,image,title"]
    colours = [(120, 60, 40), (30, 40, 90), (150, 30, 40), (40, 90, 50)]
    for i in range(n):
        bag = draw_bag(
            handle="top_loop", size=(size * 4 // 5, size), body_color=colours[i % 4], texture=True, seed=i
        )
        Image.fromarray(bag.image).save(folder / "img" / f"bag{i}.png")
        rows.append(f"BAG-{i},img/bag{i}.png,tote bag {i}")
    path = folder / "catalog.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# ---------------------------------------------------------------------------------------
# 3. one budget in a fresh process


class FixedHand:
    """Bench-only: random renders draw no hands, so stage 2 gets a fixed hand at the grip."""

    def __init__(self, landmarks: Any):
        self.landmarks = landmarks
        self.score = 0.99
        self.handedness = "Right"


class FixedHandDetector:
    def detect(self, image: Any, roi: Any = None) -> list[FixedHand]:
        import numpy as np

        h, w = image.shape[:2]
        x0, y0, x1, y1 = roi if roi is not None else (0, 0, w, h)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        angles = np.linspace(0, 2 * np.pi, 21, endpoint=False)
        radius = 0.04 * max(w, h)
        pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        return [FixedHand(np.concatenate([pts, np.zeros((21, 1))], axis=1).astype(np.float32))]

    def close(self) -> None:
        pass


def child(cap_gib: float, stats_path: str, shoot_args: list[str]) -> None:
    """The fresh process of one budget: cap, bench-only hand window, then the real CLI."""
    # as `autoshoot shoot` sets it within a budget, but before this process touches CUDA
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    import torch

    if torch.cuda.is_available():
        if cap_gib:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * GIB / total))
        torch.cuda.reset_peak_memory_stats()

    def write_stats() -> None:
        cuda = torch.cuda.is_available()
        stats = {
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if cuda else 0.0,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else 0.0,
        }
        if cuda:  # the caching allocator at the cap: each retry frees its cache and synchronises
            counts = torch.cuda.memory_stats()
            for key in ("num_alloc_retries", "num_ooms", "num_sync_all_streams", "num_device_alloc"):
                stats[key] = int(counts.get(key, 0))
        Path(stats_path).write_text(json.dumps(stats))

    atexit.register(write_stats)
    if os.environ.get("E2E_THREAD_PROFILE"):
        sampler = ThreadSampler(Path(stats_path).with_suffix(".threads.txt"))
        sampler.start()
        atexit.register(sampler.write)
    import autoshoot.stages.refine as refine

    refine.make_hand_detector = FixedHandDetector  # bench-only (module docstring)
    sys.argv = ["autoshoot", "shoot", *shoot_args]
    from autoshoot.cli import run_main

    run_main()


class ThreadSampler(threading.Thread):
    """``--thread-profile``: every 20 ms, where each of the run's threads is (its innermost
    autoshoot frame, and the innermost frame of all). Grouped by the thread pools' names
    (prepare, GPU lane, composite/score), this says what the GPU lane waits on when the GPU
    idles: a model's lock, its own CPU work, or the GIL held by the other pools."""

    def __init__(self, path: Path, interval: float = 0.02):
        super().__init__(daemon=True)
        self.path, self.interval = path, interval
        self.counts: dict[str, dict[str, int]] = {}
        self.samples = 0

    def run(self) -> None:
        me = threading.get_ident()
        while True:
            time.sleep(self.interval)
            names = {t.ident: t.name for t in threading.enumerate()}
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                group = names.get(ident, "?").rsplit("_", 1)[0]
                inner = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
                ours, f = "", frame
                while f is not None:
                    if "autoshoot" in f.f_code.co_filename:
                        ours = f"{Path(f.f_code.co_filename).name}:{f.f_code.co_name}:{f.f_lineno}"
                        break
                    f = f.f_back
                key = f"{ours}  <  {inner}"
                per = self.counts.setdefault(group, {})
                per[key] = per.get(key, 0) + 1

    def write(self) -> None:
        lines = [f"{self.samples} samples every {self.interval * 1000:.0f} ms"]
        for group, per in sorted(self.counts.items()):
            total = sum(per.values())
            lines.append(f"\n## {group}: {total} thread-samples")
            for key, n in sorted(per.items(), key=lambda kv: -kv[1])[:25]:
                lines.append(f"{n / total * 100:5.1f}%  {key}")
        self.path.write_text("\n".join(lines) + "\n")


class BusySampler:
    """NVML's GPU utilisation every 0.1 s (wall-clock times)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nvml = pynvml
        except Exception:  # noqa: BLE001 - no NVML: no busy share
            self.handle = None
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            if self.handle is not None:
                util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
                self.samples.append((time.time(), float(util)))
            time.sleep(0.1)

    def share(self, since: float | None = None, until: float | None = None) -> float | None:
        values = [
            u for t, u in self.samples if (since is None or t >= since) and (until is None or t <= until)
        ]
        return sum(values) / len(values) / 100 if values else None

    def gaps(self, since: float, until: float, below: float = 50.0, least: float = 0.4) -> list[dict]:
        """Stretches of ``least`` seconds or more with the utilisation under ``below`` percent,
        longest first: where the GPU waited (compare their clock times with the run's log)."""
        out, start, values = [], None, []
        inside = [(t, u) for t, u in self.samples if since <= t <= until]
        for t, u in inside + [(until, 100.0)]:
            if u < below:
                start = t if start is None else start
                values.append(u)
                continue
            if start is not None and t - start >= least:
                clock = time.strftime("%H:%M:%S", time.localtime(start)) + f"{start % 1:.1f}"[1:]
                out.append({"at": clock, "s": round(t - start, 1), "util": round(sum(values) / len(values))})
            start, values = None, []
        return sorted(out, key=lambda g: -g["s"])

    def write(self, path: Path, since: float) -> None:
        """The samples as ``seconds since the run's start,utilisation %`` lines."""
        path.write_text("".join(f"{t - since:.2f},{u:.0f}\n" for t, u in self.samples))


def run_budget(args: Any, work: Path, budget: str, profile: Path, catalog: Path) -> dict[str, Any]:
    run_dir = work / f"run-{budget}"
    stats = work / f"stats-{budget}.json"
    # a fresh RUN folder: one left by an earlier call on the same machine would be resumed
    shutil.rmtree(run_dir, ignore_errors=True)
    stats.unlink(missing_ok=True)
    base, lanes = split_budget(budget)
    vram = "auto" if base == "uncapped" else base
    shoot = [
        str(catalog),
        "--out",
        str(run_dir),
        "--profile",
        str(profile),
        "--vram",
        vram,
        "-v",
        "--offline",
        # every budget renders: nothing is taken from an earlier budget's RUN beside it
        "--set",
        'run.reuse="off"',
    ]
    if args.device == "cpu":
        shoot += ["--set", "run.device=cpu"]
    if base == "uncapped":
        shoot += args.uncapped_flags.split()
    if lanes:
        shoot += ["--set", f"run.lanes={lanes}"]
    cap = 0.0 if base == "uncapped" else float(base)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(cap), str(stats), "--", *shoot]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if args.thread_profile:
        env["E2E_THREAD_PROFILE"] = "1"
    sampler = BusySampler()
    started = time.time()
    sampler.thread.start()
    log_path = work / f"log-{budget}.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        grace = 25.0
        try:
            rc = proc.wait(timeout=max(5.0, args.run_timeout - grace))
        except subprocess.TimeoutExpired:
            # Ctrl-C: the run finishes the SKU in hand, writes its results and exits
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.write(f"\nstopped after {time.time() - started:.0f} s (--deadline)\n")
    wall = time.time() - started
    sampler.stop.set()
    sampler.thread.join()
    result = summarise(run_dir, budget, wall, rc, sampler, started, args.warmup_skus)
    sampler.write(work / f"busy-{budget}.csv", started)
    if stats.is_file():
        result.update(json.loads(stats.read_text()))
    result["log"] = str(log_path)
    return result


def summarise(
    run_dir: Path, budget: str, wall: float, rc: int, sampler: BusySampler, started: float, warmup: int = 8
) -> dict:
    """Per SKU from its manifest (written as each SKU finishes, also when the run is stopped)."""
    statuses: dict[str, int] = {}
    reasons = []
    finished_at = []
    stage_seconds: dict[str, float] = {}
    inside: dict[str, float] = {}  # the stages' own timers (stage.json "seconds"), summed
    candidates = 0
    for manifest in run_dir.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        for name, entry in data.get("stages", {}).items():
            stage_seconds[name] = stage_seconds.get(name, 0.0) + float(entry.get("seconds", 0.0))
            stage_json = manifest.parent / name / "stage.json"
            if name in ("render", "refine", "composite") and stage_json.is_file():
                own = json.loads(stage_json.read_text())
                for key, value in (own.get("seconds") or {}).items():
                    if isinstance(value, (int, float)):
                        inside[f"{name}.{key}"] = inside.get(f"{name}.{key}", 0.0) + float(value)
                if name == "composite":
                    candidates += len(own.get("candidates", []))
        result = data.get("result")
        if not result:
            continue
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if result["status"] == "failed":
            reasons.append(f"{data.get('sku')}: {result.get('reason')}")
        else:
            finished_at.append(manifest.stat().st_mtime)
    done = len(finished_at)
    finished_at.sort()
    steady = busy_steady = None
    gaps: list[dict] = []
    if done > 1:  # from the first SKU's end to the last one's: no loading, no warm-up
        steady = (done - 1) / max(1e-6, finished_at[-1] - finished_at[0]) * 3600
        busy_steady = sampler.share(finished_at[0], finished_at[-1])
        gaps = sampler.gaps(finished_at[0], finished_at[-1])
    late = late_busy = None
    if done > warmup + 1:  # after the first chunk: the compile's last shapes and the first brief done
        late = (done - warmup) / max(1e-6, finished_at[-1] - finished_at[warmup - 1]) * 3600
        late_busy = sampler.share(finished_at[warmup - 1], finished_at[-1])
    return {
        "budget": budget,
        "exit_code": rc,
        "skus": sum(statuses.values()),
        "finished": done,
        "failed": statuses.get("failed", 0),
        "failures": reasons[:3],
        "wall_s": round(wall, 1),
        "first_sku_s": round(finished_at[0] - started, 1) if finished_at else None,
        "skus_per_hour": round(done / wall * 3600, 1) if wall else 0.0,
        "steady_skus_per_hour": round(steady, 1) if steady else None,
        "s_per_sku": round(wall / max(1, done), 2),
        "steady_s_per_sku": round(3600 / steady, 2) if steady else None,
        "stage_seconds": {k: round(v, 1) for k, v in stage_seconds.items()},
        "inside_seconds": {k: round(v, 2) for k, v in sorted(inside.items())},
        "candidates": candidates,
        # issue 17's figure: the upscale's seconds per candidate within the run (a lock wait
        # included when two SKUs composite at once)
        "upscale_s_per_candidate": round(inside.get("composite.upscale", 0.0) / candidates, 3)
        if candidates
        else None,
        "gpu_busy": sampler.share(started, started + wall),
        "gpu_busy_steady": busy_steady,
        # the same after the first ``warmup`` SKUs (a chunk) have finished: for a compiled run
        # with a cold cache, the first SKU's end still sees other shapes compile
        "warmup_skus": warmup,
        "after_warmup_s_per_sku": round(3600 / late, 2) if late else None,
        "after_warmup_skus_per_hour": round(late, 1) if late else None,
        "gpu_busy_after_warmup": late_busy,
        # the steady state's idle stretches: total seconds and the ten longest
        "idle_steady_s": round(sum(g["s"] for g in gaps), 1),
        "idle_gaps_steady": gaps[:10],
    }


def print_table(results: list[dict[str, Any]]) -> str:
    stages = ("analyze", "prepare", "render", "refine", "composite", "score", "rank")
    base = next((r for r in results if r["budget"] == "uncapped" and r.get("steady_s_per_sku")), None)
    for r in results:  # the baseline of the same run: each budget's time per SKU vs uncapped
        mine = r.get("steady_s_per_sku")
        r["vs_uncapped"] = round(mine / base["steady_s_per_sku"], 2) if base and mine else None
    head = "| budget | vs uncapped | done/failed | peak alloc GiB | peak reserved GiB | s per SKU (steady) | SKUs/h (steady) | GPU busy (steady) | "
    head += " | ".join(stages) + " |"
    lines = [head, "|" + "---|" * (8 + len(stages))]
    for r in results:

        def pct(x: Any) -> str:
            return f"{x * 100:.0f}%" if isinstance(x, float) else "-"

        cells = [
            r["budget"] if r["budget"].startswith("uncapped") else f"{r['budget']} GiB",
            f"{r['vs_uncapped']}x" if r.get("vs_uncapped") else "-",
            f"{r['finished']}/{r['failed']}",
            f"{r.get('peak_allocated_gib', 0):.1f}",
            f"{r.get('peak_reserved_gib', 0):.1f}",
            f"{r['s_per_sku']:.1f} ({r.get('steady_s_per_sku') or '-'})",
            f"{r['skus_per_hour']:.0f} ({r['steady_skus_per_hour'] or '-'})",
            f"{pct(r['gpu_busy'])} ({pct(r['gpu_busy_steady'])})",
        ] + [f"{r['stage_seconds'].get(s, 0):.1f}" for s in stages]
        lines.append("| " + " | ".join(cells) + " |")
    # inside the GPU lane: the renderer's own timers (the GPU's time between CUDA events around
    # its phases) against the stage's time; the rest of the stage is waiting for the GPU behind
    # other SKUs' work and CPU work (reading, saving, hand geometry)
    lines += [
        "",
        "| budget | render: model / stage s | refine: model / stage s | upscale s per candidate |",
        "|---|---|---|---|",
    ]
    for r in results:
        own, st = r.get("inside_seconds", {}), r["stage_seconds"]
        model = {n: sum(v for k, v in own.items() if k.startswith(n + ".")) for n in ("render", "refine")}
        lines.append(
            f"| {r['budget']} | {model['render']:.1f} / {st.get('render', 0):.1f} | "
            f"{model['refine']:.1f} / {st.get('refine', 0):.1f} | {r.get('upscale_s_per_candidate') or '-'} |"
        )
    # after the first chunk (compile and first brief done), and the steady state's idle stretches
    lines += [
        "",
        "| budget | after warm-up SKUs | s per SKU | SKUs/h | GPU busy | idle s in the steady state (longest) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        busy = r.get("gpu_busy_after_warmup")
        longest = r.get("idle_gaps_steady") or [{"s": 0.0}]
        lines.append(
            f"| {r['budget']} | {r.get('warmup_skus')} | {r.get('after_warmup_s_per_sku') or '-'} | "
            f"{r.get('after_warmup_skus_per_hour') or '-'} | "
            f"{f'{busy * 100:.0f}%' if isinstance(busy, float) else '-'} | "
            f"{r.get('idle_steady_s', 0)} ({longest[0]['s']}) |"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        cap, stats = float(sys.argv[2]), sys.argv[3]
        child(cap, stats, sys.argv[5:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, required=True, help="where the model folders are built")
    parser.add_argument(
        "--work", type=Path, default=None, help="catalog and RUN folders (default: MODELS/work)"
    )
    parser.add_argument("--budgets", default=",".join(BUDGETS))
    parser.add_argument("--skus", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--size", type=int, default=1024, help="packshot side")
    parser.add_argument("--tiny", action="store_true", help="tiny models (a smoke test of this script)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--uncapped-flags", default="--compile --fp8", help="extra shoot flags, uncapped run")
    parser.add_argument("--run-timeout", type=float, default=600)
    parser.add_argument(
        "--deadline", type=float, default=0, help="stop every run by this many seconds after the start"
    )
    parser.add_argument("--min-run", type=float, default=90, help="start no budget with less time left")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--warmup-skus", type=int, default=8, help="SKUs left out of the after-warm-up figures (a chunk)"
    )
    parser.add_argument(
        "--thread-profile",
        action="store_true",
        help="sample where each thread of the run is (written beside each budget's log)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    budgets = [b.strip() for b in args.budgets.split(",")]
    paths = model_paths(args.models)
    work = args.work or args.models / "work"
    work.mkdir(parents=True, exist_ok=True)
    profile = write_profile(work, paths, args.steps, args.tiny)
    catalog = write_catalog(work, args.skus, args.size)
    results = []
    for budget in budgets:
        elapsed = time.perf_counter() - t0
        if args.deadline and elapsed > args.deadline - args.min_run:
            print(f"skipped {budget}: too little time left before --deadline", flush=True)
            continue
        # each budget's VLM is built just before its first run (the others are shared)
        build_models(args.models, args.tiny, args.device, {vlm_for_budget(budget)})
        elapsed = time.perf_counter() - t0
        if args.deadline:
            args.run_timeout = max(30.0, args.deadline - elapsed)
        print(f"budget {budget}: start at {elapsed:.0f} s", flush=True)
        result = run_budget(args, work, budget, profile, catalog)
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()

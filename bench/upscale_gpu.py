"""GPU benchmark of the composite's upscale: a refined candidate (canvas size) → the 2048-px final.

    python bench/upscale_gpu.py                   # esrgan whole + tiled, vs Lanczos, 4 candidates
    python bench/upscale_gpu.py --tile-controlnet # also sdxl-tile (full-size random SDXL; needs diffusers)
    python bench/upscale_gpu.py --json out.json

The upscaler is Real-ESRGAN x2plus's architecture at full size (23 RRDB blocks, 64 filters,
16.7 M parameters) with random weights, read through spandrel as a weights file would be, fp16
on the GPU: speed and memory depend on the shapes, not the values. Each candidate is timed
end to end as the composite stage calls it: uint8 RGB in host memory → model → the exact final
size → uint8 RGB in host memory.

Cases: the square shot (1024² → 2048², the model's own x2, no resize after it) and the half-body
bucket (896x1152 → 1593x2048: x2, then one area resize down). Baseline in the same run: the
plain resize (``--set render.upscaler=lanczos``, cv2 on the host). Peak GPU memory is
torch.cuda.max_memory_allocated over the upscale alone, weights included, from a clean
allocator (the stage's share of the 8 GiB budget). ``--tile-controlnet`` adds the alternative,
SDXL img2img at strength 0.3 in 1024² tiles with the union ControlNet's tile mode (20-step
schedule: 6 steps run per tile, 9 tiles for a 2048² final), with the render bench's full-size
random SDXL (bench/render_gpu.py).

Targets (issue 17): <= 1.5 s per candidate on an H200, within an 8 GiB budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GiB = 1024**3


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def candidate(w: int, h: int, seed: int) -> np.ndarray:
    """A picture with detail at every scale (noise plus edges), uint8 RGB."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
    cv2.rectangle(img, (w // 4, h // 3), (3 * w // 4, 2 * h // 3), (120, 70, 35), 6)
    return img


def time_upscaler(up, images: list[np.ndarray], size: tuple[int, int], repeat: int) -> dict:
    """Seconds per candidate (mean over ``repeat`` passes after a warm-up pass) and the peak GPU
    memory of the calls."""
    import torch

    for img in images[:1]:
        up.upscale(img, size)  # warm-up: cuDNN picks its algorithms
    sync()
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = None
    for _ in range(repeat):
        for img in images:
            out = up.upscale(img, size)
    sync()
    seconds = (time.perf_counter() - t0) / (repeat * len(images))
    peak = torch.cuda.max_memory_allocated() / GiB if torch.cuda.is_available() else 0.0
    assert out is not None and out.shape == (size[1], size[0], 3)
    return {"s_per_candidate": seconds, "peak_gib": peak}


def make_config(**render):
    from autoshoot.config import load_config

    return load_config(
        "default", overrides={"run.device": "cuda", **{f"render.{k}": v for k, v in render.items()}}
    )


def bench_esrgan(cases, n: int, repeat: int, tile: int, device: str = "cuda") -> list[dict]:
    import torch

    from autoshoot.backends.upscaler import SpandrelUpscaler, realesrgan_x2plus

    rows = []
    torch.manual_seed(0)
    descriptor = realesrgan_x2plus()
    for label, tiles in (("esrgan x2plus, whole picture", 0), (f"esrgan x2plus, {tile}-px tiles", tile)):
        up = SpandrelUpscaler(make_config(upscaler_tile=tiles), descriptor=descriptor, device=device)
        for (cw, ch), size in cases:
            images = [candidate(cw, ch, i) for i in range(n)]
            r = time_upscaler(up, images, size, repeat)
            r.update(
                label=label, case=f"{cw}x{ch} -> {size[0]}x{size[1]}", weights_mib=up.param_bytes / 2**20
            )
            rows.append(r)
            print(
                f"{label:34s} {r['case']:22s} {r['s_per_candidate']:.3f} s  peak {r['peak_gib']:.2f} GiB",
                flush=True,
            )
    return rows


def bench_lanczos(cases, n: int, repeat: int) -> list[dict]:
    from autoshoot.backends.upscaler import ResizeUpscaler

    rows = []
    up = ResizeUpscaler()
    for (cw, ch), size in cases:
        images = [candidate(cw, ch, i) for i in range(n)]
        r = time_upscaler(up, images, size, repeat)
        r.update(label="lanczos (baseline, host)", case=f"{cw}x{ch} -> {size[0]}x{size[1]}", peak_gib=0.0)
        rows.append(r)
        print(f"{r['label']:34s} {r['case']:22s} {r['s_per_candidate']:.3f} s", flush=True)
    return rows


def bench_composite(n: int) -> dict:
    """The composite's product placement at the final size (host): a 3000-px packshot resampled
    once to a 2048² final, then pasted on n candidates."""
    from autoshoot.stages.composite import composite_matrix, paste_product, place_product

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8)
    keep = np.zeros((3000, 3000), np.uint8)
    keep[600:2400, 500:2500] = 255
    m = composite_matrix({"scale": 0.25, "offset": [300.0, 700.0]}, [500, 600, 2500, 2400], 1.01, (2.0, 2.0))
    t0 = time.perf_counter()
    placed, inside, band_rgb, band_alpha = place_product(photo, keep, m, (2048, 2048), 1.5)
    t1 = time.perf_counter()
    for i in range(n):
        paste_product(candidate(2048, 2048, i), placed, inside, band_rgb, band_alpha)
    t2 = time.perf_counter()
    return {"place_s_per_sku": t1 - t0, "paste_s_per_candidate": (t2 - t1) / n}


def bench_tile_controlnet(n: int) -> dict:
    """sdxl-tile on the render bench's full-size random SDXL: 1024² → 2048², strength 0.3."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from render_gpu import build_full_components

    from autoshoot.backends.sdxl import SDXLRenderer
    from autoshoot.backends.upscaler import TileControlNetUpscaler

    t0 = time.perf_counter()
    comps, _ = build_full_components()
    build_s = time.perf_counter() - t0
    config = make_config(upscaler="sdxl-tile", fp32_vae_retry=False)
    renderer = SDXLRenderer(config, components=comps)
    up = TileControlNetUpscaler(config, renderer=lambda: renderer)
    images = [candidate(1024, 1024, i) for i in range(n)]
    weights = sum(
        p.numel() * p.element_size()
        for m in (comps.unet, comps.controlnet, comps.vae)
        for p in m.parameters()
    )
    r = time_upscaler(up, images, (2048, 2048), 1)
    r.update(label="sdxl-tile (strength 0.3, 20-step schedule)", case="1024x1024 -> 2048x2048")
    r.update(build_s=build_s, weights_gib=weights / GiB)
    print(
        f"{r['label']:34s} {r['case']:22s} {r['s_per_candidate']:.3f} s  peak {r['peak_gib']:.2f} GiB",
        flush=True,
    )
    renderer.close()
    gc.collect()
    torch.cuda.empty_cache()
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tile", type=int, default=512, help="tile size of the tiled esrgan row")
    parser.add_argument("--tile-controlnet", action="store_true", help="also time sdxl-tile")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/upscale_gpu.py needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    cases = [((1024, 1024), (2048, 2048)), ((896, 1152), (1593, 2048))]
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["lanczos"] = bench_lanczos(cases, args.candidates, args.repeat)
    results["esrgan"] = bench_esrgan(cases, args.candidates, args.repeat, args.tile)
    results["composite"] = bench_composite(args.candidates)
    print(
        f"composite at 2048 (host): place {results['composite']['place_s_per_sku']:.3f} s per SKU, "
        f"paste {results['composite']['paste_s_per_candidate']:.3f} s per candidate",
        flush=True,
    )
    if args.tile_controlnet:
        results["sdxl_tile"] = bench_tile_controlnet(min(args.candidates, 2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    base = {r["case"]: r["s_per_candidate"] for r in results["lanczos"]}
    print("\nupscaler                           case                   s/cand  vs lanczos  peak GiB  target")
    for r in results["esrgan"] + ([results["sdxl_tile"]] if "sdxl_tile" in results else []):
        ok = r["s_per_candidate"] <= 1.5 and r["peak_gib"] <= 8.0
        extra = r["s_per_candidate"] - base.get(r["case"], 0.0)
        print(
            f"{r['label'][:34]:34s} {r['case']:22s} {r['s_per_candidate']:6.3f}  {extra:+7.3f} s  "
            f"{r['peak_gib']:7.2f}  {'met' if ok else 'MISSED'}"
        )


if __name__ == "__main__":
    main()

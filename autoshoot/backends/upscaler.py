"""Upscalers for the delivered picture: the refined candidate (canvas size) → the final size.

Registered by name in ``autoshoot.backends.UPSCALERS`` (``render.upscaler``); every factory is
called as ``factory(config, renderer=None)`` and returns a model object built once per run:

    upscale(image, size, prompt="", negative_prompt="", seed=0) -> (h, w, 3) uint8 RGB
        image: (H, W, 3) uint8 RGB; size: the output (w, h)
    to(device) -> self          moves the weights (residency managers call this)
    device                      where the weights are now
    param_bytes                 size of the weights in bytes at their current dtype

Names:

    esrgan     (default) an ESRGAN-family model through spandrel, which reads the architecture
               from the weights file (.pth / .safetensors): Real-ESRGAN x2plus by default
               (``render.upscaler_model`` + ``render.upscaler_file``: a hub repo and file, or a
               local file). Its native scale is applied once; the last step to the exact final
               size is one area (shrinking) or Lanczos (growing) resize.
    sdxl-tile  the run's SDXL renderer as img2img at low strength (``render.upscale_strength``)
               on a Lanczos-resized picture, in model-size tiles, with the union ControlNet's
               tile mode holding each tile to its input. Loads nothing new; slower.
    lanczos    a plain resize (area when shrinking, Lanczos-4 when growing); no model.
    tiny       a random two-block ESRGAN built in code, loaded through spandrel like a real
               file (tests, ``--profile tiny``).

Why ESRGAN is the default: the final picture is the refined candidate made bigger, not
repainted; a feed-forward net adds detail at a fixed cost, where the tile ControlNet runs the
UNet and ControlNet again on every 1-MP tile and can change hands that stage 2 just corrected.
Measured on an H200 (bench/upscale_gpu.py, full-size random weights, fp16, 1024² → 2048², per
candidate, host copies included; a plain resize took 0.010 s in the same run):

    esrgan x2plus, whole picture    0.098 s   peak 2.04 GiB (weights 32 MiB)
    esrgan x2plus, 512-px tiles     0.236 s   peak 0.57 GiB
    sdxl-tile, strength 0.3         4.55 s    peak 19.3 GiB with SDXL resident (9 tiles x 6 steps)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from autoshoot.hub import is_local_source
from autoshoot.run.models import on_own_stream, one_call_at_a_time

if TYPE_CHECKING:
    from autoshoot.config import Config

logger = logging.getLogger(__name__)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 → size (w, h): area when shrinking, Lanczos-4 when growing."""
    import cv2

    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    shrink = size[0] < image.shape[1] and size[1] < image.shape[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


class ResizeUpscaler:
    """``lanczos``: no model, one resize. The baseline of bench/upscale_gpu.py."""

    name = "lanczos"
    param_bytes = 0
    device = "cpu"

    def __init__(self, config: Config | None = None, renderer: Callable[[], Any] | None = None) -> None:
        pass

    def to(self, device: Any) -> ResizeUpscaler:
        return self

    def upscale(
        self,
        image: np.ndarray,
        size: tuple[int, int],
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
    ) -> np.ndarray:
        return resize(image, size)


class SpandrelUpscaler:
    """An image-to-image super-resolution model loaded through spandrel (ESRGAN, Real-ESRGAN,
    SwinIR, …: whatever spandrel recognises in the file).

    ``descriptor`` (a spandrel ImageModelDescriptor) is taken as given (``tiny``), or loaded from
    ``render.upscaler_model`` / ``render.upscaler_file``. fp16 on CUDA where the architecture
    supports it, fp32 on the CPU. ``render.upscaler_tile`` > 0 runs the model on tiles of that many
    input px (with a 16-px overlap) to bound the activation memory; 0 runs the whole picture.
    """

    name = "esrgan"

    def __init__(
        self,
        config: Config,
        renderer: Callable[[], Any] | None = None,
        descriptor: Any = None,
        device: str | None = None,
    ) -> None:
        import torch

        rc = config.render
        if descriptor is None:
            descriptor = load_descriptor(rc.upscaler_model, rc.upscaler_file)
        self.descriptor = descriptor
        # tiles bound the activations (2.0 → 0.6 GiB at 1024² → 2048² in bench/upscale_gpu.py);
        # the low-VRAM mode (render.vram <= 8) tiles unless a tile size is set
        self.tile = int(rc.upscaler_tile) or (512 if 0 < rc.vram <= 8 else 0)
        self.scale = int(descriptor.scale)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.descriptor.eval()
        self.to(dev)

    @property
    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.descriptor.model.parameters())

    @property
    def device(self) -> Any:
        return self.descriptor.device

    def to(self, device: Any) -> SpandrelUpscaler:
        import torch

        device = torch.device(device)
        half = device.type == "cuda" and self.descriptor.supports_half
        self.descriptor.to(device, dtype=torch.float16 if half else torch.float32)
        return self

    @one_call_at_a_time
    def upscale(
        self,
        image: np.ndarray,
        size: tuple[int, int],
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
    ) -> np.ndarray:
        """image (H, W, 3) uint8 RGB → (size[1], size[0], 3) uint8 RGB: the model's native scale,
        then one resize to the exact size (none when the native scale lands on it)."""
        if image.shape[1] * self.scale == size[0] and image.shape[0] * self.scale == size[1]:
            return self.run_model(image)
        if size[0] <= image.shape[1] and size[1] <= image.shape[0]:
            return resize(image, size)  # nothing to add: shrink once
        return resize(self.run_model(image), size)

    @on_own_stream
    def run_model(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (H·s, W·s, 3) uint8 RGB at the model's scale s."""
        import torch

        d = self.descriptor
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.from_numpy(np.array(image, np.uint8, copy=True)).to(d.device)
            x = x.permute(2, 0, 1)[None].to(d.dtype) / 255.0
            if self.tile and max(image.shape[:2]) > self.tile:
                y = self.run_tiled(x)
            else:
                y = d(x)
            out = (y[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        logger.debug(
            "upscaled %sx%s x%d in %.2f s",
            image.shape[1],
            image.shape[0],
            self.scale,
            time.perf_counter() - t0,
        )
        return out

    def run_tiled(self, x: Any, overlap: int = 16) -> Any:
        """The model on overlapping tiles of ``self.tile`` input px; each output pixel is taken
        from the tile where it lies farthest from a cut edge (no blending needed)."""
        import torch

        _, c, h, w = x.shape
        s = self.scale
        out = torch.zeros((1, c, h * s, w * s), dtype=x.dtype, device=x.device)
        overlap = min(overlap, self.tile // 4)  # each tile keeps at least half its side
        step = self.tile - 2 * overlap
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                # the tile with its overlap, clipped to the picture
                ty0, tx0 = max(0, y0 - overlap), max(0, x0 - overlap)
                ty1, tx1 = min(h, y0 + step + overlap), min(w, x0 + step + overlap)
                res = self.descriptor(x[:, :, ty0:ty1, tx0:tx1])
                # keep only the core [y0, y0 + step) × [x0, x0 + step)
                cy1, cx1 = min(h, y0 + step), min(w, x0 + step)
                out[:, :, y0 * s : cy1 * s, x0 * s : cx1 * s] = res[
                    :, :, (y0 - ty0) * s : (cy1 - ty0) * s, (x0 - tx0) * s : (cx1 - tx0) * s
                ]
        return out

    def close(self) -> None:
        self.descriptor = None


def load_descriptor(source: str, filename: str = "") -> Any:
    """A spandrel ImageModelDescriptor from a local file, or a hub repo's ``filename``
    (fetched like every hub model, honouring HF_HUB_OFFLINE)."""
    from spandrel import ImageModelDescriptor, ModelLoader

    from autoshoot.errors import ConfigError

    if is_local_source(source):
        import os

        path = os.path.expanduser(source)
    else:
        if not filename:
            raise ConfigError(
                f"render.upscaler_model {source!r} is a hub repo, so render.upscaler_file must name "
                "the weights file in it; fix: --set render.upscaler_file=RealESRGAN_x2plus.pth"
            )
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(source, filename)
    descriptor = ModelLoader().load_from_file(path)
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ConfigError(
            f"{source} {filename}: spandrel reads it as a {type(descriptor).__name__}, not an "
            "image-to-image model; point render.upscaler_model at a super-resolution model"
        )
    return descriptor


def realesrgan_x2plus(num_filters: int = 64, num_blocks: int = 23) -> Any:
    """Real-ESRGAN x2plus's architecture with random weights (pixel-unshuffle by 2, RRDB body,
    two ×2 up-convolutions), read back through spandrel as a real file would be. The defaults
    are the released model's size (16.7 M parameters); tests use a tiny one."""
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    net = ESRGAN(
        in_nc=12, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=4, shuffle_factor=2
    )
    return ModelLoader().load_from_state_dict(net.state_dict())


def tiny_upscaler(config: Config, renderer: Callable[[], Any] | None = None) -> SpandrelUpscaler:
    """``tiny``: Real-ESRGAN x2plus's layout at 8 filters and one block, random weights, CPU."""
    import torch

    torch.manual_seed(0)
    return SpandrelUpscaler(config, descriptor=realesrgan_x2plus(num_filters=8, num_blocks=1), device="cpu")


class TileControlNetUpscaler:
    """``sdxl-tile``: Lanczos to the final size, then SDXL img2img at low strength in square
    tiles of ``render.long_side`` px, each held to its input by the union ControlNet's tile mode
    (``render.upscale_tile_control``). Tiles overlap by 1/8 of their side and are blended with
    linear ramps. Runs on the run's renderer (no second copy of SDXL)."""

    name = "sdxl-tile"

    def __init__(self, config: Config, renderer: Callable[[], Any] | None = None) -> None:
        from autoshoot.errors import ConfigError

        if renderer is None:
            raise ConfigError("the sdxl-tile upscaler runs on the run's renderer; none was given")
        self.config = config
        self.renderer_factory = renderer
        self._renderer: Any = None

    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            self._renderer = self.renderer_factory()
        return self._renderer

    @property
    def param_bytes(self) -> int:
        return 0  # the renderer's weights, counted there

    @property
    def device(self) -> Any:
        return getattr(self.renderer, "device", "cpu")

    def to(self, device: Any) -> TileControlNetUpscaler:
        return self  # the renderer's residency decides

    @one_call_at_a_time
    def upscale(
        self,
        image: np.ndarray,
        size: tuple[int, int],
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
    ) -> np.ndarray:
        from autoshoot.backends.sdxl import DenoiseRequest

        rc = self.config.render
        big = resize(image, size)
        w, h = size
        side = min(rc.long_side, max(64, (min(w, h) // 64) * 64))
        boxes = tile_boxes(w, h, side, side // 8)
        steps = int(rc.upscale_steps)
        start = min(steps - 1, max(0, int(round(steps * (1.0 - float(rc.upscale_strength))))))
        tiles = [big[y0 : y0 + side, x0 : x0 + side] for x0, y0 in boxes]
        full = np.full((side, side), 255, np.uint8)
        req = DenoiseRequest(
            images=tiles,
            masks=[full] * len(tiles),
            controls=[[("tile", t)] for t in tiles],
            prompt=prompt,
            negative_prompt=negative_prompt,
            seeds=[int(seed) + i for i in range(len(tiles))],
            steps=steps,
            scales=[[float(rc.upscale_tile_control)]] * (steps - start),
            cfg=rc.cfg,
            start_step=start,
        )
        res = self.renderer.denoise(req)
        return blend_tiles(res.images, boxes, (w, h), side // 8)


def tile_boxes(w: int, h: int, side: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left corners of ``side``-px squares covering (w, h), overlapping by at least ``overlap``."""

    def starts(n: int) -> list[int]:
        if n <= side:
            return [0]
        count = int(np.ceil((n - overlap) / (side - overlap)))
        return [int(round(i * (n - side) / (count - 1))) for i in range(count)]

    return [(x, y) for y in starts(h) for x in starts(w)]


def blend_tiles(
    tiles: list[np.ndarray], boxes: list[tuple[int, int]], size: tuple[int, int], ramp: int
) -> np.ndarray:
    """Tiles (side, side, 3) uint8 at ``boxes`` → (h, w, 3) uint8, linear ramps ``ramp`` px wide."""
    w, h = size
    acc = np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w, 1), np.float32)
    for tile, (x0, y0) in zip(tiles, boxes, strict=True):
        th, tw = tile.shape[:2]
        ry = np.minimum(np.arange(th) + 1, np.arange(th)[::-1] + 1).astype(np.float32)
        rx = np.minimum(np.arange(tw) + 1, np.arange(tw)[::-1] + 1).astype(np.float32)
        m = np.minimum(np.minimum(ry, ramp)[:, None], np.minimum(rx, ramp)[None, :])[..., None]
        acc[y0 : y0 + th, x0 : x0 + tw] += tile.astype(np.float32) * m
        weight[y0 : y0 + th, x0 : x0 + tw] += m
    return np.clip(np.rint(acc / np.maximum(weight, 1e-6)), 0, 255).astype(np.uint8)

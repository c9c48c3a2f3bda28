"""Upscalers: the registry, the spandrel-loaded ESRGAN (from a real weights file and built in
code), tiling, and the SDXL tile-ControlNet img2img on the tiny renderer."""

from __future__ import annotations

import numpy as np
import pytest
from render_fixtures import shared_tiny_renderer, tiny_config

from autoshoot.errors import ConfigError


def picture(w=96, h=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_unknown_upscaler_lists_the_valid_names():
    with pytest.raises(ConfigError) as err:
        tiny_config(**{"render.upscaler": "waifu"})
    msg = str(err.value)
    assert "unknown upscaler 'waifu'" in msg
    for name in ("esrgan", "lanczos", "sdxl-tile", "tiny"):
        assert name in msg


def test_output_long_side_is_checked():
    with pytest.raises(ConfigError, match="render.output_long_side"):
        tiny_config(**{"render.output_long_side": 10})


def test_tiny_upscaler_gives_the_exact_size_and_knows_its_weights():
    from autoshoot.backends import UPSCALERS

    up = UPSCALERS.create("tiny", tiny_config())
    assert up.descriptor.architecture.name == "ESRGAN" and up.scale == 2
    n = sum(p.numel() for p in up.descriptor.model.parameters())
    assert up.param_bytes == 4 * n  # fp32 on the CPU
    assert up.to("cpu") is up and str(up.device) == "cpu"
    img = picture()
    native = up.upscale(img, (192, 128))  # the model's own x2: no resize after it
    assert native.shape == (128, 192, 3) and native.dtype == np.uint8
    assert np.array_equal(native, up.run_model(img))
    for size in ((1401, 2048), (500, 333), (60, 40)):
        out = up.upscale(img, size)
        assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8


def test_esrgan_loads_a_weights_file_through_spandrel(tmp_path):
    """The default backend's real loading path: a local .safetensors read by spandrel."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    from autoshoot.backends import UPSCALERS

    torch.manual_seed(1)
    net = ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)
    path = tmp_path / "x2.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    config = tiny_config(**{"render.upscaler": "esrgan", "render.upscaler_model": str(path)})
    up = UPSCALERS.create("esrgan", config)
    assert up.scale == 2
    img = picture()
    with torch.inference_mode():
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255.0
        want = (net.eval()(x)[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(up.upscale(img, (192, 128)), want)  # the file's own network


def test_esrgan_hub_source_needs_a_file_name():
    from autoshoot.backends.upscaler import load_descriptor

    with pytest.raises(ConfigError, match="render.upscaler_file"):
        load_descriptor("ai-forever/Real-ESRGAN", "")


def test_full_size_realesrgan_x2plus_layout():
    from autoshoot.backends.upscaler import realesrgan_x2plus

    d = realesrgan_x2plus()
    n = sum(p.numel() for p in d.model.parameters())
    assert d.scale == 2 and 16.6e6 < n < 16.8e6  # the released x2plus: 16.7 M parameters


def test_tiles_give_the_whole_picture_result(monkeypatch):
    """Tiling bounds memory without seams: each output pixel comes from a tile where it lies
    farther from a cut than the tiny net's receptive field."""
    import torch

    from autoshoot.backends import UPSCALERS

    up = UPSCALERS.create("tiny", tiny_config(**{"render.upscaler_tile": 160}))
    img = picture(400, 300, seed=3)
    whole = up.descriptor(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255.0)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        tiled = up.run_tiled(x, overlap=40)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-5
    assert up.upscale(img, (800, 600)).shape == (600, 800, 3)  # the tiled path end to end


def test_low_vram_mode_tiles_the_upscale():
    from autoshoot.backends import UPSCALERS

    assert UPSCALERS.create("tiny", tiny_config()).tile == 0
    assert UPSCALERS.create("tiny", tiny_config(**{"render.vram": 8})).tile == 512
    assert (
        UPSCALERS.create("tiny", tiny_config(**{"render.vram": 8, "render.upscaler_tile": 256})).tile == 256
    )


def test_lanczos_upscaler_is_a_plain_resize():
    import cv2

    from autoshoot.backends import UPSCALERS

    up = UPSCALERS.create("lanczos", tiny_config())
    img = picture()
    assert up.param_bytes == 0
    assert np.array_equal(
        up.upscale(img, (300, 200)), cv2.resize(img, (300, 200), interpolation=cv2.INTER_LANCZOS4)
    )


def test_sdxl_tile_runs_img2img_tiles_on_the_runs_renderer():
    from autoshoot.backends import UPSCALERS
    from autoshoot.backends.upscaler import tile_boxes

    config = tiny_config(**{"render.upscaler": "sdxl-tile", "render.upscale_steps": 4})
    renderer = shared_tiny_renderer()
    calls = []

    def get_renderer():
        calls.append(1)
        return renderer

    up = UPSCALERS.create("sdxl-tile", config, renderer=get_renderer)
    out = up.upscale(picture(128, 96), (448, 320), prompt="a bag", seed=5)
    assert out.shape == (320, 448, 3) and out.dtype == np.uint8
    assert len(calls) == 1  # the run's renderer, not a second SDXL
    boxes = tile_boxes(448, 320, 256, 32)
    assert len(boxes) == 4 and boxes[-1] == (448 - 256, 320 - 256)


def test_tile_boxes_cover_the_picture_with_overlap():
    from autoshoot.backends.upscaler import tile_boxes

    for w, h in ((2048, 1401), (1024, 1024), (1000, 3000)):
        boxes = tile_boxes(w, h, 1024, 128)
        cover = np.zeros((h, w), bool)
        for x, y in boxes:
            cover[y : y + 1024, x : x + 1024] = True
        assert cover.all()

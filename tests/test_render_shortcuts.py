"""The renderer's speed options that change the picture (tiny components, CPU): a limited
guidance interval (``cfg_start``/``cfg_stop``), the ControlNet on the prompt half only
(``controlnet_cond_only``) and the ControlNet's output reused between steps
(``controlnet_every``). Each is off by default; these tests show what each one runs, that it
changes the picture, and that off it leaves the reference loop alone."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from render_fixtures import shared_tiny_renderer, tiny_config
from test_render_speedups import one_image_request

from autoshoot.backends.sdxl_speed import cfg_steps
from autoshoot.errors import ConfigError


@contextlib.contextmanager
def render_options(**options):
    """The shared tiny renderer with these ``render`` options, and a log of the batch rows each
    UNet and ControlNet call received."""
    r = shared_tiny_renderer()
    old = r.config
    rows: dict[str, list[int]] = {"unet": [], "controlnet": []}
    handles = [
        net.register_forward_pre_hook(lambda m, a, key=key: rows[key].append(int(a[0].shape[0])))
        for key, net in (("unet", r.c.unet), ("controlnet", r.c.controlnet))
    ]
    r.config = dataclasses.replace(old, render=dataclasses.replace(old.render, **options))
    try:
        yield r, rows
    finally:
        r.config = old
        for h in handles:
            h.remove()


def render(req, **options):
    with render_options(**options) as (r, rows):
        res = r.denoise(req)
    return np.stack(res.images).astype(np.int16), rows, res


def test_cfg_steps_round_down_like_diffusers_guider():
    assert cfg_steps(30, 0.0, 1.0) == range(0, 30)
    assert list(cfg_steps(30, 0.17, 0.9)) == list(range(5, 27))  # 22 guided steps, 8 not
    assert list(cfg_steps(6, 0.34, 0.67)) == [2, 3]


def test_cfg_interval_runs_the_prompt_half_alone_outside_it():
    req = one_image_request([1, 2], steps=6)
    ref, ref_rows, _ = render(req)
    assert ref_rows["unet"] == [4] * 6  # default: both CFG halves of 2 candidates at every step
    got, rows, _ = render(req, cfg_start=0.34, cfg_stop=0.67)
    assert rows["unet"] == [2, 2, 4, 4, 2, 2]
    assert rows["controlnet"] == [2, 2, 4, 4, 2, 2]  # the ControlNet follows the guidance
    assert np.abs(got - ref).mean() > 0.3  # the unguided steps changed the picture (1.09 here)
    again, _, _ = render(req, cfg_start=0.34, cfg_stop=0.67)
    assert (again == got).all()  # still reproducible from the seeds


def test_an_empty_cfg_interval_is_the_unguided_prediction():
    """With no guided step, every step is the prompt's own prediction: the result of cfg 1."""
    req = one_image_request([1, 2], steps=4)
    none, rows, _ = render(req, cfg_start=0.0, cfg_stop=0.0)
    assert rows["unet"] == [2] * 4
    plain, _, _ = render(dataclasses.replace(req, cfg=1.0))
    assert np.abs(none - plain).max() <= 1  # uint8 images, float rounding aside


def test_controlnet_cond_only_runs_the_controlnet_on_the_prompt_half():
    req = one_image_request([1, 2], steps=3)
    ref, _, _ = render(req)
    got, rows, _ = render(req, controlnet_cond_only=True)
    assert rows["controlnet"] == [2] * 3 and rows["unet"] == [4] * 3
    assert np.abs(got - ref).mean() > 0.05  # the negative half got the prompt's residuals (0.16)


def test_controlnet_every_reuses_residuals_but_not_across_a_scale_change():
    steps = 6
    req = dataclasses.replace(one_image_request([1, 2], steps=steps), scales=[[0.4]] + [[0.9]] * (steps - 1))
    ref, _, _ = render(req)
    got, rows, res = render(req, controlnet_every=2)
    # steps 0, 1 (the scale changed), 2 and 4; the UNet still runs every step
    assert len(rows["controlnet"]) == 4 and rows["unet"] == [4] * steps
    assert [s[0] for s in res.scales_seen] == pytest.approx([0.4, 0.9, 0.9, 0.9])
    assert np.abs(got - ref).mean() > 0.01  # steps 3 and 5 reused those of 2 and 4 (0.06)


def test_controlnet_every_recomputes_when_the_guidance_changes():
    req = one_image_request([1, 2], steps=6)
    _, rows, _ = render(req, controlnet_every=3, cfg_start=0.34, cfg_stop=0.67)
    # steps 0 and 3 by the period; 2 (guidance on) and 4 (guidance off) for the batch shape
    assert rows["controlnet"] == [2, 4, 4, 2]


@pytest.mark.parametrize(
    "options, words",
    [
        ({"controlnet_every": 0}, "render.controlnet_every is 0"),
        ({"cfg_start": 0.8, "cfg_stop": 0.2}, "render.cfg_start and render.cfg_stop are 0.8 and 0.2"),
        ({"cfg_stop": 1.5}, "0 <= cfg_start <= cfg_stop <= 1"),
    ],
)
def test_impossible_speed_options_stop_the_config_naming_the_setting_and_the_fix(options, words):
    """Caught when the config is built (before any SKU runs), not by every SKU's render stage."""
    with pytest.raises(ConfigError, match="fix:") as err:
        tiny_config(**{f"render.{k}": v for k, v in options.items()})
    assert words in str(err.value)

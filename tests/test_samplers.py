"""Samplers: Euler stays the default; DPM++ 2M (Karras) is one setting away with its step
counts, and its step rule is a second-order solver of the probability-flow ODE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from render_fixtures import tiny_config

from autoshoot.config import load_config
from autoshoot.errors import ConfigError


def test_euler_at_30_steps_is_the_default():
    rc = load_config("default").render
    assert (rc.sampler, rc.steps, rc.refine_steps_total, rc.refine_start_step) == ("euler", 30, 40, 30)


def test_a_sampler_brings_its_step_counts_unless_they_are_set():
    rc = load_config("default", overrides={"render.sampler": "dpmpp_2m_karras"}).render
    assert (rc.sampler, rc.steps, rc.refine_steps_total, rc.refine_start_step) == (
        "dpmpp_2m_karras",
        25,
        33,
        25,
    )
    rc = load_config("default", overrides={"render.sampler": "dpmpp_2m_karras", "render.steps": 40}).render
    assert rc.steps == 40 and rc.refine_steps_total == 33
    assert load_config("tiny").render.steps == 4  # a profile's own steps stay


def test_unknown_sampler_lists_the_valid_names():
    with pytest.raises(ConfigError) as err:
        load_config("tiny", overrides={"render.sampler": "ddim"})
    assert "unknown render.sampler 'ddim'" in str(err.value)
    assert "dpmpp_2m_karras" in str(err.value) and "euler" in str(err.value)


def karras_sigmas(steps: int) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", use_karras_sigmas=True
    )
    sched.set_timesteps(steps)
    return sched.sigmas.double()


def solve(name: str, steps: int, mu=0.3, s=0.5):
    """Sample Gaussian data N(mu, s²) whose exact denoiser is known; return the final x and
    the exact end point of the probability-flow ODE from the same start."""
    from autoshoot.backends.sdxl import sampler_step

    sigmas = karras_sigmas(steps)
    x_start = torch.linspace(-3, 3, 7, dtype=torch.float64) * sigmas[0]
    x, history = x_start.clone(), []
    for i in range(steps):
        sigma = sigmas[i]
        x0 = mu + s**2 / (s**2 + sigma**2) * (x - mu)
        x = sampler_step(name, x, x0, sigmas, i, history)
        history.append(x0)
    exact = mu + (x_start - mu) * s / torch.sqrt(s**2 + sigmas[0] ** 2)
    return float((x - exact).abs().max())


def test_dpmpp_2m_is_second_order_where_euler_is_first():
    euler = [solve("euler_karras", n) for n in (20, 40)]
    dpm = [solve("dpmpp_2m_karras", n) for n in (20, 40)]
    assert dpm[0] < euler[0] / 5 and dpm[1] < euler[1] / 5  # far more accurate at the same steps
    assert euler[0] / euler[1] < 2.6  # first order: twice the steps, about half the error
    assert dpm[0] / dpm[1] > 3.0  # second order: about a quarter


def test_tiny_renderer_runs_dpmpp_2m_karras():
    from autoshoot.backends.sdxl import DenoiseRequest, SDXLRenderer

    r = SDXLRenderer(tiny_config(**{"render.sampler": "dpmpp_2m_karras", "render.steps": 4}))
    sig_k, _ = r.schedule(10)
    assert sig_k[-1] == 0 and torch.all(sig_k[:-1] > 0)
    h = w = 64
    img = np.full((h, w, 3), 128, np.uint8)
    req = DenoiseRequest(
        images=[img], masks=[np.full((h, w), 255, np.uint8)], controls=[[("canny", np.zeros((h, w), np.uint8))]],
        prompt="a bag", negative_prompt="", seeds=[1], steps=4, scales=[[0.9]] * 4, cfg=6.0,
    )  # fmt: skip
    res = r.denoise(req)
    assert res.images[0].shape == (h, w, 3)
    euler = SDXLRenderer(tiny_config(**{"render.steps": 4}))
    assert not torch.allclose(euler.schedule(10)[0], sig_k)  # Karras spacing differs

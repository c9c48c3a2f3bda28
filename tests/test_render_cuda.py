"""fp8 feed-forward on a CUDA GPU (Ada or Hopper): the Triton GEGLU kernel's fp8 output against
the torch reference, and the fused feed-forward against diffusers' fp16 one, eager and under
torch.compile. Skipped where no such GPU is visible (CI has none): on a GPU machine, run
``python -m pytest tests/test_render_cuda.py``."""

from __future__ import annotations

import pytest
import torch

from autoshoot.backends.fp8 import geglu_fp8, geglu_fp8_reference, use_fp8_linears

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="needs a CUDA GPU with fp8 tensor cores (Ada or Hopper)",
)


@pytest.mark.parametrize("rows, width", [(8192, 5120), (4096 + 16, 2560), (32, 160)])
def test_triton_geglu_kernel_matches_the_reference(rows, width):
    torch.manual_seed(0)
    h = (torch.randn(rows, 2 * width, device="cuda") * 3).half()
    bias = torch.randn(2 * width, device="cuda")
    q, scale = geglu_fp8(h, bias)
    ref_q, ref_scale = geglu_fp8_reference(h, bias)
    assert q.dtype == torch.float8_e4m3fn and q.shape == (rows, width) and scale.shape == (rows, 1)
    torch.testing.assert_close(scale, ref_scale, rtol=1e-5, atol=0)
    got, want = q.float(), ref_q.float()
    # e4m3's spacing at each value: 2^(exponent - 3) for normals, 2^-9 below 2^-6
    mag = torch.maximum(got.abs(), want.abs()).clamp(min=2.0**-6)
    spacing = torch.exp2(torch.floor(torch.log2(mag)) - 3)
    diff = (got - want).abs()
    assert (diff > 0).float().mean() < 0.01  # rounding ties of values computed in another order
    assert (diff <= spacing).all()  # never more than one e4m3 step apart


def feed_forward(dim: int):
    from diffusers.models.attention import FeedForward

    holder = torch.nn.Module()
    holder.add_module("attentions", torch.nn.Module())
    holder.attentions.add_module("ff", FeedForward(dim, mult=4, activation_fn="geglu"))
    return holder.to("cuda", torch.float16).eval()


def test_fused_fp8_feed_forward_is_close_to_fp16_eager_and_compiled():
    torch.manual_seed(0)
    holder = feed_forward(640)
    x = torch.randn(2, 4096 + 40, 640, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        ref = holder.attentions.ff(x).float()
        assert use_fp8_linears(holder) == 2
        got = holder.attentions.ff(x).float()
        compiled = torch.compile(holder.attentions.ff, dynamic=False)(x).float()
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    assert rel(got, ref) < 0.08
    assert rel(compiled, got) < 0.01  # the same kernel, launched from the compiled graph


def test_compiled_graph_launches_the_geglu_kernel_itself():
    """torch.compile traces into the triton_op: its generated code launches the Triton kernel
    directly instead of calling the op through the dispatcher."""
    from torch._inductor.utils import run_and_get_code

    h = torch.randn(64, 2 * 640, device="cuda", dtype=torch.float16)
    bias = torch.randn(2 * 640, device="cuda")
    compiled = torch.compile(lambda h, b: geglu_fp8(h, b), dynamic=False)
    (q, scale), code = run_and_get_code(compiled, h, bias)
    source = "\n".join(code)
    assert "_geglu_fp8_rows" in source
    assert "torch.ops.autoshoot.geglu_fp8" not in source
    torch.testing.assert_close(scale, geglu_fp8_reference(h, bias)[1], rtol=1e-5, atol=0)

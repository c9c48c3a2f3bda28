"""fp8 tensor-core matmuls for SDXL's attention blocks (Ada, Hopper): ``use_fp8_linears``.

Weights are stored in float8_e4m3 with one scale per output channel; activations are quantised
on the fly with one scale per row (token), which tracks outliers far better than one scale per
tensor. ``torch._scaled_mm`` accumulates in fp32 and writes fp16/bf16.

The feed-forward (GEGLU, then a Linear) gets one more step: its 2N-wide projection goes straight
into ``geglu_fp8``, which adds the projection's bias, takes ``h * gelu(gate)`` and quantises each
row for the second matmul in one pass (a Triton kernel on CUDA). Left to torch.compile that
took a reduction kernel reading the widest activation of the network twice, and fp8 lost most
of its gain on this matmul (bench/render_gpu.py --profile-variants).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

FP8_MAX = 448.0  # largest float8_e4m3fn value
FP8 = torch.float8_e4m3fn

try:  # Triton comes with PyTorch's CUDA wheels; without it the torch path below runs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only PyTorch builds
    triton = None


def fp8_output_dtype(device: Any, dtype: Any) -> Any:
    """The dtype ``torch._scaled_mm`` can write with row-wise scales here: the model's own where
    the GPU's BLAS takes it (Hopper with cuBLAS 12.9+, and the CPU), else bf16 (cast back after)."""
    a = torch.ones(16, 16, device=device).to(FP8)
    scale_a = torch.ones(16, 1, device=device)
    scale_b = torch.ones(1, 16, device=device)
    try:
        torch._scaled_mm(a, a.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=dtype)
        return dtype
    except (RuntimeError, ValueError):
        return torch.bfloat16


_OUT_DTYPES: dict[tuple[Any, Any], Any] = {}


def out_dtype_for(weight: torch.Tensor) -> Any:
    key = (weight.device, weight.dtype)
    if key not in _OUT_DTYPES:
        _OUT_DTYPES[key] = fp8_output_dtype(weight.device, weight.dtype)
    return _OUT_DTYPES[key]


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) weight → (float8 (N, K), scale (1, N) float32), one scale per output channel."""
    scale = w.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX  # (N, 1)
    return (w.float() / scale).to(FP8), scale.reshape(1, -1).contiguous()


def quantize_rows(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) activations → (float8 (M, K), scale (M, 1) float32), one scale per row."""
    scale = x2.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x2.float() / scale).to(FP8), scale


def pad_rows(x2: torch.Tensor) -> torch.Tensor:
    """``torch._scaled_mm`` takes row counts that are multiples of 16."""
    m = x2.shape[0]
    return F.pad(x2, (0, 0, 0, 16 - m % 16)) if m % 16 else x2


class FP8Linear(torch.nn.Module):
    """A Linear as an fp8 matmul (see the module's docstring)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach()
        weight_fp8, w_scale = quantize_weight(w)
        self.register_buffer("weight_fp8", weight_fp8)
        self.register_buffer("w_scale", w_scale)
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.mm_dtype = out_dtype_for(w)

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """(M, K) with M a multiple of 16 → (M, N) in ``mm_dtype``, no bias."""
        xq, x_scale = quantize_rows(x2)
        return torch._scaled_mm(
            xq,
            self.weight_fp8.t(),
            scale_a=x_scale,
            scale_b=self.w_scale,
            out_dtype=self.mm_dtype,
            use_fast_accum=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y = self.matmul(pad_rows(x2))[: x2.shape[0]].to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


# ---------------------------------------------------------------------------------------
# GEGLU and the row-wise quantisation of its output, in one pass


@torch.library.triton_op("autoshoot::geglu_fp8", mutates_args=())
def geglu_fp8(h: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h (M, 2N) (the GEGLU projection without its bias), bias (2N,) float32 → (q (M, N)
    float8_e4m3fn, scale (M, 1) float32) with q * scale ≈ (h + bias)[:, :N] *
    gelu((h + bias)[:, N:]), computed in fp32 (exact erf GELU, as diffusers' GEGLU), one scale
    per row. On CUDA one Triton kernel; elsewhere the torch reference.

    A ``triton_op``, not an opaque custom op: torch.compile traces into it and launches the
    kernel from its own generated code, so each call costs a kernel launch and not a trip
    through the dispatcher and Python (bench/render_gpu.py)."""
    if not h.is_cuda or triton is None:
        return geglu_fp8_reference(h, bias)
    h, bias = h.contiguous(), bias.float().contiguous()
    m, n2 = h.shape
    n = n2 // 2
    q = torch.empty((m, n), dtype=FP8, device=h.device)
    scale = torch.empty((m, 1), dtype=torch.float32, device=h.device)
    block, block_b = geglu_block_sizes(n)
    torch.library.wrap_triton(_geglu_fp8_kernel)[(m,)](h, bias, q, scale, n, BLOCK=block, BLOCK_B=block_b)
    return q, scale


def geglu_fp8_reference(h: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hidden, gate = (h.float() + bias.float()).chunk(2, dim=-1)
    y = hidden * F.gelu(gate)
    scale = y.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX
    return (y / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def geglu_block_sizes(n_cols: int) -> tuple[int, int]:
    """Lanes of a row's first piece and of its second (0: none): the largest power of two that
    fits the row, then the rest rounded up to a power of two (5120 columns: 4096 + 1024, none
    masked; one piece of 8192 lanes would mask 3072)."""
    first = 1 << (n_cols.bit_length() - 1)
    rest = n_cols - first
    return first, (1 << max(0, (rest - 1).bit_length())) if rest else 0


if triton is not None:

    @triton.jit
    def _geglu_piece(src, bias_ptr, n_cols, start, SIZE: tl.constexpr):
        """y = (h + b)[cols] * gelu((h + b)[n_cols + cols]) in fp32 for cols start..start+SIZE."""
        cols = start + tl.arange(0, SIZE)
        inside = cols < n_cols
        hidden = tl.load(src + cols, mask=inside, other=0.0).to(tl.float32)
        gate = tl.load(src + n_cols + cols, mask=inside, other=0.0).to(tl.float32)
        hidden += tl.load(bias_ptr + cols, mask=inside, other=0.0)
        gate += tl.load(bias_ptr + n_cols + cols, mask=inside, other=0.0)
        return hidden * (0.5 * gate * (1.0 + tl.erf(gate * 0.7071067811865476)))

    @triton.jit
    def _store_piece(dst, y, scale, n_cols, start, SIZE: tl.constexpr):
        cols = start + tl.arange(0, SIZE)
        q = tl.clamp(y / scale, -448.0, 448.0)
        tl.store(dst + cols, q.to(dst.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def _geglu_fp8_rows(
        h_ptr,
        bias_ptr,
        q_ptr,
        scale_ptr,
        n_cols,
        BLOCK: tl.constexpr,
        BLOCK_B: tl.constexpr,  # geglu_block_sizes(n_cols)
    ):
        """One row per program, read once and held in two pieces (BLOCK and BLOCK_B lanes): its
        largest |y|, then N fp8 values and the scale."""
        row = tl.program_id(0).to(tl.int64)
        src = h_ptr + row * 2 * n_cols
        dst = q_ptr + row * n_cols
        y = _geglu_piece(src, bias_ptr, n_cols, 0, BLOCK)
        amax = tl.max(tl.abs(y), axis=0)
        if BLOCK_B > 0:
            y_b = _geglu_piece(src, bias_ptr, n_cols, BLOCK, BLOCK_B)
            amax = tl.maximum(amax, tl.max(tl.abs(y_b), axis=0))
        scale = tl.maximum(amax, 1e-12) / 448.0
        _store_piece(dst, y, scale, n_cols, 0, BLOCK)
        if BLOCK_B > 0:
            _store_piece(dst, y_b, scale, n_cols, BLOCK, BLOCK_B)
        tl.store(scale_ptr + row, scale)

    # One layout, measured on an H200 by Triton's autotuner among the others it was offered
    # (µs for 8192 rows × 5120 / 32768 × 2560): two pieces at 8 warps 94-107 / 191-199, at 16
    # warps 104-138 / 218-249; one piece of a power of two at 16 warps 124-202 / 258-325, at 8
    # 137 / 238; two rows per program 119-159 / 222-258, four 134 / 306; two passes over column
    # chunks 124-467. It won at both widths in every run, so it is fixed here: no autotuning
    # at the warm-up, and nothing for torch.compile to tune.
    _geglu_fp8_kernel = triton.autotune(configs=[triton.Config({}, num_warps=8)], key=[])(_geglu_fp8_rows)


class FP8GegluFeedForward(torch.nn.Module):
    """diffusers' FeedForward with a GEGLU (exact GELU): fp8 projection, ``geglu_fp8``, fp8
    output Linear."""

    def __init__(self, proj: torch.nn.Linear, out: torch.nn.Linear):
        super().__init__()
        self.proj, self.out = FP8Linear(proj), FP8Linear(out)
        n2 = proj.out_features
        bias = proj.bias.detach() if proj.bias is not None else torch.zeros(n2, device=proj.weight.device)
        self.register_buffer("proj_bias", bias.float().contiguous())

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        m = x2.shape[0]
        h = self.proj.matmul(pad_rows(x2))
        q, scale = geglu_fp8(h, self.proj_bias)
        out = self.out
        y = torch._scaled_mm(
            q,
            out.weight_fp8.t(),
            scale_a=scale,
            scale_b=out.w_scale,
            out_dtype=out.mm_dtype,
            use_fast_accum=True,
        )
        y = y[:m].to(x.dtype)
        if out.bias is not None:
            y = y + out.bias
        return y.reshape(*shape[:-1], out.out_features)


def fp8_feed_forward(module: torch.nn.Module) -> FP8GegluFeedForward | None:
    """The fp8 replacement of a diffusers FeedForward whose activation is an exact-GELU GEGLU
    (SDXL's), or None for any other module."""
    from diffusers.models.activations import GEGLU
    from diffusers.models.attention import FeedForward

    if type(module) is not FeedForward:
        return None
    layers = list(module.net)
    act = layers[0]
    if type(act) is not GEGLU or getattr(act, "approximate", "none") != "none":
        return None
    linears = [m for m in layers[1:] if isinstance(m, torch.nn.Linear)]
    others = [m for m in layers[1:] if not isinstance(m, (torch.nn.Linear, torch.nn.Dropout))]
    if len(linears) != 1 or others or not fits_fp8(act.proj) or not fits_fp8(linears[0]):
        return None
    return FP8GegluFeedForward(act.proj, linears[0])


def fits_fp8(linear: torch.nn.Module) -> bool:
    return type(linear) is torch.nn.Linear and linear.in_features % 16 == 0 and linear.out_features % 16 == 0


def use_fp8_linears(model: torch.nn.Module) -> int:
    """Swap the Linear layers of the attention blocks (q/k/v/out projections, the GEGLU
    feed-forward, proj_in/out: most of SDXL's FLOPs at 1024²) for fp8 matmuls; each GEGLU
    feed-forward becomes one ``FP8GegluFeedForward``. Returns the Linear layers swapped."""
    swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    taken: tuple[str, ...] = ()  # feed-forwards replaced whole: their insides are left alone
    n_linears = 0
    for name, module in model.named_modules():
        if name.startswith(taken):
            continue
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if "attentions." not in full:
                continue
            ff = fp8_feed_forward(child)
            if ff is not None:
                swaps.append((module, child_name, ff))
                taken += (full + ".",)
                n_linears += 2
            elif fits_fp8(child):
                swaps.append((module, child_name, FP8Linear(child)))
                n_linears += 1
    for parent, child_name, new in swaps:
        setattr(parent, child_name, new)
    return n_linears

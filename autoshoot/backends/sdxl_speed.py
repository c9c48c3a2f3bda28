"""The SDXL renderer's speed tricks, each an exact rewrite of the sums it replaces or a choice
of kernels (the renderer applies them; ``bench/render_gpu.py`` measures each against stock):

    sdpa_context                   which scaled-dot-product attention kernel PyTorch tries first
    compile_blocks                 regional torch.compile: one graph per block shape
    cfg_steps, prompt_half         classifier-free guidance on an interval of the schedule only
    SharedContextAttnProcessor     cross-attention keys and values computed once per prompt,
    share_cross_attention_context  not once per candidate
    fuse_attention_projections     q, k, v (or k, v) in one matmul

fp8 storage and its fused GEGLU kernel live in ``autoshoot.backends.fp8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoshoot.errors import ConfigError

if TYPE_CHECKING:
    import torch


def sdpa_context(backend: str) -> Any:
    """A context that makes ``backend`` PyTorch's first choice for scaled-dot-product attention
    (the others stay as fallbacks for shapes it cannot take); "default" changes nothing. Under
    torch.compile the choice is made when the graph is traced, so the first call must run in it."""
    import contextlib

    if backend in ("", "default"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    first = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }.get(backend)
    if first is None:
        raise ConfigError(
            f"render.sdpa_backend {backend!r} is unknown; use default, cudnn, flash or efficient"
        )
    rest = [
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.MATH,
    ]
    return sdpa_kernel([first] + [b for b in rest if b != first], set_priority=True)


def compile_blocks(models: list[Any], mode: str | None) -> int:
    """torch.compile each transformer (norm, projections and its transformer layers), resnet and
    up/downsampler of the models on its own (regional compilation). Blocks of one shape share one
    compiled graph, across the UNet and the ControlNet too, so the warm-up compiles a few dozen
    graphs instead of two whole networks; what runs between the blocks (conv in/out,
    concatenations, FreeU) stays eager. Returns the blocks compiled."""
    import torch
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    # one graph per distinct block shape: SDXL's resnets come in about a dozen
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    kinds = (Transformer2DModel, ResnetBlock2D, Downsample2D, Upsample2D)
    n = 0
    for model in models:
        for module in model.modules():
            if isinstance(module, kinds):
                module.compile(dynamic=False, mode=mode)
                n += 1
    return n


def cfg_steps(steps: int, start: float, stop: float) -> range:
    """The steps of a ``steps``-step schedule that take classifier-free guidance: the fractions
    ``start`` ≤ i/steps < ``stop``, rounded down as diffusers' ClassifierFreeGuidance does."""
    return range(int(start * steps), int(stop * steps))


def prompt_half(t: torch.Tensor) -> torch.Tensor:
    """The prompt half of a CFG batch ([negative rows, prompt rows])."""
    return t[t.shape[0] // 2 :]


class SharedContextAttnProcessor:
    """Cross-attention whose context (the prompt's embeddings) may hold fewer rows than the
    batch of latents: with B context rows and r·B latent rows, latent rows i·r … i·r + r - 1
    attend to context row i. A CFG batch of n candidates holds 2n latents but only 2 distinct
    prompts (negative, prompt), so the key and value projections run on 2 rows instead of 2n,
    and the r query sequences of a group are folded into one r-times longer sequence against
    the group's keys and values, which are read once. Each query's sum is the one diffusers'
    ``AttnProcessor2_0`` computes (it takes fused or separate k/v projections alike)."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        import torch.nn.functional as F

        if encoder_hidden_states is None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError(
                "SharedContextAttnProcessor takes unmasked cross-attention on (batch, tokens, dim)"
            )
        context = encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        n_latents, n_tokens, _ = hidden_states.shape
        n_context = context.shape[0]
        if n_latents % n_context:
            raise ValueError(f"{n_latents} latent rows cannot share {n_context} context rows")
        query = attn.to_q(hidden_states)
        if getattr(attn, "fused_projections", False) and hasattr(attn, "to_kv"):
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        head_dim = query.shape[-1] // heads
        # (r·B, S, C) → (B, r·S, heads, d): latent rows of one context row become one sequence
        q = query.reshape(n_context, -1, heads, head_dim).transpose(1, 2)
        k = key.reshape(n_context, -1, heads, head_dim).transpose(1, 2)
        v = value.reshape(n_context, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = out.transpose(1, 2).reshape(n_latents, n_tokens, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def share_cross_attention_context(model: Any) -> bool:
    """Give each plain cross-attention layer of ``model`` a ``SharedContextAttnProcessor``. True
    when every cross-attention layer has one (then the prompt may be passed with one row per CFG
    half); False when some layer carries a processor or a feature it does not cover (an
    IP-Adapter, a spatial or q/k norm): then the model is left as it was."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

    layers = [m for m in model.modules() if isinstance(m, Attention) and m.is_cross_attention]
    plain = [
        m
        for m in layers
        if type(m.processor) in (AttnProcessor2_0, FusedAttnProcessor2_0, SharedContextAttnProcessor)
        and m.spatial_norm is None
        and m.group_norm is None
        and m.norm_q is None
        and m.norm_k is None
        and getattr(m, "added_kv_proj_dim", None) is None
    ]
    if len(plain) != len(layers):
        return False
    for m in layers:
        m.set_processor(SharedContextAttnProcessor())
    return True


def fuse_attention_projections(model: Any) -> int:
    """Fuse each diffusers ``Attention``'s projections: q, k, v into one Linear for
    self-attention, k, v for cross-attention (the UNet's ``fuse_qkv_projections``, for any model,
    the union ControlNet too). The same sums in one bigger matmul. Returns the layers fused."""
    import torch
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

    n = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, Attention) or getattr(module, "fused_projections", False):
                continue
            if not isinstance(module.processor, AttnProcessor2_0):
                continue  # a custom or added-KV processor: leave it alone
            module.fuse_projections(fuse=True)
            for name in ("to_qkv", "to_kv"):
                if hasattr(module, name):
                    getattr(module, name).requires_grad_(False)
            module.set_processor(FusedAttnProcessor2_0())
            n += 1
    return n

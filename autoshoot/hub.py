"""The one reading of "offline" shared by every model loader, and the one wording of how to
provide a missing model and of why a fetch failed (light: no heavy imports)."""

from __future__ import annotations

import os
from typing import Any


def env_offline() -> bool:
    """HF_HUB_OFFLINE set to a true value, read as huggingface_hub reads it (1, ON, YES, TRUE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def is_offline(config: Any = None) -> bool:
    """No fetching from the hub: ``--offline`` (``run.offline``) or HF_HUB_OFFLINE.

    Args:
        config: a Config, or any object without a ``run`` section (then only the environment counts).
    """
    run = getattr(config, "run", None)
    return bool(getattr(run, "offline", False)) or env_offline()


def is_local_source(source: str) -> bool:
    """A model setting names a local file or folder (else a hub id)."""
    return source.startswith(("/", ".", "~")) or os.path.exists(os.path.expanduser(source))


# approximate download sizes of the default hub models (what `autoshoot models download` fetches)
DOWNLOAD_SIZES = {
    "Qwen/Qwen2.5-VL-7B-Instruct": "16.6 GB",
    "SG161222/RealVisXL_V5.0": "7 GB",
    "stabilityai/stable-diffusion-xl-base-1.0": "7 GB",
    "ai-forever/Real-ESRGAN": "0.07 GB",
    "xinsir/controlnet-union-sdxl-1.0": "2.5 GB",
    "madebyollin/sdxl-vae-fp16-fix": "0.3 GB",
    "google/owlv2-base-patch16-ensemble": "0.6 GB",
    "ZhengPeng7/BiRefNet": "0.9 GB",
}


def hf_home() -> str:
    """Where huggingface_hub keeps its cache (``HF_HOME``, default ~/.cache/huggingface)."""
    return os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")


def models_download_command(config: Any = None) -> str:
    """``autoshoot models download``, with the config's profile when it is not the default."""
    profile = getattr(getattr(config, "run", None), "profile", "default") or "default"
    return "autoshoot models download" + ("" if profile == "default" else f" --profile {profile}")


def download_hint(model: str, config: Any = None) -> str:
    """How to provide a model that is not there: fix a local path, or fetch a hub id.

    The one wording for every model. For a hub id it names the command, the size, where a
    copied cache goes and, when fetching was turned off, how to turn it back on.
    """
    if is_local_source(model):
        return f"put the model at {model}, or fix the path in your profile"
    size = DOWNLOAD_SIZES.get(model)
    hint = (
        f"run `{models_download_command(config)}`"
        + (f" (about {size}; it needs network)" if size else " (it needs network)")
        + f", or copy the Hugging Face cache of a machine that ran it into HF_HOME ({hf_home()})"
    )
    if env_offline():
        hint += ", or unset HF_HUB_OFFLINE to let it download"
    elif is_offline(config):
        hint += ", or run without --offline to let it download"
    return hint


def fetch_problem(err: BaseException) -> str:
    """Why a fetch from the hub failed, in words rather than an exception's class name."""
    text = " ".join(str(err).split())
    seen: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in seen:  # the whole chain: the root cause is deepest
        seen.append(cause)
        text += " " + " ".join(str(cause).split())
        cause = cause.__cause__ or cause.__context__
    names = " ".join(type(e).__name__ for e in seen)
    low = text.lower()
    if (
        any(
            k in low
            for k in (
                "name or service not known",
                "temporary failure in name resolution",
                "nodename nor servname",
                "connecterror",
                "connection refused",
                "network is unreachable",
                "failed to establish a new connection",
                "internet connection",
            )
        )
        or "ConnectError" in names
    ):
        return "the Hugging Face hub cannot be reached (no network?)"
    if "timed out" in low or "timeout" in names.lower():
        return "the Hugging Face hub did not answer in time"
    if "GatedRepo" in names or "401" in low or "403" in low or "gated" in low:
        return "the hub refused access (a gated model: accept its licence on the hub and log in with `hf auth login`)"
    if "RepositoryNotFound" in names or "404" in low:
        return "the hub has no such model (check the id)"
    if "no space left" in low:
        return "the disk is full"
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return first

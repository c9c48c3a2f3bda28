"""The one reading of "offline" shared by every model loader (light: no heavy imports)."""

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


def download_hint(model: str) -> str:
    """How to provide a model that is not there: fix a local path, or fetch a hub id."""
    if is_local_source(model):
        return f"put the model at {model} or fix the path in your profile"
    return f"run `autoshoot models download` on a machine with network (it puts {model} in the Hugging Face cache)"

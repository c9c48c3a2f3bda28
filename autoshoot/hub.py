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

"""Shared test setup: no network, a private HOME/HF cache, and the sample photos.

Every test runs with HF_HUB_OFFLINE=1 and HOME/HF_HOME/MPLCONFIGDIR in a temp folder, so a
test that tried to download weights would fail instead of touching the network.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_PRIVATE_HOME = Path(tempfile.mkdtemp(prefix="autoshoot-test-home-"))
atexit.register(shutil.rmtree, _PRIVATE_HOME, ignore_errors=True)  # this pytest run's own, removed at its end
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HOME": str(_PRIVATE_HOME),
    "HF_HOME": str(_PRIVATE_HOME / "hf"),
    "MPLCONFIGDIR": str(_PRIVATE_HOME / "mpl"),
    "XDG_CACHE_HOME": str(_PRIVATE_HOME / "cache"),
    "U2NET_HOME": str(_PRIVATE_HOME / "u2net"),
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_key] = _value
# made up front: with no $XDG_CACHE_HOME folder yet, torch warns and keeps no CUDA kernel cache
for _name in ("hf", "mpl", "cache"):
    (_PRIVATE_HOME / _name).mkdir()

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """../shared/samples beside the checkout; tests that need it skip when it is absent."""
    if not (SAMPLES / "MANIFEST.csv").is_file():
        pytest.skip("the sample photos are not here: ../shared/samples beside the checkout is absent")
    return SAMPLES

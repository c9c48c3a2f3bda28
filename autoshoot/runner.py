"""The run core now lives in ``autoshoot.run``: keys (stages and cache keys), store (one
SKU's folder), worker (one SKU's stages), engines/ (local, ray) and recipe (``run_catalog``:
a catalog in, a RUN folder out). This module keeps the old import path, ``autoshoot.runner``."""

from autoshoot.run.engines.local import *  # noqa: F403
from autoshoot.run.folder import LocalRunFolder, RunFolder, open_run, run_lock  # noqa: F401
from autoshoot.run.keys import *  # noqa: F403
from autoshoot.run.layout import *  # noqa: F403
from autoshoot.run.recipe import *  # noqa: F403
from autoshoot.run.recipe import _Interrupt, _run_catalog  # noqa: F401
from autoshoot.run.store import *  # noqa: F403
from autoshoot.run.worker import *  # noqa: F403

"""Moved to ``autoshoot.run.models``, the run core's residency manager (the layout of
STYLE.md: ``run/`` holds the run core). This name re-exports it for imports written before the
move; the log channel keeps its name, ``autoshoot.residency``."""

from autoshoot.run.models import *  # noqa: F403

"""Moved to ``autoshoot.brief.prompt`` (the ``brief/`` package of STYLE.md's layout). This name
re-exports it for imports written before the move."""

from autoshoot.brief.prompt import *  # noqa: F403

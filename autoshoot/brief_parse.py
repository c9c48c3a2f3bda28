"""Moved to ``autoshoot.brief.parse`` (the ``brief/`` package of STYLE.md's layout). This name
re-exports it for imports written before the move."""

from autoshoot.brief.parse import *  # noqa: F403

"""Moved to ``autoshoot.brief.rules``: the rules brief is the project's own judgment, not an
adapter of an external model (STYLE.md's layout). This name re-exports it for imports written
before the move."""

from autoshoot.brief.rules import *  # noqa: F403

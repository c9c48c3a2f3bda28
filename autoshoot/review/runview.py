"""Moved to ``autoshoot.report.review.runview``; this name re-exports it for older imports."""

from autoshoot.report.review.runview import *  # noqa: F403

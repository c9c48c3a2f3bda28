"""Moved to ``autoshoot.report.review.export``; this name re-exports it for older imports."""

from autoshoot.report.review.export import *  # noqa: F403

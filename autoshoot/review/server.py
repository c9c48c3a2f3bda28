"""Moved to ``autoshoot.report.review.server``; this name re-exports it for older imports."""

from autoshoot.report.review.server import *  # noqa: F403

"""Moved to ``autoshoot.report.review.decisions``; this name re-exports it for older imports."""

from autoshoot.report.review.decisions import *  # noqa: F403

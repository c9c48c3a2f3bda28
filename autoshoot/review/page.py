"""Moved to ``autoshoot.report.review.page``; this name re-exports it for older imports."""

from autoshoot.report.review.page import *  # noqa: F403

"""Moved to ``autoshoot.report.review.nightly``; this name re-exports it for older imports."""

from autoshoot.report.review.nightly import *  # noqa: F403

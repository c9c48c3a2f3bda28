"""Exceptions that carry a message written for the user (what went wrong and how to fix it)."""

from __future__ import annotations


class AutoshootError(Exception):
    """Base class. The CLI prints ``str(err)`` without a traceback and exits 2."""


class ConfigError(AutoshootError):
    """A config file, profile or ``--set`` override is invalid."""


class CatalogError(AutoshootError):
    """The catalog as a whole cannot be read (missing file, missing required column)."""


class ModelMissingError(AutoshootError):
    """One or more models are absent and cannot be fetched. Raised before the first SKU."""

    def __init__(self, missing: list[tuple[str, str, str]]):
        # (what, where, how to provide it)
        self.missing = missing
        lines = ["These models are missing, so nothing was run:"]
        for what, where, fix in missing:
            lines.append(f"  - {what}: {where}\n      fix: {fix}")
        super().__init__("\n".join(lines))


class StageError(AutoshootError):
    """A stage failed for one SKU; the message is the one-line reason put in results.csv."""


class RunLockedError(AutoshootError):
    """Another run holds the lock on the RUN folder."""

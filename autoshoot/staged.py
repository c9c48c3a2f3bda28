"""The object-store RUN folder's store and worker now live in ``autoshoot.run.staged``; this
module keeps their old path."""

from autoshoot.run.staged import *  # noqa: F403

"""The Ray engine now lives in ``autoshoot.run.engines.ray``; this module keeps its old path."""

from autoshoot.run.engines.ray import *  # noqa: F403

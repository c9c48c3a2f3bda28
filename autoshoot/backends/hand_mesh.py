"""Moved to ``autoshoot.hands.mesh``; this re-export stays while older imports use it."""

from autoshoot.hands.mesh import *  # noqa: F403

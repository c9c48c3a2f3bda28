"""Moved to ``autoshoot.hands.anatomy``; this re-export stays while older imports use it."""

from autoshoot.hands.anatomy import *  # noqa: F403
from autoshoot.hands.anatomy import (  # noqa: F401
    _soft,
    _unit,
)

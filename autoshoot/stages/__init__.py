"""The recipe's stages, in order. Each one is a module with one ``Stage`` subclass.

analyze → prepare → render → refine → composite → score → rank
"""

from __future__ import annotations

STAGE_ORDER = ("analyze", "prepare", "render", "refine", "composite", "score", "rank")

# name → "module:class". Imported lazily; stage modules import no heavy library at import time.
STAGES = {name: f"autoshoot.stages.{name}:{name.capitalize()}Stage" for name in STAGE_ORDER}

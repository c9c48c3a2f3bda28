"""The engines now live in ``autoshoot.run.engines`` (local, ray); this package keeps the old
import path, ``autoshoot.engines.ray_engine``, for older imports."""

"""autoshoot: one product photo in, ranked photos of a model holding it out."""

__version__ = "0.1.0"

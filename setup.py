"""Packaging glue that pyproject.toml cannot express: the prompt templates live in the top-level
prompts/ folder, and a wheel (a non-editable install) carries them as autoshoot/prompts/.
Everything else about the package is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["autoshoot", "autoshoot.*"]), "autoshoot.prompts"],
    package_dir={"autoshoot.prompts": "prompts"},
)

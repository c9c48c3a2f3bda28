"""The stages of a run and each SKU's keys: a stage's cache key chains the image bytes, the
stage's config sections and version, and the key of the stage before it."""

from __future__ import annotations

import hashlib
import importlib
import json

from autoshoot.catalog import Row
from autoshoot.config import Config
from autoshoot.stages import STAGE_ORDER, STAGES
from autoshoot.stages.base import Job, Stage


def build_stages(names: tuple[str, ...] = STAGE_ORDER) -> list[Stage]:
    stages = []
    for name in names:
        module_name, _, cls_name = STAGES[name].partition(":")
        stages.append(getattr(importlib.import_module(module_name), cls_name)())
    return stages


def sku_seed(config: Config, row: Row) -> int:
    if row.seed is not None:
        return row.seed
    digest = hashlib.sha256(f"{config.run.seed}:{row.sku}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def stage_keys(
    stages: list[Stage], config: Config, job: Job, section_hashes: dict[str, str] | None = None
) -> dict[str, str]:
    """The cache key of every stage for ``job``: chained, so a change flows downstream.

    ``section_hashes`` (stage name → hash of its config sections) can be computed once per
    run with ``config_hashes``; it is the same for every SKU.
    """
    section_hashes = section_hashes or config_hashes(stages, config)
    keys: dict[str, str] = {}
    previous = job.image_sha256
    for stage in stages:
        params = {name: getattr(job, name) for name in stage.job_params}
        material = [
            previous,
            stage.name,
            stage.version,
            section_hashes[stage.name],
            stage.extra_key(job),
            params,
        ]
        previous = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        keys[stage.name] = previous
    return keys


def config_hashes(stages: list[Stage], config: Config) -> dict[str, str]:
    return {s.name: config.section_hash(*s.config_sections) if s.config_sections else "" for s in stages}

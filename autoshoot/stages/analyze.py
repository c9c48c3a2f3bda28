"""The ``analyze`` stage: a VLM reads the product photo and writes the brief and the prompts.

Per SKU it writes ``brief.json`` and ``prompt.txt`` and returns (saved as ``stage.json``)::

    {"brief": {...Brief...}, "prompt": str, "negative_prompt": str, "prompt_version": str,
     "backend": str, "fallback_fields": [dotted paths filled by rules], "flags": [...]}

Later stages read ``brief.product.category``, ``brief.product.size_cm`` ([width_cm,
height_cm]), ``brief.product.handle``, ``brief.product.handle_box`` (XYXY input pixels or
null), ``brief.hold_pose``, ``brief.shot``, ``prompt`` and ``negative_prompt``.

SKUs are batched through one VLM call (``run_batch``). Brand profiles
(``analyze.brands``) and then the row's override columns are applied after the VLM.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autoshoot.hub import download_hint
from autoshoot.stages.base import Job, ModelSpec, Stage

if TYPE_CHECKING:
    from autoshoot.brief import BriefRequest, BriefResult
    from autoshoot.config import Config

logger = logging.getLogger(__name__)


class AnalyzeStage(Stage):
    name: ClassVar[str] = "analyze"
    version: ClassVar[str] = "1"
    config_sections: ClassVar[tuple[str, ...]] = ("analyze",)

    def models(self, config: Config) -> list[ModelSpec]:
        settings = config.analyze
        if settings.vlm == "qwen":
            return [ModelSpec("vlm (brief)", settings.model, download_hint(settings.model))]
        if settings.vlm == "openai":
            return [
                ModelSpec(
                    "vlm endpoint (brief)",
                    f"{settings.openai.model} at {settings.openai.base_url}",
                    "start an OpenAI-compatible server, e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`",
                )
            ]
        return []

    def check_models(self, config: Config) -> list[tuple[str, str, str]]:
        from autoshoot.backends import VLMS

        settings = config.analyze
        VLMS.check(settings.vlm)
        if settings.vlm != "qwen":
            return []
        from autoshoot.backends.qwen_vl import missing_model_fix, model_is_available
        from autoshoot.hub import is_offline

        ok, why = model_is_available(settings.model, is_offline(config))
        if ok:
            return []
        return [("vlm (brief)", f"{settings.model}: {why}", missing_model_fix(settings.model, config))]

    def fetch_models(self, config: Config) -> list[tuple[str, str, str]]:
        settings = config.analyze
        if settings.vlm != "qwen":
            return []
        from autoshoot.backends.qwen_vl import fetch_model, missing_model_fix
        from autoshoot.hub import is_offline

        why = fetch_model(settings.model, is_offline(config))
        if not why:
            return []
        return [
            (
                "vlm (brief)",
                f"{settings.model}: {why}",
                missing_model_fix(settings.model, config),
            )
        ]

    def extra_key(self, job: Job) -> str:
        """The row's override columns, brand (and its profile), catalog text and prompt version."""
        from autoshoot.brief import brand_overrides
        from autoshoot.brief.prompt import prompt_version

        row = job.row
        return json.dumps(
            {
                "overrides": dict(sorted(row.overrides.items())),
                "brand": row.brand,
                "brand_profile": brand_overrides(job.config.analyze.brands, row.brand),
                "title": row.title,
                "category": row.category,
                "notes": row.notes,
                "prompt_version": prompt_version(),
            },
            sort_keys=True,
        )

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        outcome = self.run_batch([job], [out])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def run_batch(self, jobs: list[Job], outs: list[Path]) -> list[dict[str, Any] | BaseException]:
        from autoshoot.backends import VLMS

        if not jobs:
            return []
        config = jobs[0].config
        settings = config.analyze
        # 1. one request per SKU
        requests = [request_from_job(job) for job in jobs]
        # 2. the VLM, built once per run
        key = f"vlm:{settings.vlm}:{settings.model if settings.vlm == 'qwen' else ''}"
        # its size is measured when it loads; generate's activations and KV cache grow with the batch
        work = 0.5 + 0.25 * max(1, settings.batch_size) if settings.vlm == "qwen" else 0.0
        vlm = jobs[0].sessions.get(key, lambda: VLMS.create(settings.vlm, config), work_gib=work)
        # 3. all briefs in one batched call
        results = describe_or_fallback(vlm, requests)
        # 4. overrides, prompts and files per SKU
        outcomes: list[dict[str, Any] | BaseException] = []
        for job, out, result in zip(jobs, outs, results, strict=True):
            if isinstance(result, Exception):
                outcomes.append(result)
                continue
            try:
                overrides = {**brand_profile(config, job.row.brand), **job.row.overrides}
                outcome = finish_brief(result, overrides, out)
                job.flags.extend(f for f in outcome["flags"] if f not in job.flags)
                outcomes.append(outcome)
            except Exception as err:  # the runner marks this SKU failed with this reason
                outcomes.append(as_stage_error(job, err))
        return outcomes


# ---------------------------------------------------------------------------------------
# Helpers shared with ``autoshoot analyze``


def brand_profile(config: Config, brand: str) -> dict[str, str]:
    from autoshoot.brief import brand_overrides

    return brand_overrides(config.analyze.brands, brand)


def request_from_job(job: Job) -> BriefRequest:
    from autoshoot.brief import BriefRequest, sku_seed

    row = job.row
    return BriefRequest(
        image=job.image_path,
        sku=job.sku,
        title=row.title,
        category=row.category,
        brand=row.brand,
        notes=row.notes,
        seed=sku_seed(job.sku),
    )


def describe_or_fallback(vlm: Any, requests: list[BriefRequest]) -> list[BriefResult | Exception]:
    """``vlm.describe(requests)``; if the backend fails as a whole, each brief comes from rules
    (an SKU whose rules brief fails too, e.g. an unreadable image, gets its exception)."""
    from autoshoot.brief.rules import RulesVLM

    try:
        results = vlm.describe(requests)
        if len(results) != len(requests):
            raise RuntimeError(f"the VLM returned {len(results)} briefs for {len(requests)} requests")
        return list(results)
    except Exception as err:  # one VLM crash must not fail a whole batch of SKUs
        logger.warning(
            "the %s VLM failed (%s); using rules briefs for %d SKU(s)",
            getattr(vlm, "name", "?"),
            err,
            len(requests),
        )
        vlm_error = f"{type(err).__name__}: {err}"
    out: list[BriefResult | Exception] = []
    rules = RulesVLM()
    for request in requests:
        try:
            result = rules.describe([request])[0]
        except Exception as rules_err:  # this SKU alone fails
            out.append(rules_err)
            continue
        if getattr(vlm, "name", "") != "rules":  # rules retried per SKU is no fallback
            result.fallback_fields = ["*"]
            result.flags = ["brief_fallback", "vlm_error"]
            result.raw = vlm_error
        out.append(result)
    return out


def finish_brief(result: BriefResult, overrides: dict[str, str], out: Path | None) -> dict[str, Any]:
    """Apply overrides, render the prompts, write brief.json and prompt.txt into ``out``."""
    from autoshoot.brief import apply_overrides
    from autoshoot.brief.prompt import prompt_version, render_negative_prompt, render_prompt
    from autoshoot.io import atomic_write_json, atomic_write_text

    brief = apply_overrides(result.brief, overrides)
    flags = list(result.flags)
    outcome = {
        "brief": brief.to_data(),
        "prompt": render_prompt(brief),
        "negative_prompt": render_negative_prompt(brief),
        "prompt_version": prompt_version(),
        "backend": result.backend,
        "fallback_fields": list(result.fallback_fields),
        "flags": sorted(set(flags)),
        "overrides": dict(sorted(overrides.items())),
    }
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "brief.json", outcome["brief"])
        atomic_write_text(
            out / "prompt.txt", outcome["prompt"] + "\n\nNEGATIVE: " + outcome["negative_prompt"] + "\n"
        )
        if result.raw:
            atomic_write_text(out / "vlm_answer.txt", result.raw)
    return outcome


def as_stage_error(job: Job, err: Exception) -> Exception:
    from autoshoot.brief import OverrideError
    from autoshoot.errors import StageError

    if isinstance(err, OverrideError):
        return StageError(f"row {job.row.row_number}: {err}")
    return err

"""``autoshoot models list|download|check``: the models a profile uses (VLM, SDXL, bag detector,
segmenter).

    autoshoot models list  [--profile P]   what the profile loads, and where each one is
    autoshoot models download [--profile P] fetch the hub models (progress bars, resumable)
    autoshoot models check [--profile P]    files present? configs load (no weights)? exit 1 if not

Local paths never touch the network. ``--offline`` (or HF_HUB_OFFLINE=1) forbids fetching.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from autoshoot.commands.common import config_options, make_config


@click.group()
def models() -> None:
    """List, download or check the models of a profile."""


@models.command("list")
@config_options
def list_models(profile: str | None, config_file: str | None, set_: tuple[str, ...]) -> None:
    """Print each model of the profile: role, source, and whether it is here."""
    from autoshoot.stages.render import entry_missing_files

    config = make_config(profile, config_file, set_)
    vlm = vlm_state(config)
    if vlm is not None:
        state, fix = vlm
        click.echo(f"{'VLM (brief)':<52} {config.analyze.model:<52} {state}")
        if fix:
            click.echo(f"    fix: {fix}")
    for entry, fix in model_entries_with_fixes(config):
        missing = entry_missing_files(entry)
        state = "ok" if not missing else ("missing" if entry.local else "not downloaded")
        click.echo(f"{entry.role:<52} {entry.source:<52} {state}")
        if missing:
            click.echo(f"    fix: {fix}")


@models.command("download")
@config_options
@click.option("--offline", is_flag=True, default=None, help="Refuse to fetch (check only).")
def download_models(
    profile: str | None, config_file: str | None, set_: tuple[str, ...], offline: bool | None
) -> None:
    """Fetch every hub model of the profile into the Hugging Face cache (resumes partial files).

    One line per model that could not be provided, saying why and what to do; exit 1 then.
    """
    from autoshoot.hub import DOWNLOAD_SIZES, env_offline, fetch_problem, hf_home, is_local_source, is_offline
    from autoshoot.stages.render import entry_missing_files, fetch_entry

    config = make_config(profile, config_file, set_, **{"run.offline": offline})
    offline = is_offline(config)
    failed: list[str] = []  # hub models that did not come

    def report(role: str, source: str, problem: str = "", fix: str = "") -> None:
        if not problem:
            click.echo(f"ok      {role}: {source}")
            return
        size = f" (about {DOWNLOAD_SIZES[source]})" if source in DOWNLOAD_SIZES else ""
        click.echo(f"FAILED  {role}: {source}{size}: {problem}" + (f"; fix: {fix}" if fix else ""))
        failed.append(source)

    # 1. the brief's VLM
    if config.analyze.vlm == "qwen":
        from autoshoot.backends.qwen_vl import fetch_model, model_is_available

        source = config.analyze.model
        if not offline:
            click.echo(f"VLM (brief): fetching {source}", err=True)
        why = fetch_model(source, offline)
        ok, absent = model_is_available(source, True)
        if ok and not why:
            report("VLM (brief)", source)
        else:
            local = is_local_source(source)
            report(
                "VLM (brief)", source, why or (absent if local else "not in the cache, and downloads are off")
            )
    # 2. the files of every other model: local ones are checked, hub ones fetched
    for entry, fix in model_entries_with_fixes(config):
        if entry.kind == "tiny":
            report(entry.role, "nothing to download")
        elif entry.kind == "rembg" and entry_missing_files(entry):
            from autoshoot.backends.segmenters import fetch_rembg_model

            if offline:
                report(entry.role, entry.source, "not downloaded, and downloads are off")
                continue
            click.echo(f"{entry.role}: rembg fetches {entry.source}", err=True)
            try:
                fetch_rembg_model(Path(entry.source).stem)
            except Exception as err:  # no network, a full disk
                report(entry.role, entry.source, f"not fetched: {fetch_problem(err)}", fix)
            else:
                report(entry.role, entry.source)
        elif entry.local:
            report(entry.role, entry.source, "not found" if entry_missing_files(entry) else "", fix)
        elif offline:
            gone = entry_missing_files(entry)
            report(entry.role, entry.source, "not in the cache, and downloads are off" if gone else "")
        else:
            click.echo(f"{entry.role}: fetching {entry.source} ({', '.join(entry.patterns)})", err=True)
            try:
                fetch_entry(entry)
            except Exception as err:  # no network, a wrong id, a gated repo, a full disk
                report(entry.role, entry.source, f"not fetched: {fetch_problem(err)}")
            else:
                report(entry.role, entry.source)
    # 3. one fix for the hub models that did not come
    if failed:
        how = (
            "unset HF_HUB_OFFLINE and run this again"
            if env_offline()
            else "run this again without --offline"
            if offline
            else "check the network and run this again"
        )
        click.echo(
            f"{len(failed)} model{'s' if len(failed) > 1 else ''} not downloaded; fix: {how}, or copy the "
            f"Hugging Face cache of a machine that has them into HF_HOME ({hf_home()})",
            err=True,
        )
        sys.exit(1)
    click.echo("all models are here")


@models.command("check")
@config_options
def check_models(profile: str | None, config_file: str | None, set_: tuple[str, ...]) -> None:
    """Verify the files exist and the configs load (no weights). Exit 1 when anything is missing."""
    from autoshoot.stages.render import entry_missing_files

    config = make_config(profile, config_file, set_)
    bad = 0
    vlm = vlm_state(config)
    if vlm is not None:
        state, fix = vlm
        if fix:
            bad += 1
            click.echo(f"MISSING VLM (brief): {config.analyze.model}: {state}\n    fix: {fix}")
        else:
            click.echo(f"ok      VLM (brief): {config.analyze.model}")
    for entry, fix in model_entries_with_fixes(config):
        gone = entry_missing_files(entry)
        problem = f"missing {', '.join(gone)}" if gone else load_config_only(entry)
        if problem:
            bad += 1
            click.echo(f"MISSING {entry.role}: {entry.source}: {problem}\n    fix: {fix}")
        else:
            click.echo(f"ok      {entry.role}: {entry.source}")
    sys.exit(1 if bad else 0)


def model_entries_with_fixes(config) -> list[tuple[Any, str]]:  # type: ignore[no-untyped-def]
    """Every file-backed model of the profile with how to provide it: SDXL's (render, refine,
    composite), then the scene rule's bag detector (score)."""
    from autoshoot.backends.segmenters import segmenter_fix, segmenter_model_entries
    from autoshoot.stages.render import how_to_get, model_entries
    from autoshoot.stages.score import bag_model_entries, bag_model_fix

    return (
        [(e, how_to_get(e, config)) for e in model_entries(config)]
        + [(e, bag_model_fix(e, config)) for e in bag_model_entries(config)]
        + [(e, segmenter_fix(e, config)) for e in segmenter_model_entries(config)]
    )


def vlm_state(config) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    """(state, fix) of the brief's VLM, or None when the brief needs no model."""
    if config.analyze.vlm != "qwen":
        return None
    from autoshoot.backends.qwen_vl import model_is_available

    ok, why = model_is_available(config.analyze.model, True)  # is it here now?
    if ok:
        return "ok", ""
    from autoshoot.backends.qwen_vl import missing_model_fix

    return "not downloaded", missing_model_fix(config.analyze.model, config)


def load_config_only(entry) -> str:  # type: ignore[no-untyped-def]
    """Load the entry's config without weights; '' when it loads, else the problem."""
    if entry.kind in ("tiny", "lora", "single_file", "remote_code", "upscaler", "rembg"):
        return ""
    try:
        if entry.kind == "transformers":
            from transformers import AutoConfig

            source = os.path.expanduser(entry.source) if entry.local else entry.source
            AutoConfig.from_pretrained(source, local_files_only=True)
        elif entry.kind in ("pipeline", "config_only"):
            from diffusers import UNet2DConditionModel

            UNet2DConditionModel.load_config(entry.source, subfolder="unet", local_files_only=True)
        elif entry.kind == "union":
            from diffusers import ControlNetUnionModel

            from autoshoot.hub import is_local_source

            if is_local_source(entry.source):
                ControlNetUnionModel.load_config(entry.source, config_name=entry.files[0])
            else:
                ControlNetUnionModel.load_config(
                    entry.source, config_name=entry.files[0], local_files_only=True
                )
        else:
            from diffusers import AutoencoderKL

            AutoencoderKL.load_config(entry.source, local_files_only=True)
    except Exception as err:  # a broken or partial download: say which and why
        return f"its config does not load ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    return ""

"""``autoshoot models list|download|check``: the models a profile uses (VLM, SDXL, bag detector).

    autoshoot models list  [--profile P]   what the profile loads, and where each one is
    autoshoot models download [--profile P] fetch the hub models (progress bars, resumable)
    autoshoot models check [--profile P]    files present? configs load (no weights)? exit 1 if not

Local paths never touch the network. ``--offline`` (or HF_HUB_OFFLINE=1) forbids fetching.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from autoshoot.commands.common import config_options, make_config
from autoshoot.stages.render import download_command


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
    """Fetch every hub model of the profile into the Hugging Face cache (resumes partial files)."""
    from autoshoot.errors import ModelMissingError
    from autoshoot.stages.render import entry_missing_files, fetch_entry

    config = make_config(profile, config_file, set_, **{"run.offline": offline})
    missing = []
    if config.analyze.vlm == "qwen":
        from autoshoot.backends.qwen_vl import fetch_model, model_is_available
        from autoshoot.hub import is_offline

        click.echo(f"VLM (brief): fetching {config.analyze.model}", err=True)
        why = fetch_model(config.analyze.model, is_offline(config))
        ok, absent = model_is_available(config.analyze.model, True)
        if why or not ok:
            missing.append(("VLM (brief)", config.analyze.model, why or absent))
    for entry, fix in model_entries_with_fixes(config):
        if entry.kind == "tiny":
            click.echo(f"{entry.role}: nothing to download")
            continue
        if entry.local:
            gone = entry_missing_files(entry)
            click.echo(f"{entry.role}: local {entry.source} " + ("ok" if not gone else "MISSING"))
            if gone:
                missing.append((entry.role, entry.source, fix))
            continue
        if config.run.offline:
            if entry_missing_files(entry):
                missing.append(
                    (entry.role, entry.source, "run without --offline / HF_HUB_OFFLINE to fetch it")
                )
            continue
        click.echo(f"{entry.role}: fetching {entry.source} ({', '.join(entry.patterns)})", err=True)
        fetch_entry(entry)
    if missing:
        raise ModelMissingError(missing)
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
    from autoshoot.stages.render import how_to_get, model_entries
    from autoshoot.stages.score import bag_model_entries, bag_model_fix

    return [(e, how_to_get(e, config)) for e in model_entries(config)] + [
        (e, bag_model_fix(e, config)) for e in bag_model_entries(config)
    ]


def vlm_state(config) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    """(state, fix) of the brief's VLM, or None when the brief needs no model."""
    if config.analyze.vlm != "qwen":
        return None
    from autoshoot.backends.qwen_vl import model_is_available

    ok, why = model_is_available(config.analyze.model, True)  # is it here now?
    if ok:
        return "ok", ""
    return "not downloaded", (
        f"`{download_command(config)}` fetches it, or set analyze.model to a local folder"
    )


def load_config_only(entry) -> str:  # type: ignore[no-untyped-def]
    """Load the entry's config without weights; '' when it loads, else the problem."""
    if entry.kind in ("tiny", "lora", "single_file", "upscaler"):
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

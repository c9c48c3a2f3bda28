"""Options shared by several commands: profile, config file, --set overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from autoshoot.config import Config, load_config, parse_set_option


def _remember_prompts(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["autoshoot.prompts"] = value


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--prompts",
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=_remember_prompts,
        metavar="DIR",
        help="Read the prompt templates from DIR (a copy of prompts/ to edit) instead of the shipped ones.",
    )(func)
    func = click.option(
        "--set",
        "set_",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config value, e.g. --set render.steps=20 (repeatable).",
    )(func)
    func = click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="A TOML or YAML config file."
    )(func)
    func = click.option(
        "--profile",
        default=None,
        metavar="NAME|FILE",
        help="Built-in profile (default, tiny) or a profile file. Default: default.",
    )(func)
    return func


def offline_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--offline", is_flag=True, default=None, help="Never fetch models (also HF_HUB_OFFLINE=1)."
    )(func)


def require_models(config: Config, stages: list[Any]) -> None:
    """Stop at once when a model the command needs is absent, as ``shoot`` does before its first
    SKU: first those that may not be fetched (offline, local paths), then those that fail to
    download. Without this, a loader would retry the hub for minutes before failing."""
    from autoshoot.errors import ModelMissingError

    for method in ("check_models", "fetch_models"):
        missing: list[tuple[str, str, str]] = []
        for stage in stages:
            missing += [m for m in getattr(stage, method)(config) if m not in missing]
        if missing:
            raise ModelMissingError(missing)


def make_config(profile: str | None, config_file: str | None, set_: tuple[str, ...], **flags: Any) -> Config:
    """Build the config; ``flags`` maps dotted keys to CLI flag values (None = not given)."""
    overrides = parse_set_option(set_)
    for key, value in flags.items():
        if value is not None:
            overrides[key] = value
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("autoshoot.prompts"):
        overrides["run.prompts"] = ctx.meta["autoshoot.prompts"]
    from autoshoot.hub import env_offline

    if env_offline():
        overrides.setdefault("run.offline", True)
    config = load_config(profile=profile, config_file=config_file, overrides=overrides)
    if config.run.prompts:
        from autoshoot.brief.prompt import use_prompts_dir

        use_prompts_dir(config.run.prompts)  # checked now; workers inherit it
    return config

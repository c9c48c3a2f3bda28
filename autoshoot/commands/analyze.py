"""``autoshoot analyze IMAGE [--vlm NAME] [--title ..] [--json]``: the brief and prompts for one photo.

With ``--json`` it prints one object: ``{"file", "sku", "brief", "prompt", "negative_prompt",
"prompt_version", "backend", "fallback_fields", "flags"}``. ``--out DIR`` also writes
``brief.json`` and ``prompt.txt`` there. Override columns can be given with ``--override
column=value`` (e.g. ``--override shot=close``), as a catalog row would.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from autoshoot.commands.common import config_options, make_config, offline_option, require_models


def parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r}: write COLUMN=VALUE, e.g. --override shot=close", param_hint="--override"
            )
        out[key.strip()] = value.strip()
    return out


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--vlm",
    default=None,
    metavar="NAME",
    help="Brief backend: rules, qwen or openai (default: the profile's).",
)
@click.option(
    "--model", default=None, metavar="ID|DIR", help="VLM model (hub id or local folder) for --vlm qwen."
)
@click.option("--title", default="", help="Catalog title of the product.")
@click.option("--category", default="", help="Catalog category (handbag, tote, briefcase, ...).")
@click.option("--brand", default="", help="Brand (selects a brand profile from analyze.brands).")
@click.option("--notes", default="", help="Catalog notes.")
@click.option(
    "--sku", default=None, help="SKU (rotates the persona); default: the file name without extension."
)
@click.option(
    "--override",
    "override_items",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="An override column (repeatable).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write brief.json and prompt.txt here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@offline_option
@config_options
def analyze(
    image: str,
    vlm: str | None,
    model: str | None,
    title: str,
    category: str,
    brand: str,
    notes: str,
    sku: str | None,
    override_items: tuple[str, ...],
    out_dir: str | None,
    as_json: bool,
    offline: bool | None,
    profile: str | None,
    config_file: str | None,
    set_: tuple[str, ...],
) -> None:
    """Write the brief (persona, setting, pose, shot) and the render prompts for IMAGE."""
    from autoshoot.backends import VLMS
    from autoshoot.brief import BriefRequest, OverrideError
    from autoshoot.stages.analyze import AnalyzeStage, brand_profile, describe_or_fallback, finish_brief

    # 1. config and checks, before any model is loaded
    config = make_config(
        profile, config_file, set_, **{"analyze.vlm": vlm, "analyze.model": model, "run.offline": offline}
    )
    VLMS.check(config.analyze.vlm)
    require_models(config, [AnalyzeStage()])
    overrides = {**brand_profile(config, brand), **parse_overrides(override_items)}

    # 2. the brief
    request = BriefRequest(
        image=Path(image),
        sku=sku or Path(image).stem,
        title=title,
        category=category,
        brand=brand,
        notes=notes,
    )
    backend = VLMS.create(config.analyze.vlm, config)
    try:
        result = describe_or_fallback(backend, [request])[0]
        if isinstance(result, Exception):
            raise click.ClickException(f"{image}: {result}")
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()

    # 3. overrides, prompts, files
    try:
        outcome = finish_brief(result, overrides, Path(out_dir) if out_dir else None)
    except OverrideError as err:
        raise click.BadParameter(str(err), param_hint="--override") from None
    outcome = {"file": image, "sku": request.sku, **outcome}
    if as_json:
        click.echo(json.dumps(outcome, indent=2, ensure_ascii=False))
        return
    brief = outcome["brief"]
    product = brief["product"]
    click.echo(
        f"{image}  [{outcome['backend']}{', fallback: ' + ', '.join(outcome['fallback_fields']) if outcome['fallback_fields'] else ''}]"
    )
    click.echo(
        f"  product  {product['category']}, {product['description']}; handle {product['handle']}; "
        f"{product['size_cm'][0]:g} x {product['size_cm'][1]:g} cm"
    )
    click.echo(f"  pose     {brief['hold_pose']}, {brief['shot']}")
    click.echo(f"  prompt   {outcome['prompt']}")
    click.echo(f"  negative {outcome['negative_prompt']}")

"""``autoshoot validate CATALOG``: check every row without loading a model."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autoshoot.commands.common import config_options, make_config


@click.command()
@click.argument("catalog", type=click.Path(dir_okay=False))
@config_options
def validate(catalog: str, profile: str | None, config_file: str | None, set_: tuple[str, ...]) -> None:
    """Check a catalog CSV: columns, SKUs, images, override values.

    Prints one line per problem (row, column, value, fix). Exits 1 when any row is invalid.
    """
    from autoshoot.run.recipe import validate_for_run

    config = make_config(profile, config_file, set_)
    result = validate_for_run(Path(catalog), config)
    for message in result.messages():
        click.echo(message)
    bad = len(result.invalid_rows)
    click.echo(f"{len(result.rows)} rows: {len(result.rows) - bad} valid, {bad} invalid")
    sys.exit(1 if bad else 0)

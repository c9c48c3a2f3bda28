"""``autoshoot export RUN --to DIR``: approved pictures and a manifest (or kohya pairs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="The folder to write.")
@click.option(
    "--accepted", is_flag=True, help="Also the best pick of SKUs the scorer accepted and nobody rejected."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["files", "kohya"]),
    default="files",
    show_default=True,
    help="files: pictures + manifest.csv; kohya: picture + caption .txt pairs for LoRA training.",
)
def export(run: str, to: str, accepted: bool, fmt: str) -> None:
    """Write the approved pictures of RUN (see `autoshoot review`) to DIR with a manifest.

    Exits 1 when an approved SKU could not be written (each is named, with the fix).
    """
    from autoshoot.report.review.export import export_run

    summary = export_run(Path(run), Path(to), include_accepted=accepted, fmt=fmt)
    click.echo(summary.text())
    sys.exit(1 if summary.skipped else 0)

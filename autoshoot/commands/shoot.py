"""``autoshoot shoot CATALOG --out RUN``: the nightly job."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import click

from autoshoot.commands.common import config_options, make_config
from autoshoot.run.folder import open_run
from autoshoot.run.models import parse_vram
from autoshoot.storage import is_uri


@click.command()
@click.argument("catalog", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The RUN folder: a path, or an object-store URI (s3://bucket/runs/x). Default: runs/<date>.",
)
@config_options
@click.option("--candidates", type=click.IntRange(1, 64), default=None, help="Images rendered per SKU.")
@click.option("--seed", type=int, default=None, help="Base seed (a catalog 'seed' column wins).")
@click.option("--offline", is_flag=True, default=None, help="Never fetch models (also HF_HUB_OFFLINE=1).")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="local (this process) or ray (one worker per GPU; pip install 'autoshoot[ray]').",
)
@click.option("--address", default=None, help="Ray cluster to join, e.g. auto. Default: start a local Ray.")
@click.option(
    "--gpus", type=click.IntRange(0), default=None, help="Ray workers to start (default: every GPU)."
)
@click.option(
    "--vlm-gpus",
    type=click.IntRange(0),
    default=None,
    help="Ray workers (one GPU each) that only write the briefs, batched across the catalog (default 0: off).",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    default=None,
    help="torch.compile the UNet's and ControlNet's blocks (a 1-2 minute warm-up per worker, faster after).",
)
@click.option(
    "--fp8",
    is_flag=True,
    default=None,
    help="fp8 tensor-core matmuls in the attention blocks (Ada/Hopper GPUs): faster, slightly less exact.",
)
@click.option(
    "--vram",
    default=None,
    metavar="GIB|auto",
    help="GPU memory budget in GiB for every model of the run and its activations; auto (default): "
    "the GPU's free memory at the start; 0: no limit. Small budgets pick a smaller VLM and the "
    "low-VRAM render (README: GPU memory budgets).",
)
@click.option("--force", is_flag=True, help="Redo every stage of every SKU, even when done.")
@click.option(
    "--redo",
    "redo",
    multiple=True,
    metavar="SKU",
    help="Redo every stage of this SKU, even when done or finished by an earlier run (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; load no model.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option(
    "-v", "--verbose", count=True, help="Log progress (-v) or everything (-vv), as autoshoot -v does."
)
def shoot(
    catalog: str,
    run_dir: str | None,
    profile: str | None,
    config_file: str | None,
    set_: tuple[str, ...],
    candidates: int | None,
    seed: int | None,
    offline: bool | None,
    engine: str | None,
    address: str | None,
    gpus: int | None,
    vlm_gpus: int | None,
    compile_: bool | None,
    fp8: bool | None,
    vram: str | None,
    force: bool,
    redo: tuple[str, ...],
    dry_run: bool,
    quiet: bool,
    verbose: int,
) -> None:
    """Run a catalog: brief, geometry, render, hand refine, composite, score, report.

    CATALOG and --out may be object-store URIs (s3://, gs://; pip install 'autoshoot[cloud]').
    Resumable: run the same command again and finished SKUs and stages are skipped. Exit code
    0 when every SKU is accepted or in review, 1 when any failed, 2 for a usage, catalog or
    config error or missing models (nothing is run), 130 when interrupted.
    """
    from autoshoot.cli import configure_logging
    from autoshoot.run import recipe

    configure_logging(verbose)
    config = make_config(
        profile,
        config_file,
        set_,
        **{
            "run.candidates": candidates,
            "run.seed": seed,
            "run.offline": offline,
            "run.engine": engine,
            "run.ray_address": address,
            "run.gpus": gpus,
            "run.vlm_workers": vlm_gpus,
            "render.compile": compile_,
            "render.fp8_matmul": fp8,
            "run.vram": vram,
        },
    )
    out = run_dir or f"runs/{time.strftime('%Y-%m-%d')}"
    if not is_uri(out):
        out = Path(out)
    parsed = recipe.validate_for_run(catalog if is_uri(catalog) else Path(catalog), config, out)
    if not quiet or dry_run:
        for message in parsed.messages():
            click.echo(message, err=True)
    known = {row.sku for row in parsed.valid_rows}
    unknown = [sku for sku in redo if sku not in known]
    if unknown:
        raise click.UsageError(
            f"--redo {', '.join(unknown)}: no valid row of {catalog} has this SKU; "
            "fix: give a SKU as the catalog's sku column spells it"
        )
    if dry_run:
        run = open_run(out)
        try:
            click.echo(recipe.dry_run_text(parsed, config, run))
        finally:
            run.close()
        return
    if parse_vram(config.run.vram) != 0 or 0 < config.render.vram <= 8:
        # within a budget: growable blocks, so the allocator reserves close to what is in use
        # and memory freed by a model leaving the GPU serves the next one
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    silence_loading_bars(downloads=quiet)
    summary = recipe.run_catalog(
        catalog, out, config, force=force or frozenset(redo), quiet=quiet, catalog=parsed
    )
    if not quiet:
        click.echo(summary.text(), err=True)
    sys.exit(summary.exit_code)


def silence_loading_bars(downloads: bool) -> None:
    """No model-loading bars ("Loading pipeline components", "Loading weights", "Writing model
    shards"): they would overlap the SKU bar. Download bars stay, as they show a long wait,
    except with -q (``downloads``), which turns every bar off."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    if downloads:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    hub_bars = not are_progress_bars_disabled()
    for module in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            importlib.import_module(module).disable_progress_bar()
        except ImportError:
            pass
    if hub_bars and not downloads:
        enable_progress_bars()  # transformers turned the hub's off too

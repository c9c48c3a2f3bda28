"""``autoshoot prepare IMAGE --out DIR``: the geometry of one photo, without any render model."""

from __future__ import annotations

import json

import click

from autoshoot.commands.common import config_options, make_config, offline_option, require_models
from autoshoot.vocab import CATEGORIES, HOLD_POSES, SHOTS


def parse_size_cm(value: str | None) -> tuple[float, float] | None:
    """``"38x30"`` → (38.0, 30.0)."""
    if value is None:
        return None
    w, sep, h = value.lower().replace(" ", "").partition("x")
    try:
        size = (float(w), float(h)) if sep else None
    except ValueError:
        size = None
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise click.BadParameter(f"{value!r}: write WIDTHxHEIGHT in cm, e.g. 38x30", param_hint="--size-cm")
    return size


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--segmenter", default=None, help="auto, plain, birefnet or rembg (default: from the profile).")
@click.option("--shot", type=click.Choice(SHOTS), default=None, help="Framing; default from the config.")
@click.option("--hold-pose", type=click.Choice(HOLD_POSES), default=None, help="How the bag is held.")
@click.option("--size-cm", default=None, metavar="WxH", help="Real size of the bag body in cm, e.g. 38x30.")
@click.option(
    "--category", type=click.Choice(CATEGORIES), default=None, help="Product category (default: other)."
)
@offline_option
@config_options
def prepare(
    image: str,
    out_dir: str,
    segmenter: str | None,
    shot: str | None,
    hold_pose: str | None,
    size_cm: str | None,
    category: str | None,
    offline: bool | None,
    profile: str | None,
    config_file: str | None,
    set_: tuple[str, ...],
) -> None:
    """Segment IMAGE, find the handle, erase the grip gap and place it on a canvas.

    Writes prepare.json, mask.png, canvas.png, inpaint_mask.png, control_canny.png and
    debug.png into --out, and prints prepare.json.
    """
    from pathlib import Path

    from autoshoot.geometry.pipeline import ProductHints, run_prepare
    from autoshoot.stages.prepare import PrepareStage

    config = make_config(
        profile, config_file, set_, **{"prepare.segmenter": segmenter, "run.offline": offline}
    )
    require_models(config, [PrepareStage()])
    hints = ProductHints(
        category=category or "other", size_cm=parse_size_cm(size_cm), hold_pose=hold_pose, shot=shot
    )
    prepared = run_prepare(Path(image), Path(out_dir), config, hints)
    click.echo(json.dumps(prepared.info, indent=2))

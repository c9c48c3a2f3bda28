"""``autoshoot score IMAGE... [--grip X,Y] [--prepared DIR] [--detail-scale F] [--json]``: hand
quality of images.

With ``--json`` it prints the DESIGN contract, a JSON list with one object per image:
``{"file", "hand_score", "hands", "reasons", "components", "bags"}``. Without it, a table.
``--prepared`` also gives the placed product's box, so that a detected bag elsewhere counts
as a second bag. ``--detail-scale`` says how far the images were enlarged from the picture that
was drawn (0.5 for a run's 2048-px final of a 1024-px render: what the run's score stage tells
the scorer), so a run's finals score here as they did in the run. The exit code is 0 when every image was scored and 1 when any could not be
read; a missing model (the bag detector offline) stops before the first image with exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from autoshoot.commands.common import config_options, make_config, offline_option, require_models


def parse_grip(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write the grip as X,Y in pixels, e.g. --grip 512,600") from None
    return (x, y)


def check_detail_scale(ctx: Any, param: Any, value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise click.BadParameter(
            f"{value}: pixels of drawn detail per image pixel lie in (0, 1]; e.g. --detail-scale 0.5 "
            "for a final upscaled 2x from its render, 1 for a photo"
        )
    return value


def read_prepared(
    directory: str | None,
) -> tuple[tuple[float, float] | None, list | None, tuple[float, float, float, float] | None]:
    """(grip, erase_polygon, product_box) in canvas pixels from DIR/prepare.json (or DIR/stage.json)."""
    if directory is None:
        return None, None, None
    from autoshoot.io import read_json
    from autoshoot.stages.score import grip_from_prepared, product_box_from_prepared

    folder = Path(directory)
    for name in ("prepare.json", "stage.json"):
        if (folder / name).is_file():
            prepared = read_json(folder / name)
            return (*grip_from_prepared(prepared), product_box_from_prepared(prepared))
    raise click.BadParameter(
        f"{directory!r} holds no prepare.json: run `autoshoot prepare IMAGE --out {directory}` first"
    )


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--grip", default=None, metavar="X,Y", help="Where a hand should grip, in image pixels.")
@click.option(
    "--prepared",
    type=click.Path(file_okay=False),
    default=None,
    help="A prepare output folder: its grip, erase polygon and product box (mapped to the canvas).",
)
@click.option(
    "--detail-scale",
    type=float,
    default=1.0,
    show_default=True,
    callback=check_detail_scale,
    help="Pixels of drawn detail per image pixel: 0.5 for a run's final upscaled 2x from its render.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (the stable contract).")
@click.option(
    "--overlay-dir", type=click.Path(file_okay=False), default=None, help="Write landmark overlays here."
)
@offline_option
@config_options
def score(
    images: tuple[str, ...],
    grip: str | None,
    prepared: str | None,
    detail_scale: float,
    as_json: bool,
    overlay_dir: str | None,
    offline: bool | None,
    profile: str | None,
    config_file: str | None,
    set_: tuple[str, ...],
) -> None:
    """Score the hands in IMAGE... (1 = plausible hands gripping where expected)."""
    from PIL import Image, UnidentifiedImageError

    from autoshoot.backends import HAND_SCORERS
    from autoshoot.backends.mediapipe_hands import draw_overlay, prepare_image
    from autoshoot.stages.score import ScoreStage

    config = make_config(profile, config_file, set_, **{"run.offline": offline})
    grip_xy, polygon, product_box = read_prepared(prepared)
    if grip is not None:
        grip_xy = parse_grip(grip)
    require_models(config, [ScoreStage()])
    scorer = HAND_SCORERS.create(config.score.scorer, config)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in images:
        try:
            with Image.open(path) as im:
                image = prepare_image(im)
        except (OSError, UnidentifiedImageError) as err:
            click.echo(f"Error: cannot read {path!r}: {err}", err=True)
            failed += 1
            continue
        result = scorer.score(
            image,
            grip=grip_xy,
            erase_polygon=polygon,
            file=path,
            product_box=product_box,
            detail_scale=detail_scale,
        )
        results.append(result.to_json())
        if overlay_dir:
            from autoshoot.io import save_image

            save_image(
                Path(overlay_dir) / f"{Path(path).stem}_hands.png",
                draw_overlay(
                    image, result.hands, grip_xy, polygon, label=f"{result.hand_score:.2f}", bags=result.bags
                ),
            )
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        echo_table(results)
    sys.exit(1 if failed else 0)


def echo_table(results: list[dict[str, Any]]) -> None:
    width = max([len(r["file"]) for r in results] + [4])
    click.echo(f"{'file':<{width}}  score  hands  reasons")
    for r in results:
        click.echo(
            f"{r['file']:<{width}}  {r['hand_score']:.3f}  {len(r['hands']):>5}  {'; '.join(r['reasons'])}"
        )

"""``autoshoot hands IMAGE... [--json] [--out DIR] [--grip X,Y]``: the hands stage 2 would draw.

Per image and per hand found: the 21 landmarks as detected, the corrected ones from the
anatomical kinematic hand (``autoshoot.hands.kinematic``), and the anatomy reasons of both.
With ``--json`` it prints the contract, a JSON list with one object per image::

    {"file": str,
     "hands": [{"source": "detected" | "canonical grip",
                "handedness": "Left" | "Right" | null,
                "bbox": [x0, y0, x1, y1],               # XYXY pixels around the landmarks
                "landmarks": [[x, y, z] * 21] | null,    # pixels, z in pixels (nearer = smaller)
                "corrected": [[x, y, z] * 21],          # same layout
                "moved": float | null,                  # mean shift, in hand lengths
                "reasons_before": [str], "reasons_after": [str],
                "guidance": {"crop", "depth", "scribble", "mask": file} | null}]}

With ``--grip X,Y`` and no hand found near it, the one hand is the canonical gripping hand
that stage 2 uses in its place (``source`` "canonical grip", ``landmarks`` null).
With ``--out DIR`` it writes, per hand, what stage 2 is guided by: the window it repaints
(``<stem>_hand<i>_crop.png``) and the depth, scribble and repaint mask drawn from the
corrected hand, at the model resolution. The exit code is 0 when every image was read and 1
when any could not be.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from autoshoot.commands.common import config_options, make_config
from autoshoot.commands.score import parse_grip


def round_points(points: Any) -> list[list[float]]:
    return [[round(float(v), 1) for v in p] for p in points]


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (the stable contract).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write each hand's stage-2 guidance here: crop, depth, scribble, mask.",
)
@click.option("--grip", default=None, metavar="X,Y", help="Where a hand should grip, in image pixels.")
@config_options
def hands(
    images: tuple[str, ...],
    as_json: bool,
    out: str | None,
    grip: str | None,
    profile: str | None,
    config_file: str | None,
    set_: tuple[str, ...],
) -> None:
    """Detected and corrected hand landmarks of IMAGE..., with the anatomy before and after."""
    from PIL import Image, UnidentifiedImageError

    from autoshoot.backends.mediapipe_hands import HandDetector, prepare_image

    config = make_config(profile, config_file, set_)
    grip_xy = parse_grip(grip)
    sc = config.score
    detector = HandDetector(
        max_num_hands=sc.max_hands,
        model_complexity=sc.model_complexity,
        min_detection_confidence=sc.min_detection_confidence,
        crop_size=sc.crop_size,
        crop_factor=sc.crop_factor,
        refine_crops=sc.refine_crops,
    )
    results: list[dict[str, Any]] = []
    failed = 0
    try:
        for path in images:
            try:
                with Image.open(path) as im:
                    image = prepare_image(im)
            except (OSError, UnidentifiedImageError) as err:
                click.echo(
                    f"Error: cannot read {path!r}: {err}; check the path and that it is an image", err=True
                )
                failed += 1
                continue
            results.append(describe_hands(config, detector, image, path, grip_xy, out))
    finally:
        detector.close()
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        echo_table(results)
    sys.exit(1 if failed else 0)


def describe_hands(
    config: Any,
    detector: Any,
    image: Any,
    path: str,
    grip: tuple[float, float] | None,
    out: str | None,
) -> dict[str, Any]:
    """One image's entry of the contract (see the module docstring)."""
    import numpy as np

    from autoshoot.backends.mediapipe_hands import landmarks_bbox
    from autoshoot.hands.anatomy import check_anatomy
    from autoshoot.hands.kinematic import fit_hand
    from autoshoot.stages.refine import canonical_grip_hand, hand_near_grip

    h, w = image.shape[:2]
    found = detector.detect(image, roi=grip_roi(grip, (w, h), config.score.grip_box_frac))
    entries: list[dict[str, Any]] = []
    if grip is not None and hand_near_grip(found, grip, config.render.hand_search_pad * max(w, h)) is None:
        corrected = canonical_grip_hand(image, grip)
        entries.append(
            {
                "source": "canonical grip",
                "handedness": None,
                "bbox": [round(v, 1) for v in landmarks_bbox(corrected)],
                "landmarks": None,
                "corrected": round_points(corrected),
                "moved": None,
                "reasons_before": ["no hand found near the grip"],
                "reasons_after": check_anatomy(corrected).reasons,
            }
        )
    for hand in found:
        lms = np.asarray(hand.landmarks, dtype=np.float64)
        fit = fit_hand(lms)
        entries.append(
            {
                "source": "detected",
                "handedness": hand.handedness,
                "bbox": [round(float(v), 1) for v in hand.bbox],
                "landmarks": round_points(lms),
                "corrected": round_points(fit.corrected),
                "moved": round(fit.moved, 4),
                "reasons_before": check_anatomy(lms).reasons,
                "reasons_after": check_anatomy(fit.corrected).reasons,
            }
        )
    for i, entry in enumerate(entries):
        entry["guidance"] = (
            write_guidance(
                config, image, np.asarray(entry["corrected"]), Path(out), f"{Path(path).stem}_hand{i}"
            )
            if out
            else None
        )
    return {"file": path, "hands": entries}


def grip_roi(
    grip: tuple[float, float] | None, size: tuple[int, int], frac: float
) -> tuple[float, float, float, float] | None:
    if grip is None:
        return None
    half = frac * max(size) / 2
    return (grip[0] - half, grip[1] - half, grip[0] + half, grip[1] + half)


def write_guidance(config: Any, image: Any, corrected: Any, out: Path, stem: str) -> dict[str, str]:
    """Stage 2's window and guidance for one corrected hand, as PNGs in ``out``."""
    from autoshoot.hands.mesh import CapsuleHandMesh
    from autoshoot.io import save_image
    from autoshoot.stages.refine import HandWindow, build_refine_inputs, hand_window_box

    rc = config.render
    h, w = image.shape[:2]
    window = HandWindow(
        box=hand_window_box(corrected, (w, h), rc.refine_window, rc.refine_min_window), landmarks=corrected
    )
    # the landmarks are corrected already: draw them as they are
    crop, mask, controls = build_refine_inputs(CapsuleHandMesh(), rc, image, window)
    files = {"crop": f"{stem}_crop.png", "mask": f"{stem}_mask.png"}
    out.mkdir(parents=True, exist_ok=True)
    save_image(out / files["crop"], crop)
    save_image(out / files["mask"], mask)
    for name, picture in controls:
        if name in ("depth", "scribble"):
            files[name] = f"{stem}_{name}.png"
            save_image(out / files[name], picture)
    return files


def echo_table(results: list[dict[str, Any]]) -> None:
    width = max([len(r["file"]) for r in results] + [4])
    click.echo(f"{'file':<{width}}  hand  source          moved  reasons before -> after")
    for r in results:
        if not r["hands"]:
            click.echo(f"{r['file']:<{width}}     -  no hand found")
        for i, hand in enumerate(r["hands"]):
            moved = "  -  " if hand["moved"] is None else f"{hand['moved']:.3f}"
            before = "; ".join(hand["reasons_before"]) or "plausible"
            after = "; ".join(hand["reasons_after"]) or "plausible"
            click.echo(f"{r['file']:<{width}}  {i:>4}  {hand['source']:<14}  {moved}  {before} -> {after}")

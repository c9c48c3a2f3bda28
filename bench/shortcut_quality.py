"""What the render shortcuts do to the pictures: each setting against the exact reference
settings, on the same catalog, briefs, geometry and seeds.

    python bench/shortcut_quality.py CATALOG [--profile P] [--settings exact,cfg-interval,all]
        [--out runs/shortcut-quality] [--set KEY=VALUE ...] [--json FILE]

The speed options in ``autoshoot.config.render.SHORTCUTS`` (cfg-interval: guidance on the
middle steps only; cn-cond-only: the ControlNet on the prompt half of CFG; every2: the
ControlNet's output reused every other step) are off by default: bench/render_gpu.py times
them with random weights, which cannot tell whether they spoil the pictures. With real
weights (the ``default`` profile or your own) this tells. It runs the catalog with the exact
settings into OUT/exact, then, for every other setting, copies that run folder (so the
briefs and the geometry are reused, not redone) and re-renders from stage 1 on with the same
seeds. Per setting it prints:

- render s/cand: stage 1 and stage 2 seconds per candidate (denoise, prepare and decode) on
  this machine, and the ratio to the exact run's. Every run pays its own first-call warm-up
  (all of torch.compile's with --set render.compile=true), so time speed with
  bench/render_gpu.py; this column only shows the order of the gain;
- hand mean / best: the mean hand score of all candidates, and of each SKU's ranked best;
- accepted: the SKUs whose best candidate was accepted;
- PSNR / diff: the final pictures against the exact ones, candidate by candidate (same seed),
  as one PSNR over all of them (dB) and the mean absolute difference (0-255 levels).

A setting is a name or names joined by "+" (``cn-cond-only+every2``); ``all`` is every
shortcut at once. Run again with the same OUT to resume; delete OUT to start over. The tiny
profile runs it on the CPU in seconds, but its pictures are noise: only the mechanics mean
anything there.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autoshoot.commands.common import make_config
from autoshoot.config.render import SHORTCUTS
from autoshoot.run.recipe import run_catalog

DEFAULT_SETTINGS = ("exact", *SHORTCUTS, "all")


def setting_overrides(name: str) -> dict[str, Any]:
    """A setting's render options: "exact" → none, "all" → every shortcut, "a+b" → both."""
    out: dict[str, Any] = {}
    for part in name.split("+"):
        if part == "all":
            for options in SHORTCUTS.values():
                out.update(options)
        elif part in SHORTCUTS:
            out.update(SHORTCUTS[part])
        elif part != "exact":
            known = ", ".join(("exact", *SHORTCUTS, "all"))
            raise SystemExit(f"unknown setting {part!r} in {name!r}; settings: {known}, or names joined by +")
    return out


def run_setting(catalog: Path, out: Path, name: str, profile: str, sets: list[str]) -> None:
    # built as `autoshoot shoot --profile P --set ...` builds it (HF_HUB_OFFLINE included)
    shortcut = {f"render.{k}": v for k, v in setting_overrides(name).items()}
    config = make_config(profile, None, tuple(sets), **shortcut)
    print(f"== {name}: {out}", file=sys.stderr, flush=True)
    run_catalog(catalog, out, config)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def collect(run: Path) -> dict[str, dict[str, Any]]:
    """Per SKU of a finished run: each candidate's seed, final picture and hand score, the
    render seconds, and the ranked status and best hand score."""
    status = {}
    if (run / "results.csv").exists():
        with open(run / "results.csv", newline="") as fh:
            status = {r["sku"]: r for r in csv.DictReader(fh)}
    skus: dict[str, dict[str, Any]] = {}
    for sku_dir in sorted(p for p in run.iterdir() if (p / "manifest.json").exists()):
        sku = read_json(sku_dir / "manifest.json").get("sku", sku_dir.name)
        composite = read_json(sku_dir / "composite" / "stage.json").get("candidates", [])
        scores = {
            c["index"]: c.get("hand_score")
            for c in read_json(sku_dir / "score" / "stage.json").get("candidates", [])
        }
        seconds = sum(read_json(sku_dir / "render" / "stage.json").get("seconds", {}).values())
        seconds += sum(read_json(sku_dir / "refine" / "stage.json").get("seconds", {}).values())
        row = status.get(sku, {})
        skus[sku] = {
            "candidates": {
                c["index"]: {
                    "seed": c["seed"],
                    "image": sku_dir / "composite" / c["image"],
                    "hand_score": scores.get(c["index"]),
                }
                for c in composite
            },
            "render_s": seconds,
            "status": row.get("status", ""),
            "best_hand_score": float(row["hand_score"]) if row.get("hand_score") else None,
        }
    return skus


def summarise(name: str, skus: dict[str, dict], exact: dict[str, dict]) -> dict[str, Any]:
    """One setting's row: speed, hand scores, and the pictures against the exact run's."""
    n_cand = sum(len(s["candidates"]) for s in skus.values())
    hand = [
        c["hand_score"]
        for s in skus.values()
        for c in s["candidates"].values()
        if c["hand_score"] is not None
    ]
    best = [s["best_hand_score"] for s in skus.values() if s["best_hand_score"] is not None]
    sq = absd = 0.0
    pixels = 0
    pairs = []
    for sku, s in skus.items():
        for index, c in s["candidates"].items():
            ref = exact.get(sku, {}).get("candidates", {}).get(index)
            if ref is None or ref["seed"] != c["seed"]:
                continue
            a = np.asarray(Image.open(c["image"]).convert("RGB"), np.float64)
            b = np.asarray(Image.open(ref["image"]).convert("RGB"), np.float64)
            if a.shape != b.shape:
                continue
            d = a - b
            sq, absd, pixels = sq + float((d * d).sum()), absd + float(np.abs(d).sum()), pixels + d.size
            mse = float((d * d).mean())
            pairs.append(
                {
                    "sku": sku,
                    "index": index,
                    "seed": c["seed"],
                    "psnr_db": psnr(mse),
                    "diff": float(np.abs(d).mean()),
                }
            )
    return {
        "setting": name,
        "options": setting_overrides(name),
        "skus": len(skus),
        "candidates": n_cand,
        "render_s_per_candidate": sum(s["render_s"] for s in skus.values()) / max(1, n_cand),
        "hand_mean": float(np.mean(hand)) if hand else None,
        "hand_best_mean": float(np.mean(best)) if best else None,
        "accepted": sum(1 for s in skus.values() if s["status"] == "accepted"),
        "compared": len(pairs),
        "psnr_db": psnr(sq / pixels) if pixels else None,
        "diff": absd / pixels if pixels else None,
        "pairs": pairs,
    }


def psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["render_s_per_candidate"] or float("nan")

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        f"{'setting':<34} {'SKUs':>4} {'cand':>5} {'render s/cand':>13} {'vs exact':>8} "
        f"{'hand mean':>9} {'hand best':>9} {'accepted':>8} {'PSNR dB':>8} {'diff':>6}"
    ]
    for r in rows:
        lines.append(
            f"{r['setting']:<34} {r['skus']:>4} {r['candidates']:>5} {r['render_s_per_candidate']:>13.3f} "
            f"{base / r['render_s_per_candidate'] if r['render_s_per_candidate'] else float('nan'):>7.2f}x "
            f"{num(r['hand_mean'], '.3f'):>9} {num(r['hand_best_mean'], '.3f'):>9} "
            f"{r['accepted']:>4}/{r['skus']:<3} {num(r['psnr_db'], '.1f'):>8} {num(r['diff'], '.2f'):>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("catalog", type=Path)
    ap.add_argument("--profile", default="default", help="built-in profile name or your profile file")
    ap.add_argument(
        "--settings", default=",".join(DEFAULT_SETTINGS), help="comma list; the first must be exact"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/shortcut-quality"))
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every setting"
    )
    ap.add_argument("--json", type=Path, help="also write the rows (with every candidate's PSNR) here")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    if not names or names[0] != "exact":
        raise SystemExit("--settings must start with exact: every other setting is compared with it")
    for name in names:
        setting_overrides(name)  # an unknown name stops here, before any model loads
    exact_dir = args.out / "exact"
    run_setting(args.catalog, exact_dir, "exact", args.profile, args.set)
    exact = collect(exact_dir)
    rows = [summarise("exact", exact, exact)]
    for name in names[1:]:
        target = args.out / name.replace("+", "_")
        if not target.exists():  # the exact run's briefs and geometry, reused
            shutil.copytree(exact_dir, target, ignore=shutil.ignore_patterns(".lock"))
        run_setting(args.catalog, target, name, args.profile, args.set)
        rows.append(summarise(name, collect(target), exact))
    print(table(rows), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()

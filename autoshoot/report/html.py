"""report.html: a static contact sheet that opens from disk, built from per-SKU blocks.

The report links the images inside RUN by relative paths and carries its CSS and the status
filter inline, so the RUN folder can be zipped, copied or opened with no server.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

from autoshoot.config import Config
from autoshoot.config.render import picture_changing_options
from autoshoot.io import atomic_write_text
from autoshoot.report.results import change_counts, result_record
from autoshoot.run.layout import sku_folder_name
from autoshoot.types import ShotResult

BLOCK_FILE = "report_block.html"
BLOCK_VERSION = 3  # raise when a SKU's block looks different: cached blocks are then made afresh


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222;overflow-wrap:anywhere}
h1{margin:0 0 .3em}.summary{margin:.3em 0 1em}
.banner{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:1em 0}
.filters button{margin:0 .4em .4em 0;padding:.3em .8em;border:1px solid #999;background:#fff;cursor:pointer}
.filters button.on{background:#222;color:#fff}
.sku{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.8em}
.sku h2{font-size:1.05em;margin:0 0 .4em}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-size:.85em;color:#fff}
.accepted{background:#2e7d32}.review{background:#ef6c00}.failed{background:#c62828}
.row{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start;margin-top:.5em}
figure{margin:0;width:220px;position:relative}
figure img{display:block;width:100%;height:auto;border:3px solid transparent;background:#eee;box-sizing:border-box}
figure.best img{border:6px solid #2e7d32}
figure.best .pick{position:absolute;top:.5em;left:.5em;background:#2e7d32;color:#fff;font-weight:700;
 font-size:.85em;padding:.15em .55em;border-radius:3px;letter-spacing:.03em}
figcaption{font-size:.85em;line-height:1.35;margin-top:.2em}
.reasons{color:#555}.meta{font-size:.85em;color:#444}details{font-size:.85em;margin-top:.5em}
.flags{margin:.3em 0}.flag{display:inline-block;font-size:.8em;background:#eef;border:1px solid #ccd;
 border-radius:3px;padding:.05em .45em;margin:0 .3em .3em 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%}
@media (max-width:600px){body{margin:.6em}.row{gap:.5em}figure{width:calc(50% - .25em)}}
"""

# what each flag of results.csv means, in words (unknown flags are shown with spaces for "_")
FLAG_TEXT = {
    "no_handle": "no handle found: held without a grip",
    "tiny_models_noise": "tiny test models: the pictures are noise",
    "brief_fallback": "brief partly filled by rules",
    "vlm_error": "the VLM failed on this photo",
    "vlm_retry": "the VLM needed a second try",
    "review_approved": "approved in review: frozen, not rendered again",
}

_JS = """
function show(status){
  document.querySelectorAll('.sku').forEach(function(el){
    el.style.display = (status==='all' || el.dataset.status===status) ? '' : 'none';});
  document.querySelectorAll('.filters button').forEach(function(b){
    b.classList.toggle('on', b.dataset.status===status);});
}
"""


def write_report(run_dir: Path, results: list[ShotResult], config: Config) -> Path:
    counts = {s: sum(1 for r in results if r.status == s) for s in ("accepted", "review", "failed")}
    changes = change_counts(results)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>autoshoot report</title>",
        f"<style>{_CSS}</style><script>{_JS}</script></head><body>",
        "<h1>autoshoot report</h1>",
        f"<div class='summary'>{len(results)} SKUs: {counts['accepted']} accepted, {counts['review']} review, "
        f"{counts['failed']} failed &middot; profile <b>{_e(config.run.profile)}</b></div>",
        "<div class='summary tonight'>This run: "
        + ", ".join(f"<b>{n}</b> {kind}" for kind, n in changes.items())
        + "</div>",
    ]
    if config.run.profile == "tiny":
        parts.append(
            "<div class='banner'>Profile <b>tiny</b>: random tiny models on the CPU. The pictures are noise; "
            "this run checks the pipeline, not image quality.</div>"
        )
    changed = picture_changing_options(config.render)
    if changed:
        parts.append(
            "<div class='banner'>Speed options that change the pictures were on: "
            f"<b>{_e(', '.join(changed))}</b>. The reference settings have them off.</div>"
        )
    parts.append("<div class='filters'>Show: ")
    for status, label in (("all", f"all ({len(results)})"), *((s, f"{s} ({n})") for s, n in counts.items())):
        parts.append(f"<button data-status='{status}' onclick=\"show('{status}')\">{_e(label)}</button>")
    parts.append("</div>")
    for result in results:
        parts.append(cached_sku_block(run_dir, result))
    parts.append("<script>show('all')</script></body></html>")
    path = run_dir / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path


def cached_sku_block(run_dir: Path, result: ShotResult) -> str:
    """The SKU's block, from ``RUN/<sku>/report_block.html`` when it was made for this result.

    Blocks are written when a SKU finishes (``write_sku_block``), so a rerun over a large
    catalog reads one small file per finished SKU instead of every stage's JSON.
    """
    if not result.sku:
        return sku_block(run_dir, result)
    path = run_dir / sku_folder_name(result.sku) / BLOCK_FILE
    try:
        tag, _, block = path.read_text(encoding="utf-8").partition("\n")
        if tag == _block_tag(result):
            return block
    except OSError:
        pass
    return sku_block(run_dir, result)


def block_is_current(run_dir: Path, result: ShotResult) -> bool:
    """Whether ``RUN/<sku>/report_block.html`` was made for this very result."""
    try:
        with open(run_dir / sku_folder_name(result.sku) / BLOCK_FILE, encoding="utf-8") as fh:
            return fh.readline().rstrip("\n") == _block_tag(result)
    except OSError:
        return False


def write_sku_block(run_dir: Path, result: ShotResult) -> None:
    folder = run_dir / sku_folder_name(result.sku)
    if folder.is_dir():
        atomic_write_text(folder / BLOCK_FILE, _block_tag(result) + "\n" + sku_block(run_dir, result))


def _block_tag(result: ShotResult) -> str:
    digest = hashlib.sha256(json.dumps(result_record(result), sort_keys=True).encode()).hexdigest()
    return f"<!-- autoshoot block v{BLOCK_VERSION} {digest} -->"


def sku_block(run_dir: Path, result: ShotResult) -> str:
    sku_dir = run_dir / sku_folder_name(result.sku) if result.sku else None
    score = "" if result.hand_score is None else f" &middot; hand score {result.hand_score:.2f}"
    sku = result.sku or "(no SKU)"
    out = [
        f"<div class='sku' data-status='{result.status}' data-sku='{_e(sku)}'>",
        f"<h2>{_e(sku)} <span class='badge {result.status}'>{result.status}</span></h2>",
        f"<div class='meta'>row {result.row}{score} &middot; {result.n_candidates} candidates &middot; "
        f"{result.seconds:.1f} s"
        + (f" &middot; reused from <b>{_e(result.reused)}</b>" if result.reused else "")
        + "</div>",
    ]
    if result.flags:
        out.append(
            "<div class='flags'>" + "".join(flag_chip(f) for f in result.flags.split(";") if f) + "</div>"
        )
    if result.reason:
        out.append(f"<div class='meta'>reason: {_e(result.reason)}</div>")
    figures: list[str] = []
    if sku_dir is not None and sku_dir.is_dir():
        figures += _figure(run_dir, sku_dir / "input.jpg", "input photo", alt=f"{sku}: the input photo")
        debug = sku_dir / "prepare" / "debug.png"
        link = f" &middot; <a href='{_rel(run_dir, debug)}'>geometry</a>" if debug.is_file() else ""
        figures += _figure(
            run_dir,
            sku_dir / "prepare" / "canvas.png",
            f"prepared canvas{link}",
            alt=f"{sku}: the product placed on the canvas the render starts from",
        )
        figures += candidate_figures(run_dir, sku_dir, result)
        brief = _read(sku_dir / "analyze" / "stage.json")
    else:
        brief = None
    if figures:
        out.append("<div class='row'>" + "".join(figures) + "</div>")
    final = _read(sku_dir / "prepare" / "stage.json") if sku_dir is not None else None
    if brief and final and final.get("prompt"):  # the prompt the models used: after the geometry
        brief = {**brief, "prompt": final["prompt"]}
    if brief and brief.get("prompt"):
        out.append(
            f"<details><summary>brief and prompt</summary><p>{_e(brief['prompt'])}</p>"
            f"<pre>{_e(json.dumps(brief.get('brief', {}), indent=1))}</pre></details>"
        )
    out.append("</div>")
    return "\n".join(out)


def candidate_figures(run_dir: Path, sku_dir: Path, result: ShotResult) -> list[str]:
    scored = _read(sku_dir / "score" / "stage.json")
    rank = _read(sku_dir / "rank" / "stage.json") or {}
    composite = _read(sku_dir / "composite" / "stage.json") or {}
    images = {int(c["index"]): sku_dir / "composite" / c["image"] for c in composite.get("candidates", [])}
    figures: list[str] = []
    if scored:
        for cand in scored.get("candidates", []):
            index = int(cand["index"])
            best = rank.get("best_index") == index
            reasons = "; ".join(cand.get("reasons", [])) or "no problems found"
            overlay = sku_dir / "score" / cand["overlay"] if cand.get("overlay") else None
            link = (
                f" &middot; <a href='{_rel(run_dir, overlay)}'>landmarks</a>"
                if overlay and overlay.is_file()
                else ""
            )
            hand_score = float(cand["hand_score"])
            caption = (
                f"{'<b>' if best else ''}candidate {index}{' (best)' if best else ''}: score "
                f"{hand_score:.2f}{'</b>' if best else ''}{link}<br><span class='reasons'>{_e(reasons)}</span>"
            )
            alt = f"{result.sku}: candidate {index}{', the best pick' if best else ''}, hand score {hand_score:.2f}"
            figure = _figure(run_dir, images.get(index), caption, "best" if best else "", alt, index)
            figures = figure + figures if best else figures + figure  # the best pick first
    else:  # failed before scoring: show whatever candidates exist
        for index, path in sorted(images.items()):
            alt = f"{result.sku}: candidate {index}, not scored"
            figures += _figure(run_dir, path, f"candidate {index} (not scored)", alt=alt)
    return figures


def flag_chip(flag: str) -> str:
    """A flag of results.csv in words; the code itself is the tooltip."""
    text = FLAG_TEXT.get(flag, flag.replace("_", " "))
    return f"<span class='flag' title='{_e(flag)}'>{_e(text)}</span>"


def _figure(
    run_dir: Path, path: Path | None, caption: str, css: str = "", alt: str = "", candidate: int | None = None
) -> list[str]:
    if path is None or not path.is_file():
        return []
    rel = _rel(run_dir, path)
    pick = "<span class='pick'>BEST PICK</span>" if css == "best" else ""
    data = "" if candidate is None else f" data-candidate='{candidate}'"  # for the review page
    return [
        f"<figure class='{css}'{data}><a href='{rel}'><img loading='lazy' src='{rel}' alt='{_e(alt)}'></a>{pick}"
        f"<figcaption>{caption}</figcaption></figure>"
    ]


def _rel(run_dir: Path, path: Path) -> str:
    return html.escape(path.relative_to(run_dir).as_posix(), quote=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)

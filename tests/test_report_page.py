"""report.html as a reader meets it: the prepared canvas, a clear best pick, flags in words,
alt text, and a page that fits a phone. (Checked by eye in headless Chromium at 1280 and 390 px.)"""

from __future__ import annotations

import re
from pathlib import Path

from fakes import fake_stages, write_catalog, write_photo

from autoshoot.config import Config
from autoshoot.report.html import BLOCK_VERSION, flag_chip, sku_block, write_report
from autoshoot.run.recipe import run_catalog


def test_the_page_shows_the_canvas_the_best_pick_flags_and_alt_text(tmp_path: Path) -> None:
    write_photo(tmp_path / "img" / "p.png")
    catalog = write_catalog(tmp_path, [{"sku": "BAG-1", "image": "img/p.png"}])
    run = tmp_path / "run"
    summary = run_catalog(catalog, run, Config(), quiet=True, stages=fake_stages([]))
    (result,) = summary.results
    write_photo(run / "BAG-1" / "prepare" / "canvas.png", (48, 64))
    write_photo(run / "BAG-1" / "prepare" / "debug.png", (48, 64), seed=1)
    block = sku_block(run, result)

    # 1. the prepared canvas is the tile; the debug drawing is a link
    assert "src='BAG-1/prepare/canvas.png'" in block and "src='BAG-1/prepare/debug.png'" not in block
    assert "<a href='BAG-1/prepare/debug.png'>geometry</a>" in block
    # 2. the best pick comes first among the candidates, labelled, not just a border
    sources = re.findall(r"src='BAG-1/composite/(c\d)\.png'", block)
    assert sources == ["c3", "c0", "c1", "c2"]  # the fake ranks candidate 3 best
    assert block.count("BEST PICK") == 1
    assert re.search(r"<figure class='best' data-candidate='3'><a href='BAG-1/composite/c3.png'>", block)
    # 3. flags in words, the code as a tooltip
    assert "<span class='flag' title='prepare_flag'>prepare flag</span>" in block
    assert flag_chip("no_handle") == (
        "<span class='flag' title='no_handle'>no handle found: held without a grip</span>"
    )
    # 4. every picture says what it shows
    alts = re.findall(r"<img [^>]*alt='([^']*)'", block)
    assert len(alts) == 6 and all(a.startswith("BAG-1: ") for a in alts)
    assert "BAG-1: candidate 3, the best pick, hand score 0.90" in alts

    # 5. the page fits a phone: a viewport, wrapping JSON, images that shrink with the column
    page = write_report(run, summary.results, Config()).read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    assert "pre{white-space:pre-wrap;overflow-wrap:anywhere" in page
    assert "@media (max-width:600px)" in page and "figure img{display:block;width:100%" in page


def test_cached_blocks_of_an_older_page_are_made_afresh(tmp_path: Path) -> None:
    write_photo(tmp_path / "img" / "p.png")
    catalog = write_catalog(tmp_path, [{"sku": "BAG-1", "image": "img/p.png"}])
    run = tmp_path / "run"
    summary = run_catalog(catalog, run, Config(), quiet=True, stages=fake_stages([]))
    block_file = run / "BAG-1" / "report_block.html"
    tag, _, _ = block_file.read_text().partition("\n")
    block_file.write_text(
        tag.replace(f" v{BLOCK_VERSION} ", " ") + "\n<div>an old block</div>"
    )  # as an older version wrote it
    page = write_report(run, summary.results, Config()).read_text()
    assert "an old block" not in page and "BEST PICK" in page

"""bench/shortcut_quality.py on the tiny profile: the exact run and a shortcut run of the same
catalog, the shortcut run reusing the exact run's briefs and geometry, compared candidate by
candidate. (Tiny pictures are noise: this checks the mechanics, not the quality.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "shortcut_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("shortcut_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_setting_is_compared_with_the_exact_run(bench, tmp_path):
    catalog = tmp_path / "bags.csv"
    example = REPO / "catalogs" / "example"
    catalog.write_text(
        "sku,image,category,candidates,seed\n"
        f"TOTE,{example / 'tote_navy.png'},tote,2,1\n"
        f"HAND,{example / 'handbag_tan.png'},handbag,2,2\n"
    )
    out = tmp_path / "out"
    rows = bench.main(
        [str(catalog), "--profile", "tiny", "--out", str(out), "--settings", "exact,cfg-interval",
         "--json", str(tmp_path / "rows.json")]
    )  # fmt: skip
    exact, interval = rows
    assert exact["setting"] == "exact" and exact["skus"] == 2 and exact["candidates"] == 4
    assert exact["compared"] == 4 and exact["psnr_db"] == float("inf") and exact["diff"] == 0.0
    assert interval["options"] == {"cfg_start": 0.17, "cfg_stop": 0.9}
    assert interval["compared"] == 4 and 0.0 < interval["diff"] and interval["psnr_db"] < float("inf")
    assert all(p["seed"] in (1, 2, 3) for p in interval["pairs"])  # seed + i, per SKU
    assert 0.0 <= interval["hand_mean"] <= 1.0 and interval["render_s_per_candidate"] > 0
    # the shortcut's run re-rendered, but kept the exact run's brief and geometry
    for stage, same in (("analyze", True), ("prepare", True), ("render", False)):
        a = (out / "exact" / "TOTE" / stage / "stage.json").stat().st_mtime_ns
        b = (out / "cfg-interval" / "TOTE" / stage / "stage.json").stat().st_mtime_ns
        assert (a == b) is same, stage
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert [r["setting"] for r in saved] == ["exact", "cfg-interval"]


def test_settings_are_checked_before_any_model_loads(bench, tmp_path):
    with pytest.raises(SystemExit, match="unknown setting 'every3'.*cn-cond-only"):
        bench.main([str(tmp_path / "none.csv"), "--settings", "exact,every3"])
    with pytest.raises(SystemExit, match="must start with exact"):
        bench.main([str(tmp_path / "none.csv"), "--settings", "all"])
    assert bench.setting_overrides("cn-cond-only+every2") == {
        "controlnet_cond_only": True,
        "controlnet_every": 2,
    }
    assert bench.setting_overrides("all") == {
        "controlnet_cond_only": True, "controlnet_every": 2, "cfg_start": 0.17, "cfg_stop": 0.9
    }  # fmt: skip

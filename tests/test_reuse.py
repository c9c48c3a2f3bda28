"""Nightly runs into new folders reuse what earlier nights finished (autoshoot.run.reuse)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from fakes import Crash, fake_stages, write_catalog, write_photo

from autoshoot.config import Config
from autoshoot.run.recipe import dry_run_text, run_catalog, validate_for_run
from autoshoot.run.reuse import INDEX_NAME, ReuseIndex
from autoshoot.stages import STAGE_ORDER


def config(**sections: dict) -> Config:
    base = Config()
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


def read_results(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def night_catalog(tmp_path: Path, night: int) -> Path:
    """Night 1: SKU-0..2. Night 2: SKU-1's photo replaced, SKU-3 added, the others unchanged."""
    rows = []
    for i in range(3 if night == 1 else 4):
        seed = 100 + i if (night == 2 and i == 1) else i
        write_photo(tmp_path / f"img{night}" / f"p{i}.png", seed=seed)
        rows.append({"sku": f"SKU-{i}", "image": f"img{night}/p{i}.png"})
    return write_catalog(tmp_path, rows, name=f"night{night}.csv")


def stages_run(calls: list, sku: str) -> list[str]:
    return [name for name, s in calls if s == sku]


def test_two_nights_reuse_unchanged_rows_and_render_a_changed_photo_and_a_new_row(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = run_catalog(
        night_catalog(tmp_path, 1), runs / "night1", config(), quiet=True, stages=fake_stages([])
    )
    assert first.changes == {"new": 3, "changed": 0, "reused": 0, "failed": 0}
    assert (runs / INDEX_NAME / "stages").is_dir()

    calls: list = []
    second = run_catalog(
        night_catalog(tmp_path, 2), runs / "night2", config(), quiet=True, stages=fake_stages(calls)
    )

    # unchanged rows: no stage ran for them; the changed photo and the new row: every stage
    assert stages_run(calls, "SKU-0") == [] and stages_run(calls, "SKU-2") == []
    assert stages_run(calls, "SKU-1") == list(STAGE_ORDER)
    assert stages_run(calls, "SKU-3") == list(STAGE_ORDER)
    assert ("analyze", "batch of 2") in calls  # the brief batched over the two to render
    assert second.processed == 2 and second.reused == 2
    assert second.changes == {"new": 1, "changed": 1, "reused": 2, "failed": 0}
    assert second.text().splitlines()[1] == "1 new, 1 changed, 2 reused, 0 failed"

    results = {r["sku"]: r for r in read_results(runs / "night2")}
    assert {sku: r["reused"] for sku, r in results.items()} == {
        "SKU-0": "night1",
        "SKU-1": "",
        "SKU-2": "night1",
        "SKU-3": "",
    }
    before = {r["sku"]: r for r in read_results(runs / "night1")}
    for sku in ("SKU-0", "SKU-2"):
        assert {k: v for k, v in results[sku].items() if k != "reused"} == {
            k: v for k, v in before[sku].items() if k != "reused"
        }
        # the new folder holds the files itself (hard links on one disk), best pick included
        for rel in ("best.png", "render/c0.png", "score/stage.json", "input.jpg"):
            assert (runs / "night2" / sku / rel).read_bytes() == (runs / "night1" / sku / rel).read_bytes()
        assert (runs / "night2" / sku / "render" / "c0.png").stat().st_ino == (
            runs / "night1" / sku / "render" / "c0.png"
        ).stat().st_ino
    report = (runs / "night2" / "report.html").read_text()
    assert "This run: <b>1</b> new, <b>1</b> changed, <b>2</b> reused, <b>0</b> failed" in report
    assert "reused from <b>night1</b>" in report

    # night 3 after night 1 was deleted: night 2 holds copies, and the origin is still named
    shutil.rmtree(runs / "night1")
    calls.clear()
    third = run_catalog(
        night_catalog(tmp_path, 2), runs / "night3", config(), quiet=True, stages=fake_stages(calls)
    )
    assert [c for c in calls if c[1] != "batch of 0"] == []
    assert third.changes == {"new": 0, "changed": 0, "reused": 4, "failed": 0}
    assert [r["reused"] for r in read_results(runs / "night3")] == ["night1", "night2", "night1", "night2"]


def test_a_scoring_only_config_change_reruns_only_scoring(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    catalog = night_catalog(tmp_path, 1)
    run_catalog(catalog, runs / "night1", config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    summary = run_catalog(
        catalog,
        runs / "night2",
        config(score={"accept_threshold": 0.95}),
        quiet=True,
        stages=fake_stages(calls),
    )
    for i in range(3):
        assert stages_run(calls, f"SKU-{i}") == ["score", "rank"]
    assert summary.changes == {"new": 0, "changed": 3, "reused": 0, "failed": 0}
    results = read_results(runs / "night2")
    assert [r["reused"] for r in results] == ["", "", ""]
    manifest = json.loads((runs / "night2" / "SKU-0" / "manifest.json").read_text())
    assert [manifest["stages"][s].get("reused", "") for s in STAGE_ORDER] == ["night1"] * 5 + ["", ""]


def test_killing_the_second_night_and_resuming_loses_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_catalog(night_catalog(tmp_path, 1), runs / "night1", config(), quiet=True, stages=fake_stages([]))
    catalog2 = night_catalog(tmp_path, 2)
    # the reference: night 2 uninterrupted, beside its own copy of night 1 and its own index
    ref = tmp_path / "ref"
    shutil.copytree(runs, ref)
    run_catalog(catalog2, ref / "night2", config(), quiet=True, stages=fake_stages([]))

    with pytest.raises(Crash):  # the process dies in SKU-3's render
        run_catalog(
            catalog2,
            runs / "night2",
            config(),
            quiet=True,
            stages=fake_stages([], crash_sku={"render": "SKU-3"}),
        )
    calls: list = []
    summary = run_catalog(catalog2, runs / "night2", config(), quiet=True, stages=fake_stages(calls))
    # what was reused or finished before the kill is kept; SKU-3 resumes at its render
    assert [c for c in calls if c[1] not in ("SKU-3", "batch of 0")] == []
    assert stages_run(calls, "SKU-3") == list(STAGE_ORDER[2:])
    assert summary.exit_code == 0
    assert summary.changes == {"new": 1, "changed": 1, "reused": 2, "failed": 0}
    assert read_results(runs / "night2") == read_results(ref / "night2")
    assert [p for p in (runs / "night2").rglob("*") if ".tmp-" in p.name or ".trash-" in p.name] == []


def test_a_kill_while_copying_reused_stages_resumes_with_nothing_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    catalog = night_catalog(tmp_path, 1)
    run_catalog(catalog, runs / "night1", config(), quiet=True, stages=fake_stages([]))
    real_copy = ReuseIndex.copy_stage
    copied: list[str] = []

    def dies_on_the_tenth(self, pointer, target):  # type: ignore[no-untyped-def]
        if len(copied) == 9:
            (target / "half.bin").write_bytes(b"half")
            raise Crash("killed while copying")
        copied.append(pointer["stage"])
        return real_copy(self, pointer, target)

    monkeypatch.setattr(ReuseIndex, "copy_stage", dies_on_the_tenth)
    with pytest.raises(Crash):
        run_catalog(catalog, runs / "night2", config(), quiet=True, stages=fake_stages([]))
    monkeypatch.setattr(ReuseIndex, "copy_stage", real_copy)
    calls: list = []
    summary = run_catalog(catalog, runs / "night2", config(), quiet=True, stages=fake_stages(calls))
    assert [c for c in calls if c[1] != "batch of 0"] == []
    assert summary.changes == {"new": 0, "changed": 0, "reused": 3, "failed": 0}
    assert [r["reused"] for r in read_results(runs / "night2")] == ["night1"] * 3
    assert [p for p in (runs / "night2").rglob("*") if ".tmp-" in p.name] == []


def test_a_pointer_to_a_redone_folder_is_not_trusted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    catalog = night_catalog(tmp_path, 1)
    run_catalog(catalog, runs / "night1", config(), quiet=True, stages=fake_stages([]))
    # night1 is redone with other render settings in place: its render files no longer match
    # the pointers of the first render; copy the index as it was before
    saved = tmp_path / "saved-index"
    shutil.copytree(runs / INDEX_NAME, saved)
    run_catalog(catalog, runs / "night1", config(run={"candidates": 2}), quiet=True, stages=fake_stages([]))
    shutil.rmtree(runs / INDEX_NAME)
    shutil.copytree(saved, runs / INDEX_NAME)

    calls: list = []
    run_catalog(catalog, runs / "night2", config(), quiet=True, stages=fake_stages(calls))
    # analyze and prepare still match; render onwards was redone in night1, so it runs here
    assert stages_run(calls, "SKU-0") == ["render", "refine", "composite", "score", "rank"]
    assert read_results(runs / "night2")[0]["n_candidates"] == "4"


def test_reuse_off_and_force_render_everything_and_dry_run_shows_the_plan(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    catalog = night_catalog(tmp_path, 1)
    run_catalog(catalog, runs / "night1", config(), quiet=True, stages=fake_stages([]))

    parsed = validate_for_run(catalog, config(), runs / "night2")
    text = dry_run_text(parsed, config(), runs / "night2", stages=fake_stages([]))
    assert "  SKU-0: reuse from night1: " + ", ".join(STAGE_ORDER) in text
    assert "0 SKUs to do, 3 to reuse, 0 done, 0 invalid" in text

    calls: list = []
    run_catalog(catalog, runs / "off", config(run={"reuse": "off"}), quiet=True, stages=fake_stages(calls))
    assert stages_run(calls, "SKU-0") == list(STAGE_ORDER)
    calls.clear()
    run_catalog(catalog, runs / "forced", config(), force=True, quiet=True, stages=fake_stages(calls))
    assert stages_run(calls, "SKU-0") == list(STAGE_ORDER)


def test_an_index_elsewhere_is_shared_by_folders_that_are_not_siblings(tmp_path: Path) -> None:
    catalog = night_catalog(tmp_path, 1)
    shared = config(run={"reuse": str(tmp_path / "index")})
    run_catalog(catalog, tmp_path / "a" / "night1", shared, quiet=True, stages=fake_stages([]))
    calls: list = []
    run_catalog(catalog, tmp_path / "b" / "night2", shared, quiet=True, stages=fake_stages(calls))
    assert [c for c in calls if c[1] != "batch of 0"] == []
    assert [r["reused"] for r in read_results(tmp_path / "b" / "night2")] == ["night1"] * 3


def test_two_nights_on_an_object_store_reuse_in_the_store(tmp_path: Path) -> None:
    pytest.importorskip("s3fs", reason="object stores need the [cloud] extra")
    from s3_server import running_s3_server

    with running_s3_server() as s3:
        bucket = s3.bucket("nightly")
        run_catalog(
            night_catalog(tmp_path, 1), f"{bucket}/runs/night1", config(), quiet=True, stages=fake_stages([])
        )
        assert s3.fs().find("nightly/runs/.autoshoot-reuse/stages")
        calls: list = []
        second = run_catalog(
            night_catalog(tmp_path, 2),
            f"{bucket}/runs/night2",
            config(),
            quiet=True,
            stages=fake_stages(calls),
        )
        assert stages_run(calls, "SKU-0") == [] and stages_run(calls, "SKU-2") == []
        assert stages_run(calls, "SKU-1") == list(STAGE_ORDER) == stages_run(calls, "SKU-3")
        assert second.changes == {"new": 1, "changed": 1, "reused": 2, "failed": 0}
        fs = s3.fs()
        text = fs.cat_file("nightly/runs/night2/results.csv").decode()
        rows = list(csv.DictReader(text.splitlines()))
        assert [r["reused"] for r in rows] == ["night1", "", "night1", ""]
        # the reused SKU's files are in the new night's folder itself
        for rel in ("best.png", "render/c0.png", "rank/stage.json"):
            assert fs.cat_file(f"nightly/runs/night2/SKU-0/{rel}") == fs.cat_file(
                f"nightly/runs/night1/SKU-0/{rel}"
            )
        manifest = json.loads(fs.cat_file("nightly/runs/night2/SKU-0/manifest.json"))
        assert {e["reused"] for e in manifest["stages"].values()} == {"night1"}
        # a third night after the first is deleted still reuses everything, from night 2's copies
        fs.rm("nightly/runs/night1", recursive=True)
        calls.clear()
        third = run_catalog(
            night_catalog(tmp_path, 2),
            f"{bucket}/runs/night3",
            config(),
            quiet=True,
            stages=fake_stages(calls),
        )
        assert [c for c in calls if c[1] != "batch of 0"] == []
        assert third.changes == {"new": 0, "changed": 0, "reused": 4, "failed": 0}


def test_rows_taken_from_earlier_nights_need_no_models(tmp_path: Path) -> None:
    from fakes import FakeStage

    from autoshoot.errors import ModelMissingError

    class NoWeights(FakeStage):
        def check_models(self, config):  # type: ignore[no-untyped-def]
            return [("render weights", "/models/sdxl.safetensors", "autoshoot models download")]

    def stages_without_weights(calls: list) -> list:
        stages = fake_stages(calls)
        stages[2] = NoWeights("render", calls)
        return stages

    runs = tmp_path / "runs"
    run_catalog(night_catalog(tmp_path, 1), runs / "night1", config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    summary = run_catalog(
        night_catalog(tmp_path, 1),
        runs / "night2",
        config(),
        quiet=True,
        stages=stages_without_weights(calls),
    )
    assert summary.exit_code == 0 and summary.reused == 3
    # a changed row needs the render model: the run stops before any SKU, as before
    with pytest.raises(ModelMissingError, match="render weights"):
        run_catalog(
            night_catalog(tmp_path, 2),
            runs / "night3",
            config(),
            quiet=True,
            stages=stages_without_weights(calls),
        )
    assert not (runs / "night3" / "SKU-0").exists()

"""The runner's duties: resume, per-stage invalidation, isolation, atomic commits, locking."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import Crash, fake_stages, write_catalog, write_photo

from autoshoot.config import Config
from autoshoot.config.render import picture_changing_options
from autoshoot.errors import RunLockedError
from autoshoot.run.folder import run_lock
from autoshoot.run.layout import sku_folder_name
from autoshoot.run.recipe import run_catalog
from autoshoot.stages import STAGE_ORDER

REPO = Path(__file__).resolve().parents[1]


def make_catalog(tmp_path: Path, n: int = 3, with_invalid: bool = True) -> Path:
    rows = []
    for i in range(n):
        write_photo(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": f"SKU-{i}", "image": f"img/p{i}.png"})
    if with_invalid:
        rows.append({"sku": "MISSING", "image": "img/none.png"})
    return write_catalog(tmp_path, rows)


def read_results(run: Path, drop: tuple[str, ...] = ("seconds",)) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def config(**sections: dict) -> Config:
    base = Config()
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if ".tmp-" in p.name or ".trash-" in p.name]


def test_run_writes_results_then_resumes_without_work(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path)
    run = tmp_path / "run"
    calls: list = []
    summary = run_catalog(catalog, run, config(), quiet=True, stages=fake_stages(calls))
    assert summary.counts == {"accepted": 3, "review": 0, "failed": 1}
    assert summary.exit_code == 1
    assert summary.text().splitlines()[0] == "4 SKUs: 3 accepted, 0 review, 1 failed  (3 run now)"
    results = read_results(run)
    assert [r["sku"] for r in results] == ["SKU-0", "SKU-1", "SKU-2", "MISSING"]
    assert results[0]["status"] == "accepted" and results[0]["best_image"] == "SKU-0/best.png"
    assert results[0]["n_candidates"] == "4" and results[0]["hand_score"] == "0.9"
    assert results[0]["flags"] == "prepare_flag"
    assert (run / "SKU-0" / "best.png").read_bytes() == (run / "SKU-0" / "composite" / "c3.png").read_bytes()
    assert results[3]["status"] == "failed" and results[3]["reason"].startswith(
        "row 5, column image, value 'img/none.png': file not found"
    )
    import pyarrow.parquet as pq

    table = pq.read_table(run / "results.parquet").to_pylist()
    assert [(r["sku"], r["status"], r["hand_score"]) for r in table] == [
        ("SKU-0", "accepted", 0.9),
        ("SKU-1", "accepted", 0.9),
        ("SKU-2", "accepted", 0.9),
        ("MISSING", "failed", None),
    ]
    assert "candidates: 4" in (run / "config.yaml").read_text()
    # the analyze stage ran once, batched across the three SKUs
    assert calls.count(("analyze", "batch of 3")) == 1
    assert len([c for c in calls if c[0] == "render"]) == 3

    calls.clear()
    again = run_catalog(catalog, run, config(), quiet=True, stages=fake_stages(calls))
    assert [c for c in calls if c[1] != "batch of 0"] == []
    assert again.processed == 0
    assert (
        again.text().splitlines()[0] == "4 SKUs: 3 accepted, 0 review, 1 failed  (0 run now, 3 done before)"
    )
    assert read_results(run) == results
    assert leftovers(run) == []


@pytest.mark.parametrize(
    ("change", "redone"),
    [
        ({"score": {"accept_threshold": 0.95}}, ["score", "rank"]),
        ({"prepare": {"segmenter": "plain"}}, ["prepare", "render", "refine", "composite", "score", "rank"]),
    ],
)
def test_config_change_redoes_that_stage_and_later_ones(
    tmp_path: Path, change: dict, redone: list[str]
) -> None:
    catalog = make_catalog(tmp_path, n=2, with_invalid=False)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    run_catalog(catalog, run, config(**change), quiet=True, stages=fake_stages(calls))
    stages_run = [name for name, sku in calls if sku == "SKU-0"]
    assert stages_run == redone


def test_seed_or_candidates_change_redoes_render_onwards(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    run_catalog(catalog, run, config(run={"candidates": 2}), quiet=True, stages=fake_stages(calls))
    assert [n for n, _ in calls] == ["render", "refine", "composite", "score", "rank"]
    assert read_results(run)[0]["n_candidates"] == "2"


def test_force_redoes_everything(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=2, with_invalid=False)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    run_catalog(catalog, run, config(), quiet=True, force=True, stages=fake_stages(calls))
    assert [n for n, s in calls if s == "SKU-1"] == list(STAGE_ORDER)
    assert ("analyze", "batch of 2") in calls


def test_redo_redoes_only_the_named_skus_also_when_another_run_finished_them(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=3, with_invalid=False)
    run_catalog(catalog, tmp_path / "runs" / "night1", config(), quiet=True, stages=fake_stages([]))
    calls: list = []
    # the same RUN: SKU-1 is done there; a new night beside it: every SKU is in the reuse index
    for run in (tmp_path / "runs" / "night1", tmp_path / "runs" / "night2"):
        calls.clear()
        summary = run_catalog(
            catalog, run, config(), quiet=True, force=frozenset({"SKU-1"}), stages=fake_stages(calls)
        )
        assert {s for _, s in calls if s.startswith("SKU-")} == {"SKU-1"}
        assert [n for n, s in calls if s == "SKU-1"] == list(STAGE_ORDER)
        assert summary.counts["failed"] == 0 and len(summary.results) == 3


def test_redo_of_a_sku_not_in_the_catalog_names_it_and_the_fix(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from autoshoot.cli import main

    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    res = CliRunner().invoke(
        main, ["shoot", str(catalog), "--out", str(tmp_path / "run"), "--profile", "tiny", "--redo", "NOPE"]
    )
    assert res.exit_code == 2
    assert "--redo NOPE: no valid row of" in res.output and "fix: give a SKU" in res.output
    assert not (tmp_path / "run").exists()


def test_an_exception_fails_only_its_sku(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=3, with_invalid=False)
    run = tmp_path / "run"
    summary = run_catalog(
        catalog, run, config(), quiet=True, stages=fake_stages([], fail_sku={"render": "SKU-1"})
    )
    results = {r["sku"]: r for r in read_results(run)}
    assert results["SKU-1"]["status"] == "failed"
    assert results["SKU-1"]["reason"] == "render: ValueError: cannot handle SKU-1"
    assert results["SKU-0"]["status"] == results["SKU-2"]["status"] == "accepted"
    log = (run / "SKU-1" / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "second line of detail" in log
    assert summary.exit_code == 1
    # the failed SKU is retried by the next run, from the failed stage on
    calls: list = []
    again = run_catalog(catalog, run, config(), quiet=True, stages=fake_stages(calls))
    assert [n for n, s in calls if s == "SKU-1"] == ["render", "refine", "composite", "score", "rank"]
    assert again.exit_code == 0


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_a_crash_at_each_stage_resumes_with_nothing_lost(tmp_path: Path, stage: str) -> None:
    catalog = make_catalog(tmp_path, n=2, with_invalid=False)
    clean = tmp_path / "reference" / "clean"  # its own parent: a reuse index of its own
    run_catalog(catalog, clean, config(), quiet=True, stages=fake_stages([]))

    run = tmp_path / "run"
    with pytest.raises(Crash):
        run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([], crash_sku={stage: "SKU-1"}))
    calls: list = []
    summary = run_catalog(catalog, run, config(), quiet=True, stages=fake_stages(calls))
    assert summary.exit_code == 0
    # SKU-0 was finished before the crash (unless analyze, batched across both, crashed)
    redo_sku0 = [n for n, s in calls if s == "SKU-0"]
    assert redo_sku0 == ([] if stage != "analyze" else list(STAGE_ORDER))
    # SKU-1 redoes the crashed stage and later ones only
    first = STAGE_ORDER.index(stage)
    assert [n for n, s in calls if s == "SKU-1"] == list(STAGE_ORDER[first:])
    assert read_results(run) == read_results(clean)
    assert leftovers(run) == []


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    run = tmp_path / "run"
    with run_lock(run):
        with pytest.raises(RunLockedError) as err:
            run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    assert str(err.value) == (
        f"{run} is in use by another autoshoot run (pid {os.getpid()}); wait for it to finish, or pass another --out"
    )


def test_sku_folder_names_are_safe_and_distinct() -> None:
    assert sku_folder_name("BAG-001_a.b") == "BAG-001_a.b"
    assert sku_folder_name("a/b") != sku_folder_name("a:b")
    assert "/" not in sku_folder_name("../../etc")
    assert len(sku_folder_name("a" * 300)) <= 100
    assert sku_folder_name("a" * 300) != sku_folder_name("a" * 299)
    for name in ("results.csv", "Report.HTML", "config.yaml", "results.parquet"):
        assert sku_folder_name(name).lower() != name.lower()


def test_skus_named_like_run_files_or_too_long_still_run(tmp_path: Path) -> None:
    """A 300-character SKU, or one named like the RUN folder's own files, is an ordinary SKU."""
    skus = ["results.csv", "report.html", "config.yaml", "R" * 300]
    rows = []
    for i, sku in enumerate(skus):
        write_photo(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": sku, "image": f"img/p{i}.png"})
    catalog = write_catalog(tmp_path, rows)
    run = tmp_path / "run"
    for _ in range(2):  # and a rerun resumes instead of crashing again
        summary = run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
        assert summary.counts == {"accepted": 4, "review": 0, "failed": 0}
        assert [r["sku"] for r in read_results(run)] == skus
        assert (run / "results.csv").is_file() and (run / "report.html").is_file()
        assert "candidates:" in (run / "config.yaml").read_text()


def test_report_shows_every_sku_and_candidate(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=2)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([], fail_sku={"score": "SKU-1"}))
    html = (run / "report.html").read_text()
    assert html.count("<div class='sku'") == 3
    assert "data-status='accepted'" in html and html.count("class='sku' data-status='failed'") == 2
    assert "candidate 3 (best): score 0.90" in html and "fake reason 2" in html
    assert "score: ValueError: cannot handle SKU-1" in html
    assert "onclick=\"show('review')\"" in html
    for src in __import__("re").findall(r"src='([^']+)'", html):
        assert (run / src).is_file(), src
    assert "SKU-0/input.jpg" in html and "SKU-1/composite/c0.png" in html


def test_report_names_the_speed_options_that_change_the_pictures(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    reference, fast = tmp_path / "reference", tmp_path / "fast"
    run_catalog(catalog, reference, config(), quiet=True, stages=fake_stages([]))
    assert "Speed options that change the pictures" not in (reference / "report.html").read_text()
    shortcuts = config(render={"fp8_matmul": True, "cfg_start": 0.17, "cfg_stop": 0.9})
    run_catalog(catalog, fast, shortcuts, quiet=True, stages=fake_stages([]))
    html = (fast / "report.html").read_text()
    assert (
        "Speed options that change the pictures were on: "
        "<b>render.fp8_matmul=true, render.cfg_start=0.17, render.cfg_stop=0.9</b>"
    ) in html
    assert picture_changing_options(config(render={"vram": 8}).render) == [
        "render.vram=8 (fp8 weight storage on a GPU)"
    ]
    assert (
        picture_changing_options(config(render={"vram": 8, "low_vram_method": "group_offload"}).render) == []
    )


FAKE_RUN = """
import sys
from fakes import fake_stages
from autoshoot.config import Config
from autoshoot.run.recipe import run_catalog
summary = run_catalog(sys.argv[1], sys.argv[2], Config(), quiet=True, stages=fake_stages([], sleep={"render": 0.4}))
print(summary.text().splitlines()[0], flush=True)
print("processed", summary.processed, flush=True)
sys.exit(summary.exit_code)
"""


def test_sigint_finishes_the_current_sku_then_stops(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, n=6, with_invalid=False)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_RUN, str(catalog), str(run)], env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.time() + 30
    while not (run / "SKU-0" / "render").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    statuses = [r["status"] for r in read_results(run)]
    done = int(out.split()[-1])
    assert 1 <= done < 6 and statuses[:done] == ["accepted"] * done
    assert all(r["reason"].startswith("not run: the run was interrupted") for r in read_results(run)[done:])
    assert leftovers(run) == []
    # the terminal summary agrees with results.csv
    assert out.splitlines()[0] == (
        f"6 SKUs: {done} accepted, 0 review, 0 failed, {6 - done} not run (interrupted)  ({done} run now)"
    )


def test_models_that_cannot_be_fetched_stop_the_run_before_the_first_sku(tmp_path: Path, monkeypatch) -> None:
    from autoshoot.config import load_config
    from autoshoot.errors import ModelMissingError

    catalog = make_catalog(tmp_path, n=2, with_invalid=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: no hub here
    run = tmp_path / "run"
    with pytest.raises(ModelMissingError) as err:
        run_catalog(catalog, run, load_config("default"), quiet=True)
    text = str(err.value)
    assert text.startswith(
        "These models are missing, so nothing was run:\n  - vlm (brief): Qwen/Qwen2.5-VL-7B-Instruct: not fetched: "
    )
    assert "--set analyze.vlm=rules" in text
    assert not run.exists()  # nothing was run, and no empty RUN folder is left behind


def test_offline_runs_name_every_missing_model(tmp_path: Path) -> None:
    from autoshoot.config import load_config
    from autoshoot.errors import ModelMissingError

    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    with pytest.raises(ModelMissingError) as err:
        run_catalog(
            catalog, tmp_path / "run", load_config("default", overrides={"run.offline": True}), quiet=True
        )
    roles = [
        line.split(":")[0].strip(" -") for line in str(err.value).splitlines()[1:] if line.startswith("  - ")
    ]
    assert (
        roles[0] == "vlm (brief)" and any("ControlNet" in r for r in roles) and any("VAE" in r for r in roles)
    )


def test_a_kill_between_the_last_stage_and_the_result_is_finished_on_resume(tmp_path: Path) -> None:
    import json

    catalog = make_catalog(tmp_path, n=2, with_invalid=False)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    before = read_results(run)
    manifest = run / "SKU-1" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["result"]  # as if killed after rank's commit, before the result was recorded
    manifest.write_text(json.dumps(data))
    (run / "SKU-1" / "best.png").unlink()
    calls: list = []
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages(calls))
    assert [c for c in calls if c[1] == "SKU-1"] == [("rank", "SKU-1")]
    assert read_results(run) == before and (run / "SKU-1" / "best.png").is_file()


def test_the_next_run_removes_temp_files_of_the_top_level_files(tmp_path: Path) -> None:
    """A kill while results, report or config were being written leaves their temp files."""
    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    run = tmp_path / "run"
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    stray = [".results.parquet.tmp-k1.parquet", ".report.html.tmp-k2.html", ".config.yaml.tmp-k3.yaml"]
    for name in stray:
        (run / name).write_text("half written")
    run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    assert leftovers(run) == []
    assert (run / "report.html").is_file() and (run / "results.parquet").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_files_and_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """A teammate or a web server can read the RUN folder when the umask says so."""
    catalog = make_catalog(tmp_path, n=1, with_invalid=False)
    run = tmp_path / "run"
    old = os.umask(umask)
    try:
        run_catalog(catalog, run, config(), quiet=True, stages=fake_stages([]))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*") if p.name != ".lock"}
    assert modes["report.html"] == modes["results.csv"] == modes["config.yaml"] == 0o666 & ~umask
    assert modes["SKU-0/render"] == modes["SKU-0/composite"] == 0o777 & ~umask
    wrong = {name: oct(mode) for name, mode in modes.items() if mode not in (0o666 & ~umask, 0o777 & ~umask)}
    assert wrong == {}


def test_a_run_whose_vlm_failed_for_every_sku_says_so_and_exits_1(tmp_path: Path) -> None:
    from autoshoot.run.recipe import RunSummary
    from autoshoot.types import ShotResult

    def summary(*flags: str, statuses: tuple[str, ...] = ()) -> RunSummary:
        statuses = statuses or ("accepted",) * len(flags)
        results = [
            ShotResult(row=i + 2, sku=f"S{i}", status=st, flags=f)  # type: ignore[arg-type]
            for i, (f, st) in enumerate(zip(flags, statuses))
        ]
        counts = {k: sum(r.status == k for r in results) for k in ("accepted", "review", "failed")}
        return RunSummary(
            run_dir=tmp_path, results=results, counts=counts, seconds=1.0, processed=len(results)
        )

    every = summary("brief_fallback;vlm_error", "brief_fallback;no_handle")
    assert every.vlm_failed_all and every.exit_code == 1
    assert "the VLM failed for every SKU" in every.text()
    # one good brief: the fallbacks are flagged per SKU, the run itself is fine
    some = summary("brief_fallback;vlm_error", "no_handle")
    assert not some.vlm_failed_all and some.exit_code == 0
    assert "every SKU" not in some.text()
    # a SKU that failed before it had a brief (unreadable photo) does not hide the VLM's failure
    mixed = summary("brief_fallback", "", statuses=("accepted", "failed"))
    assert mixed.vlm_failed_all and mixed.exit_code == 1
    assert not summary().vlm_failed_all

"""The review loop without a browser: decisions.csv under concurrent writers, the next night
honouring decisions (frozen, re-rendered, pending), and export with its manifest."""

from __future__ import annotations

import csv
import json
import multiprocessing
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fakes import fake_stages, write_catalog, write_photo
from PIL import Image

from autoshoot.config import Config
from autoshoot.errors import AutoshootError
from autoshoot.report.review.decisions import (
    DECISIONS,
    DecisionError,
    load_history,
    make_decision,
    read_decisions,
    record_decision,
    verdict_for,
)
from autoshoot.report.review.export import export_run
from autoshoot.report.review.runview import load_run
from autoshoot.run.folder import run_lock
from autoshoot.run.recipe import run_catalog


def make_catalog(tmp_path: Path, n: int = 3) -> Path:
    rows = []
    for i in range(n):
        write_photo(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": f"SKU-{i}", "image": f"img/p{i}.png"})
    return write_catalog(tmp_path, rows)


def night(catalog: Path, run: Path, calls: list | None = None):  # type: ignore[no-untyped-def]
    return run_catalog(catalog, run, Config(), quiet=True, stages=fake_stages([] if calls is None else calls))


def decide(run: Path, sku: str, kind: str, candidate: int | None = None, reason: str = "", who: str = "ana"):
    view = load_run(run)[sku]
    return record_decision(run, make_decision(sku, kind, candidate, reason, who, view.photo_sha256))


def seeds(run: Path, sku: str) -> list[int]:
    data = json.loads((run / sku / "render" / "stage.json").read_text())
    return [c["seed"] for c in data["candidates"]]


# ---------------------------------------------------------------------------------------
# decisions.csv


def test_last_decision_per_sku_wins_and_bad_decisions_are_refused(tmp_path: Path) -> None:
    record_decision(tmp_path, make_decision("A", "approved", 3, reviewer="ana"))
    record_decision(tmp_path, make_decision("B", "rejected", reason="bad  hand", reviewer="bo"))
    record_decision(tmp_path, make_decision("A", "rejected", reason="wrong product", reviewer="bo"))
    decisions = read_decisions(tmp_path)
    assert list(decisions) == ["B", "A"]  # newest last
    assert decisions["A"].decision == "rejected" and decisions["A"].candidate is None
    assert decisions["B"].reason == "bad hand" and decisions["B"].reviewer == "bo"
    assert decisions["A"].decided_at.endswith("Z")
    with pytest.raises(DecisionError, match="needs a reason"):
        make_decision("A", "rejected", reason=" ")
    with pytest.raises(DecisionError, match="not one of approved, picked, rejected"):
        make_decision("A", "maybe", 1)
    with pytest.raises(DecisionError, match="needs the candidate index"):
        make_decision("A", "picked")


def _hammer(run_dir: str, who: str, n: int) -> None:
    for i in range(n):
        record_decision(Path(run_dir), make_decision(f"SKU-{i % 5}", "picked", i, reviewer=who))


def test_two_reviewers_at_once_never_tear_or_lose_the_file(tmp_path: Path) -> None:
    # two processes and two threads write the same five SKUs 40 times each
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), f"proc{k}", 40)) for k in range(2)]
    threads = [threading.Thread(target=_hammer, args=(str(tmp_path), f"thread{k}", 40)) for k in range(2)]
    for worker in procs + threads:
        worker.start()
    seen_rows = []
    while any(p.is_alive() for p in procs) or any(t.is_alive() for t in threads):
        text = (tmp_path / DECISIONS).read_text() if (tmp_path / DECISIONS).exists() else ""
        if text:  # a reader in between always sees a whole file
            lines = text.splitlines()
            assert lines[0].startswith("sku,decision,candidate")
            seen_rows.append(len(lines))
    for worker in procs + threads:
        worker.join()
    assert all(p.exitcode == 0 for p in procs)
    decisions = read_decisions(tmp_path)
    assert sorted(decisions) == [f"SKU-{i}" for i in range(5)]
    assert all(d.candidate is not None and d.candidate % 5 == int(d.sku[-1]) for d in decisions.values())
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------
# the next night


def test_the_next_night_freezes_approved_rerenders_rejected_and_keeps_pending(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 4)
    runs = tmp_path / "runs"
    first = runs / "2026-12-01"
    night(catalog, first)
    assert all(v.photo_sha256 for v in load_run(first).values())  # recorded for the decisions
    decide(first, "SKU-0", "picked", 1, who="ana")
    decide(first, "SKU-1", "rejected", reason="bad hand", who="bo")
    decide(first, "SKU-3", "approved", 3, who="ana")
    write_photo(tmp_path / "img" / "p3.png", seed=99)  # SKU-3's photo changed since its approval

    calls: list = []
    second = runs / "2026-12-02"
    summary = night(catalog, second, calls)
    ran = {sku for _, sku in calls if not sku.startswith("batch")}

    # 1. approved: frozen, nothing rendered, the picked candidate is the best picture
    assert "SKU-0" not in ran
    result = {r.sku: r for r in summary.results}
    assert result["SKU-0"].status == "accepted" and "review_approved" in result["SKU-0"].flags
    assert (second / "SKU-0" / "best.png").read_bytes() == (
        first / "SKU-0" / "composite" / "c1.png"
    ).read_bytes()
    carried = read_decisions(second)["SKU-0"]
    assert (carried.decision, carried.candidate, carried.reviewer, carried.carried_from) == (
        "picked",
        1,
        "ana",
        "2026-12-01",
    )
    # 2. rejected: rendered again with new seeds, the reason kept
    assert ("render", "SKU-1") in calls
    assert set(seeds(second, "SKU-1")).isdisjoint(seeds(first, "SKU-1"))
    review = json.loads((second / "review.json").read_text())["skus"]["SKU-1"]
    assert review["action"] == "rerender" and review["decision"]["reason"] == "bad hand"
    # 3. pending: as usual: unchanged since the first night, so that night's work is reused
    #    (same seeds, nothing rendered), and it stays in review where the ranker says so
    assert ("render", "SKU-2") not in calls and seeds(second, "SKU-2") == seeds(first, "SKU-2")
    assert result["SKU-2"].reused == "2026-12-01"
    # 4. approved on another photo: not frozen
    assert ("render", "SKU-3") in calls and "review_approved" not in result["SKU-3"].flags

    # the night after: rejected again, so yet another seed; the approval is still frozen
    decide(second, "SKU-1", "rejected", reason="bad scene", who="bo")
    calls.clear()
    third = runs / "2026-12-03"
    night(catalog, third, calls)
    assert ("render", "SKU-0") not in calls
    assert len({*seeds(first, "SKU-1"), *seeds(second, "SKU-1"), *seeds(third, "SKU-1")}) == 12
    assert (
        verdict_for(load_history([first, second]), "SKU-1", load_run(third)["SKU-1"].photo_sha256).attempt
        == 2
    )


# ---------------------------------------------------------------------------------------
# export


def test_export_writes_approved_pictures_with_a_manifest_and_kohya_pairs(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 4)
    run = tmp_path / "runs" / "n1"
    night(catalog, run)
    decide(run, "SKU-0", "approved", 3)
    decide(run, "SKU-1", "picked", 0)
    decide(run, "SKU-2", "rejected", reason="wrong product")
    record_decision(run, make_decision("GHOST", "approved", 1, reviewer="ana"))  # not in the run

    out = tmp_path / "export"
    summary = export_run(run, out)
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["sku"], r["file"], r["decision"], r["candidate"]) for r in rows] == [
        ("SKU-0", "SKU-0.png", "approved", "3"),
        ("SKU-1", "SKU-1.png", "picked", "0"),
    ]
    assert rows[0]["size"] == "32x32" and rows[0]["score"] == "0.9000" and int(rows[0]["bytes"]) > 0
    assert (out / "SKU-1.png").read_bytes() == (run / "SKU-1" / "composite" / "c0.png").read_bytes()
    assert summary.skipped == [
        f"GHOST: decided in {run / 'decisions.csv'} but not in this run's results.csv; delete that row"
    ]

    # --accepted adds the scorer's accepted SKUs nobody decided (the fake accepts all: best 0.9)
    both = export_run(run, tmp_path / "with-accepted", include_accepted=True)
    assert [r["sku"] for r in both.rows] == ["SKU-0", "SKU-1", "SKU-3"]
    assert both.rows[2]["decision"] == "accepted"

    kohya = tmp_path / "train" / "10_bags"
    export_run(run, kohya, fmt="kohya")
    assert sorted(p.name for p in kohya.iterdir()) == [
        "SKU-0.png",
        "SKU-0.txt",
        "SKU-1.png",
        "SKU-1.txt",
        "manifest.csv",
    ]
    assert (kohya / "SKU-0.txt").read_text() == "a person holding SKU-0\n"  # the brief's prompt
    with Image.open(kohya / "SKU-0.png") as im:
        assert im.size == (32, 32)


def test_export_refuses_a_run_folder_a_run_is_writing(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 1)
    run = tmp_path / "run"
    night(catalog, run)
    with run_lock(run):
        with pytest.raises(AutoshootError, match="is being written by an autoshoot run"):
            export_run(run, tmp_path / "out")
    with pytest.raises(AutoshootError, match="has no results.csv"):
        export_run(tmp_path / "img", tmp_path / "out")


def test_the_export_command_names_what_it_could_not_write(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 2)
    run = tmp_path / "run"
    night(catalog, run)
    decide(run, "SKU-0", "approved", 3)
    decide(run, "SKU-1", "picked", 2)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "autoshoot", "export", str(run), "--to", str(out), "--format", "kohya"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"2 pictures written to {out} (manifest: {out / 'manifest.csv'})\n"

    (run / "SKU-1" / "composite" / "c2.png").unlink()  # the picked picture is gone
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"skipped: SKU-1: candidate 2's picture is missing from {run / 'SKU-1'}" in proc.stdout

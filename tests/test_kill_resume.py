"""A real run (tiny profile, every real stage) killed with SIGKILL mid-SKU resumes to the same
results as an uninterrupted run, with no partial files left."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalogs" / "example.csv"


def shoot(run: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoshoot",
            "shoot",
            str(CATALOG),
            "--out",
            str(run),
            "--profile",
            "tiny",
            "-q",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def partial_files(run: Path) -> list[str]:
    return [str(p.relative_to(run)) for p in run.rglob("*") if ".tmp-" in p.name or ".trash-" in p.name]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clean") / "run"
    proc = shoot(run)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), err
    return run


@pytest.mark.parametrize(
    "trigger", ["DEMO-HAND-02/.render.tmp-", "DEMO-HAND-02/prepare", "DEMO-BRIEF-03/.score.tmp-"]
)
def test_sigkill_mid_sku_then_resume(clean_run: Path, tmp_path: Path, trigger: str) -> None:
    run = tmp_path / "run"
    proc = shoot(run)
    folder, _, prefix = trigger.rpartition("/")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        target = run / folder
        if target.is_dir() and any(p.name.startswith(prefix) for p in target.iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the kill point: " + proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    again = shoot(run)
    _, err = again.communicate(timeout=600)
    assert again.returncode in (0, 1), err
    assert results(run) == results(clean_run)
    for row in results(run):
        if row["best_image"]:
            assert (run / row["best_image"]).read_bytes() == (clean_run / row["best_image"]).read_bytes()
    assert partial_files(run) == []

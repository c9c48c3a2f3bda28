"""Catalogs, images and RUN folders on an object store: a real S3 server (moto) and the real s3fs.

The server runs in a subprocess on a loopback port; s3fs reaches it through
``AWS_ENDPOINT_URL``, so every request goes through s3fs, aiobotocore and HTTP as it would
against AWS. The same runs on a local folder are the reference.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import write_catalog, write_photo
from s3_server import running_s3_server

from autoshoot.config import load_config
from autoshoot.errors import RunLockedError
from autoshoot.run.recipe import run_catalog

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CSV = REPO / "catalogs" / "example.csv"
EXAMPLE_IMAGES = REPO / "catalogs" / "example"


@pytest.fixture(scope="module")
def s3():
    with running_s3_server() as server:
        yield server


def example_on_s3(s3, bucket: str) -> str:  # type: ignore[no-untyped-def]
    """catalogs/example.csv and its images (relative paths) under ``bucket/cat/``."""
    s3.upload(EXAMPLE_CSV, f"{bucket}/cat/example.csv")
    s3.upload(EXAMPLE_IMAGES, f"{bucket}/cat/example")
    return f"{bucket}/cat/example.csv"


def results_of(text: str) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(io.StringIO(text))]


def manifests(s3, run_uri: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    fs = s3.fs()
    root = run_uri.split("://", 1)[1]
    out = {}
    for path in fs.find(root):
        if path.endswith("/manifest.json"):
            out[path[len(root) + 1 :].split("/")[0]] = json.loads(fs.cat_file(path))
    return out


def listing(s3, run_uri: str) -> set[str]:  # type: ignore[no-untyped-def]
    root = run_uri.split("://", 1)[1]
    return {p[len(root) + 1 :] for p in s3.fs().find(root)}


def sku_files(folder: Path) -> dict[str, list[str]]:
    return {
        sku.name: sorted(p.relative_to(sku).as_posix() for p in sku.rglob("*") if p.is_file())
        for sku in folder.iterdir()
        if sku.is_dir() and not sku.name.startswith(".")
    }


# ---------------------------------------------------------------------------------------
# a whole run


def test_tiny_run_on_s3_equals_the_same_run_on_a_local_folder(s3, tmp_path: Path) -> None:
    bucket = s3.bucket("equal")
    catalog = example_on_s3(s3, bucket)
    local = run_catalog(EXAMPLE_CSV, tmp_path / "local", load_config("tiny"), quiet=True)
    remote = run_catalog(catalog, f"{bucket}/runs/x", load_config("tiny"), quiet=True)

    assert remote.run_dir == f"{bucket}/runs/x"
    assert remote.processed == local.processed == 4 and remote.counts == local.counts
    copy = s3.download(f"{bucket}/runs/x", tmp_path / "copy")
    assert results_of((copy / "results.csv").read_text()) == results_of(
        (tmp_path / "local" / "results.csv").read_text()
    )
    for row in results_of((copy / "results.csv").read_text()):
        assert row["best_image"]
        assert (copy / row["best_image"]).read_bytes() == (
            tmp_path / "local" / row["best_image"]
        ).read_bytes()
    # the same files per SKU (stage folders, manifest, log, thumbnail, best, report block)
    assert sku_files(copy) == sku_files(tmp_path / "local")
    for name in ("results.parquet", "report.html", "config.yaml"):
        assert (copy / name).is_file(), name
    report = (copy / "report.html").read_text()
    assert report.count("<figure") == (tmp_path / "local" / "report.html").read_text().count("<figure")
    assert ".lock" not in listing(s3, f"{bucket}/runs/x")

    # a second run resumes: nothing to do, the same results
    again = run_catalog(catalog, f"{bucket}/runs/x", load_config("tiny"), quiet=True)
    assert again.processed == 0
    assert results_of(s3.fs().cat_file("equal/runs/x/results.csv").decode()) == results_of(
        (copy / "results.csv").read_text()
    )


def test_a_config_change_redoes_later_stages_and_fetches_only_their_inputs(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoshoot.storage import RemoteRun

    bucket = s3.bucket("change")
    s3.upload(EXAMPLE_IMAGES / "handbag_tan.png", f"{bucket}/photos/bag.png")
    catalog = write_catalog(tmp_path, [{"sku": "BAG", "image": f"{bucket}/photos/bag.png", "seed": "2"}])
    run_uri = f"{bucket}/runs/c"
    first = run_catalog(catalog, run_uri, load_config("tiny"), quiet=True)
    assert first.counts["review"] == 1
    before = manifests(s3, run_uri)["BAG"]

    fetched: list[str] = []
    real_get = RemoteRun.get

    def recording_get(self, pairs):  # type: ignore[no-untyped-def]
        fetched.extend(rel for rel, _ in pairs)
        return real_get(self, pairs)

    monkeypatch.setattr(RemoteRun, "get", recording_get)
    # threshold 0: any score is accepted (the tiny models' noise scores near 0 with the bag rule)
    config = load_config("tiny", overrides={"score.accept_threshold": 0.0})
    second = run_catalog(catalog, run_uri, config, quiet=True)

    assert second.counts["accepted"] == 1
    after = manifests(s3, run_uri)["BAG"]
    kept = ["analyze", "prepare", "render", "refine", "composite"]
    assert [after["stages"][s]["run"] for s in kept] == [before["stages"][s]["run"] for s in kept]
    assert after["stages"]["score"]["run"] != before["stages"]["score"]["run"]
    assert (
        after["result"]["status"] == "accepted" and after["result"]["run"] == after["stages"]["rank"]["run"]
    )
    fetched_stages = {rel.split("/")[1] for rel in fetched if rel.count("/") >= 2}
    # score reads composite and prepare, rank reads analyze; render and refine stay in the store
    assert fetched_stages == {"analyze", "prepare", "composite"}


def shoot(catalog: str, run: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autoshoot", "shoot", catalog, "--out", run, "--profile", "tiny", "-q"],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def clean_local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clean") / "run"
    proc = shoot(str(EXAMPLE_CSV), str(run))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), err
    return run


@pytest.mark.parametrize(
    ("bucket_name", "trigger"),
    [("kill-render", "DEMO-HAND-02/render/stage.json"), ("kill-score", "DEMO-BRIEF-03/score/")],
)
def test_sigkill_mid_run_on_s3_then_resume(s3, clean_local_run: Path, bucket_name: str, trigger: str) -> None:
    bucket = s3.bucket(bucket_name)
    catalog = example_on_s3(s3, bucket)
    run_uri = f"{bucket}/runs/k"
    proc = shoot(catalog, run_uri)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(name.startswith(trigger) for name in listing(s3, run_uri)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill point: " + proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # no claim without its files: every recorded stage and result has its objects in the store
    files = listing(s3, run_uri)
    killed = manifests(s3, run_uri)
    for sku, manifest in killed.items():
        for stage in manifest["stages"]:
            assert f"{sku}/{stage}/stage.json" in files, (sku, stage)
        if "result" in manifest:
            assert manifest["result"]["best_image"] in files
    finished = {sku: m for sku, m in killed.items() if "result" in m}
    assert "DEMO-TOTE-01" in finished  # it finished before the kill point

    again = shoot(catalog, run_uri)
    _, err = again.communicate(timeout=600)
    assert again.returncode in (0, 1), err
    text = s3.fs().cat_file(f"{run_uri.split('://')[1]}/results.csv").decode()
    assert results_of(text) == results_of((clean_local_run / "results.csv").read_text())
    resumed = manifests(s3, run_uri)
    for sku, manifest in finished.items():  # a finished SKU is not redone
        assert resumed[sku] == manifest
    for row in results_of(text):
        rel = f"{run_uri.split('://')[1]}/{row['best_image']}"
        assert s3.fs().cat_file(rel) == (clean_local_run / row["best_image"]).read_bytes()
    assert ".lock" not in listing(s3, run_uri)  # the dead run's lock was taken over and released


# ---------------------------------------------------------------------------------------
# catalogs and images


def test_relative_images_start_at_the_catalog_folder_and_a_replaced_photo_is_read_again(
    s3, tmp_path: Path
) -> None:
    from autoshoot.catalog import load_catalog

    bucket = s3.bucket("catalog")
    write_photo(tmp_path / "a.png", seed=1)
    write_photo(tmp_path / "b.png", seed=2)
    s3.upload(tmp_path / "a.png", f"{bucket}/shop/photos/a.png")
    s3.upload(tmp_path / "b.png", f"{bucket}/shared/b.png")
    rows = [
        {"sku": "A", "image": "photos/a.png"},
        {"sku": "B", "image": "../shared/b.png"},
        {"sku": "C", "image": f"{bucket}/shop/photos/a.png"},
        {"sku": "D", "image": "photos/missing.png"},
    ]
    write_catalog(tmp_path / "csv", rows)
    s3.upload(tmp_path / "csv" / "catalog.csv", f"{bucket}/shop/catalog.csv")

    catalog = load_catalog(f"{bucket}/shop/catalog.csv", min_side=64)
    a, b, c, d = catalog.rows
    assert catalog.path == f"{bucket}/shop/catalog.csv"
    assert (a.ok, b.ok, c.ok) == (True, True, True)
    assert a.image_uri == c.image_uri == f"{bucket}/shop/photos/a.png"
    assert b.image_uri == f"{bucket}/shared/b.png"
    assert a.image_path.read_bytes() == (tmp_path / "a.png").read_bytes()
    assert d.errors == [
        "row 5, column image, value 'photos/missing.png': not found (looked for "
        f"{bucket}/shop/photos/missing.png); fix: correct the path; relative paths start at the CSV's folder"
    ]
    # the object is replaced: the next validation reads the new bytes
    s3.upload(tmp_path / "b.png", f"{bucket}/shop/photos/a.png")
    again = load_catalog(f"{bucket}/shop/catalog.csv", min_side=64)
    assert again.rows[0].image_sha256 == b.image_sha256 != a.image_sha256


def test_a_missing_catalog_uri_is_a_usage_error(s3) -> None:
    from autoshoot.catalog import load_catalog
    from autoshoot.errors import CatalogError

    bucket = s3.bucket("nocatalog")
    with pytest.raises(CatalogError, match=r"catalog 's3://nocatalog/x.csv' does not exist"):
        load_catalog(f"{bucket}/x.csv")


def test_a_worker_on_another_machine_fetches_the_image_by_uri_and_checks_its_bytes(
    s3, tmp_path: Path
) -> None:
    import dataclasses

    from autoshoot.catalog import load_catalog
    from autoshoot.run.recipe import make_worker

    bucket = s3.bucket("worker")
    write_photo(tmp_path / "a.png", seed=3)
    s3.upload(tmp_path / "a.png", f"{bucket}/a.png")
    row = load_catalog(write_catalog(tmp_path, [{"sku": "A", "image": f"{bucket}/a.png"}])).rows[0]
    elsewhere = dataclasses.replace(row, image_path=tmp_path / "not-on-this-node.png")
    worker = make_worker(load_config("tiny"), f"{bucket}/runs/w")
    try:
        local = worker.local_row(elsewhere).image_path
        assert local != row.image_path and local.read_bytes() == (tmp_path / "a.png").read_bytes()
        write_photo(tmp_path / "b.png", seed=4)
        s3.upload(tmp_path / "b.png", f"{bucket}/a.png")  # replaced after validation
        changed = dataclasses.replace(elsewhere, image_sha256="0" * 64)
        with pytest.raises(ValueError, match="changed after the catalog was validated"):
            worker.local_row(changed)
    finally:
        worker.close()


# ---------------------------------------------------------------------------------------
# the lock object


def test_a_second_run_on_a_locked_s3_run_folder_stops_at_once(s3) -> None:
    from autoshoot.storage import RemoteRun

    uri = s3.bucket("lock") + "/run"
    first, second = RemoteRun(uri), RemoteRun(uri)
    try:
        with first.lock():
            with pytest.raises(
                RunLockedError,
                match=rf"s3://lock/run is in use by another autoshoot run \(pid {os.getpid()} on ",
            ):
                with second.lock():
                    pass
        assert not first.exists(".lock")
        with second.lock():  # released: free again
            assert second.exists(".lock")
    finally:
        first.close()
        second.close()


def test_a_lock_left_by_a_killed_run_is_taken_over(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from autoshoot import storage

    run = storage.RemoteRun(s3.bucket("stale") + "/run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        # a run on this host whose process is gone: taken over at once
        run.write_bytes(".lock", json.dumps({"host": socket.gethostname(), "pid": dead.pid}).encode())
        with run.lock() as held:
            assert json.loads(run.read_bytes(".lock"))["pid"] == os.getpid() and not held.lost
        # a run on another host: held while it is fresh, taken over once it is stale
        run.write_bytes(".lock", json.dumps({"host": "elsewhere", "pid": 1}).encode())
        with pytest.raises(RunLockedError, match=r"pid 1 on elsewhere"):
            with run.lock():
                pass
        monkeypatch.setattr(storage, "LOCK_STALE_S", -1.0)
        with run.lock():
            assert json.loads(run.read_bytes(".lock"))["pid"] == os.getpid()
    finally:
        run.close()


def test_the_heartbeat_notices_a_lock_taken_by_another_run(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoshoot import storage

    monkeypatch.setattr(storage, "LOCK_HEARTBEAT_S", 0.05)
    run = storage.RemoteRun(s3.bucket("heartbeat") + "/run")
    try:
        with run.lock() as held:
            time.sleep(0.2)
            assert not held.lost
            run.write_bytes(".lock", b'{"host": "elsewhere", "pid": 1}')
            deadline = time.time() + 10
            while not held.lost and time.time() < deadline:
                time.sleep(0.05)
            assert held.lost
        assert run.exists(".lock")  # not ours any more: left in place
    finally:
        run.close()


# ---------------------------------------------------------------------------------------
# without the [cloud] extra


def without_s3fs(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a process where ``import s3fs`` fails, as on an install without the extra."""
    code = (
        "import sys; sys.modules['s3fs'] = None; sys.argv = ['autoshoot'] + sys.argv[1:]; "
        "from autoshoot.cli import run_main; run_main()"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_without_the_cloud_extra_a_uri_says_what_to_install(tmp_path: Path) -> None:
    fix = "fix: pip install 'autoshoot[cloud]'"
    proc = without_s3fs("shoot", "s3://bucket/cat.csv", "--out", str(tmp_path / "run"), "-q")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"Error: catalog 's3://bucket/cat.csv': s3:// needs s3fs, which is not installed here; {fix}\n"
    )

    write_photo(tmp_path / "a.png")
    catalog = write_catalog(tmp_path, [{"sku": "A", "image": "a.png"}])
    proc = without_s3fs("shoot", str(catalog), "--out", "s3://bucket/run", "--profile", "tiny", "-q")
    assert proc.returncode == 2
    assert proc.stderr == f"Error: s3://bucket/run: s3:// needs s3fs, which is not installed here; {fix}\n"

    catalog = write_catalog(tmp_path, [{"sku": "B", "image": "s3://bucket/b.png"}], name="uri.csv")
    proc = without_s3fs("validate", str(catalog))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        "error: row 2, column image, value 's3://bucket/b.png': s3:// needs s3fs, which is not "
        f"installed here; {fix}"
    )


def test_staging_folders_of_killed_processes_are_removed_by_the_next_one() -> None:
    from autoshoot.storage import new_staging_folder

    code = "from autoshoot.storage import new_staging_folder; print(new_staging_folder())"
    left = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())
    assert left.is_dir()  # the process is gone, its folder is not: as after SIGKILL or ray.kill
    ours = new_staging_folder()
    another = new_staging_folder()
    try:
        assert not left.exists()
        assert ours.is_dir() and another.is_dir()  # this live process's folders are kept
    finally:
        shutil.rmtree(ours, ignore_errors=True)
        shutil.rmtree(another, ignore_errors=True)

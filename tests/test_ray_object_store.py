"""The Ray engine with its RUN folder (and catalog) on an object store: a real S3 server (moto).

Ray starts after the server, so its worker processes inherit ``AWS_ENDPOINT_URL`` and reach
the store as workers on other machines would: through the URI alone.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import fakes
import pytest
import test_ray_engine as ray_tests
from fakes import fake_stages, write_catalog
from s3_server import running_s3_server
from test_object_store import listing, manifests, results_of

from autoshoot.config import load_config
from autoshoot.run.recipe import run_catalog
from autoshoot.run.worker import SkuWorker

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = sorted((REPO / "catalogs" / "example").glob("*.png"))


@pytest.fixture(scope="module")
def s3():
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def ray_s3(s3):  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    ray.shutdown()  # a Ray started before the server would not pass its address to workers
    for module in (fakes, ray_tests, sys.modules[__name__]):
        ray.cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_worker_killed_mid_run_on_an_s3_run_folder_every_sku_completes_once(
    ray_s3, s3, tmp_path: Path
) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 12)
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    marker = tmp_path / "died.txt"
    stages[2] = ray_tests.DyingStage("render", calls, die_sku="SKU-05", marker=marker)
    run_uri = s3.bucket("ray-death") + "/run"

    summary = run_catalog(catalog, run_uri, ray_tests.fake_config("ray"), quiet=True, stages=stages)

    assert marker.is_file(), "the worker never died"
    assert summary.counts == {"accepted": 12, "review": 0, "failed": 0}
    skus = [f"SKU-{i:02d}" for i in range(12)]
    expected = Counter({(stage.name, sku): 1 for stage in stages for sku in skus})
    assert ray_tests.per_sku_stage_calls(calls) == expected  # nothing redone, nothing skipped
    assert len({pid for *_, pid in calls.read()}) >= 2
    # every manifest records all seven stages and a result, each with its files in the store
    files = listing(s3, run_uri)
    for sku, manifest in manifests(s3, run_uri).items():
        assert len(manifest["stages"]) == 7 and manifest["result"]["status"] == "accepted"
        assert all(f"{sku}/{stage}/stage.json" in files for stage in manifest["stages"])
    local = run_catalog(
        catalog,
        tmp_path / "reference" / "local",
        ray_tests.fake_config("local"),
        quiet=True,
        stages=fake_stages([]),
    )
    assert local.counts == summary.counts
    text = s3.fs().cat_file("ray-death/run/results.csv").decode()
    assert results_of(text) == ray_tests.read_results(tmp_path / "reference" / "local")


def test_tiny_profile_on_s3_equals_the_local_engine(ray_s3, s3, tmp_path: Path) -> None:
    rows = [
        {"sku": f"TINY-{i:02d}", "image": f"img/{EXAMPLE_IMAGES[i % 4].name}", "seed": str(i)}
        for i in range(6)
    ]
    catalog = write_catalog(tmp_path / "cat", rows)
    for image in EXAMPLE_IMAGES:
        (tmp_path / "cat" / "img").mkdir(exist_ok=True)
        (tmp_path / "cat" / "img" / image.name).write_bytes(image.read_bytes())
    bucket = s3.bucket("ray-tiny")
    s3.upload(tmp_path / "cat", f"{bucket}/cat")
    # Ray CPU workers run one thread each; float results depend on the thread count
    local = subprocess.run(
        [sys.executable, "-m", "autoshoot", "shoot", str(catalog), "--profile", "tiny"]
        + ["--out", str(tmp_path / "reference" / "local"), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr[-3000:]

    on_ray = run_catalog(
        f"{bucket}/cat/catalog.csv",
        f"{bucket}/run",
        load_config("tiny", overrides={"run.engine": "ray", "run.gpus": 2}),
        quiet=True,
    )

    assert on_ray.processed == 6
    text = s3.fs().cat_file("ray-tiny/run/results.csv").decode()
    local_results = ray_tests.read_results(tmp_path / "reference" / "local")
    assert results_of(text) == local_results
    for row in local_results:
        remote_best = s3.fs().cat_file(f"ray-tiny/run/{row['best_image']}")
        assert remote_best == (tmp_path / "reference" / "local" / row["best_image"]).read_bytes()


def test_on_a_cluster_images_reach_workers_through_the_store(s3, tmp_path: Path) -> None:
    from autoshoot.catalog import load_catalog
    from autoshoot.run.engines.ray import INPUTS_DIR, RayEngine
    from autoshoot.run.recipe import make_worker

    pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    bucket = s3.bucket("ray-inputs")
    row = load_catalog(ray_tests.make_catalog(tmp_path, 1)).valid_rows[0]
    config = ray_tests.fake_config("ray")
    worker = make_worker(config, f"{bucket}/run", fake_stages([]))
    engine = RayEngine(config, worker)
    engine.single_node = False
    try:
        downloaded = dataclasses.replace(row, image="https://example.com/p0.png")  # as if downloaded
        shared = engine.shared_row(downloaded)
        rel = f"{INPUTS_DIR}/{row.image_sha256}.png"
        assert shared.image_uri == f"{bucket}/run/{rel}"
        assert s3.fs().cat_file(f"ray-inputs/run/{rel}") == row.image_path.read_bytes()
        on_store = dataclasses.replace(row, image_uri=f"{bucket}/photos/p0.png")
        assert engine.shared_row(on_store).image_uri == f"{bucket}/photos/p0.png"  # fetched by the worker
        assert isinstance(engine.worker, SkuWorker)
    finally:
        worker.close()


def test_the_vlm_pool_commits_briefs_that_render_workers_fetch_from_the_store(
    ray_s3, s3, tmp_path: Path
) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 6)
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    config = ray_tests.fake_config("ray", workers=1, batch_size=3)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, vlm_workers=1))
    run_uri = s3.bucket("ray-pool") + "/run"

    summary = run_catalog(catalog, run_uri, config, quiet=True, stages=stages)

    assert summary.counts == {"accepted": 6, "review": 0, "failed": 0}
    skus = [f"SKU-{i:02d}" for i in range(6)]
    assert ray_tests.per_sku_stage_calls(calls) == Counter({(s.name, sku): 1 for s in stages for sku in skus})
    analyze_pids = {pid for stage, _, pid in calls.read() if stage == "analyze"}
    render_pids = {pid for stage, _, pid in calls.read() if stage == "render"}
    assert len(analyze_pids) == 1 and not analyze_pids & render_pids
    for sku, manifest in manifests(s3, run_uri).items():
        assert len(manifest["stages"]) == 7 and manifest["result"]["status"] == "accepted", sku

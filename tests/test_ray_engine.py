"""The Ray engine: same results as the local engine, and a worker that dies loses nothing.

One local Ray (2 CPUs) serves the module: ``ray.init`` is slow. Its workers are CPU actors
(``run.gpus`` = number of CPU workers when the cluster has no GPU). The last test starts its
own three-node cluster with declared GPUs. Stage calls are counted through files, since each
actor runs in its own process; a worker "dies" by ``os._exit`` inside a stage.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import fakes
import pytest
from fakes import FakeStage, fake_stages, local_reference, write_catalog, write_photo

from autoshoot.config import Config, load_config
from autoshoot.errors import ConfigError
from autoshoot.run.layout import sku_folder_name
from autoshoot.run.recipe import run_catalog
from autoshoot.run.worker import SkuWorker

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = sorted((REPO / "catalogs" / "example").glob("*.png"))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    # the fake stages live in test modules that Ray workers cannot import: ship them by value
    ray.cloudpickle.register_pickle_by_value(fakes)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class FileCalls(list):
    """A ``calls`` list for the fake stages that every process appends to: one line per call."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = str(path)

    def append(self, item: tuple[str, str]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{item[0]}\t{item[1]}\t{os.getpid()}\n")

    def read(self) -> list[tuple[str, str, int]]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [(s, k, int(p)) for s, k, p in (line.rstrip("\n").split("\t") for line in fh)]


class DyingStage(FakeStage):
    """Kills its whole worker process on ``die_sku``: once (a marker file), or every time."""

    def __init__(self, name: str, calls: list, die_sku: str, marker: Path | None):
        super().__init__(name, calls)
        self.die_sku = die_sku
        self.marker = str(marker) if marker else ""

    def run(self, job, out):  # type: ignore[no-untyped-def]
        if job.sku == self.die_sku:
            if not self.marker:
                self.calls.append((self.name, f"{job.sku} dying"))
                os._exit(1)
            if not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)
        return super().run(job, out)


def make_catalog(folder: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        write_photo(folder / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": f"SKU-{i:02d}", "image": f"img/p{i}.png"})
    return write_catalog(folder, rows)


def fake_config(engine: str, workers: int = 2, retries: int = 2, batch_size: int = 4) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        run=dataclasses.replace(base.run, engine=engine, gpus=workers, retries=retries),
        analyze=dataclasses.replace(base.analyze, batch_size=batch_size),
    )


def read_results(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def per_sku_stage_calls(calls: FileCalls) -> Counter:
    return Counter((stage, sku) for stage, sku, _ in calls.read() if not sku.startswith("batch of"))


# ---------------------------------------------------------------------------------------


def test_missing_ray_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoshoot.run.engines.ray import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    worker = SkuWorker(fake_config("ray"), tmp_path, fake_stages([]))
    with pytest.raises(ConfigError, match=r"pip install 'autoshoot\[ray\]'"):
        RayEngine(fake_config("ray"), worker)


def test_joining_no_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    if (
        ray.is_initialized()
        or os.environ.get("RAY_ADDRESS")
        or os.path.exists(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster"))
    ):
        pytest.skip("a Ray cluster is running here")
    from autoshoot.errors import AutoshootError

    catalog = make_catalog(tmp_path, 1)
    config = dataclasses.replace(
        fake_config("ray"), run=dataclasses.replace(fake_config("ray").run, ray_address="auto")
    )
    try:
        with pytest.raises(
            AutoshootError, match=r"(?s)cannot join the Ray cluster at 'auto'.*ray start --head"
        ):
            run_catalog(catalog, tmp_path / "run", config, quiet=True, stages=fake_stages([]))
    finally:
        ray.shutdown()


def test_url_images_are_copied_into_the_shared_run_folder_on_a_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    from autoshoot.catalog import load_catalog
    from autoshoot.run.engines.ray import INPUTS_DIR, RayEngine

    row = load_catalog(make_catalog(tmp_path, 1)).valid_rows[0]
    cached = dataclasses.replace(row, image="https://example.com/p0.png")  # as if downloaded
    engine = RayEngine(fake_config("ray"), SkuWorker(fake_config("ray"), tmp_path / "run", fake_stages([])))
    assert engine.shared_row(cached).image_path == row.image_path.resolve()  # one node: as it is
    engine.single_node = False
    shared = engine.shared_row(cached).image_path
    assert shared == (tmp_path / "run" / INPUTS_DIR / f"{row.image_sha256}.png").resolve()
    assert shared.read_bytes() == row.image_path.read_bytes()
    assert engine.shared_row(row).image_path == row.image_path.resolve()  # a path: shared already


def test_replan_after_death_keeps_only_what_this_run_committed(tmp_path: Path) -> None:
    from autoshoot.catalog import load_catalog
    from autoshoot.run.engines.ray import replan_after_death, write_start_marker
    from autoshoot.stages import STAGE_ORDER

    rows = load_catalog(make_catalog(tmp_path, 2)).valid_rows
    run = tmp_path / "run"
    worker = SkuWorker(fake_config("ray"), run, fake_stages([]))
    worker.stages[2] = FakeStage("render", [], crash_sku="SKU-01")
    plans = [worker.plan(row) for row in rows]
    started_at = write_start_marker(run)
    results = []
    with pytest.raises(fakes.Crash):  # SKU-00 finishes; the process "dies" in SKU-01's render
        for result in worker.process(plans):
            results.append(result)
    assert [r.sku for r in results] == ["SKU-00"]

    # finished in this run but never reported: complete, nothing to redo
    done = replan_after_death(worker, plans[0], started_at)
    assert done.todo == [] and done.result and done.result["status"] == "accepted"
    # died in render: the stages before it were committed in this run and are kept
    assert replan_after_death(worker, plans[1], started_at).todo == list(STAGE_ORDER[2:])
    # a forced run that had not reached SKU-00 when its worker died: the old result is not reused
    later = write_start_marker(run)
    forced = worker.plan(rows[0], force=True)
    assert replan_after_death(worker, forced, later).todo == list(STAGE_ORDER)


def test_worker_killed_mid_run_every_sku_completes_once(ray_local, tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 12)
    calls = FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    marker = tmp_path / "died.txt"
    # SKU-05 is second in its chunk of 4: SKU-04 finished on the worker before it died
    stages[2] = DyingStage("render", calls, die_sku="SKU-05", marker=marker)

    summary = run_catalog(catalog, tmp_path / "run", fake_config("ray"), quiet=True, stages=stages)

    assert marker.is_file(), "the worker never died"
    assert summary.counts == {"accepted": 12, "review": 0, "failed": 0}
    counts = per_sku_stage_calls(calls)
    skus = [f"SKU-{i:02d}" for i in range(12)]
    expected = Counter({(stage.name, sku): 1 for stage in stages for sku in skus})
    assert counts == expected  # nothing redone: not the committed stages, not a finished SKU
    assert len({pid for *_, pid in calls.read()}) >= 2  # more than one worker process ran SKUs

    # the same results as the local engine with the same stages
    local_calls = FileCalls(tmp_path / "local-calls.tsv")
    run_catalog(
        catalog,
        tmp_path / "reference" / "local",
        fake_config("local"),
        quiet=True,
        stages=fake_stages(local_calls),
    )
    assert read_results(tmp_path / "run") == read_results(tmp_path / "reference" / "local")


def test_sku_that_always_kills_its_worker_fails_after_retries(ray_local, tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 5)
    calls = FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    stages[1] = DyingStage("prepare", calls, die_sku="SKU-02", marker=None)

    summary = run_catalog(catalog, tmp_path / "run", fake_config("ray", retries=1), quiet=True, stages=stages)

    results = {r["sku"]: r for r in read_results(tmp_path / "run")}
    assert results["SKU-02"]["status"] == "failed"
    assert results["SKU-02"]["reason"].startswith("the worker died 2 times while running it")
    assert summary.counts == {"accepted": 4, "review": 0, "failed": 1}
    assert sum(1 for s, k, _ in calls.read() if k == "SKU-02 dying") == 2  # 1 try + 1 retry
    counts = per_sku_stage_calls(calls)
    assert all(counts[("rank", sku)] == 1 for sku in results if sku != "SKU-02")
    assert "the worker died" in (tmp_path / "run" / "SKU-02" / "log.txt").read_text()


def test_resume_after_a_ray_run_does_no_work(ray_local, tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, 3)
    calls = FileCalls(tmp_path / "calls.tsv")
    run_catalog(catalog, tmp_path / "run", fake_config("ray"), quiet=True, stages=fake_stages(calls))
    first = read_results(tmp_path / "run")
    os.remove(calls.path)
    again = run_catalog(catalog, tmp_path / "run", fake_config("ray"), quiet=True, stages=fake_stages(calls))
    assert again.processed == 0 and calls.read() == []
    assert read_results(tmp_path / "run") == first


def test_tiny_profile_results_equal_the_local_engine(ray_local, tmp_path: Path) -> None:
    assert len(EXAMPLE_IMAGES) >= 4, "catalogs/example/*.png are missing"
    rows = [
        {"sku": f"TINY-{i:02d}", "image": str(EXAMPLE_IMAGES[i % len(EXAMPLE_IMAGES)]), "seed": str(i)}
        for i in range(20)
    ]
    catalog = write_catalog(tmp_path, rows)
    local_reference(catalog, tmp_path / "reference" / "local")  # one thread, as each Ray CPU worker has
    on_ray = run_catalog(
        catalog,
        tmp_path / "ray",
        load_config("tiny", overrides={"run.engine": "ray", "run.gpus": 2}),
        quiet=True,
    )

    assert on_ray.processed == 20
    assert read_results(tmp_path / "ray") == read_results(tmp_path / "reference" / "local")
    for row in read_results(tmp_path / "reference" / "local"):
        assert row["best_image"], row
        folder = sku_folder_name(row["sku"])
        assert row["best_image"].startswith(folder + "/")
        assert (tmp_path / "ray" / row["best_image"]).read_bytes() == (
            tmp_path / "reference" / "local" / row["best_image"]
        ).read_bytes()
    assert set(on_ray.stage_seconds) == {
        "analyze",
        "prepare",
        "render",
        "refine",
        "composite",
        "score",
        "rank",
    }


class ModelsOnlyOnTheDriver(FakeStage):
    """Its model is present in the driver's process and missing in every Ray worker's."""

    def __init__(self, name: str, calls: list):
        super().__init__(name, calls)
        self.driver_pid = os.getpid()

    def check_models(self, config):  # type: ignore[no-untyped-def]
        if os.getpid() == self.driver_pid:
            return []
        return [("render weights", "/models/sdxl.safetensors", "autoshoot models download")]


def test_a_node_without_the_models_stops_the_run_before_any_sku(ray_local, tmp_path: Path) -> None:
    from autoshoot.errors import AutoshootError

    catalog = make_catalog(tmp_path, 2)
    calls = FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    stages[2] = ModelsOnlyOnTheDriver("render", calls)
    with pytest.raises(
        AutoshootError, match=r"(?s)on the Ray node .*render weights.*autoshoot models download"
    ):
        run_catalog(catalog, tmp_path / "run", fake_config("ray"), quiet=True, stages=stages)
    assert calls.read() == []


def test_stop_lets_each_worker_finish_the_sku_in_hand_only(ray_local, tmp_path: Path) -> None:
    from autoshoot.catalog import load_catalog
    from autoshoot.run.engines.ray import STOP_MARKER, RayEngine
    from autoshoot.run.recipe import plan_run

    catalog = load_catalog(make_catalog(tmp_path, 8))
    calls = FileCalls(tmp_path / "calls.tsv")
    config = fake_config("ray", workers=1, batch_size=8)  # one chunk of 8 SKUs on one worker
    worker, plans = plan_run(
        catalog, config, tmp_path / "run", stages=fake_stages(calls, sleep={"render": 0.2})
    )
    engine = RayEngine(config, worker)
    results = []
    try:
        for result in engine.run(plans, lambda: len(results) >= 1):
            results.append(result)
    finally:
        engine.close()
    # the worker saw the stop after its first or second SKU, not after the whole chunk
    assert 1 <= len(results) <= 2
    assert len({sku for stage, sku, _ in calls.read() if stage == "rank"}) == len(results)
    assert not (tmp_path / "run" / STOP_MARKER).exists()


class NoteGpuStage(FakeStage):
    """Records the GPU Ray gave this worker and the device the config says, per SKU."""

    def run(self, job, out):  # type: ignore[no-untyped-def]
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        self.calls.append(("gpu", f"{job.sku}|{gpu}|{job.config.run.device}"))
        return super().run(job, out)


def test_a_cluster_of_gpu_nodes_gets_one_worker_per_gpu(tmp_path: Path) -> None:
    """Three Ray nodes on this machine (GPUs declared, not real): the head without GPUs."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this test needs its own cluster (the module's local Ray comes back on demand)
    ray.cloudpickle.register_pickle_by_value(fakes)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    try:
        cluster.add_node(num_cpus=2, num_gpus=2)
        cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        catalog = make_catalog(tmp_path, 9)
        calls = FileCalls(tmp_path / "calls.tsv")
        stages = fake_stages(calls)
        stages[1] = NoteGpuStage("prepare", calls)
        stages[2] = DyingStage("render", calls, die_sku="SKU-04", marker=tmp_path / "died.txt")
        config = fake_config("ray", workers=0)  # every GPU of the cluster
        run = dataclasses.replace(config.run, ray_address=cluster.address, device="cuda:1")
        summary = run_catalog(
            catalog, tmp_path / "run", dataclasses.replace(config, run=run), quiet=True, stages=stages
        )
    finally:
        ray.shutdown()
        cluster.shutdown()

    assert (tmp_path / "died.txt").is_file()
    assert summary.counts == {"accepted": 9, "review": 0, "failed": 0}
    notes = [sku.split("|") for stage, sku, _ in calls.read() if stage == "gpu"]
    assert sorted(n[0] for n in notes) == [f"SKU-{i:02d}" for i in range(9)]  # prepare ran once each
    assert all(n[1] in ("0", "1") for n in notes)  # one GPU per worker
    assert {n[2] for n in notes} == {"cuda"}  # the worker's own GPU, whatever cuda:N the config says
    assert len({pid for *_, pid in calls.read()}) >= 3
    counts = per_sku_stage_calls(calls)
    assert all(counts[("rank", f"SKU-{i:02d}")] == 1 for i in range(9))

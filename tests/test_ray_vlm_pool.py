"""The Ray engine's VLM pool (``run.vlm_workers``): briefs batched across the whole catalog on
their own workers, the other workers never running the brief, a dead VLM worker losing only
its batch.

A local Ray with 3 CPUs: 1 VLM worker and 2 render workers, CPU actors as in
test_ray_engine.py. Stage calls are counted through files with the process id of each call.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from pathlib import Path

import fakes
import pytest
import test_ray_engine as ray_tests
from fakes import FakeBatchStage, fake_stages, local_reference, write_catalog

from autoshoot.config import Config, load_config
from autoshoot.run.recipe import run_catalog

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = sorted((REPO / "catalogs" / "example").glob("*.png"))


@pytest.fixture(scope="module")
def ray3():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'autoshoot[ray]'")
    ray.shutdown()
    for module in (fakes, ray_tests, sys.modules[__name__]):
        ray.cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def pool_config(vlm_workers: int = 1, workers: int = 2, batch_size: int = 4, retries: int = 2) -> Config:
    config = ray_tests.fake_config("ray", workers=workers, retries=retries, batch_size=batch_size)
    return dataclasses.replace(config, run=dataclasses.replace(config.run, vlm_workers=vlm_workers))


def pids_by_stage(calls: ray_tests.FileCalls) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for stage, _, pid in calls.read():
        out.setdefault(stage, set()).add(pid)
    return out


class DyingBatchStage(FakeBatchStage):
    """Kills its worker process in the first batch that holds ``die_sku``, before any brief."""

    def __init__(self, name: str, calls: list, die_sku: str, marker: Path):
        super().__init__(name, calls)
        self.die_sku = die_sku
        self.marker = str(marker)

    def run_batch(self, jobs, outs):  # type: ignore[no-untyped-def]
        if any(job.sku == self.die_sku for job in jobs) and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            self.calls.append((self.name, f"batch of {len(jobs)} dying"))
            os._exit(1)
        return super().run_batch(jobs, outs)


def test_briefs_are_batched_across_the_catalog_on_their_own_workers(ray3, tmp_path: Path) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 12)
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)

    summary = run_catalog(catalog, tmp_path / "run", pool_config(), quiet=True, stages=stages)

    assert summary.counts == {"accepted": 12, "review": 0, "failed": 0}
    skus = [f"SKU-{i:02d}" for i in range(12)]
    expected = Counter({(stage.name, sku): 1 for stage in stages for sku in skus})
    assert ray_tests.per_sku_stage_calls(calls) == expected
    # three batches of analyze.batch_size across the catalog, not one per render worker's chunk
    batches = sorted(sku for stage, sku, _ in calls.read() if sku.startswith("batch of"))
    assert batches == ["batch of 4"] * 3
    pids = pids_by_stage(calls)
    render_pids = set().union(*(pids[name] for name in ("prepare", "render", "refine", "composite", "rank")))
    assert len(pids["analyze"]) == 1 and not pids["analyze"] & render_pids  # render workers: no brief
    assert len(render_pids) == 2
    assert set(summary.stage_seconds) == {s.name for s in stages}
    local = run_catalog(
        catalog,
        tmp_path / "reference" / "local",
        ray_tests.fake_config("local"),
        quiet=True,
        stages=fake_stages([]),
    )
    assert local.counts == summary.counts
    assert ray_tests.read_results(tmp_path / "run") == ray_tests.read_results(
        tmp_path / "reference" / "local"
    )


def test_a_dead_vlm_worker_loses_only_its_batch_and_every_sku_completes_once(ray3, tmp_path: Path) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 12)
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls)
    marker = tmp_path / "died.txt"
    stages[0] = DyingBatchStage("analyze", calls, die_sku="SKU-05", marker=marker)

    summary = run_catalog(catalog, tmp_path / "run", pool_config(), quiet=True, stages=stages)

    assert marker.is_file(), "the VLM worker never died"
    assert summary.counts == {"accepted": 12, "review": 0, "failed": 0}
    skus = [f"SKU-{i:02d}" for i in range(12)]
    expected = Counter({(stage.name, sku): 1 for stage in stages for sku in skus})
    assert ray_tests.per_sku_stage_calls(calls) == expected  # each brief once, nothing redone
    batches = Counter(sku for stage, sku, _ in calls.read() if sku.startswith("batch of"))
    # the batch SKU-04..07 died; its four SKUs came back one by one, the other batches ran once
    assert batches == Counter({"batch of 4": 2, "batch of 4 dying": 1, "batch of 1": 4})
    assert len(pids_by_stage(calls)["analyze"]) == 2  # the VLM worker was restarted


def test_a_brief_that_fails_fails_only_its_sku_and_never_reaches_a_render_worker(
    ray3, tmp_path: Path
) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 6)
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    stages = fake_stages(calls, fail_sku={"analyze": "SKU-02"})

    summary = run_catalog(catalog, tmp_path / "run", pool_config(), quiet=True, stages=stages)

    results = {r["sku"]: r for r in ray_tests.read_results(tmp_path / "run")}
    assert summary.counts == {"accepted": 5, "review": 0, "failed": 1}
    assert results["SKU-02"]["reason"] == "analyze: ValueError: cannot handle SKU-02"
    assert not [c for c in calls.read() if c[1] == "SKU-02" and c[0] != "analyze"]
    local = run_catalog(
        catalog,
        tmp_path / "reference" / "local",
        ray_tests.fake_config("local"),
        quiet=True,
        stages=fake_stages([], fail_sku={"analyze": "SKU-02"}),
    )
    assert local.counts == summary.counts
    assert ray_tests.read_results(tmp_path / "run") == ray_tests.read_results(
        tmp_path / "reference" / "local"
    )


def test_resume_with_every_brief_done_runs_no_brief(ray3, tmp_path: Path) -> None:
    catalog = ray_tests.make_catalog(tmp_path, 4)
    run_catalog(catalog, tmp_path / "run", ray_tests.fake_config("local"), quiet=True, stages=fake_stages([]))
    calls = ray_tests.FileCalls(tmp_path / "calls.tsv")
    config = pool_config()
    changed = dataclasses.replace(config, score=dataclasses.replace(config.score, accept_threshold=0.95))
    summary = run_catalog(catalog, tmp_path / "run", changed, quiet=True, stages=fake_stages(calls))
    assert summary.processed == 4
    assert sorted({stage for stage, _, _ in calls.read()}) == ["rank", "score"]


def tiny_catalog(folder: Path, n: int) -> Path:
    rows = [
        {"sku": f"TINY-{i:02d}", "image": str(EXAMPLE_IMAGES[i % len(EXAMPLE_IMAGES)]), "seed": str(i)}
        for i in range(n)
    ]
    return write_catalog(folder, rows)


def test_tiny_profile_with_the_vlm_pool_equals_the_local_engine(ray3, tmp_path: Path) -> None:
    catalog = tiny_catalog(tmp_path, 8)
    local_reference(catalog, tmp_path / "reference" / "local", ["analyze.batch_size=3"])
    config = load_config(
        "tiny",
        overrides={"run.engine": "ray", "run.gpus": 2, "run.vlm_workers": 1, "analyze.batch_size": 3},
    )
    on_ray = run_catalog(catalog, tmp_path / "ray", config, quiet=True)
    assert on_ray.processed == 8
    assert ray_tests.read_results(tmp_path / "ray") == ray_tests.read_results(
        tmp_path / "reference" / "local"
    )
    for row in ray_tests.read_results(tmp_path / "reference" / "local"):
        assert (tmp_path / "ray" / row["best_image"]).read_bytes() == (
            tmp_path / "reference" / "local" / row["best_image"]
        ).read_bytes()


def test_the_vlm_pool_runs_the_real_qwen_code_path(ray3, tmp_path: Path) -> None:
    from test_vlm_qwen import build_tiny_qwen, tiny_qwen_overrides

    sets = tiny_qwen_overrides(build_tiny_qwen(tmp_path / "tiny-qwen"))
    catalog = tiny_catalog(tmp_path, 4)
    # a random-weight Qwen writes no valid brief: every SKU falls back, so both runs exit 1
    local_reference(
        catalog, tmp_path / "reference" / "local", [f"{k}={v}" for k, v in sets.items()], exit_code=1
    )
    config = load_config("tiny", overrides={**sets, "run.engine": "ray", "run.gpus": 2, "run.vlm_workers": 1})
    on_ray = run_catalog(catalog, tmp_path / "ray", config, quiet=True)
    assert on_ray.processed == 4 and on_ray.vlm_failed_all and on_ray.exit_code == 1
    assert ray_tests.read_results(tmp_path / "ray") == ray_tests.read_results(
        tmp_path / "reference" / "local"
    )
    for row in ray_tests.read_results(tmp_path / "ray"):
        stage = (tmp_path / "ray" / row["sku"] / "analyze" / "stage.json").read_text()
        assert '"backend": "qwen"' in stage and "brief_fallback" in row["flags"]

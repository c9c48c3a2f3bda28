"""The GPU budget: the residency manager's eviction order and accounting, the choices per
budget, the phase order within a chunk, and the out-of-memory path of a run."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBatchStage, FakeStage, write_catalog, write_photo

from autoshoot.budget import fit_to_budget, is_out_of_memory
from autoshoot.config import Config, load_config
from autoshoot.errors import ConfigError
from autoshoot.run.models import GIB, Residency, one_call_at_a_time, parse_vram
from autoshoot.run.recipe import run_catalog
from autoshoot.stages import STAGE_ORDER
from autoshoot.stages.base import Job, Sessions


class FakeModel:
    """A model of a declared size that records where it is moved (no GPU needed)."""

    def __init__(self, name: str, log: list):
        self.name = name
        self.log = log
        self.device = "cuda"
        self.closed = False
        log.append(("build", name))

    def residency_offload(self) -> None:
        self.device = "cpu"
        self.log.append(("offload", self.name))

    def residency_onload(self) -> None:
        self.device = "cuda"
        self.log.append(("onload", self.name))

    def close(self) -> None:
        self.closed = True
        self.log.append(("close", self.name))


def manager(budget_gib: float | None) -> tuple[Residency, list]:
    r = Residency(None if budget_gib is None else int(budget_gib * GIB), label=f"{budget_gib} GiB")
    ticks = itertools.count()
    r.clock = lambda: float(next(ticks))
    return r, []


def ask(r: Residency, log: list, key: str, size: float, work: float = 0.0, evict: str = "cpu") -> FakeModel:
    model = r.get(key, lambda: FakeModel(key, log), size_gib=size, work_gib=work, evict=evict)  # type: ignore[arg-type]
    r.unpin_all()  # the stage that asked is done
    return model


def test_least_recently_used_model_leaves_first_and_the_budget_holds() -> None:
    r, log = manager(10)
    a = ask(r, log, "a", 4)
    ask(r, log, "b", 4)
    ask(r, log, "a", 4)  # a is now more recent than b
    assert r.resident_bytes() == 8 * GIB
    ask(r, log, "c", 4)  # 12 > 10: the least recently used (b) leaves, a stays
    assert log[-2:] == [("offload", "b"), ("build", "c")]
    assert {k for k, _ in r.resident()} == {"a", "c"} and a.device == "cuda"
    assert r.resident_bytes() == 8 * GIB <= r.budget
    ask(r, log, "b", 4)  # b comes back from CPU memory, not rebuilt; a is now the oldest
    assert log[-2:] == [("offload", "a"), ("onload", "b")]
    assert [e for e in log if e[0] == "build"] == [("build", "a"), ("build", "b"), ("build", "c")]
    assert r.resident_bytes() <= r.budget


def test_activations_count_in_the_budget_and_dropped_models_are_rebuilt() -> None:
    r, log = manager(12)
    ask(r, log, "vlm", 7, evict="drop")
    ask(r, log, "renderer", 4, work=3)  # 7 + 4 + 3 = 14 > 12: the VLM is dropped, not moved
    assert ("close", "vlm") in log and r.resident() == [("renderer", 4 * GIB)]
    assert "vlm" not in r.loaded()
    ask(r, log, "vlm", 7, evict="drop")  # asked again: built again by its factory
    assert log.count(("build", "vlm")) == 2
    # the renderer (4) stays: 4 + 7 <= 12 with the VLM's own work at 0
    assert {k for k, _ in r.resident()} == {"renderer", "vlm"}


def test_pinned_models_stay_and_an_overfull_budget_loads_with_a_warning(caplog: Any) -> None:
    r, log = manager(8)
    with r.stage("prepare"):
        r.get("seg", lambda: FakeModel("seg", log), size_gib=5)
        with caplog.at_level(logging.WARNING, logger="autoshoot.residency"):
            r.get("det", lambda: FakeModel("det", log), size_gib=5)  # seg is in use: stays
        assert ("over", "det") in r.events
        assert "det needs 5.00 GiB" in caplog.text and "8 GiB budget" in caplog.text
    assert {k for k, _ in r.resident()} == {"seg", "det"}
    assert r.used_by("prepare") == ["seg", "det"]
    ask(r, log, "x", 3)  # unpinned now: the oldest (seg) leaves, which makes room (5 + 3 <= 8)
    assert [e for e in log if e[0] == "offload"] == [("offload", "seg")]
    assert r.resident_bytes() <= r.budget


def test_no_budget_evicts_nothing_and_release_moves_named_models() -> None:
    r, log = manager(None)
    for key in ("a", "b", "c"):
        ask(r, log, key, 50)
    assert not [e for e in log if e[0] in ("offload", "close")]
    r.release("b")
    assert log[-1] == ("offload", "b") and {k for k, _ in r.resident()} == {"a", "c"}
    assert "offloaded to CPU: b" in r.describe()
    r.close()
    assert [e[1] for e in log if e[0] == "close"] == ["a", "b", "c"] and r.loaded() == []


def test_real_modules_are_moved_and_measured_without_declared_sizes() -> None:
    torch = pytest.importorskip("torch")
    from autoshoot.run.models import find_modules

    class Holder:  # a backend object: modules on attributes and in a dataclass one level down
        def __init__(self) -> None:
            self.net = torch.nn.Linear(4, 4)
            self.parts = {"head": torch.nn.Linear(4, 2)}

    holder = Holder()
    assert {id(m) for m in find_modules(holder)} == {id(holder.net), id(holder.parts["head"])}
    r = Residency(int(GIB), label="1 GiB")
    assert r.get("h", lambda: holder) is holder
    # on the CPU a model costs nothing in the budget: never evicted, never moved
    assert r.resident_bytes() == 0 and r.entries["h"].on_gpu is False


def test_sessions_take_the_budget_from_run_vram() -> None:
    gpu = dataclasses.replace(Config().run, device="auto", vram="16")
    assert Sessions.for_config(dataclasses.replace(Config(), run=gpu)).budget == 16 * GIB
    unlimited = dataclasses.replace(gpu, vram="0")
    assert Sessions.for_config(dataclasses.replace(Config(), run=unlimited)).budget is None
    cpu = dataclasses.replace(gpu, device="cpu")
    assert Sessions.for_config(dataclasses.replace(Config(), run=cpu)).budget is None


def test_vram_values() -> None:
    assert (
        parse_vram("auto") is None and parse_vram("24") == 24 and parse_vram(8) == 8 and parse_vram("0") == 0
    )
    with pytest.raises(ConfigError, match="use auto, 0"):
        parse_vram("lots")
    with pytest.raises(ConfigError, match="run.vram"):
        load_config(overrides={"run.vram": "-3"})


# ---------------------------------------------------------------------------------------
# choices per budget


def test_each_budget_picks_its_vlm_and_render_mode() -> None:
    config = load_config(profile="default")
    picks = {}
    for gib in (80, 24, 16, 12, 8):
        fitted = fit_to_budget(config, gib)
        rc = fitted.render
        picks[gib] = (fitted.analyze.model, rc.vram, rc.batch_size, rc.low_vram_batch_size, fitted.run.vram)
    assert picks[80] == ("Qwen/Qwen2.5-VL-7B-Instruct", 0, 4, 2, "80")
    assert picks[24] == ("Qwen/Qwen2.5-VL-7B-Instruct", 0, 4, 2, "24")
    assert picks[16] == ("Qwen/Qwen2.5-VL-3B-Instruct", 0, 2, 2, "16")
    assert picks[12] == ("Qwen/Qwen2.5-VL-3B-Instruct", 8, 4, 2, "12")
    assert picks[8] == ("Qwen/Qwen3-VL-2B-Instruct", 8, 4, 1, "8")


def test_a_users_own_choices_win_over_the_budget_table() -> None:
    mine = load_config(
        profile="default", overrides={"analyze.model": "my/vlm", "render.batch_size": 3, "render.vram": 6}
    )
    fitted = fit_to_budget(mine, 8)
    assert (fitted.analyze.model, fitted.render.batch_size, fitted.render.vram) == ("my/vlm", 3, 6)
    keep = load_config(profile="default", overrides={"analyze.vram_models": {}})
    assert fit_to_budget(keep, 8).analyze.model == "Qwen/Qwen2.5-VL-7B-Instruct"


# ---------------------------------------------------------------------------------------
# the runner: phase order, out-of-memory


class ModelStage(FakeStage):
    """A fake stage that asks the run's sessions for a fake model of a declared size."""

    def __init__(self, name: str, calls: list, model: tuple[str, float] | None, oom_sku: str = ""):
        super().__init__(name, calls)
        self.model = model
        self.oom_sku = oom_sku

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        if self.model:
            key, size = self.model
            job.sessions.get(key, lambda: FakeModel(key, self.calls), size_gib=size)
        if job.sku == self.oom_sku:
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().run(job, out)


class BriefStage(FakeBatchStage, ModelStage):
    pass


MODELS = {"analyze": ("vlm", 7.0), "prepare": ("segmenter", 1.0), "render": ("renderer", 6.0)}


def model_stages(calls: list, oom_sku: str = "") -> list:
    stages = []
    for name in STAGE_ORDER:
        cls = BriefStage if name == "analyze" else ModelStage
        stages.append(cls(name, calls, MODELS.get(name), oom_sku=oom_sku if name == "render" else ""))
    return stages


def budget_config(vram: str, batch: int = 8) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        run=dataclasses.replace(base.run, device="auto", vram=vram),
        analyze=dataclasses.replace(base.analyze, batch_size=batch),
    )


def catalog_of(tmp_path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        write_photo(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append({"sku": f"SKU-{i}", "image": f"img/p{i}.png"})
    return write_catalog(tmp_path, rows)


def test_a_chunk_briefs_every_sku_then_releases_the_vlm_then_renders(tmp_path: Path) -> None:
    calls: list = []
    summary = run_catalog(
        catalog_of(tmp_path, 3),
        tmp_path / "run",
        budget_config("12", batch=2),
        quiet=True,
        stages=model_stages(calls),
    )
    assert summary.counts["accepted"] == 3
    seen = [c for c in calls if c[0] in ("analyze", "prepare", "render", "offload", "onload", "build")]
    assert seen == [
        # chunk 1: both briefs, then the VLM leaves, then each SKU's stages
        ("analyze", "batch of 2"),
        ("build", "vlm"),
        ("analyze", "SKU-0"),
        ("analyze", "SKU-1"),
        ("offload", "vlm"),
        ("build", "segmenter"),
        ("prepare", "SKU-0"),
        ("build", "renderer"),
        ("render", "SKU-0"),
        ("prepare", "SKU-1"),
        ("render", "SKU-1"),
        # chunk 2: the VLM comes back (7 + 6 + 1 > 12: the least recently used leave, the
        # segmenter first), and leaves again after the briefs
        ("analyze", "batch of 1"),
        ("offload", "segmenter"),
        ("offload", "renderer"),
        ("onload", "vlm"),
        ("analyze", "SKU-2"),
        ("offload", "vlm"),
        ("onload", "segmenter"),
        ("prepare", "SKU-2"),
        ("onload", "renderer"),
        ("render", "SKU-2"),
    ]
    log = (tmp_path / "run" / "run.log").read_text()
    assert "load vlm (7.00 GiB on cuda)" in log and "offload vlm" in log and "budget 12 GiB" in log


def test_a_large_budget_keeps_the_vlm_on_the_gpu_between_chunks(tmp_path: Path) -> None:
    calls: list = []
    run_catalog(
        catalog_of(tmp_path, 3),
        tmp_path / "run",
        budget_config("40", batch=2),
        quiet=True,
        stages=model_stages(calls),
    )
    # 7 + 1 + 6 fit in 40: nothing moves, and the VLM is built once
    assert not [c for c in calls if c[0] in ("offload", "onload")]
    assert calls.count(("build", "vlm")) == 1


def test_out_of_memory_fails_that_sku_names_the_budget_and_the_run_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    calls: list = []
    summary = run_catalog(
        catalog_of(tmp_path, 3),
        tmp_path / "run",
        budget_config("16"),
        quiet=True,
        stages=model_stages(calls, oom_sku="SKU-1"),
    )
    by_sku = {r.sku: r for r in summary.results}
    assert summary.counts == {"accepted": 2, "review": 0, "failed": 1}
    reason = by_sku["SKU-1"].reason
    assert reason.startswith("render: out of GPU memory within the 16 GiB budget")
    assert "--vram 12" in reason  # the setting that fixes it
    assert by_sku["SKU-2"].status == "accepted"  # the next SKU proceeded
    # every model left the GPU after the failure, and came back for the next SKU
    after = calls[calls.index(("render", "SKU-1")) + 1 :] if ("render", "SKU-1") in calls else calls
    assert ("offload", "renderer") in calls and ("onload", "renderer") in after
    sku_log = (tmp_path / "run" / "SKU-1" / "log.txt").read_text()
    assert (
        "GPU memory when it failed: budget 16 GiB; on the GPU: " in sku_log and "renderer 6.00 GiB" in sku_log
    )
    assert "OutOfMemoryError" in sku_log


def test_out_of_memory_is_recognised_by_type_and_message() -> None:
    torch = pytest.importorskip("torch")
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not is_out_of_memory(ValueError("bad"))


# ---------------------------------------------------------------------------------------
# the overlap: prepare(i+1) and score(i-1) while SKU i renders


class TimedStage(FakeStage):
    """Records when it ran, and in which thread; render and refine are the GPU lane."""

    def __init__(self, name: str, spans: list, sleep: float, fail_sku: str = ""):
        super().__init__(name, [], fail_sku=fail_sku, sleep=sleep)
        self.spans = spans
        self.uses_gpu = name in ("render", "refine")  # type: ignore[misc]

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        import threading
        import time

        start = time.perf_counter()
        try:
            return super().run(job, out)
        finally:
            self.spans.append(
                (self.name, job.sku, start, time.perf_counter(), threading.current_thread().name)
            )


class TimedBriefStage(FakeBatchStage, TimedStage):
    pass


def timed_stages(spans: list, fail_sku: str = "") -> list:
    sleeps = {"prepare": 0.15, "render": 0.3, "refine": 0.1, "composite": 0.05, "score": 0.15}
    return [
        (TimedBriefStage if name == "analyze" else TimedStage)(
            name, spans, sleeps.get(name, 0.0), fail_sku if name == "prepare" else ""
        )
        for name in STAGE_ORDER
    ]


def overlap_config(mode: str, lanes: int = 1) -> Config:
    base = Config()
    return dataclasses.replace(
        base, run=dataclasses.replace(base.run, device="cpu", overlap=mode, lanes=lanes)
    )


def span(spans: list, name: str, sku: str) -> tuple[float, float]:
    return next((s[2], s[3]) for s in spans if s[0] == name and s[1] == sku)


def test_overlap_prepares_the_next_sku_and_scores_the_last_while_one_renders(tmp_path: Path) -> None:
    spans: list = []
    summary = run_catalog(
        catalog_of(tmp_path, 4),
        tmp_path / "run",
        overlap_config("on"),
        quiet=True,
        stages=timed_stages(spans),
    )
    assert summary.counts["accepted"] + summary.counts["review"] == 4
    assert [r.sku for r in summary.results] == ["SKU-0", "SKU-1", "SKU-2", "SKU-3"]
    render1 = span(spans, "render", "SKU-1")
    # SKU-2 was prepared (ahead, in another thread) by the time SKU-1's render ended, and
    # SKU-0 was scored during SKU-1's render
    assert span(spans, "prepare", "SKU-2")[1] < render1[1]
    start, end = span(spans, "score", "SKU-0")
    assert start < render1[1] and end > render1[0]
    lanes = {s[0]: s[4] for s in spans if s[1] == "SKU-1"}
    assert lanes["render"] == lanes["refine"] != lanes["prepare"]
    # each SKU's own stages still ran in order
    for sku in ("SKU-0", "SKU-1", "SKU-2", "SKU-3"):
        order = [s[0] for s in sorted((s for s in spans if s[1] == sku), key=lambda s: s[2])]
        assert order == list(STAGE_ORDER)


def test_overlap_is_faster_than_one_sku_at_a_time_and_isolates_failures(tmp_path: Path) -> None:
    import time

    times = {}
    for mode in ("off", "on"):
        spans: list = []
        started = time.perf_counter()
        summary = run_catalog(
            catalog_of(tmp_path / mode, 4),
            tmp_path / mode / "run",
            overlap_config(mode),
            quiet=True,
            stages=timed_stages(spans, fail_sku="SKU-1"),
        )
        times[mode] = time.perf_counter() - started
        by_sku = {r.sku: r.status for r in summary.results}
        assert by_sku["SKU-1"] == "failed" and all(by_sku[s] != "failed" for s in ("SKU-0", "SKU-2", "SKU-3"))
        assert not [s for s in spans if s[1] == "SKU-1" and s[0] in ("render", "score")]
    # serial: 4 x 0.75 s of per-SKU stages (less SKU-1's); overlapped: mostly the GPU lane's 0.4 s
    assert times["on"] < times["off"] - 0.4


def test_the_next_chunk_is_briefed_while_this_one_renders_when_the_vlm_stays(tmp_path: Path) -> None:
    spans: list = []
    config = overlap_config("on", lanes=2)
    config = dataclasses.replace(config, analyze=dataclasses.replace(config.analyze, batch_size=2))
    stages = timed_stages(spans)
    stages[0].sleep = 0.3  # the brief of a chunk
    summary = run_catalog(catalog_of(tmp_path, 5), tmp_path / "run", config, quiet=True, stages=stages)
    assert [r.sku for r in summary.results] == [f"SKU-{i}" for i in range(5)]
    assert all(r.status != "failed" for r in summary.results)
    # every SKU briefed once, in chunks of two; chunk 2 (and 3) briefed in their own thread
    # while the chunk before rendered, not after it
    briefs = {s[1]: s for s in spans if s[0] == "analyze"}
    assert sorted(briefs) == [f"SKU-{i}" for i in range(5)]
    assert briefs["SKU-2"][4].startswith("autoshoot-brief") and briefs["SKU-4"][4].startswith(
        "autoshoot-brief"
    )
    assert briefs["SKU-2"][2] < span(spans, "render", "SKU-1")[1]
    assert briefs["SKU-4"][2] < span(spans, "render", "SKU-3")[1]
    # one pipeline: chunk 2's first SKU renders while chunk 1's last is still in the lanes
    assert span(spans, "render", "SKU-2")[0] < span(spans, "score", "SKU-1")[1]
    for sku in (f"SKU-{i}" for i in range(5)):
        order = [s[0] for s in sorted((s for s in spans if s[1] == sku), key=lambda s: s[2])]
        assert order == list(STAGE_ORDER)
    # the seconds of a brief ahead are the SKU's own, as in one go
    assert all(r.stage_seconds.get("analyze", 0) >= 0.3 for r in summary.results)


def test_a_failed_brief_ahead_fails_its_sku_only(tmp_path: Path) -> None:
    spans: list = []
    config = overlap_config("on", lanes=2)
    config = dataclasses.replace(config, analyze=dataclasses.replace(config.analyze, batch_size=2))
    stages = timed_stages(spans)
    stages[0].fail_sku = "SKU-3"  # in chunk 2, briefed ahead
    summary = run_catalog(catalog_of(tmp_path, 5), tmp_path / "run", config, quiet=True, stages=stages)
    by_sku = {r.sku: r for r in summary.results}
    assert by_sku["SKU-3"].status == "failed" and by_sku["SKU-3"].reason.startswith("analyze: ")
    assert all(by_sku[s].status != "failed" for s in ("SKU-0", "SKU-1", "SKU-2", "SKU-4"))
    assert not [s for s in spans if s[1] == "SKU-3" and s[0] != "analyze"]  # nothing ran after it


def test_no_brief_ahead_when_the_vlm_must_leave_the_gpu_for_the_render(tmp_path: Path) -> None:
    calls: list = []
    config = budget_config("12", batch=2)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, overlap="on"))
    stages = model_stages(calls)
    for stage in stages:
        stage.uses_gpu = stage.name in ("render", "refine")  # the lanes of the overlap
    summary = run_catalog(catalog_of(tmp_path, 3), tmp_path / "run", config, quiet=True, stages=stages)
    assert summary.counts["accepted"] == 3
    # 7 + 6 + 1 > 12: chunk 2's brief waits until chunk 1 is done, and the VLM leaves again
    assert calls.index(("analyze", "batch of 1")) > calls.index(("score", "SKU-1"))
    assert calls.count(("offload", "vlm")) == 2


# ---------------------------------------------------------------------------------------
# two SKUs in the GPU lane at once (run.lanes): they take turns on the model


class TurnTakingModel:
    """A GPU model stand-in: each call holds the model 0.2 s; records how many calls overlap."""

    def __init__(self) -> None:
        import threading

        self.inside = 0
        self.most_inside = 0
        self.calls = 0
        self.count_lock = threading.Lock()

    @one_call_at_a_time
    def denoise(self) -> None:
        import time

        with self.count_lock:
            self.inside += 1
            self.calls += 1
            self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.2)
        with self.count_lock:
            self.inside -= 1


class TurnTakingStage(TimedStage):
    """Render: 0.2 s on the shared model, then 0.2 s of CPU work (saving the pictures)."""

    def __init__(self, name: str, spans: list, model: TurnTakingModel):
        super().__init__(name, spans, sleep=0.2)
        self.model = model

    def run(self, job: Job, out: Path) -> dict[str, Any]:
        import threading
        import time

        # the span covers the wait for the model, the call and the CPU work: two lanes' spans
        # overlap while one waits or computes and the other holds the model
        start = time.perf_counter()
        self.model.denoise()
        try:
            return FakeStage.run(self, job, out)
        finally:
            self.spans.append(
                (self.name, job.sku, start, time.perf_counter(), threading.current_thread().name)
            )


def test_two_gpu_lanes_take_turns_on_the_model_while_the_other_does_its_cpu_work(tmp_path: Path) -> None:
    import time

    times, models = {}, {}
    for lanes in (1, 2):
        spans: list = []
        model = TurnTakingModel()
        stages = [
            TurnTakingStage(s.name, spans, model) if s.name == "render" else s for s in timed_stages(spans)
        ]
        started = time.perf_counter()
        summary = run_catalog(
            catalog_of(tmp_path / str(lanes), 6),
            tmp_path / str(lanes) / "run",
            overlap_config("on", lanes=lanes),
            quiet=True,
            stages=stages,
        )
        times[lanes], models[lanes] = time.perf_counter() - started, model
        # results in catalog order, every SKU rendered once, each SKU's stages in order
        assert [r.sku for r in summary.results] == [f"SKU-{i}" for i in range(6)]
        assert all(r.status != "failed" for r in summary.results)
        assert model.calls == 6
        for sku in (f"SKU-{i}" for i in range(6)):
            order = [s[0] for s in sorted((s for s in spans if s[1] == sku), key=lambda s: s[2])]
            assert order == list(STAGE_ORDER)
        if lanes == 2:  # two SKUs were in the GPU lane at once, in two threads
            gpu = sorted((s for s in spans if s[0] == "render"), key=lambda s: s[2])
            assert any(b[2] < a[3] for a, b in itertools.pairwise(gpu))
            assert len({s[4] for s in gpu}) == 2
    # the model never ran two calls at once; the second lane hid the CPU work behind it
    assert models[1].most_inside == models[2].most_inside == 1
    # GPU lane per SKU: 0.2 s model + 0.2 s render CPU + 0.1 s refine; two lanes: ~the model's
    assert times[2] < times[1] - 0.6


def test_a_model_stays_pinned_until_every_thread_in_its_stage_is_done() -> None:
    import threading

    r, log = manager(10)
    entered, leave = threading.Event(), threading.Event()

    def second_lane() -> None:
        with r.stage("render"):
            r.get("renderer", lambda: FakeModel("renderer", log), size_gib=6)
            entered.set()
            leave.wait(5)

    thread = threading.Thread(target=second_lane)
    with r.stage("render"):
        r.get("renderer", lambda: FakeModel("renderer", log), size_gib=6)
        thread.start()
        assert entered.wait(5)
    # this thread's render is done, the other's is not: the renderer must stay on the GPU
    r.get("upscaler", lambda: FakeModel("upscaler", log), size_gib=6)
    assert ("offload", "renderer") not in log
    leave.set()
    thread.join()
    r.get("upscaler2", lambda: FakeModel("upscaler2", log), size_gib=6)  # now it may leave
    assert ("offload", "renderer") in log


def test_a_model_pool_lends_one_instance_per_concurrent_call_and_closes_them_all() -> None:
    import threading

    from autoshoot.run.models import ModelPool

    built: list = []
    inside, both_in = threading.Barrier(2, timeout=5), []

    class Graph:  # a MediaPipe-like model: one image at a time per instance
        def __init__(self) -> None:
            self.busy = False
            self.closed = False
            self.side = 512
            built.append(self)

        def process(self, wait: bool) -> int:
            assert not self.busy, "an instance was lent to two calls at once"
            self.busy = True
            if wait:
                inside.wait()  # both calls are inside at the same time
            self.busy = False
            return id(self)

        def close(self) -> None:
            self.closed = True

    pool = ModelPool(Graph)
    assert pool.side == 512 and len(built) == 1  # attributes come from an instance
    assert pool.process(False) == pool.process(False) == id(built[0])  # one at a time: reused
    threads = [threading.Thread(target=lambda: both_in.append(pool.process(True))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 2 and len(set(both_in)) == 2  # two at once: two instances
    pool.close()
    assert all(g.closed for g in built)

"""The renderer's turn on the GPU ends when its work is queued, not when its pictures are back:
another SKU's call queues behind it while this one waits. On a CUDA GPU the queueing itself
never synchronises, and the models that wait for their own results (the VLM, the upscaler, the
detectors) do so on a stream of their own. The CPU tests run everywhere; the CUDA ones skip
where no GPU is visible (``python -m pytest tests/test_render_queue.py`` on a GPU machine)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from render_fixtures import tiny_config

from autoshoot.backends.sdxl import DenoiseRequest, SDXLRenderer
from autoshoot.backends.sdxl_tiny import build_tiny_components
from autoshoot.run.models import GIB, Residency, own_stream

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def request(seeds: list[int], seed: int = 0, steps: int = 2) -> DenoiseRequest:
    image = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    n = len(seeds)
    return DenoiseRequest(
        images=[image] * n,
        masks=[np.full((64, 64), 255, np.uint8)] * n,
        controls=[[("canny", image)]] * n,
        prompt="a bag",
        negative_prompt="",
        seeds=list(seeds),
        steps=steps,
        scales=[[0.5]] * steps,
        cfg=2.0,
    )


def test_a_second_call_queues_its_work_while_the_first_waits_for_its_pictures():
    renderer = SDXLRenderer(tiny_config(), components=build_tiny_components())
    first_waits = threading.Event()
    second_queued = threading.Event()
    real_collect, real_batch = renderer.collect, renderer.denoise_batch
    seen_by_first: list[bool] = []

    def collect(batches, notes):
        if threading.current_thread().name == "first":
            first_waits.set()
            # the model's turn is over: the second call can queue its batch now
            seen_by_first.append(second_queued.wait(timeout=60))
        return real_collect(batches, notes)

    def denoise_batch(req):
        if threading.current_thread().name == "second":
            second_queued.set()
        return real_batch(req)

    renderer.collect, renderer.denoise_batch = collect, denoise_batch
    results: dict[str, object] = {}

    def call(name: str, seeds: list[int]) -> None:
        if name == "second":
            first_waits.wait(timeout=60)
        results[name] = renderer.denoise(request(seeds))

    threads = [
        threading.Thread(target=call, args=(n, s), name=n) for n, s in (("first", [1]), ("second", [2]))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert seen_by_first == [True]
    # each call got its own pictures, the same as alone
    alone = SDXLRenderer(tiny_config(), components=build_tiny_components())
    for name, seeds in (("first", [1]), ("second", [2])):
        want = alone.denoise(request(seeds)).images[0]
        np.testing.assert_array_equal(results[name].images[0], want)  # type: ignore[attr-defined]


def test_the_renderer_reports_its_phases_and_flags_a_nan_decode_for_the_fp32_retry():
    renderer = SDXLRenderer(tiny_config(), components=build_tiny_components())
    res = renderer.denoise(request([1, 2]))
    assert set(res.seconds) == {"prepare_s", "denoise_s", "decode_s"}
    assert all(v >= 0 for v in res.seconds.values())
    with torch.inference_mode():
        latents = torch.zeros(2, 4, 8, 8)
        pixels, bad = renderer.decode_pixels(latents)
        latents[1] = float("nan")  # what an fp16 overflow inside the decoder leaves
        _, bad_nan = renderer.decode_pixels(latents)
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (2, 64, 64, 3)
    assert not bad.any() and bad_nan.tolist() == [False, True]


def test_asking_for_a_resident_model_does_not_empty_the_cache(monkeypatch):
    """Every stage's call asks for its model; emptying CUDA's cache each time made the next
    allocations ask CUDA again and wait for the whole queue. Only an eviction empties it."""
    emptied = []
    monkeypatch.setattr("autoshoot.run.models.empty_cache", lambda: emptied.append(1))
    r = Residency(10 * GIB)
    r.get("renderer", object, size_gib=4, work_gib=3)
    r.unpin_all()
    for _ in range(5):
        r.get("renderer", object, size_gib=4, work_gib=3)
        r.unpin_all()
    assert emptied == []
    r.get("vlm", object, size_gib=5)  # 4 + 5 + its work > 10? no work: 9 fits
    r.unpin_all()
    assert emptied == []
    r.get("big", object, size_gib=6)  # evicts the least recently used: the cache is emptied
    assert len(emptied) == 1


def test_own_stream_is_a_no_op_off_cuda():
    with own_stream("cpu"):
        x = torch.ones(3) * 2
    assert x.sum().item() == 6


@cuda
def test_queueing_a_batch_on_cuda_never_synchronises():
    config = tiny_config(**{"run.device": "cuda"})
    renderer = SDXLRenderer(config, components=build_tiny_components())
    req = request([1, 2])
    warm = renderer.denoise(req)  # first calls: cuDNN's search, the scale tensors, the prompt
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches, notes = renderer.enqueue(req)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    res = renderer.collect(batches, notes)
    for a, b in zip(res.images, warm.images, strict=True):
        np.testing.assert_array_equal(a, b)
    assert res.seconds["denoise_s"] > 0


@cuda
def test_own_stream_does_not_wait_for_work_queued_on_the_default_stream():
    def work() -> float:
        with own_stream("cuda"):
            return (torch.ones(4, device="cuda") * 3).sum().cpu().item()

    work()  # the thread's stream and its first memory: made once, as in a run
    torch.cuda.synchronize()
    started = time.perf_counter()
    torch.cuda._sleep(int(2e9))  # about a second of work queued on the default stream
    value = work()
    took = time.perf_counter() - started
    torch.cuda.synchronize()
    queued = time.perf_counter() - started
    assert value == 12 and took < queued / 2

"""The local engine: this process, chunks of ``analyze.batch_size`` SKUs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from autoshoot.config import Config
from autoshoot.run.worker import Plan, SkuWorker
from autoshoot.types import ShotResult


class LocalEngine:
    """This process: chunks of ``analyze.batch_size`` SKUs (the VLM batches across a chunk)."""

    def __init__(self, config: Config, worker: SkuWorker):
        self.worker = worker
        self.chunk = max(1, int(getattr(config.analyze, "batch_size", 1)))

    def run(self, plans: list[Plan], should_stop: Callable[[], bool]) -> Iterator[ShotResult]:
        """Chunk by chunk; with the overlap on, through one pipeline (``process_chunks``: the
        next chunk is briefed while this one renders where the VLM stays on the GPU)."""
        chunks = [plans[i : i + self.chunk] for i in range(0, len(plans), self.chunk)]
        worker = self.worker
        if worker.streams_chunks and worker.overlap_enabled() and worker.lanes()[1] and len(plans) > 1:
            yield from worker.process_chunks(chunks, should_stop)
            return
        for chunk in chunks:
            if should_stop():
                return
            yield from worker.process(chunk, should_stop)

    @property
    def stage_seconds(self) -> dict[str, float]:
        return self.worker.stage_seconds

    def close(self) -> None:
        self.worker.close()


def make_engine(config: Config, worker: SkuWorker):  # type: ignore[no-untyped-def]
    from autoshoot.registry import Registry

    engines = Registry("engine")
    engines.register("local", LocalEngine)
    engines.register("ray", "autoshoot.run.engines.ray:RayEngine")
    return engines.create(config.run.engine, config, worker)

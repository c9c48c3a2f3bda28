"""Engines: where the SKUs of a run are processed.

    local   this process, chunks of ``analyze.batch_size`` SKUs   (autoshoot.run.engines.local)
    ray     one long-lived worker per GPU of a Ray cluster         (autoshoot.run.engines.ray)

An engine has ``run(plans, should_stop) -> Iterator[ShotResult]`` (results as SKUs finish),
a ``stage_seconds`` property (stage name → seconds summed) and ``close()``. The recipe picks
one by ``run.engine`` (``autoshoot shoot --engine ray``). Both write the same RUN folder
through the same ``SkuWorker``, so resume, per-SKU isolation and results.csv are identical.
"""

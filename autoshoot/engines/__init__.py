"""Engines: where the SKUs of a run are processed.

    local   this process, chunks of ``analyze.batch_size`` SKUs   (autoshoot.runner.LocalEngine)
    ray     one long-lived worker per GPU of a Ray cluster         (autoshoot.engines.ray_engine)

An engine has ``run(plans, should_stop) -> Iterator[ShotResult]`` (results as SKUs finish),
a ``stage_seconds`` property (stage name → seconds summed) and ``close()``. The runner picks
one by ``run.engine`` (``autoshoot shoot --engine ray``). Both write the same RUN folder
through the same ``SkuWorker``, so resume, per-SKU isolation and results.csv are identical.
"""

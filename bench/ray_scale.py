"""How the Ray engine scales: throughput with 1 and with 2 local CPU workers, `tiny` profile.

    .venv/bin/python bench/ray_scale.py [--skus 24] [--workers 1 2] [--keep DIR]
        [--vlm-pool] [--set analyze.vlm=qwen --set analyze.model=DIR ...]

1. Writes a catalog of SKUS rows over the example packshots (catalogs/example), each with its
   own seed, so every SKU is real work for every stage.
2. Starts one local Ray (CPUs = the most workers asked for, at least 2).
3. For each worker count: a fresh RUN folder, a fresh pool of CPU workers (each loads the tiny
   models once), every SKU through the Ray engine. Times: to the first result (Ray workers
   starting + model building), the whole run, and the steady rate after every worker has
   reported once.
4. For reference, the local engine in this process (all cores, one process).
5. Prints SKUs/min and the scaling efficiency: rate with N workers / (N x rate with 1).
6. With ``--vlm-pool``: each worker count again with one more worker that only writes the
   briefs (``run.vlm_workers=1``), batched across the catalog, the others never loading the
   VLM. ``--set`` passes config, e.g. a real Qwen-VL folder for the brief.
   With ``--repeat R`` each pool size runs R times and the fastest run counts (other work on
   a shared machine only ever slows a run down).

Each CPU worker is a Ray actor with one CPU, so Ray runs its torch/OpenMP code on one thread.
Efficiency near 100 % means the engine adds little overhead; it cannot exceed the machine's
cores, and on a 2-core machine the driver and Ray's own processes share those two cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from autoshoot.config import load_config
from autoshoot.run.recipe import plan_run, run_catalog, validate_for_run

REPO = Path(__file__).resolve().parents[1]


def make_catalog(folder: Path, n: int) -> Path:
    images = sorted((REPO / "catalogs" / "example").glob("*.png"))
    if not images:
        raise SystemExit("catalogs/example/*.png are missing: run python catalogs/make_example.py")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "image", "seed"])
        for i in range(n):
            writer.writerow([f"BENCH-{i:03d}", str(images[i % len(images)]), i])
    return path


def time_ray(
    catalog: Path, run_dir: Path, workers: int, vlm_workers: int = 0, sets: dict | None = None
) -> dict[str, float]:
    """One run on ``workers`` CPU workers; the times at which each result came back."""
    from autoshoot.run.engines.ray import RayEngine

    overrides = {**(sets or {}), "run.engine": "ray", "run.gpus": workers, "run.vlm_workers": vlm_workers}
    config = load_config("tiny", overrides=overrides)
    parsed = validate_for_run(catalog, config)
    worker, plans = plan_run(parsed, config, run_dir)
    engine = RayEngine(config, worker)
    start = time.perf_counter()
    stamps, statuses = [], []
    try:
        for result in engine.run(plans, lambda: False):
            stamps.append(time.perf_counter() - start)
            statuses.append(result.status)
    finally:
        engine.close()
    if len(stamps) != len(plans) or "failed" in statuses:
        raise SystemExit(f"{workers} workers: {statuses.count('failed')} SKUs failed; see {run_dir}")
    return summarize(stamps, workers)


def time_local(catalog: Path, run_dir: Path, sets: dict | None = None) -> float:
    start = time.perf_counter()
    summary = run_catalog(catalog, run_dir, load_config("tiny", overrides=sets), quiet=True)
    if summary.counts.get("failed"):
        raise SystemExit(f"local engine: {summary.counts['failed']} SKUs failed; see {run_dir}")
    return time.perf_counter() - start


def summarize(stamps: list[float], workers: int) -> dict[str, float]:
    n = len(stamps)
    k = min(workers, n - 1)  # after the k-th result every worker has (roughly) loaded its models
    steady = (n - k) / (stamps[-1] - stamps[k - 1]) * 60 if n > k and stamps[-1] > stamps[k - 1] else 0.0
    return {"first": stamps[0], "wall": stamps[-1], "rate": n / stamps[-1] * 60, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per pool size; the fastest counts (busy machines)"
    )
    parser.add_argument("--no-local", action="store_true", help="skip the local-engine reference run")
    parser.add_argument("--keep", type=Path, default=None, help="work here instead of a temp folder")
    parser.add_argument("--vlm-pool", action="store_true", help="also run with one separate VLM worker")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config key=value")
    args = parser.parse_args()
    import ray

    from autoshoot.config import parse_set_option

    sets = parse_set_option(args.sets)

    root = args.keep or Path(tempfile.mkdtemp(prefix="autoshoot-ray-bench-"))
    catalog = make_catalog(root, args.skus)
    cores = os.cpu_count() or 1

    # 1. one local Ray for every pool size
    start = time.perf_counter()
    extra = 1 if args.vlm_pool else 0
    ray.init(
        num_cpus=max(2, *(w + extra for w in args.workers)), include_dashboard=False, log_to_driver=False
    )
    init_s = time.perf_counter() - start
    try:
        runs, pooled = {}, {}
        for w in args.workers:
            tries = [time_ray(catalog, root / f"run-{w}-{i}", w, sets=sets) for i in range(args.repeat)]
            runs[w] = max(tries, key=lambda r: r["rate"])
            if args.vlm_pool:
                tries = [time_ray(catalog, root / f"run-{w}-vlm-{i}", w, 1, sets) for i in range(args.repeat)]
                pooled[w] = max(tries, key=lambda r: r["rate"])
    finally:
        ray.shutdown()
    local_s = (
        None
        if args.no_local
        else min(time_local(catalog, root / f"run-local-{i}", sets) for i in range(args.repeat))
    )

    # 2. the table
    print(
        f"\n{args.skus} SKUs, tiny profile (random tiny models, CPU){' with ' + str(sets) if sets else ''}; "
        f"this machine: {cores} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"ray.init (local Ray): {init_s:.1f} s, not counted below; fastest of {args.repeat} run(s) each")
    print(
        f"{'engine':<26} {'first result s':>14} {'wall s':>7} {'SKU/min':>8} {'steady SKU/min':>15} "
        f"{'efficiency':>11}"
    )
    base = runs.get(1) or runs[min(runs)]
    base_w = 1 if 1 in runs else min(runs)
    for w, r in runs.items():
        eff = r["rate"] / (w / base_w * base["rate"]) * 100
        steady_eff = r["steady"] / (w / base_w * base["steady"]) * 100 if base["steady"] else 0.0
        print(
            f"{f'ray, {w} CPU worker(s)':<26} {r['first']:>14.1f} {r['wall']:>7.1f} {r['rate']:>8.1f} "
            f"{r['steady']:>15.1f} {eff:>5.0f} % wall, {steady_eff:.0f} % steady"
        )
    for w, r in pooled.items():
        print(
            f"{f'ray, {w} + 1 VLM worker':<26} {r['first']:>14.1f} {r['wall']:>7.1f} {r['rate']:>8.1f} "
            f"{r['steady']:>15.1f} {r['rate'] / runs[w]['rate'] * 100:>5.0f} % of {w} worker(s) without it"
        )
    if local_s is not None:
        print(f"{'local engine (1 process)':<26} {'':>14} {local_s:>7.1f} {args.skus / local_s * 60:>8.1f}")
    print(
        "\nEfficiency = SKU/min with N workers / (N x SKU/min with 1 worker). "
        f"This machine has only {cores} cores: with {max(args.workers)} workers plus the driver and Ray's "
        "own processes, the cores are shared, so this measures the engine's overhead rather than "
        "GPU scaling; on a GPU cluster each worker has its own GPU."
    )
    print(f"work folder: {root}")


if __name__ == "__main__":
    main()

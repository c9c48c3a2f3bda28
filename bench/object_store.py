"""What a RUN folder on an object store costs: the same `tiny` run into a local folder and into s3://.

    .venv/bin/python bench/object_store.py [--skus 12] [--repeat 2] [--ray]

1. Starts moto's S3 server in a subprocess on a loopback port (a real S3 protocol server; s3fs
   reaches it through AWS_ENDPOINT_URL, exactly as it would reach AWS, minus the network).
2. Writes a catalog of SKUS rows over the example packshots, each with its own seed, locally
   and, with its images, in the bucket.
3. After a warm-up run (not counted), runs in turn and REPEAT times each (the fastest counts):
   the local engine into a local RUN folder; into an s3:// RUN folder with the local catalog;
   into an s3:// RUN folder with the catalog and images in the bucket too. Each is followed
   by a rerun (every SKU already done).
4. With --ray: the same first two on a local Ray with 2 CPU workers.
5. Prints seconds, SKUs/min and the overhead per SKU against the local folder.

moto answers on this machine in a few milliseconds per request; a real bucket in the same
region answers in 10-30 ms, so on S3 the per-SKU overhead is larger than printed here, while
the GPU work per SKU (10-35 s) is larger still. The uploads per SKU are listed too.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto's S3 server did not start: pip install 'moto[server]'") from None
            time.sleep(0.1)


def make_catalog(folder: Path, n: int) -> Path:
    images = sorted((REPO / "catalogs" / "example").glob("*.png"))
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copyfile(image, folder / "img" / image.name)
    path = folder / "catalog.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "image", "seed"])
        for i in range(n):
            writer.writerow([f"BENCH-{i:03d}", f"img/{images[i % len(images)].name}", i])
    return path


def timed_run(catalog: str, run: str, engine: str) -> tuple[float, int]:
    from autoshoot.config import load_config
    from autoshoot.run.recipe import run_catalog

    overrides = {"run.engine": engine, "run.gpus": 2} if engine == "ray" else {}
    start = time.perf_counter()
    summary = run_catalog(catalog, run, load_config("tiny", overrides=overrides), quiet=True)
    seconds = time.perf_counter() - start
    if summary.counts.get("failed"):
        raise SystemExit(f"{run}: {summary.counts['failed']} SKUs failed")
    return seconds, summary.processed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant; the fastest counts")
    parser.add_argument("--ray", action="store_true", help="also compare on a local Ray with 2 CPU workers")
    args = parser.parse_args()

    proc, endpoint = start_moto()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    root = Path(tempfile.mkdtemp(prefix="autoshoot-s3-bench-"))
    try:
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.mkdir("bench")
        catalog = make_catalog(root / "cat", args.skus)
        fs.put(str(root / "cat") + "/", "bench/cat/", recursive=True)
        variants = [
            ("local folder", "local", str(catalog), lambda i: str(root / f"run-local-{i}")),
            ("s3 RUN, local catalog", "local", str(catalog), lambda i: f"s3://bench/run-s3-{i}"),
            (
                "s3 RUN + s3 catalog/images",
                "local",
                "s3://bench/cat/catalog.csv",
                lambda i: f"s3://bench/run-s3c-{i}",
            ),
        ]
        if args.ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            variants += [
                ("ray 2 workers, local folder", "ray", str(catalog), lambda i: str(root / f"run-ray-{i}")),
                ("ray 2 workers, s3 RUN", "ray", str(catalog), lambda i: f"s3://bench/run-ray-s3-{i}"),
            ]
        # warm-up, not counted: imports, the first model build, moto's first requests
        timed_run(str(make_catalog(root / "warm", 2)), "s3://bench/run-warm", "local")
        first: dict[str, float] = {}
        rerun: dict[str, float] = {}
        for i in range(args.repeat):  # alternate, so load from other work hits every variant alike
            for name, engine, cat, run in variants:
                seconds, processed = timed_run(cat, run(i), engine)
                assert processed == args.skus
                first[name] = min(first.get(name, float("inf")), seconds)
                seconds, processed = timed_run(cat, run(i), engine)
                assert processed == 0
                rerun[name] = min(rerun.get(name, float("inf")), seconds)
        objects = fs.find("bench/run-s3-0/BENCH-000")
        size = sum(fs.info(p)["size"] for p in objects)
    finally:
        if args.ray:
            import ray

            ray.shutdown()
        proc.terminate()
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"\n{args.skus} SKUs, tiny profile (CPU); moto S3 server on this machine; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; fastest of {args.repeat}"
    )
    print(f"{'variant':<30} {'run s':>7} {'SKU/min':>8} {'overhead/SKU':>13} {'rerun s':>8}")
    for name, *_ in variants:
        base_name = "ray 2 workers, local folder" if name.startswith("ray") else "local folder"
        extra = (first[name] - first[base_name]) / args.skus * 1000
        print(
            f"{name:<30} {first[name]:>7.1f} {args.skus / first[name] * 60:>8.1f} "
            f"{extra:>+10.0f} ms {rerun[name]:>8.2f}"
        )
    print(
        f"\none SKU in the store: {len(objects)} objects, {size / 1e6:.2f} MB (2 candidates, tiny 256-px images)"
    )


if __name__ == "__main__":
    main()

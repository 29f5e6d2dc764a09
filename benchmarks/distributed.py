"""Benchmark of ``segment --engine ray`` against the CLI's folder mode, and a multi-node scaling table.

* **One machine**: images/s of ``fastsam-onnx segment FOLDER --out-dir`` (one process, onnxruntime's default
  threads) vs ``--engine ray --out R.parquet`` with 1 worker x all cores' threads, and with one worker per core
  x 1 thread. Each configuration runs on ``N`` and ``2N`` images: the steady throughput is ``N / (t(2N) -
  t(N))`` and the fixed cost of a job (actor start, model load per actor, the first batches) ``t(N) - N / rate``;
  Ray's own start-up (``ray.init`` of a local instance) is timed once and stated apart. Medians over ``--reps``.
* **Multi-node**: a ``ray.cluster_utils.Cluster`` of 1 and 2 nodes (1 CPU each: on one machine the nodes share
  its cores), one worker per node, the same steady throughput; speedup over one node.

Images: synthetic 640 x 640 scenes (:mod:`fastsam_onnx.models.synth`) and the two ultralytics photographs.
Default model: the shipped demo model (512 x 512 static); ``--model`` for another bundle.

    python -m fastsam_onnx.benchmarks.distributed [--images 48] [--reps 3] [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
OBJECT_STORE = 100 << 20


def make_images(folder: Path, n: int) -> Path:
    """``n`` images under ``folder``: the ultralytics photographs (when installed) and synthetic scenes."""
    import cv2

    from fastsam_onnx.benchmarks.cases import ultralytics_asset
    from fastsam_onnx.models.synth import scene_for_seed

    folder.mkdir(parents=True, exist_ok=True)
    photos = [p for p in (ultralytics_asset("bus.jpg"), ultralytics_asset("zidane.jpg")) if p is not None]
    for i in range(n):
        if i < len(photos):
            shutil.copy(photos[i], folder / f"{i:05d}{photos[i].suffix}")
        else:
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), scene_for_seed(i, 640).image)
    return folder


def _quiet(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` takes, its stdout/stderr swallowed."""
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        fn()
    return time.perf_counter() - t0


def time_cli(folder: Path, work: Path, extra: list[str], engine: str) -> float:
    """Seconds of one ``segment`` run over ``folder`` (in this process; a fresh output each time)."""
    from fastsam_onnx.cli import main

    out = Path(tempfile.mkdtemp(dir=work))
    if engine == "local":
        argv = ["segment", str(folder), "--out-dir", str(out / "json"), "-q", *extra]
    else:
        argv = ["segment", str(folder), "--engine", "ray", "--out", str(out / "r.parquet"), "-q", *extra]
    seconds = _quiet(lambda: main(argv))
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def steady(folders: tuple[Path, Path], n: int, reps: int, run: Callable[[Path], float]) -> dict[str, Any]:
    """Median seconds on N and 2N images → steady images/s and the fixed cost of a job, seconds."""
    t1, t2 = [], []
    for _ in range(reps):
        t1.append(run(folders[0]))
        t2.append(run(folders[1]))
    m1, m2 = statistics.median(t1), statistics.median(t2)
    rate = n / (m2 - m1) if m2 > m1 else None
    return {"seconds_n": round(m1, 3), "seconds_2n": round(m2, 3), "images_per_s": rate and round(rate, 2),
            "fixed_s": rate and round(m1 - n / rate, 3), "runs": {"n": [round(t, 3) for t in t1], "2n": [round(t, 3) for t in t2]}}


def one_machine(args: argparse.Namespace, folders: tuple[Path, Path], work: Path) -> dict[str, Any]:
    import ray

    cores = os.cpu_count() or 1
    model = ["--model", args.model] if args.model else []
    out: dict[str, Any] = {"cli": steady(folders, args.images, args.reps, lambda f: time_cli(f, work, model, "local"))}
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, object_store_memory=OBJECT_STORE, logging_level="ERROR")
    out["ray_init_s"] = round(time.perf_counter() - t0, 2)
    try:
        for workers, threads in ((1, cores), (cores, 1)):
            extra = [*model, "--workers", str(workers), "--threads-per-worker", str(threads), "--batch-size", str(args.batch_size)]
            out[f"ray_{workers}x{threads}"] = steady(folders, args.images, args.reps, lambda f: time_cli(f, work, extra, "ray"))
    finally:
        ray.shutdown()
    return out


def multi_node(args: argparse.Namespace, folders: tuple[Path, Path]) -> list[dict[str, Any]]:
    import ray
    from ray.cluster_utils import Cluster

    from fastsam_onnx.distributed import segment_dataset

    rows = []
    for nodes in range(1, args.nodes + 1):
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                c.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
            c.wait_for_nodes()
            ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
            ray.data.DataContext.get_current().enable_progress_bars = False

            def run(folder: Path) -> float:
                ds = segment_dataset(folder, model=args.model, workers=nodes, threads_per_worker=1,
                                     batch_size=args.batch_size, spread=True)
                seen: set[str] = set()
                t = _quiet(lambda: seen.update(r["node_id"] for r in ds.iter_rows()))
                used.append(len(seen))
                return t

            used: list[int] = []
            r = steady(folders, args.images, args.reps, run)
            rows.append({"nodes": nodes, "workers": nodes, "nodes_with_rows": max(used), **r})
        finally:
            ray.shutdown()
            c.shutdown()
    base = rows[0]["images_per_s"]
    for r in rows:
        r["speedup"] = round(r["images_per_s"] / base, 2) if base and r["images_per_s"] else None
    return rows


def markdown(r: dict[str, Any]) -> str:
    m = r["one_machine"]
    cli = m["cli"]["images_per_s"]
    lines = [f"Machine: {r['machine']}; {r['images']} / {2 * r['images']} images, model {r['model']}, medians of {r['reps']} runs.", "",
             "| run | images/s (steady) | vs CLI | fixed cost per job, s |", "|---|---:|---:|---:|"]
    for key, name in [("cli", "CLI folder mode (1 process)")] + [(k, f"Ray, {k[4:].replace('x', ' worker(s) x ')} thread(s)")
                                                             for k in m if k.startswith("ray_") and k != "ray_init_s"]:
        v = m[key]
        ratio = f"{v['images_per_s'] / cli:.2f}x" if cli and v["images_per_s"] else "n/a"
        lines.append(f"| {name} | {v['images_per_s']} | {ratio} | {v['fixed_s']} |")
    lines += ["", f"Ray start-up (`ray.init`, local instance): {m['ray_init_s']} s, once per command.", "",
              "| nodes (1 CPU each) | workers | nodes with rows | images/s | speedup |", "|---:|---:|---:|---:|---:|"]
    for row in r["multi_node"]:
        lines.append(f"| {row['nodes']} | {row['workers']} | {row['nodes_with_rows']} | {row['images_per_s']} | {row['speedup']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from fastsam_onnx.benchmarks.machine import machine_info, machine_line

    p = argparse.ArgumentParser(prog="python -m fastsam_onnx.benchmarks.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=48, help="N: runs on N and 2N images (default 48)")
    p.add_argument("--reps", type=int, default=3, help="runs per configuration, medians (default 3)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--nodes", type=int, default=2, help="largest cluster of the scaling table (default 2)")
    p.add_argument("--model", default=None, help="bundle directory (default: the shipped demo model)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    args = p.parse_args(argv)
    import ray.data  # noqa: F401  (the [ray] extra: fail here, before any image is written)

    with tempfile.TemporaryDirectory(prefix="fastsam-dist-bench.") as tmp:
        work = Path(tmp)
        folders = (make_images(work / "n", args.images), make_images(work / "2n", 2 * args.images))
        report: dict[str, Any] = {"machine_info": machine_info(), "images": args.images, "reps": args.reps,
                                  "model": args.model or "demo (512 static)", "batch_size": args.batch_size}
        report["machine"] = machine_line(report["machine_info"])
        report["one_machine"] = one_machine(args, folders, work)
        report["multi_node"] = multi_node(args, folders)
        report["machine_info"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

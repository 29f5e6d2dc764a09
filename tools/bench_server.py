"""Benchmark of ``fastsam-onnx serve`` against the in-process runtime, in one run on one machine.

* ``/v1/segment`` latency (client wall time, multipart upload, JSON with COCO RLE back) vs the in-process
  ``FastSAM.segment`` alone and ``segment`` + ``to_json`` (what the server also does); every request uses a
  different ``conf`` (4e-7 apart) so the server's result cache never answers it;
* ``/v1/prompt`` box and point on a cached image (p50, p90);
* text prompts on a cached image: the first text (CLIP encodes the crops) vs a second, different text (only
  the text tower), each on a freshly segmented image (``--text-reps``), with the ViT-B/32-shaped CLIP;
* throughput (requests/s) of ``/v1/segment`` with 1, 2 and 4 concurrent clients (``--concurrency`` workers).

Default model: the FastSAM-s-shaped test-made bundle at 1024 (static) and the ViT-B/32-shaped CLIP, made by
``tools/bench_models.py`` under ``--work``; ``--demo`` uses the shipped demo model instead.
The server runs as a child process on 127.0.0.1 (a free port); timings are medians over ``--reps``.

    python tools/bench_server.py [--demo] [--reps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("YOLO_OFFLINE", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(fn: Callable[[], Any], reps: int) -> list[float]:
    """Wall times of ``reps`` calls of ``fn``, ms, no warm-up (:func:`fastsam_onnx.benchmarks.timing.time_calls`)."""
    from fastsam_onnx.benchmarks.timing import time_calls

    return time_calls(fn, reps, warmup=0)


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 2), "p90": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 2), "n": len(xs)}


def _models(args: argparse.Namespace) -> tuple[str | None, str | None, Path]:
    from fastsam_onnx.benchmarks.cases import ultralytics_asset

    image = Path(args.image) if args.image else (ultralytics_asset("bus.jpg") or None)
    if args.demo:
        from fastsam_onnx.models import demo_bundle

        return None, None, image or demo_bundle() / "example.jpg"
    if args.model:
        return args.model, args.clip, image
    from bench_models import Models  # tools/, beside this script

    models = Models(args.work, log=lambda t: print(t, file=sys.stderr, flush=True))
    bundle = models.bundle("s", 1024, "fp32")
    clip, _ = models.clip()
    return str(bundle), (str(clip) if clip else None), image


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from fastsam_onnx import FastSAM
    from fastsam_onnx.benchmarks.machine import machine_info, machine_line

    model_path, clip_path, image = _models(args)
    data = Path(image).read_bytes()
    model = FastSAM(model_path, clip=clip_path)
    ref = model.segment(str(image))
    out: dict[str, Any] = {"model": model_path or "demo", "clip": clip_path or "clip-demo", "image": Path(image).name,
                           "instances": len(ref), "reps": args.reps, "text_reps": args.text_reps}
    port = _free_port()
    cmd = [sys.executable, "-m", "fastsam_onnx", "serve", "--port", str(port), "-q", "--concurrency", str(args.concurrency),
           "--queue", "64", "--cache-mb", "1024"]
    if model_path:
        cmd += ["--model", model_path]
    if clip_path:
        cmd += ["--clip", clip_path]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read())
            time.sleep(0.2)
        counter = iter(range(10**9))

        def post_segment(c: httpx.Client) -> dict[str, Any]:
            r = c.post("/v1/segment", files={"image": (Path(image).name, data)}, data={"conf": f"{0.4 + 4e-7 * next(counter):.7f}"})
            r.raise_for_status()
            return r.json()

        with httpx.Client(base_url=url, timeout=300) as c:
            post_segment(c)  # warm-up
            seg, seg_json, server_seg = [], [], []
            for _ in range(args.reps):  # interleaved, so a busy machine slows all three alike
                seg += _ms(lambda: model.segment(str(image)), 1)
                seg_json += _ms(lambda: model.segment(str(image)).to_json(), 1)  # the JSON the server also makes
                server_seg += _ms(lambda: post_segment(c), 1)
            paired = [b / a - 1 for a, b in zip(seg_json, server_seg)]
            image_id = post_segment(c)["image_id"]
            h, w = ref.orig_shape
            box = {"image_id": image_id, "boxes": [[w // 4, h // 4, 3 * w // 4, 3 * h // 4]]}
            point = {"image_id": image_id, "points": [[w // 2, h // 2]]}
            prompt_box = _ms(lambda: c.post("/v1/prompt", json=box).raise_for_status(), 5 * args.reps)
            prompt_point = _ms(lambda: c.post("/v1/prompt", json=point).raise_for_status(), 5 * args.reps)
            first, second = [], []
            for i in range(args.text_reps):
                iid = post_segment(c)["image_id"]
                first += _ms(lambda: c.post("/v1/prompt", json={"image_id": iid, "texts": [f"a photo of a bus {i}"]}).raise_for_status(), 1)
                second += _ms(lambda: c.post("/v1/prompt", json={"image_id": iid, "texts": [f"a person walking {i}"]}).raise_for_status(), 1)
        throughput = {}
        for clients in (1, 2, 4):
            n_each = max(2, args.reps // clients * 2)

            def worker() -> None:
                with httpx.Client(base_url=url, timeout=300) as c:
                    for _ in range(n_each):
                        post_segment(c)

            threads = [threading.Thread(target=worker) for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            throughput[str(clients)] = round(clients * n_each / (time.perf_counter() - t0), 2)
        info = httpx.get(url + "/v1/info").json()
    finally:
        proc.terminate()
        proc.wait(60)
    m = machine_info()
    m["providers_used"] = model.providers
    s, sj, srv = _stats(seg), _stats(seg_json), _stats(server_seg)
    out.update({
        "machine": machine_line(m), "load_average": m.get("load_average"), "server_concurrency": args.concurrency,
        "in_process_segment_ms": s, "in_process_segment_json_ms": sj, "server_segment_ms": srv,
        "server_overhead_vs_segment": round(srv["p50"] / s["p50"] - 1, 3),
        "server_overhead_vs_segment_json": round(srv["p50"] / sj["p50"] - 1, 3),
        "server_overhead_vs_segment_json_paired_median": round(statistics.median(paired), 3),
        "prompt_box_ms": _stats(prompt_box), "prompt_point_ms": _stats(prompt_point),
        "text_first_ms": _stats(first), "text_second_ms": _stats(second),
        "text_second_speedup": round(statistics.median(first) / statistics.median(second), 1),
        "throughput_rps": throughput, "server_cache": info["cache"],
    })
    return out


def markdown(r: dict[str, Any]) -> str:
    """The README table of one run."""
    pct = lambda v: f"{v * 100:+.0f} %"  # noqa: E731
    return "\n".join([
        f"Model `{Path(r['model']).name}` ({r['instances']} instances on {r['image']}), CLIP `{Path(r['clip']).name}`; "
        f"{r['reps']} reps, server `--concurrency {r['server_concurrency']}`; {r['machine']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in (r.get('load_average') or []))}.",
        "",
        "| measure | p50 | p90 |",
        "|---|---|---|",
        f"| in-process `FastSAM.segment` | {r['in_process_segment_ms']['p50']} ms | {r['in_process_segment_ms']['p90']} ms |",
        f"| in-process `segment` + `to_json` | {r['in_process_segment_json_ms']['p50']} ms | {r['in_process_segment_json_ms']['p90']} ms |",
        f"| server `POST /v1/segment` (upload → JSON) | {r['server_segment_ms']['p50']} ms | {r['server_segment_ms']['p90']} ms |",
        f"| `POST /v1/prompt` box, cached image | {r['prompt_box_ms']['p50']} ms | {r['prompt_box_ms']['p90']} ms |",
        f"| `POST /v1/prompt` point, cached image | {r['prompt_point_ms']['p50']} ms | {r['prompt_point_ms']['p90']} ms |",
        f"| first text prompt on a cached image | {r['text_first_ms']['p50']} ms | {r['text_first_ms']['p90']} ms |",
        f"| second (different) text on it | {r['text_second_ms']['p50']} ms | {r['text_second_ms']['p90']} ms |",
        "",
        f"Server overhead (median): {pct(r['server_overhead_vs_segment'])} vs `segment` alone, "
        f"{pct(r['server_overhead_vs_segment_json'])} vs `segment` + `to_json` (median of the per-rep ratios: "
        f"{pct(r['server_overhead_vs_segment_json_paired_median'])}). Second text prompt: "
        f"{r['text_second_speedup']}x faster than the first. Throughput of `/v1/segment`: "
        + ", ".join(f"{k} client{'s' if k != '1' else ''} {v} req/s" for k, v in r["throughput_rps"].items()) + ".",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="store_true", help="the shipped demo model and CLIP (fast; not the goal setting)")
    ap.add_argument("--model", help="a FastSAM bundle (default: the FastSAM-s-shaped test bundle at 1024)")
    ap.add_argument("--clip", help="a CLIP bundle (default: the ViT-B/32-shaped test bundle)")
    ap.add_argument("--image", help="image file (default: ultralytics' bus.jpg)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--text-reps", type=int, default=3, help="images for the first/second text timing (each first text encodes every crop)")
    ap.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency (default 2)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("FASTSAM_BENCH_WORK", Path(tempfile.gettempdir()) / "fastsam-onnx-bench")))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    r = run(args)
    if args.json:
        from fastsam_onnx.fileio import atomic_write_json

        atomic_write_json(args.json, r)
    print(json.dumps(r, indent=1))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The 12-megapixel case (:mod:`fastsam_onnx.benchmarks.large_photo`): every output against ``segment``, in one run.

Cases: ``s``: the FastSAM-s-shaped test-made bundle (``tools/bench_models.py``, dynamic graph) at imgsz 1024,
retina masks, conf 0.25 (its untrained weights then give 150-250 ragged instances: the worst case for every
output); ``demo``: the shipped demo model (imgsz 512, its own conf 0.4) on the same photograph. Writes
``benchmarks/results/large_photo.json`` and ``.md`` (``--out``).

    python tools/bench_large_photo.py [--reps 7] [--cases s,demo] [--no-server] [--no-memory]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from bench_models import ROOT, Models  # noqa: E402  (tools/, beside this script)
from fastsam_onnx.benchmarks.cases import ultralytics_asset  # noqa: E402
from fastsam_onnx.benchmarks.large_photo import (  # noqa: E402
    judge, make_photo, markdown, peak_memory, server_timings, time_outputs,
)
from fastsam_onnx.benchmarks.machine import machine_info, machine_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("FASTSAM_BENCH_WORK", Path(tempfile.gettempdir()) / "fastsam-onnx-bench")))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--cases", default="s,demo")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    from fastsam_onnx import FastSAM
    from fastsam_onnx.models import demo_bundle

    import cv2

    args.work.mkdir(parents=True, exist_ok=True)
    photo = make_photo(ultralytics_asset("bus.jpg"), ultralytics_asset("zidane.jpg"))
    photo_path = args.work / "photo-4032x3024.jpg"
    cv2.imwrite(str(photo_path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    photo = cv2.imread(str(photo_path))  # what a user's decoded JPEG holds
    settings = {"s": {"imgsz": 1024, "conf": 0.25, "retina_masks": True}, "demo": {"retina_masks": True}}
    report = {"date": datetime.date.today().isoformat(), "reps": args.reps, "machine": machine_info(), "cases": []}
    report["machine_line"] = machine_line(report["machine"])
    for name in args.cases.split(","):
        bundle = Models(args.work).bundle("s", 1024, "fp32-dyn") if name == "s" else demo_bundle()
        kwargs = settings[name]
        print(f"{name}: {bundle}", file=sys.stderr)
        case = {"name": f"{'FastSAM-s-shaped test weights, imgsz 1024' if name == 's' else 'demo model'}, retina",
                "model": str(bundle), "settings": kwargs}
        case["outputs"] = time_outputs(FastSAM(bundle), photo, args.reps, **kwargs)
        if not args.no_memory:
            case["memory"] = peak_memory(str(bundle), str(photo_path), kwargs)
        if not args.no_server:
            case["server"] = server_timings(str(bundle), str(photo_path), args.reps, kwargs)
        case["verdicts"] = judge(case)
        report["cases"].append(case)
        print(markdown({**report, "cases": [case]}), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "large_photo.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "large_photo.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fastsam-onnx bench``: time our pipeline stage by stage (and, with --reference, ultralytics in PyTorch).

Each side runs in a child process of its own (its peak memory is its own); the reference needs the [export] extra.
Prints the Markdown report; --out DIR also writes results.json, results.md and PNG plots there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the runtime (and the PyTorch reference)", description=__doc__)
    p.add_argument("--model", help="bundle directory or .onnx file (default: the shipped demo model)")
    p.add_argument("--image", type=Path, help="image file (default: ultralytics' bus.jpg if installed, else the demo example)")
    p.add_argument("--imgsz", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    p.add_argument("--max-det", type=int, default=300, help="maximum number of instances (default 300)")
    p.add_argument("--reps", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--retina", action=argparse.BooleanOptionalAction, default=True, help="retina masks (default: on)")
    p.add_argument("--reference", type=Path, metavar="CHECKPOINT.pt",
                   help="also time ultralytics FastSAM in PyTorch with this checkpoint (needs the [export] extra)")
    p.add_argument("--clip", help="CLIP bundle for the text prompt (default: the shipped demo CLIP, if present)")
    p.add_argument("--reference-clip", type=Path, metavar="PATH", help="CLIP checkpoint for the reference's text prompt")
    p.add_argument("--text", default=None, help="text prompt (default: 'a photo of a bus')")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of both engines (default: the usable cores; 0: each library's own choice — "
                        "ultralytics picks cores - 1)")
    p.add_argument("--no-prompts", action="store_true", help="skip the prompt timings")
    p.add_argument("--profile", action="store_true", help="add a cProfile of segment (top functions by own time)")
    p.add_argument("--cold-reps", type=int, default=3, help="fresh processes for the cold start (0: skip; default 3)")
    p.add_argument("--mem-limit", type=float, default=None, metavar="GB",
                   help="kill a child whose resident memory exceeds this (default: 80%% of the available memory)")
    p.add_argument("--out", type=Path, help="write results.json, results.md and PNG plots to this directory")
    p.set_defaults(run=run)


def _default_image() -> Path:
    from ..bench import ultralytics_asset
    from ..models import example_image

    return ultralytics_asset("bus.jpg") or example_image()


_T0 = time.perf_counter()


def _log(text: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f} s] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from .. import bench
    from ..image import read_image
    from ..manifest import resolve_fastsam
    from ..model import default_model
    from . import UsageError

    global _T0
    _T0 = time.perf_counter()
    if args.reps < 1 or args.warmup < 0:
        raise UsageError("--reps must be >= 1 and --warmup >= 0")
    model = Path(args.model) if args.model else default_model()
    _, manifest = resolve_fastsam(model)
    image = args.image or _default_image()
    shape = read_image(image).shape[:2]
    imgsz = args.imgsz
    if imgsz is None:
        size = manifest.get("imgsz", 1024)
        imgsz = int(size[0] if isinstance(size, list) else size)
    clip = args.clip
    if clip is None and not args.no_prompts:
        from ..models import demo_clip_bundle

        clip = str(demo_clip_bundle()) if (demo_clip_bundle() / "manifest.json").is_file() else None
    if args.reference is not None:
        missing = bench.reference_available()
        if missing:
            raise UsageError(missing)
        if not args.reference.is_file():
            raise UsageError(f"reference checkpoint not found: {args.reference}")
    avail = bench.available_memory()
    mem_limit = args.mem_limit * 1e9 if args.mem_limit else (0.8 * avail if avail else None)

    threads = bench.usable_cores() if args.threads is None else (args.threads or None)
    prompts = None if args.no_prompts else bench.default_prompts(shape, args.text or bench.DEFAULT_TEXT)
    name = f"{model.name if model.is_dir() else model.stem}-{imgsz}-{Path(image).stem}-{'retina' if args.retina else 'letterbox'}"
    case = bench.Case(
        name=name, model=str(model), image=str(image), imgsz=imgsz, retina=args.retina, reps=args.reps,
        warmup=args.warmup, conf=args.conf, max_det=args.max_det, prompts=prompts, clip=clip, profile=args.profile,
        threads=threads,
        labels={"model": str(model), "imgsz": imgsz, "retina": args.retina, "image": Path(image).name,
                "precision": manifest.get("precision", "fp32")},
    )
    report = bench.new_report({"reps": args.reps, "warmup": args.warmup, "conf": case.conf, "iou": case.iou,
                               "max_det": case.max_det, "threads": threads or "library defaults"})
    _log(f"ours: {name} ({args.reps} runs after {args.warmup} warm-up)")
    ours = bench.run_case(case, mem_limit=mem_limit)
    entry = {"name": name, "labels": case.labels, "ours": ours, "reference": None}
    report["cases"].append(entry)
    if args.reference is not None:
        ref_case = bench.Case(**{**case.to_dict(), "model": str(args.reference),
                                 "clip": str(args.reference_clip) if args.reference_clip else None, "profile": False})
        _log(f"reference: ultralytics FastSAM({args.reference.name}) in PyTorch")
        ref = bench.run_case(ref_case, reference=True, mem_limit=mem_limit)
        report["references"][name] = ref
        entry["reference"] = name
        if not ref.get("error"):
            report["reference_versions"] = {k: ref.get(k) for k in ("torch", "ultralytics", "torch_threads", "device")}
    if args.cold_reps > 0:
        _log("cold start")
        report["cold_start"] = {f"ours: {model.name}": bench.cold_start(model, reps=args.cold_reps)}
        if args.reference is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "cold.json"
                report["cold_start"][f"reference: {args.reference.name}"] = bench.run_child(
                    ["-m", "fastsam_onnx.export.bench_reference", "cold", str(args.reference), str(out), str(args.cold_reps)],
                    out,
                )
    _log("installed size")
    report["installed_size"] = {"runtime only (fastsam-onnx base requirements)": bench.installed_size("fastsam-onnx")}
    if args.reference is not None:
        report["installed_size"]["reference (ultralytics and its requirements)"] = bench.installed_size("ultralytics")
    report["goals"] = bench.evaluate_goals(report, headline=name)
    report["notes"].append(
        f"goals are defined for {bench.GOAL_SETTING}; this run: {name} (model {model}); int8 and 4512 × 4512 "
        "goals are measured by benchmarks/run_all.py"
    )
    report["load_average_end"] = bench.load_average()
    if args.out:
        paths = bench.write_report(report, args.out)
        _log("wrote " + ", ".join(str(p) for p in paths.values()))
    print(bench.render_markdown(report), end="")
    errors = [d["error"] for d in (ours, report["references"].get(name) or {}) if d.get("error")]
    for e in errors:
        _log(f"failed: {e}")
    return 1 if ours.get("error") else 0

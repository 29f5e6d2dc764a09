"""The full benchmark suite: the torch-free runtime side by side with ultralytics FastSAM in PyTorch.

Cases (:mod:`fastsam_onnx.benchmarks.cases`): FastSAM-s- and FastSAM-x-shaped models (weights made by
``tests/modelmaker.py``, exported with ``export_fastsam``, static graphs and, for the ``-dyn`` variants, dynamic
ones) × imgsz 640 / 1024 × the photographs shipped in ultralytics (bus.jpg, zidane.jpg) × retina / letterboxed
masks × fp32 / fp16 / int8 graphs (where ``export_fastsam`` offers them), plus bus.jpg upscaled to 4512 × 4512
(mask assembly time and memory). The reference runs the fp32 checkpoint itself (PyTorch on the CPU has no
fp16/int8 path), so every variant is compared with it. Prompts (box, point, text with a ViT-B/32-shaped CLIP made
by ``tests/clip_fixtures.py``) are timed on the retina fp32 cases; on the fp32 dynamic-graph cases the text
prompt is timed a second time with the int8 CLIP bundle (``export_clip(int8=True)``).

Writes ``benchmarks/results/results.json``, ``results.md``, ``summary.md`` (the headline figures, dated, with the
machine and this command: the documentation includes it verbatim) and PNG plots (``--out``). Models and bundles are made
once and kept under ``--work`` (default: ``$FASTSAM_BENCH_WORK`` or /tmp/fastsam-onnx-bench). Needs a checkout
of the repository (the test-made models come from tests/) and the [dev] extra.

    python tools/run_benchmarks.py                     # everything (an hour or more on 2 cores)
    python tools/run_benchmarks.py --quick             # s, 640, bus.jpg, fp32, 2 runs: a smoke run
    python tools/run_benchmarks.py --models s --sizes 1024 --images bus.jpg   # the goal setting only
    python tools/run_benchmarks.py --summary           # rewrite results.md and summary.md from results.json

A repository tool (``tools/`` is not installed); ``fastsam-onnx bench`` is the installed command for one case.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("YOLO_OFFLINE", "1")

from bench_models import ROOT, Models  # noqa: E402  (tools/, beside this script)
from fastsam_onnx.benchmarks.cases import (  # noqa: E402
    HEADLINE, HEADLINE_INT8, IMAGES, LARGE, LARGE_CASE, PRECISIONS, SHAPES, TEXTS, Case, default_prompts,
    fixed_notes, plan, ultralytics_asset,
)
from fastsam_onnx.benchmarks.children import (  # noqa: E402
    available_memory, cold_start, reference_available, reference_cold_start, run_case,
)
from fastsam_onnx.benchmarks.figures import evaluate_goals, find_case  # noqa: E402
from fastsam_onnx.benchmarks.machine import (  # noqa: E402
    busy_notes, installed_size, load_average, runtime_extra, usable_cores,
)
from fastsam_onnx.benchmarks.report import render_markdown, summary_markdown  # noqa: E402
from fastsam_onnx.benchmarks.report_files import new_report, write_report  # noqa: E402
from fastsam_onnx.fileio import atomic_write_text  # noqa: E402
from fastsam_onnx.progress import Progress  # noqa: E402

SUMMARY = "summary.md"


def write_summary(report: dict[str, Any], out: Path) -> Path:
    """``out/summary.md``: the headline figures of ``report`` (:func:`summary_markdown`)."""
    path = out / SUMMARY
    atomic_write_text(path, summary_markdown(report))
    return path


def rewrite(out: Path) -> int:
    """--summary: results.md and summary.md again from ``out/results.json`` (nothing measured; a complete
    suite's goals are judged again by :func:`evaluate_goals`)."""
    report = _load_previous(out / "results.json")
    if report is None:
        print(f"tools/run_benchmarks.py --summary: no readable {out / 'results.json'}", file=sys.stderr)
        return 2
    if report.get("complete") and find_case(report, HEADLINE):  # a suite's report: its goals by today's rules
        report["goals"] = evaluate_goals(report, headline=HEADLINE, int8=HEADLINE_INT8, large=LARGE_CASE)
        atomic_write_text(out / "results.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "results.md", render_markdown(report))
    print(write_summary(report, out))
    return 0


def command(argv: list[str]) -> str:
    """The command line as the report records it: this script and its options, less --out and --work (paths of
    this machine)."""
    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--work"):
            skip = True
        elif not a.startswith(("--out=", "--work=")):
            keep.append(a)
    return shlex.join(["python", "tools/run_benchmarks.py", *keep])


def _load_previous(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("FASTSAM_BENCH_WORK", Path(tempfile.gettempdir()) / "fastsam-onnx-bench")))
    ap.add_argument("--models", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[640, 1024])
    ap.add_argument("--images", nargs="+", choices=list(IMAGES), default=list(IMAGES))
    ap.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS))
    ap.add_argument("--retina", nargs="+", type=lambda s: s.lower() in ("1", "true", "yes", "retina"),
                    default=[True, False], metavar="{retina,letterbox}", help="mask modes (default: both)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--large-reps", type=int, default=3, help="timed runs of the 4512 × 4512 case (default 3)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads of both engines (default: the usable cores; 0: each library's own choice)")
    ap.add_argument("--mem-limit", type=float, default=None, metavar="GB",
                    help="kill a child above this resident memory (default: 60%% of the available memory)")
    ap.add_argument("--cold-reps", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--no-prompts", action="store_true")
    ap.add_argument("--no-text", action="store_true", help="box and point prompts only")
    ap.add_argument("--reexport", action="store_true", help="export the bundles again (after changes to the export stage)")
    ap.add_argument("--resume", action="store_true", help="keep the finished cases of an earlier results.json in --out")
    ap.add_argument("--quick", action="store_true", help="smoke run: s, 640, bus.jpg, retina, fp32, 2 runs, no 4512 case")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or log lines (failures are still shown)")
    ap.add_argument("--summary", action="store_true",
                    help="measure nothing: rewrite results.md and summary.md in --out from its results.json")
    args = ap.parse_args(argv)
    args.command = command(list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        args.models, args.sizes, args.images, args.precisions, args.retina = ["s"], [640], ["bus.jpg"], ["fp32"], [True]
        args.reps, args.warmup, args.no_large, args.cold_reps = 2, 1, True, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summary:
        return rewrite(args.out)
    missing = reference_available()
    if missing:
        print(f"tools/run_benchmarks.py needs the [export] extra (test-made models, the reference): {missing}", file=sys.stderr)
        return 2
    items = plan(args)
    total = sum((0 if args.no_reference else 1) + (1 if it["resize"] else len(args.precisions)) for it in items)
    # a bar on a terminal; otherwise (logs, CI) the timestamped lines alone
    progress = Progress(total, "bench suite", enabled=not args.quiet and sys.stderr.isatty(), unit="run")

    def log(text: str) -> None:
        if not args.quiet:
            progress.write(f"[{time.strftime('%H:%M:%S')}] {text}")

    def failed(text: str) -> None:  # shown even with --quiet
        progress.write(f"[{time.strftime('%H:%M:%S')}] {text}")

    try:
        return _run(args, items, progress, log, failed)
    finally:
        progress.close()


def _run(args: argparse.Namespace, items: list[dict[str, Any]], progress: Progress,
         log: Callable[[str], None], failed: Callable[[str], None]) -> int:
    args.work.mkdir(parents=True, exist_ok=True)
    la = load_average()
    if la and la[0] > 0.5 * usable_cores():
        log(f"warning: load average {la[0]:.1f} on {usable_cores()} cores: the machine is busy, figures will not be final")
    avail = available_memory()
    mem_limit = args.mem_limit * 1e9 if args.mem_limit else (0.6 * avail if avail else None)
    threads = usable_cores() if args.threads is None else (args.threads or None)

    models = Models(args.work, reexport=args.reexport, log=log)
    clip_bundle = clip_ckpt = clip_int8 = None
    if not args.no_prompts and not args.no_text:
        clip_bundle, clip_ckpt = models.clip()
        if "fp32-dyn" in args.precisions:
            clip_int8, _ = models.clip(int8=True)

    report = new_report({
        "reps": args.reps, "warmup": args.warmup, "large_reps": args.large_reps, "conf": 0.4, "iou": 0.9,
        "max_det": 300, "threads": threads or "library defaults", "models": args.models, "sizes": args.sizes,
        "images": args.images, "precisions": args.precisions, "mem_limit_bytes": mem_limit, "command": args.command,
    })
    report["complete"] = False
    previous = _load_previous(args.out / "results.json") if args.resume else None
    done = {c["name"]: c for c in (previous or {}).get("cases", []) if not (c.get("ours") or {}).get("error")}
    done_refs = {k: v for k, v in (previous or {}).get("references", {}).items() if not v.get("error")}

    def notes() -> list[str]:
        return fixed_notes(report) + busy_notes(report) + models.notes

    def save() -> None:
        report["notes"] = notes()
        report["load_average_end"] = load_average()
        write_report(report, args.out, plots=False)
        write_summary(report, args.out)

    def timed(what: str, reps: int, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        log(f"{what} ({reps} runs)")
        progress.update(0, status=what)
        t0 = time.perf_counter()
        r = call()
        status = f"failed: {r['error']}" if r.get("error") else f"{r['instances']} instances" if "instances" in r else "done"
        (failed if r.get("error") else log)(f"  {what}: {status} in {time.perf_counter() - t0:.0f} s")
        return r

    import cv2

    for item in items:
        group, shape, imgsz, image = item["group"], item["shape"], item["imgsz"], item["image"]
        image_path = ultralytics_asset(image)
        shape_hw = (LARGE[1], LARGE[0]) if item["resize"] else cv2.imread(str(image_path)).shape[:2]
        prompts = default_prompts(shape_hw, TEXTS[image]) if item["prompts"] else None
        if prompts and not clip_bundle:
            prompts.pop("texts")
        reps, warmup = (args.large_reps, 1) if item["resize"] else (args.reps, args.warmup)
        large = item["resize"] is not None
        precisions = ["fp32"] if large else args.precisions
        common = dict(image=str(image_path), imgsz=imgsz, retina=item["retina"], reps=reps, warmup=warmup,
                      resize=item["resize"], threads=threads)
        ref_key = f"ref:{group}"
        if not args.no_reference:
            if ref_key in done_refs:
                report["references"][ref_key] = done_refs[ref_key]
            else:
                ref_case = Case(name=ref_key, model=str(models.checkpoint(shape)), prompts=prompts,
                                clip=str(clip_ckpt) if clip_ckpt else None, **common)
                report["references"][ref_key] = r = timed(
                    f"reference {group}", reps, lambda: run_case(ref_case, reference=True, mem_limit=mem_limit))
                if not r.get("error"):
                    report["reference_versions"] = {k: r.get(k) for k in ("torch", "ultralytics", "torch_threads", "device")}
            progress.update(1)
        for precision in precisions:
            name = f"{group}-{precision}"
            if name in done:
                report["cases"].append(done[name])
                progress.update(1)
                continue
            bundle = models.bundle(shape, imgsz, precision)
            if bundle is None:
                progress.update(1)
                continue
            # prompts on the fp32 graphs; the dynamic one (same input as the reference) also with the int8 CLIP
            case = Case(
                name=name, model=str(bundle), prompts=prompts if precision in ("fp32", "fp32-dyn") else None,
                clip=str(clip_bundle) if clip_bundle and precision in ("fp32", "fp32-dyn") else None,
                clip_int8=str(clip_int8) if clip_int8 and precision == "fp32-dyn" else None,
                profile=name in (HEADLINE, HEADLINE_INT8, LARGE_CASE), **common,
                labels={"shape": shape, "imgsz": imgsz, "image": image, "retina": item["retina"], "precision": precision,
                        "large": large},
            )
            r = timed(f"ours {name}", reps, lambda: run_case(case, mem_limit=mem_limit))
            report["cases"].append({"name": name, "labels": case.labels, "ours": r,
                                    "reference": None if args.no_reference else ref_key})
            save()
            progress.update(1)

    if args.cold_reps > 0:
        log("cold start")
        progress.update(0, status="cold start")
        report["cold_start"] = {}
        for shape in args.models:
            imgsz = max(args.sizes)
            b = models.bundle(shape, imgsz, "fp32")
            if b is not None:
                report["cold_start"][f"ours: FastSAM-{shape} shape, {imgsz}, fp32"] = cold_start(b, reps=args.cold_reps)
            if not args.no_reference:
                report["cold_start"][f"reference: FastSAM-{shape} shape checkpoint"] = reference_cold_start(
                    models.checkpoint(shape), reps=args.cold_reps)
    log("installed size")
    progress.update(0, status="installed size")
    extra = runtime_extra()  # ONNX Runtime is an extra: the base requirements alone do not run
    report["installed_size"] = {f"runtime only (fastsam-onnx[{extra}]: base requirements and ONNX Runtime)":
                                installed_size("fastsam-onnx", (extra,))}
    if not args.no_reference:
        report["installed_size"]["reference (ultralytics and its requirements)"] = installed_size("ultralytics")
    report["goals"] = evaluate_goals(report, headline=HEADLINE, int8=HEADLINE_INT8, large=LARGE_CASE)
    report["complete"] = True
    report["notes"] = notes()
    report["load_average_end"] = load_average()
    paths = write_report(report, args.out)
    paths["summary"] = write_summary(report, args.out)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    progress.close()
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

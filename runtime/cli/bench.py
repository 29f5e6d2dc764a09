"""``fastsam-onnx bench``: time our pipeline stage by stage (and, with --reference, ultralytics in PyTorch).

Each side runs in a child process of its own (its peak memory is its own). Our side needs only the base install;
the reference side (--reference) needs the [export] extra and the PNG plots (--out without --no-plots) need
matplotlib (the [dev] extra). Prints the Markdown report; --out DIR also writes results.json, results.md and the
plots there. Progress goes to stderr: a bar on a terminal, plain lines otherwise, nothing with --quiet.
The measurements live in ``fastsam_onnx.benchmarks`` (imported only when the command runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from ..progress import Progress, clean


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the runtime (and the PyTorch reference)", description=__doc__)
    p.add_argument("--model", help="bundle directory or .onnx file (default: the shipped demo model)")
    p.add_argument("--image", type=Path, help="image file (default: ultralytics' bus.jpg if installed, else the demo example)")
    p.add_argument("--imgsz", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    p.add_argument("--max-det", type=int, default=300, help="maximum number of instances (default 300)")
    p.add_argument("--reps", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 timed runs after 1 warm-up, 1 cold-start process")
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
    p.add_argument("--out", type=Path,
                   help="write results.json, results.md and PNG plots (needs matplotlib, the [dev] extra) to this directory")
    p.add_argument("--no-plots", action="store_true", help="with --out: results.json and results.md only (no matplotlib needed)")
    p.add_argument("--quiet", action="store_true", help="no progress output (the report and failures still print)")
    p.set_defaults(run=run)


def _default_image() -> Path:
    from ..benchmarks.cases import ultralytics_asset
    from ..models import example_image

    return ultralytics_asset("bus.jpg") or example_image()


def _check(args: argparse.Namespace) -> None:
    """Refuse, before any measurement, what this install cannot do: a one-line UsageError each."""
    from ..benchmarks.children import plots_available, reference_available
    from .usage import UsageError

    if args.reps < 1 or args.warmup < 0:
        raise UsageError("--reps must be >= 1 and --warmup >= 0")
    if args.reference is not None:
        missing = reference_available()
        if missing:
            raise UsageError(missing)
        if not args.reference.is_file():
            raise UsageError(f"reference checkpoint not found: {args.reference}")
    if args.out is not None and not args.no_plots:
        missing = plots_available()
        if missing:
            raise UsageError(f"{missing}; --no-plots writes results.json and results.md only")


def _command(args: argparse.Namespace, model: Path, image: Path, imgsz: int) -> str:
    """The run as one ``fastsam-onnx bench`` command line (the report records it): what was measured, with
    the defaults it resolved to (model, image, imgsz) spelled out."""
    opts = ["--model", model.name, "--image", Path(image).name, "--imgsz", str(imgsz), "--reps", str(args.reps),
            "--warmup", str(args.warmup), "--cold-reps", str(args.cold_reps)]
    opts += [] if args.retina else ["--no-retina"]
    opts += ["--no-prompts"] if args.no_prompts else []
    opts += ["--reference", args.reference.name] if args.reference is not None else []
    return " ".join(["fastsam-onnx bench", *opts])


class _Steps:
    """The run's steps: a :class:`~fastsam_onnx.progress.Progress` bar on a terminal (it counts the steps done,
    beside the one running), ``bench [k/N] step`` lines when stderr is not one (logs, CI), nothing with
    ``quiet``; :meth:`write` prints messages in every case."""

    def __init__(self, total: int, quiet: bool):
        self.stream, self.total, self.quiet, self.done = sys.stderr, total, quiet, 0
        tty = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = Progress(total, "bench", unit="step", stream=self.stream) if tty else None

    def run(self, status: str, call: Callable[[], Any]) -> Any:
        """``call()`` as the next step, named ``status``."""
        if self.bar is not None:
            self.bar.update(0, status=status)
        elif not self.quiet:
            print(f"bench [{self.done + 1}/{self.total}] {clean(status)}", file=self.stream, flush=True)
        out = call()
        self.done += 1
        if self.bar is not None:
            self.bar.update(1, status="done" if self.done == self.total else None)
        return out

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(clean(text), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.cases import DEFAULT_TEXT, Case, default_prompts
    from ..benchmarks.children import available_memory, cold_start, reference_cold_start, run_case
    from ..benchmarks.figures import GOAL_SETTING, evaluate_goals
    from ..benchmarks.machine import installed_size, load_average, runtime_extra, usable_cores
    from ..benchmarks.report_files import new_report, write_report
    from ..benchmarks.report import render_markdown
    from ..image import read_image
    from ..zoo import resolve_fastsam
    from ..model import default_model

    if args.quick:
        args.reps, args.warmup, args.cold_reps = 2, 1, min(args.cold_reps, 1)
    _check(args)
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
    avail = available_memory()
    mem_limit = args.mem_limit * 1e9 if args.mem_limit else (0.8 * avail if avail else None)

    threads = usable_cores() if args.threads is None else (args.threads or None)
    prompts = None if args.no_prompts else default_prompts(shape, args.text or DEFAULT_TEXT)
    name = f"{model.name if model.is_dir() else model.stem}-{imgsz}-{Path(image).stem}-{'retina' if args.retina else 'letterbox'}"
    case = Case(
        name=name, model=str(model), image=str(image), imgsz=imgsz, retina=args.retina, reps=args.reps,
        warmup=args.warmup, conf=args.conf, max_det=args.max_det, prompts=prompts, clip=clip, profile=args.profile,
        threads=threads,
        labels={"model": str(model), "imgsz": imgsz, "retina": args.retina, "image": Path(image).name,
                "precision": manifest.get("precision", "fp32")},
    )
    report = new_report({"reps": args.reps, "warmup": args.warmup, "conf": case.conf, "iou": case.iou,
                         "max_det": case.max_det, "threads": threads or "library defaults",
                         "command": _command(args, model, image, imgsz)})
    reference = args.reference is not None
    steps = _Steps(2 + reference + (args.cold_reps > 0), args.quiet)  # ours, [reference], [cold start], sizes
    try:
        ours = steps.run(f"ours: {name} ({args.reps} runs after {args.warmup} warm-up)",
                         lambda: run_case(case, mem_limit=mem_limit))
        entry = {"name": name, "labels": case.labels, "ours": ours, "reference": None}
        report["cases"].append(entry)
        if reference:
            ref_case = Case(**{**case.to_dict(), "model": str(args.reference),
                               "clip": str(args.reference_clip) if args.reference_clip else None, "profile": False})
            ref = steps.run(f"reference: ultralytics FastSAM({args.reference.name}) in PyTorch",
                            lambda: run_case(ref_case, reference=True, mem_limit=mem_limit))
            report["references"][name] = ref
            entry["reference"] = name
            if not ref.get("error"):
                report["reference_versions"] = {k: ref.get(k) for k in ("torch", "ultralytics", "torch_threads", "device")}
        if args.cold_reps > 0:
            def cold() -> dict[str, Any]:
                out = {f"ours: {model.name}": cold_start(model, reps=args.cold_reps)}
                if reference:
                    out[f"reference: {args.reference.name}"] = reference_cold_start(args.reference, reps=args.cold_reps)
                return out

            report["cold_start"] = steps.run("cold start", cold)

        def sizes() -> dict[str, Any]:
            extra = runtime_extra()  # ONNX Runtime is an extra: the base requirements alone do not run
            out = {f"runtime only (fastsam-onnx[{extra}]: base requirements and ONNX Runtime)":
                   installed_size("fastsam-onnx", (extra,))}
            if reference:
                out["reference (ultralytics and its requirements)"] = installed_size("ultralytics")
            return out

        report["installed_size"] = steps.run("installed size", sizes)
    finally:
        steps.close()
    report["goals"] = evaluate_goals(report, headline=name)
    report["notes"].append(
        f"goals are defined for {GOAL_SETTING}; this run: {name} (model {model}); int8 and 4512 × 4512 "
        "goals are measured by tools/run_benchmarks.py (from a checkout of the repository)"
    )
    report["load_average_end"] = load_average()
    if args.out:
        paths = write_report(report, args.out, plots=not args.no_plots)
        if not args.quiet:
            steps.write("wrote " + ", ".join(str(p) for p in paths.values()))
    print(render_markdown(report), end="")
    for d in (ours, report["references"].get(name) or {}):
        if d.get("error"):
            steps.write(f"bench: failed: {d['error']}")
    return 1 if ours.get("error") else 0

"""The full benchmark suite: the torch-free runtime side by side with ultralytics FastSAM in PyTorch.

Cases: FastSAM-s- and FastSAM-x-shaped models (weights made by ``tests/modelmaker.py``, exported with
``export_fastsam``, static graphs) × imgsz 640 / 1024 × the photographs shipped in ultralytics (bus.jpg,
zidane.jpg) × retina / letterboxed masks × fp32 / fp16 / int8 graphs (where ``export_fastsam`` offers them), plus
bus.jpg upscaled to 4512 × 4512 (mask assembly time and memory). The reference runs the fp32 checkpoint itself
(PyTorch on the CPU has no fp16/int8 path), so every variant is compared with it. Prompts (box, point, text with
a ViT-B/32-shaped CLIP made by ``tests/clip_fixtures.py``) are timed on the retina fp32 cases; on the fp32
dynamic-graph cases the text prompt is timed a second time with the int8 CLIP bundle (``export_clip(int8=True)``).

Writes ``benchmarks/results/results.json``, ``results.md`` and PNG plots (``--out``). Models and bundles are made
once and kept under ``--work`` (default: ``$FASTSAM_BENCH_WORK`` or /tmp/fastsam-onnx-bench).

    python benchmarks/run_all.py                       # everything (an hour or more on 2 cores)
    python benchmarks/run_all.py --quick               # s, 640, bus.jpg, fp32, 2 runs: a smoke run
    python benchmarks/run_all.py --models s --sizes 1024 --images bus.jpg   # the goal setting only
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("YOLO_OFFLINE", "1")

import cv2  # noqa: E402

from fastsam_onnx import bench  # noqa: E402

SHAPES = {"s": "yolov8s-seg.yaml", "x": "yolov8x-seg.yaml"}
IMAGES = ("bus.jpg", "zidane.jpg")
TEXTS = {"bus.jpg": "a photo of a bus", "zidane.jpg": "a man wearing a tie"}
PRECISIONS = ("fp32", "fp16", "int8", "fp32-dyn", "int8-dyn")  # -dyn: dynamic graph, same rectangle as the reference
LARGE = (4512, 4512)
#: The goal setting (see ``fastsam_onnx.bench.GOALS``): FastSAM-s shape, 1024, retina, bus.jpg.
HEADLINE = "s-1024-bus-retina-fp32-dyn"  # dynamic graph: the same 1024×768 input as the reference
HEADLINE_INT8 = "s-1024-bus-retina-int8-dyn"
LARGE_CASE = "s-1024-bus4512-retina-fp32"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Models:
    """Test-made checkpoints and their exported bundles, made on first use and kept under ``work``."""

    def __init__(self, work: Path, reexport: bool = False):
        self.work = work
        self.reexport = reexport
        self.exported: set[str] = set()
        self.notes: list[str] = []
        from fastsam_onnx.export.fastsam import export_fastsam

        self.export_fastsam = export_fastsam
        self.params = set(inspect.signature(export_fastsam).parameters)

    def checkpoint(self, shape: str) -> Path:
        path = self.work / f"fastsam-{shape}-test.pt"
        if not path.exists():
            from modelmaker import make_checkpoint

            log(f"making the FastSAM-{shape}-shaped checkpoint ({SHAPES[shape]})")
            make_checkpoint(SHAPES[shape], path, seed=0)
        return path

    def calib_dir(self) -> Path:
        d = self.work / "calib"
        if not d.is_dir():
            d.mkdir(parents=True)
            for name in IMAGES:
                shutil.copyfile(bench.ultralytics_asset(name), d / name)
        return d

    def bundle(self, shape: str, imgsz: int, precision: str) -> Path | None:
        """The bundle (static; dynamic for a ``-dyn`` precision), or None (with a note) when ``export_fastsam``
        cannot make this precision yet."""
        out = self.work / f"fastsam-{shape}-{imgsz}-{precision}"
        dynamic = precision.endswith("-dyn")
        precision = precision.removesuffix("-dyn")
        if (out / "manifest.json").is_file() and (not self.reexport or out.name in self.exported):
            return out
        kwargs: dict[str, Any] = {}
        if precision == "fp16":
            if "half" not in self.params:
                self._skip("fp16 skipped: export_fastsam has no half= option yet")
                return None
            kwargs["half"] = True
        elif precision == "int8":
            if "int8" not in self.params:
                self._skip("int8 skipped: export_fastsam has no int8= option yet")
                return None
            kwargs["int8"] = True
            if "calib" in self.params:
                kwargs["calib"] = self.calib_dir()
        weights = self.checkpoint(shape)
        log(f"exporting {out.name}")
        try:
            self.export_fastsam(weights, out, imgsz=imgsz, dynamic=dynamic, progress=lambda *a: None, **kwargs)
            self.exported.add(out.name)
        except Exception as e:  # an export stage still being written: note it, go on with the rest
            self._skip(f"{out.name} skipped: export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            return None
        return out

    def clip(self, int8: bool = False) -> tuple[Path | None, Path | None]:
        """(CLIP bundle, CLIP checkpoint) of a ViT-B/32-shaped CLIP with test-made weights, or (None, None).
        int8: the bundle with int8 towers (``export_clip(int8=True)``)."""
        ckpt = self.work / "clip-vit-b-32-test.pt"
        out = self.work / ("clip-vit-b-32-test-int8" if int8 else "clip-vit-b-32-test")
        try:
            if not ckpt.exists():
                from clip_fixtures import VIT_B_32, make_clip_checkpoint

                log("making the ViT-B/32-shaped CLIP checkpoint")
                make_clip_checkpoint(ckpt, VIT_B_32, seed=0)
            if not (out / "manifest.json").is_file():
                from fastsam_onnx.export.clip import export_clip

                log(f"exporting the {'int8 ' if int8 else ''}CLIP bundle")
                export_clip(ckpt, out, progress=lambda *a: None, **({"int8": True} if int8 else {}))
        except Exception as e:
            self._skip(f"text prompts skipped: no CLIP ({type(e).__name__}: {e})")
            return None, None
        return out, ckpt

    def _skip(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            log(note)


def fixed_notes() -> list[str]:
    """The notes every report carries (how to read its figures)."""
    return [
        "weights: test-made (tests/modelmaker.py, FastSAM-s/-x architectures, dozens of instances), not the "
        "released FastSAM weights; CLIP: ViT-B/32-shaped with test-made weights. Speed depends on the "
        "architecture, not on the weights' values, except through the instance count.",
        "rows without -dyn run static graphs (square letterbox to imgsz × imgsz) while the reference's PyTorch "
        "predictor letterboxes to the minimal rectangle (e.g. 1024 × 768 for bus.jpg) and computes fewer pixels; "
        "-dyn rows run dynamic graphs on the reference's own rectangle (the like-for-like comparison): see the input column.",
        "int8 graphs of these test-made (untrained) weights keep fewer of the fp32 decisions than trained weights "
        "do (quantization error compounds through random layers: 66 instances instead of 44 on bus.jpg at 1024), "
        "so their post-processing handles more masks than the reference's; compare their session.run columns. "
        "On the trained demo model int8 keeps mean mask IoU 0.977 against fp32.",
        "the reference runs the fp32 checkpoint for every variant: ratios of the fp16/int8 rows compare with it.",
        "every case runs in a fresh child process; peak RSS is that process's high-water mark (VmHWM: model, runtime and image "
        "included). The int8 graphs are calibrated on bus.jpg and zidane.jpg themselves.",
    ]


def busy_notes(report: dict[str, Any]) -> list[str]:
    """A note when other work shared the machine: a 1-min load average above half the cores before the run,
    or above the cores + 0.5 at its end (the run itself keeps up to one thread per core busy)."""
    cores = report["machine"].get("usable_cores") or 1
    start, end = report["machine"].get("load_average"), report.get("load_average_end")
    if not (start and start[0] > 0.5 * cores) and not (end and end[0] > cores + 0.5):
        return []
    worst = max(la[0] for la in (start, end) if la)
    return [f"the machine was busy during the run (1-min load average up to {worst:.1f} on {cores} cores): these "
            "figures are not final. (PyTorch's OpenMP threads busy-wait, so the reference slows down far more than "
            "onnxruntime when other processes hold the cores.)"]


def plan(args) -> list[dict[str, Any]]:
    """The cases to run, in order: per (shape, size, image, masks) the reference, then our variants."""
    items = []
    for shape in args.models:
        for imgsz in args.sizes:
            for image in args.images:
                for retina in args.retina:
                    group = f"{shape}-{imgsz}-{Path(image).stem}-{'retina' if retina else 'letterbox'}"
                    items.append({"group": group, "shape": shape, "imgsz": imgsz, "image": image, "retina": retina,
                                  "resize": None, "prompts": retina and not args.no_prompts})
    if not args.no_large:
        items.append({"group": "s-1024-bus4512-retina", "shape": "s", "imgsz": 1024, "image": "bus.jpg", "retina": True,
                      "resize": LARGE, "prompts": False})
    return items


def _load_previous(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.sizes, args.images, args.precisions, args.retina = ["s"], [640], ["bus.jpg"], ["fp32"], [True]
        args.reps, args.warmup, args.no_large, args.cold_reps = 2, 1, True, 1
    missing = bench.reference_available()
    if missing:
        print(f"run_all.py needs the [export] extra (test-made models, the reference): {missing}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    la = bench.load_average()
    if la and la[0] > 0.5 * bench.usable_cores():
        log(f"warning: load average {la[0]:.1f} on {bench.usable_cores()} cores: the machine is busy, figures will not be final")
    avail = bench.available_memory()
    mem_limit = args.mem_limit * 1e9 if args.mem_limit else (0.6 * avail if avail else None)
    threads = bench.usable_cores() if args.threads is None else (args.threads or None)

    models = Models(args.work, reexport=args.reexport)
    clip_bundle = clip_ckpt = clip_int8 = None
    if not args.no_prompts and not args.no_text:
        clip_bundle, clip_ckpt = models.clip()
        if "fp32-dyn" in args.precisions:
            clip_int8, _ = models.clip(int8=True)

    report = bench.new_report({
        "reps": args.reps, "warmup": args.warmup, "large_reps": args.large_reps, "conf": 0.4, "iou": 0.9,
        "max_det": 300, "threads": threads or "library defaults", "models": args.models, "sizes": args.sizes,
        "images": args.images, "precisions": args.precisions, "mem_limit_bytes": mem_limit,
    })
    report["complete"] = False
    previous = _load_previous(args.out / "results.json") if args.resume else None
    done = {c["name"]: c for c in (previous or {}).get("cases", []) if not (c.get("ours") or {}).get("error")}
    done_refs = {k: v for k, v in (previous or {}).get("references", {}).items() if not v.get("error")}

    def save() -> None:
        report["notes"] = notes()
        report["load_average_end"] = bench.load_average()
        bench.write_report(report, args.out, plots=False)

    def notes() -> list[str]:
        return fixed_notes() + busy() + models.notes

    def busy() -> list[str]:
        return busy_notes(report)

    for item in plan(args):
        group, shape, imgsz, image = item["group"], item["shape"], item["imgsz"], item["image"]
        image_path = bench.ultralytics_asset(image)
        shape_hw = (LARGE[1], LARGE[0]) if item["resize"] else cv2.imread(str(image_path)).shape[:2]
        prompts = bench.default_prompts(shape_hw, TEXTS[image]) if item["prompts"] else None
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
                ref_case = bench.Case(name=ref_key, model=str(models.checkpoint(shape)), prompts=prompts,
                                      clip=str(clip_ckpt) if clip_ckpt else None, **common)
                log(f"reference {group} ({reps} runs)")
                t0 = time.perf_counter()
                report["references"][ref_key] = r = bench.run_case(ref_case, reference=True, mem_limit=mem_limit)
                log(f"  {'failed: ' + r['error'] if r.get('error') else 'done'} in {time.perf_counter() - t0:.0f} s")
                if not r.get("error"):
                    report["reference_versions"] = {k: r.get(k) for k in ("torch", "ultralytics", "torch_threads", "device")}
        for precision in precisions:
            name = f"{group}-{precision}"
            if name in done:
                report["cases"].append(done[name])
                continue
            bundle = models.bundle(shape, imgsz, precision)
            if bundle is None:
                continue
            # prompts on the fp32 graphs; the dynamic one (same input as the reference) also with the int8 CLIP
            case = bench.Case(
                name=name, model=str(bundle), prompts=prompts if precision in ("fp32", "fp32-dyn") else None,
                clip=str(clip_bundle) if clip_bundle and precision in ("fp32", "fp32-dyn") else None,
                clip_int8=str(clip_int8) if clip_int8 and precision == "fp32-dyn" else None,
                profile=name in (HEADLINE, HEADLINE_INT8, LARGE_CASE), **common,
                labels={"shape": shape, "imgsz": imgsz, "image": image, "retina": item["retina"], "precision": precision,
                        "large": large},
            )
            log(f"ours {name} ({reps} runs)")
            t0 = time.perf_counter()
            r = bench.run_case(case, mem_limit=mem_limit)
            status = f"failed: {r['error']}" if r.get("error") else f"{r.get('instances')} instances"
            log(f"  {status} in {time.perf_counter() - t0:.0f} s")
            report["cases"].append({"name": name, "labels": case.labels, "ours": r,
                                    "reference": None if args.no_reference else ref_key})
            save()

    if args.cold_reps > 0:
        log("cold start")
        report["cold_start"] = {}
        for shape in args.models:
            imgsz = max(args.sizes)
            b = models.bundle(shape, imgsz, "fp32")
            if b is not None:
                report["cold_start"][f"ours: FastSAM-{shape} shape, {imgsz}, fp32"] = bench.cold_start(b, reps=args.cold_reps)
            if not args.no_reference:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "cold.json"
                    report["cold_start"][f"reference: FastSAM-{shape} shape checkpoint"] = bench.run_child(
                        ["-m", "fastsam_onnx.export.bench_reference", "cold", str(models.checkpoint(shape)), str(out),
                         str(args.cold_reps)], out)
    log("installed size")
    report["installed_size"] = {"runtime only (fastsam-onnx base requirements)": bench.installed_size("fastsam-onnx")}
    if not args.no_reference:
        report["installed_size"]["reference (ultralytics and its requirements)"] = bench.installed_size("ultralytics")
    report["goals"] = bench.evaluate_goals(report, headline=HEADLINE, int8=HEADLINE_INT8, large=LARGE_CASE)
    report["complete"] = True
    report["notes"] = notes()
    report["load_average_end"] = bench.load_average()
    paths = bench.write_report(report, args.out)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a conversion costs (issue 24 item 5): the native converter's time and peak memory, beside the torch export's.

    python -m fastsam_onnx.benchmarks.convert --make DIR [--out results.json]

Cases: FastSAM-s and FastSAM-x (ultralytics training checkpoints, fp16) and CLIP ViT-B/32 (a TorchScript archive,
as OpenAI's ``ViT-B-32.pt``). The checkpoints are the zoo's real ones where ``fetch --no-export`` cached them, else
``--fastsam-s/--fastsam-x/--clip PATH``, else checkpoints of the same shapes made with ``--make DIR`` (needs the
[export] extra: ultralytics' yolov8s-seg / yolov8x-seg with one class, a traced ViT-B/32; seeded weights).

Each conversion runs in a fresh child process (:func:`.children.run_child`): ``seconds`` is the conversion call
itself, ``wall_s`` the child from start to exit (interpreter and imports included), ``peak_rss_bytes`` the child's
own high-water mark (VmHWM), ``bundle_bytes`` the files written. The torch side (``export_fastsam``/``export_clip``:
ultralytics export, onnxsim, PyTorch parity) runs where the [export] extra is installed, unless ``--no-torch``.
A measurement, never a test: tests/test_bench_convert.py checks only the shape of the output, on the demo models.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1e6
MODULE = "fastsam_onnx.benchmarks.convert"
#: case → (kind, zoo checkpoint file, ultralytics model yaml (FastSAM) or None (CLIP ViT-B/32))
CASES = {
    "fastsam-s": ("fastsam", "FastSAM-s.pt", "yolov8s-seg.yaml"),
    "fastsam-x": ("fastsam", "FastSAM-x.pt", "yolov8x-seg.yaml"),
    "clip-vit-b-32": ("clip", "ViT-B-32.pt", None),
}
#: the issue's bounds on 2 cores: seconds and peak resident memory of the native conversion
GOALS = {"fastsam-s": {"seconds": 5}, "fastsam-x": {"seconds": 20, "peak_rss_bytes": 1e9}, "clip-vit-b-32": {"seconds": 30}}
VIT_B_32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)


# --- the child: one conversion ----------------------------------------------------------------------------------


def child(converter: str, kind: str, weights: str, out: str, out_json: str, imgsz: int) -> None:
    """Convert ``weights`` once and write {seconds, peak_rss_bytes, bundle_bytes, ...} to ``out_json``."""
    from .children import peak_rss

    result: dict[str, Any] = {"converter": converter, "kind": kind, "weights_bytes": Path(weights).stat().st_size}
    quiet = dict(progress=lambda *a: None)
    t0 = time.perf_counter()
    try:
        if converter == "native":
            from fastsam_onnx.export.native import convert_clip, convert_fastsam

            if kind == "fastsam":
                convert_fastsam(weights, out, imgsz=imgsz, report=lambda *a: None, **quiet)
            else:
                convert_clip(weights, out, report=lambda *a: None, **quiet)
        elif kind == "fastsam":
            from fastsam_onnx.export.fastsam import export_fastsam

            export_fastsam(weights, out, imgsz=imgsz, report=lambda *a: None, **quiet)
        else:
            from fastsam_onnx.export.clip import export_clip

            export_clip(weights, out, **quiet)
    except Exception as e:  # noqa: BLE001 - reported in the results, the parent carries on
        result["error"] = f"{type(e).__name__}: {e}"
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_bytes"] = peak_rss()
    result["bundle_bytes"] = sum(p.stat().st_size for p in Path(out).iterdir()) if Path(out).is_dir() else None
    Path(out_json).write_text(json.dumps(result))


# --- the parent: checkpoints, children, the report ---------------------------------------------------------------


def make_checkpoints(folder: Path, names: list[str]) -> dict[str, Path]:
    """Checkpoints of the cases' shapes in ``folder`` (made once; needs torch, ultralytics and clip): FastSAM-s/-x as
    ultralytics saves a one-class yolov8s/x-seg (fp16 model in a dict), CLIP as OpenAI's archive (traced, fp16)."""
    import warnings

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in names:
        kind, file, yaml = CASES[name]
        path = folder / file
        made[name] = path
        if path.is_file():
            continue
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "fastsam":
                from ultralytics.nn.tasks import SegmentationModel

                model = SegmentationModel(yaml, nc=1, verbose=False)
                model.names = {0: "object"}
                obj = {"model": model.half(), "ema": None, "train_args": {"task": "segment", "imgsz": 1024}}
                torch.save(obj, path.with_suffix(".part"))
            else:
                _make_clip_archive(path.with_suffix(".part"))
        path.with_suffix(".part").rename(path)
    return made


def _make_clip_archive(path: Path) -> None:
    """A ViT-B/32 TorchScript archive made the way OpenAI's was (build_model's fp16 weights, int buffers, traced)."""
    import torch
    from clip.model import CLIP, build_model

    model = CLIP(**VIT_B_32)
    model.initialize_parameters()
    model = build_model(model.half().state_dict()).eval()
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, key):
            delattr(model, key)
        model.register_buffer(key, torch.tensor(value))
    image = torch.zeros(1, 3, 224, 224, dtype=model.dtype)
    text = torch.zeros(1, 77, dtype=torch.long)
    text[0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad():
        traced = torch.jit.trace_module(
            model, {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)}, check_trace=False
        )
    torch.jit.save(traced, str(path))


def checkpoints(args: argparse.Namespace) -> dict[str, Path]:
    """case → checkpoint: the paths given, else the zoo's cached checkpoints, else made in ``--make DIR``."""
    from fastsam_onnx.download import cache_dir

    given = {"fastsam-s": args.fastsam_s, "fastsam-x": args.fastsam_x, "clip-vit-b-32": args.clip}
    found: dict[str, Path] = {}
    for name, path in given.items():
        cached = cache_dir() / "checkpoints" / CASES[name][1]
        if path is not None:
            found[name] = Path(path)
        elif cached.is_file() and not args.make:
            found[name] = cached
    todo = [n for n in CASES if n not in found and (args.only is None or n in args.only)]
    if todo and args.make:
        found.update(make_checkpoints(Path(args.make), todo))
    return {n: p for n, p in found.items() if args.only is None or n in args.only}


def measure(name: str, converter: str, weights: Path, imgsz: int, work: Path, mem_limit: float | None) -> dict[str, Any]:
    """One conversion in a child process: the child's figures, with the parent's wall time and polled peak."""
    from .children import run_child

    kind = CASES.get(name, ("fastsam" if "fastsam" in name else "clip",))[0]
    out, out_json = work / f"{name}-{converter}", work / f"{name}-{converter}.json"
    argv = ["-m", MODULE, "child", converter, kind, str(weights), str(out), str(out_json), "--imgsz", str(imgsz)]
    r = run_child(argv, out_json, mem_limit=mem_limit)
    return {k: r.get(k) for k in ("seconds", "wall_s", "peak_rss_bytes", "bundle_bytes", "weights_bytes", "error",
                                  "log_tail") if r.get(k) is not None}


def goals(name: str, native: dict[str, Any]) -> dict[str, Any]:
    """Each bound of :data:`GOALS` for ``name`` with the measured value and whether it was met."""
    out = {}
    for key, bound in GOALS.get(name, {}).items():
        value = native.get(key)
        out[key] = {"bound": bound, "value": value, "met": value is not None and not native.get("error") and value <= bound}
    return out


def run(cases: dict[str, Path], *, imgsz: int = 1024, torch: bool = True, mem_limit: float | None = None,
        progress=print) -> dict[str, Any]:
    """Measure every case natively and (``torch``) with the torch exporter; the report dict."""
    from .machine import load_average, machine_info

    report: dict[str, Any] = {"kind": "conversion", "imgsz": imgsz, "machine": machine_info(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="fastsam-convert-") as tmp:
        for name, weights in cases.items():
            entry: dict[str, Any] = {"name": name, "weights": str(weights), "weights_bytes": weights.stat().st_size}
            for converter in ("native", "torch") if torch else ("native",):
                progress(f"{name}: {converter} conversion of {weights.name} ...")
                entry[converter] = measure(name, converter, weights, imgsz, Path(tmp), mem_limit)
            entry.setdefault("torch", None)
            entry["goals"] = goals(name, entry["native"])
            report["cases"].append(entry)
    report["load_average_after"] = load_average()
    return report


def table(report: dict[str, Any]) -> list[str]:
    """The report as aligned text lines."""
    lines = [f"{'case':14} {'converter':9} {'convert s':>9} {'wall s':>7} {'peak RSS MB':>11} {'bundle MB':>9}  goals"]
    for c in report["cases"]:
        for conv in ("native", "torch"):
            r = c.get(conv)
            if r is None:
                continue
            if r.get("error"):
                lines.append(f"{c['name']:14} {conv:9} error: {r['error'][:120]}")
                continue
            met = "" if conv == "torch" else ", ".join(
                f"{k} <= {v['bound']:g}: {'met' if v['met'] else 'MISSED'}" for k, v in c["goals"].items())
            rss, size = r.get("peak_rss_bytes") or 0, r.get("bundle_bytes") or 0
            lines.append(f"{c['name']:14} {conv:9} {r['seconds']:9.2f} {r['wall_s']:7.2f} {rss / MB:11.0f} "
                         f"{size / MB:9.1f}  {met}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("child", help=argparse.SUPPRESS)
    for name in ("converter", "kind", "weights", "out", "out_json"):
        c.add_argument(name)
    c.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--fastsam-s", type=Path, help="a FastSAM-s checkpoint (default: the zoo's cached one)")
    p.add_argument("--fastsam-x", type=Path, help="a FastSAM-x checkpoint (default: the zoo's cached one)")
    p.add_argument("--clip", type=Path, help="a ViT-B/32 checkpoint (default: the zoo's cached one)")
    p.add_argument("--make", type=Path, metavar="DIR", help="make checkpoints of the cases' shapes here (needs [export])")
    p.add_argument("--only", nargs="+", choices=list(CASES), help="these cases only")
    p.add_argument("--imgsz", type=int, default=1024, help="FastSAM input size (default 1024, the zoo's recipe)")
    p.add_argument("--no-torch", action="store_true", help="the native converter only")
    p.add_argument("--mem-limit-gb", type=float, default=None, help="kill a child past this resident memory")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    args = p.parse_args(argv)
    if args.command == "child":
        child(args.converter, args.kind, args.weights, args.out, args.out_json, args.imgsz)
        return 0
    cases = checkpoints(args)
    if not cases:
        print("no checkpoints: fetch them (fastsam-onnx fetch NAME --no-export), give --fastsam-s/--fastsam-x/--clip, "
              "or --make DIR", file=sys.stderr)
        return 2
    from fastsam_onnx.extras import missing_modules

    torch = not args.no_torch and not missing_modules("torch", "ultralytics", "onnxsim", "clip")
    report = run(cases, imgsz=args.imgsz, torch=torch, progress=lambda s: print(s, file=sys.stderr, flush=True),
                 mem_limit=args.mem_limit_gb * 1e9 if args.mem_limit_gb else None)
    from .machine import machine_line

    print(machine_line(report["machine"]))
    print("\n".join(table(report)))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

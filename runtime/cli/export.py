"""``fastsam-onnx export {fastsam,clip} ... --out DIR``: checkpoint → ONNX bundle.

``export fastsam --weights W``: a FastSAM checkpoint, as a dynamic graph (each photo at its own aspect ratio)
unless ``--static``; ``export clip [--weights ViT-B/32 | PATH]``: the CLIP model of text prompts (a local
checkpoint, or ViT-B/32 by name: downloaded and checked against its SHA-256). Both show their steps (a bar on a
terminal, plain lines otherwise) unless ``--quiet``.

``--converter native`` (the default) builds the graphs from the checkpoint's weights with numpy and ``onnx``, in
the base install (torch is never imported; :mod:`fastsam_onnx.export.native`); ``--converter torch`` runs the
PyTorch reference exporter (needs the [export] extra), for what the native converter does not cover (other
architectures, ``--opset``, CLIP model names other than ViT-B/32) and for its comparison with PyTorch. The
manifest's ``converter`` field says which made a bundle.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Callable

from ..progress import Progress, clean


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="convert a checkpoint to an ONNX bundle (natively; --converter torch needs [export])",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", required=True)
    f = kinds.add_parser("fastsam", help="a FastSAM / one-class YOLOv8-seg checkpoint")
    f.add_argument("--weights", required=True, type=Path, help="checkpoint (.pt), e.g. FastSAM-s.pt")
    f.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    f.add_argument("--imgsz", type=int, default=1024, help="input size, a multiple of 32 (default 1024)")
    shape = f.add_mutually_exclusive_group()
    shape.add_argument(
        "--static", action="store_true",
        help="a fixed imgsz x imgsz (and --batch) graph, for TensorRT engines and NPUs; on CPUs it letterboxes "
        "every photo to the full square (slower)",
    )
    shape.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (the default)")
    f.add_argument("--opset", type=int, default=None, help="ONNX opset, with --converter torch (default: ultralytics' choice; native: 17)")
    f.add_argument("--batch", type=int, default=1, help="batch size of a --static graph (default 1)")
    v = f.add_mutually_exclusive_group()
    v.add_argument("--half", action="store_true", help="fp16 weights and compute, fp32 input/output (for GPUs; needs onnxconverter-common: [fp16])")
    v.add_argument("--int8", action="store_true", help="int8 static QDQ quantization (for CPUs); needs --calib")
    f.add_argument(
        "--calib", type=Path, default=None,
        help="folder of calibration images (--int8), also where --half/--int8 accuracy vs fp32 is measured",
    )
    f.add_argument("--quiet", action="store_true", help="no progress (results and warnings are still printed)")
    _converter_argument(f)
    f.set_defaults(run=run_fastsam)
    c = kinds.add_parser("clip", help="CLIP for text prompts: a clip model name or a local checkpoint")
    c.add_argument(
        "--weights", default="ViT-B/32",
        help="a local checkpoint file (OpenAI's ViT-B-32.pt, or a saved state dict) or a clip model name, downloaded: "
        "ViT-B/32 (the default; --converter torch: any name the clip module knows)",
    )
    c.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    c.add_argument("--opset", type=int, default=None, help="ONNX opset, with --converter torch (default 17, as native)")
    c.add_argument(
        "--int8", action="store_true",
        help="int8 matrix products (dynamic quantization, no calibration): ~4x faster image embeddings on CPU",
    )
    c.add_argument("--quiet", action="store_true", help="no progress")
    _converter_argument(c)
    c.set_defaults(run=run_clip)


CONVERTERS = ("native", "torch")


def _converter_argument(p) -> None:
    p.add_argument(
        "--converter", choices=CONVERTERS, default="native",
        help="native (the default): built from the checkpoint's weights with numpy and onnx, no torch; torch: the "
        "PyTorch reference exporter (needs the [export] extra: pip install 'fastsam-onnx[export]')",
    )


def _require(kind: str, *, half: bool = False) -> None:
    """UsageError (one line, exit 2) before any work when a module of the export is not installed."""
    from ..export import missing_message, missing_modules
    from .usage import UsageError

    missing = missing_modules(kind, half=half)
    if missing:
        raise UsageError(missing_message(kind, missing))


class _Steps:
    """The exporters' ``progress(step, text)`` callback: a :class:`Progress` bar of ``total`` steps on a terminal,
    ``[k/N] text`` lines when stderr is not one (logs, CI), nothing with ``quiet``; :meth:`report` prints
    results and warnings in every case."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.stream, self.total, self.quiet = sys.stderr, total, quiet
        tty = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = Progress(total, desc, unit="steps", stream=self.stream) if tty else None

    def __call__(self, step: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(max(step - 1 - self.bar.n, 0), status=text)  # the bar counts completed steps
        elif not self.quiet:
            print(f"[{step}/{self.total}] {clean(text)}", file=self.stream, flush=True)

    def report(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(clean(text), file=self.stream, flush=True)

    def run(self, fn: Callable[[], Path]) -> Path:
        """Run the export ``fn``; the bar ends at ``total`` ("done") on success, where it was on failure."""
        try:
            out = fn()
        finally:
            if self.bar is not None:
                if sys.exc_info()[0] is None:
                    self.bar.update(self.total - self.bar.n, status="done")
                self.bar.close()
        return out


def run_fastsam(args: argparse.Namespace) -> int:
    from .usage import UsageError

    if args.batch > 1 and not args.static:
        raise UsageError(f"--batch {args.batch} makes a fixed-batch graph: add --static (a dynamic graph takes any batch)")
    options = dict(imgsz=args.imgsz, dynamic=not args.static, batch=args.batch, half=args.half, int8=args.int8,
                   calib=args.calib)
    if args.converter == "native":
        if args.opset is not None:
            raise UsageError("--opset applies to --converter torch (the native converter writes opset 17)")
        from ..export.native import FASTSAM_STEPS, convert_fastsam

        steps = _Steps(FASTSAM_STEPS + (args.half or args.int8), "export fastsam", args.quiet)
        export = functools.partial(convert_fastsam, args.weights, args.out, **options, progress=steps, report=steps.report)
    else:
        _require("fastsam", half=args.half)
        try:
            from ..export.fastsam import STEPS, export_fastsam
        except ImportError as e:
            raise UsageError(f"the export stage needs the [export] extra: pip install 'fastsam-onnx[export]' ({e})") from None
        steps = _Steps(STEPS + (args.half or args.int8), "export fastsam", args.quiet)
        export = functools.partial(export_fastsam, args.weights, args.out, opset=args.opset, **options, progress=steps,
                                   report=steps.report)
    out = _run(steps, export)
    print(f"wrote {out / 'fastsam.onnx'} and {out / 'manifest.json'} (converter: {args.converter})")
    return 0


def _run(steps: _Steps, export: Callable[[], Path]) -> Path:
    """Run an export; its ExportError becomes the CLI's one-line usage error (exit 2), as BadModelError does."""
    from ..export import ExportError
    from .usage import UsageError

    try:
        return steps.run(export)
    except ExportError as e:
        raise UsageError(str(e)) from None


def native_clip_weights(weights: str, quiet: bool) -> Path:
    """``--weights`` of ``export clip`` for the native converter: a file, or ``ViT-B/32`` (OpenAI's archive,
    downloaded as the zoo's clip-vit-b-32 checkpoint: verified, cached). UsageError for other names."""
    from .usage import UsageError

    p = Path(weights)
    if p.is_file():
        return p
    if weights.replace("-", "/").lower() == "vit/b/32":
        from ..download import fetch_checkpoint
        from ..errors import DownloadError

        try:
            return fetch_checkpoint("clip-vit-b-32", progress=not quiet)
        except DownloadError as e:
            raise UsageError(f"{e}; or give the file: --weights PATH") from None
    if p.exists():
        raise UsageError(f"--weights {clean(weights)} is not a file")
    raise UsageError(
        f"--weights {clean(weights)}: no such file; the native converter downloads ViT-B/32 by name, other clip "
        "model names need --converter torch (the clip module downloads them)"
    )


def run_clip(args: argparse.Namespace) -> int:
    from .usage import UsageError

    if args.converter == "native":
        if args.opset is not None:
            raise UsageError("--opset applies to --converter torch (the native converter writes opset 17)")
        from ..export.native import CLIP_STEPS, convert_clip

        weights = native_clip_weights(str(args.weights), args.quiet)
        steps = _Steps(CLIP_STEPS + bool(args.int8), "export clip", args.quiet)
        out = _run(steps, lambda: convert_clip(weights, args.out, int8=args.int8, progress=steps, report=steps.report))
    else:
        _require("clip")
        try:
            from ..export.clip import STEPS, export_clip
        except ImportError as e:
            raise UsageError(f"the export stage needs the [export] extra: pip install 'fastsam-onnx[export]' ({e})") from None
        steps = _Steps(STEPS + bool(args.int8), "export clip", args.quiet)
        out = _run(steps, lambda: export_clip(args.weights, args.out, opset=args.opset, int8=args.int8, progress=steps))
    print(f"wrote the CLIP bundle {out} (clip_image.onnx, clip_text.onnx, manifest.json; converter: {args.converter})")
    return 0

"""``fastsam-onnx export {fastsam,clip} ... --out DIR``: checkpoint → simplified ONNX bundle (needs [export]).

``export fastsam --weights W``: a FastSAM checkpoint; ``export clip [--weights ViT-B/32 | PATH]``: the
CLIP model of text prompts (a clip model name, downloaded, or a local checkpoint).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to an ONNX bundle (needs the [export] extra)")
    kinds = p.add_subparsers(dest="kind", required=True)
    f = kinds.add_parser("fastsam", help="a FastSAM / one-class YOLOv8-seg checkpoint")
    f.add_argument("--weights", required=True, type=Path, help="checkpoint (.pt), e.g. FastSAM-s.pt")
    f.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    f.add_argument("--imgsz", type=int, default=1024, help="input size, a multiple of 32 (default 1024)")
    f.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    f.add_argument("--opset", type=int, default=None, help="ONNX opset (default: ultralytics' choice)")
    f.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    v = f.add_mutually_exclusive_group()
    v.add_argument("--half", action="store_true", help="fp16 weights and compute, fp32 input/output (for GPUs)")
    v.add_argument("--int8", action="store_true", help="int8 static QDQ quantization (for CPUs); needs --calib")
    f.add_argument(
        "--calib", type=Path, default=None,
        help="folder of calibration images (--int8), also where --half/--int8 accuracy vs fp32 is measured",
    )
    f.set_defaults(run=run_fastsam)
    c = kinds.add_parser("clip", help="CLIP for text prompts: a clip model name or a local checkpoint")
    c.add_argument(
        "--weights", default="ViT-B/32",
        help="clip model name (downloaded, e.g. ViT-B/32, the default) or a local checkpoint file",
    )
    c.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    c.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    c.add_argument(
        "--int8", action="store_true",
        help="int8 matrix products (dynamic quantization, no calibration): ~4x faster image embeddings on CPU",
    )
    c.set_defaults(run=run_clip)


def run_fastsam(args: argparse.Namespace) -> int:
    from . import UsageError

    try:
        from ..export import ExportError
        from ..export.fastsam import export_fastsam
    except ImportError as e:
        raise UsageError(f"the export stage needs the [export] extra: pip install 'fastsam-onnx[export]' ({e})") from None
    try:
        out = export_fastsam(
            args.weights, args.out, imgsz=args.imgsz, dynamic=args.dynamic, opset=args.opset, batch=args.batch,
            half=args.half, int8=args.int8, calib=args.calib,
        )
    except ExportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out / 'fastsam.onnx'} and {out / 'manifest.json'}")
    return 0


def run_clip(args: argparse.Namespace) -> int:
    from . import UsageError

    try:
        from ..export import ExportError
        from ..export.clip import export_clip
    except ImportError as e:
        raise UsageError(f"the export stage needs the [export] extra: pip install 'fastsam-onnx[export]' ({e})") from None
    try:
        out = export_clip(args.weights, args.out, opset=args.opset, int8=args.int8)
    except ExportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote the CLIP bundle {out} (clip_image.onnx, clip_text.onnx, manifest.json)")
    return 0

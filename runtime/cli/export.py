"""``fastsam-onnx export fastsam --weights W --out DIR``: checkpoint → simplified ONNX bundle (needs [export])."""

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
    f.set_defaults(run=run_fastsam)


def run_fastsam(args: argparse.Namespace) -> int:
    from . import UsageError

    try:
        from ..export import ExportError
        from ..export.fastsam import export_fastsam
    except ImportError as e:
        raise UsageError(f"the export stage needs the [export] extra: pip install 'fastsam-onnx[export]' ({e})") from None
    try:
        out = export_fastsam(
            args.weights, args.out, imgsz=args.imgsz, dynamic=args.dynamic, opset=args.opset, batch=args.batch
        )
    except ExportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out / 'fastsam.onnx'} and {out / 'manifest.json'}")
    return 0

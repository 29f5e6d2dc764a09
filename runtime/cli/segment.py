"""``fastsam-onnx segment IMAGE``: segment everything, write an overlay and/or a JSON file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment everything in an image", description=__doc__)
    p.add_argument("image", help="image file")
    p.add_argument("--model", help="bundle directory or .onnx file (default: the shipped demo model)")
    p.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    p.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default 0.9)")
    p.add_argument("--imgsz", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--max-det", type=int, default=300, help="maximum number of instances (default 300)")
    p.add_argument("--no-retina", action="store_true", help="masks at the network-input size, letterboxed")
    p.add_argument("--out", type=Path, help="write an overlay image (PNG/JPEG)")
    p.add_argument("--json", type=Path, help="write the instances as JSON (boxes, scores, COCO RLE masks)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cv2

    from .. import FastSAM
    from ..draw import draw_overlay
    from . import UsageError

    for path in (args.out, args.json):
        if path is not None and not path.parent.exists():
            raise UsageError(f"output directory does not exist: {path.parent}")
    model = FastSAM(args.model)
    result = model.segment(
        args.image, imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det, retina_masks=not args.no_retina
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(str(args.image)), separators=(",", ":")) + "\n")
    if args.out is not None:
        if not cv2.imwrite(str(args.out), draw_overlay(result)):
            raise UsageError(f"cannot write overlay {args.out} (unknown image extension?)")
    t = result.timings
    print(
        f"{args.image}: {len(result)} instances, {result.orig_shape[1]}x{result.orig_shape[0]}, "
        f"preprocess {t['preprocess']:.1f} ms, inference {t['inference']:.1f} ms, postprocess {t['postprocess']:.1f} ms",
        file=sys.stderr,
    )
    return 0

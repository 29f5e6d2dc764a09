"""``fastsam-onnx segment IMAGE``: segment everything, write an overlay and/or a JSON file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment everything in an image, a folder or a video", description=__doc__)
    p.add_argument("image", help="image file, folder of images (recursive), video file or camera index (0, 1, ...)")
    p.add_argument("--model", help="bundle directory or .onnx file (default: the shipped demo model)")
    p.add_argument("--conf", type=float, default=0.4, help="confidence threshold (default 0.4)")
    p.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default 0.9)")
    p.add_argument("--imgsz", type=int, default=None, help="network input size (default: the model's)")
    p.add_argument("--max-det", type=int, default=300, help="maximum number of instances (default 300)")
    p.add_argument("--no-retina", action="store_true", help="masks at the network-input size, letterboxed")
    p.add_argument("--out", type=Path, help="write an overlay image (PNG/JPEG)")
    p.add_argument("--json", type=Path, help="write the instances as JSON (boxes, scores, COCO RLE masks)")
    p.add_argument(
        "--providers", default=None, metavar="auto|cpu|cuda|tensorrt|LIST",
        help="execution providers: auto (default, or $FASTSAM_ONNX_PROVIDERS), cpu, cuda, tensorrt, "
        "or a comma list of onnxruntime provider names",
    )
    p.add_argument("--strict", action="store_true", help="fail instead of falling back when a provider is unavailable")
    b = p.add_argument_group("folders and videos (see fastsam_onnx.cli.segment_many)")
    b.add_argument("--out-dir", type=Path, help="folder: write one JSON per image here (the folder's tree mirrored)")
    b.add_argument("--coco", type=Path, help="folder: write one COCO-style JSON of every image")
    b.add_argument("--skip-existing", action="store_true", help="folder: skip images whose JSON exists in --out-dir")
    b.add_argument("--max-frames", type=int, default=None, help="video/camera: stop after this many frames")
    g = p.add_argument_group("prompts (each repeatable; only the selected instances are kept)")
    g.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2", help="box prompt, pixels")
    g.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]", help="point prompt; label 1 (default) or 0")
    g.add_argument("--text", action="append", default=[], metavar="TEXT", help="text prompt (CLIP)")
    g.add_argument("--prompts", type=Path, help='JSON file: {"boxes": [[x1,y1,x2,y2]...], "points": [[x,y]...], "labels": [...], "texts": [...]}')
    g.add_argument("--clip", help="CLIP bundle directory or zoo name (clip-vit-b-32, clip-vit-b-32-int8) for text prompts (default: the shipped demo CLIP)")
    g.add_argument("--point-mode", choices=["select", "merge"], default="select", help="merge = original FastSAM: one merged mask")
    g.add_argument("--text-mode", choices=["select", "original"], default="select", help="original = one text, one mask")
    p.set_defaults(run=run)


def _numbers(text: str, sizes: tuple[int, ...], what: str) -> list[float]:
    from . import UsageError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in sizes:
        raise UsageError(f"--{what} expects {' or '.join(map(str, sizes))} comma-separated numbers, got {text!r}")
    return values


def gather_prompts(args: argparse.Namespace) -> dict:
    """Prompts from --box/--point/--text and --prompts FILE, merged; keys as ``FastSAM.prompt`` takes them."""
    from . import UsageError

    boxes = [_numbers(b, (4,), "box") for b in args.box]
    points, labels = [], []
    for text in args.point:
        v = _numbers(text, (2, 3), "point")
        points.append(v[:2])
        labels.append(int(v[2]) if len(v) == 3 else 1)
    texts = list(args.text)
    if args.prompts is not None:
        try:
            data = json.loads(args.prompts.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read prompts file {args.prompts}: {e}") from None
        if not isinstance(data, dict) or set(data) - {"boxes", "points", "labels", "texts"}:
            raise UsageError(f"{args.prompts}: expected an object with keys boxes, points, labels, texts")
        boxes += data.get("boxes") or []
        file_points = data.get("points") or []
        file_labels = data.get("labels")
        if file_labels is not None and len(file_labels) != len(file_points):
            raise UsageError(f"{args.prompts}: {len(file_points)} points but {len(file_labels)} labels")
        points += file_points
        labels += file_labels if file_labels is not None else [1] * len(file_points)
        file_texts = data.get("texts") or []
        texts += [file_texts] if isinstance(file_texts, str) else file_texts
    out: dict = {}
    if boxes:
        out["bboxes"] = boxes
    if points:
        out["points"], out["labels"] = points, labels
    if texts:
        out["texts"] = texts
    return out


def run(args: argparse.Namespace) -> int:
    import cv2

    from .. import FastSAM
    from ..draw import draw_overlay
    from . import UsageError
    from .segment_many import kind_of, run_folder, run_video

    kind = kind_of(args.image)
    if kind != "image":
        prompts = gather_prompts(args)
        model = FastSAM(args.model, clip=args.clip, providers=args.providers, strict=args.strict)
        return (run_folder if kind == "folder" else run_video)(args, model, prompts)
    for path in (args.out, args.json):
        if path is not None and not path.parent.exists():
            raise UsageError(f"output directory does not exist: {path.parent}")
    if args.out is not None and not cv2.haveImageWriter(str(args.out)):
        raise UsageError(f"cannot write overlay {args.out}: unknown image extension (use .png or .jpg)")
    prompts = gather_prompts(args)
    model = FastSAM(args.model, clip=args.clip, providers=args.providers, strict=args.strict)
    result = model.segment(
        args.image, imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
        retina_masks=not args.no_retina, point_mode=args.point_mode, text_mode=args.text_mode, **prompts,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(str(args.image)), separators=(",", ":")) + "\n")
    if args.out is not None:
        if not cv2.imwrite(str(args.out), draw_overlay(result)):
            raise UsageError(f"cannot write overlay {args.out}")
    t = result.timings
    print(
        f"{args.image}: {len(result)} instances, {result.orig_shape[1]}x{result.orig_shape[0]}, "
        f"preprocess {t['preprocess']:.1f} ms, inference {t['inference']:.1f} ms, postprocess {t['postprocess']:.1f} ms",
        file=sys.stderr,
    )
    return 0

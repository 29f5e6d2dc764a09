"""The ``segment`` command's option checks, shared by its local and Ray runs: which options apply to which
input kind (one image, a folder, a video), and the ranges of the numbers. Each refusal is a one-line
:class:`~fastsam_onnx.cli.usage.UsageError` (exit status 2)."""

from __future__ import annotations

import argparse
import math

from .usage import UsageError

_ONLY = {  # option → the input kinds it applies to
    "out_dir": ("folder",), "coco": ("folder",), "skip_existing": ("folder",), "overlays": ("folder",),
    "max_frames": ("video",), "out": ("image", "video"), "json": ("image", "video"), "embeddings": ("image",),
}
_INSTEAD = {"folder": {"out": "--overlays DIR", "json": "--out-dir DIR or --coco FILE"}, "image": {"overlays": "--out", "out_dir": "--json"}}


def check_options(args: argparse.Namespace, kind: str) -> None:
    """Refuse (UsageError) options that do not apply to ``kind`` and settings out of range."""
    for dest, kinds in _ONLY.items():
        value = getattr(args, dest)
        if kind not in kinds and value not in (None, False):
            flag = "--" + dest.replace("_", "-")
            hint = _INSTEAD.get(kind, {}).get(dest)
            what = {"image": "one image", "folder": "a folder", "video": "a video"}[kind]
            raise UsageError(f"{flag} does not apply to {what}" + (f" (use {hint})" if hint else ""))
    for name in ("conf", "iou"):
        v = getattr(args, name)
        if not (math.isfinite(v) and 0 <= v <= 1):
            raise UsageError(f"--{name} must be a number within [0, 1], got {v}")
    if args.imgsz is not None and args.imgsz <= 0:
        raise UsageError(f"--imgsz must be a positive number of pixels, got {args.imgsz}")
    if args.max_det < 1:
        raise UsageError(f"--max-det must be >= 1, got {args.max_det}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
    if getattr(args, "engine", "local") == "ray" and getattr(args, "resize", "linear") != "linear":
        raise UsageError("--resize applies to the local engine (the Ray engine uses the default, linear)")
    check_format_options(args, kind)


def check_format_options(args: argparse.Namespace, kind: str) -> None:
    """Refuse (UsageError) --format/--epsilon/--label/--text-threshold settings that do not apply."""
    if args.format != "coco" and kind == "video":
        raise UsageError("--format applies to an image (--json) or a folder (--out-dir); a video writes JSON lines")
    if args.format != "coco" and kind == "image" and args.json is None:
        raise UsageError(f"--format {args.format} needs --json FILE (the file it writes)")
    if args.format != "coco" and kind == "folder" and args.out_dir is None:
        raise UsageError(f"--format {args.format} needs --out-dir DIR (one file per image)")
    if getattr(args, "uncompressed_rle", False) and (args.format != "coco" or getattr(args, "engine", "local") == "ray"):
        raise UsageError("--uncompressed-rle applies to --format coco on the local engine (Ray's rows hold COCO's "
                         "compressed strings; fastsam_onnx.outputs.rle.string_counts turns one into run lengths)")
    if args.format == "coco" and (args.epsilon is not None or args.label is not None):
        raise UsageError("--epsilon and --label apply to --format labelme or yolo")
    if args.label is not None and (args.format != "labelme" or not args.label.strip()):
        raise UsageError("--label takes a non-empty name and applies to --format labelme")
    if args.epsilon is not None and not (math.isfinite(args.epsilon) and 0 <= args.epsilon < 1):
        raise UsageError(f"--epsilon is a fraction of the perimeter in [0, 1), got {args.epsilon}")
    if args.text_threshold is not None and args.text_mode != "all":
        raise UsageError("--text-threshold applies to --text-mode all")
    if args.text_mode == "all" and args.text_threshold is None:
        raise UsageError("--text-mode all needs --text-threshold T (a cosine similarity; the demo CLIP: ~0.65)")
    if args.text_threshold is not None and not -1 <= args.text_threshold <= 1:  # NaN fails too
        raise UsageError(f"--text-threshold is a cosine similarity in [-1, 1], got {args.text_threshold}")

"""``fastsam-onnx segment`` on many images: a folder (recursively) or a video file / camera index.

Folder: one JSON per image under ``--out-dir`` (mirroring the folder's tree) and/or one COCO-style JSON
(``--coco``: images, annotations with RLE masks, one category "object"); ``--skip-existing`` skips images
whose JSON is already there. A bad file is reported, skipped and counted; the exit status is 0 when every
image was segmented, 1 when some were skipped as bad.

Video: frames read with OpenCV from a file or a camera index, masks drawn into ``--out`` (a video file,
same frame rate and size; mp4v for .mp4, MJPG for .avi) and/or one JSON line per frame (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def kind_of(source: str) -> str:
    """"folder", "video" (a video file or a camera index such as "0") or "image"."""
    p = Path(source)
    if p.is_dir():
        return "folder"
    if source.isdigit() and not p.exists():
        return "video"
    return "video" if p.suffix.lower() in VIDEO_EXTS else "image"


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, by extension), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _segment_kwargs(args: argparse.Namespace, prompts: dict) -> dict:
    return dict(
        imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det, retina_masks=not args.no_retina,
        point_mode=args.point_mode, text_mode=args.text_mode, **prompts,
    )


def run_folder(args: argparse.Namespace, model, prompts: dict) -> int:
    from ..errors import FastSAMError
    from . import UsageError

    folder = Path(args.image)
    if args.out_dir is None and args.coco is None:
        raise UsageError("a folder needs --out-dir DIR (one JSON per image) and/or --coco FILE")
    if args.coco is not None and not args.coco.parent.exists():
        raise UsageError(f"output directory does not exist: {args.coco.parent}")
    images = list_images(folder)
    if not images:
        raise UsageError(f"no images under {folder}")
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    done = skipped = bad = 0
    t0 = time.perf_counter()
    for n, path in enumerate(images, 1):
        rel = path.relative_to(folder)
        out = None if args.out_dir is None else args.out_dir / rel.with_suffix(rel.suffix + ".json")
        if args.skip_existing and out is not None and out.is_file() and args.coco is None:
            skipped += 1
            continue
        try:
            result = model.segment(str(path), **_segment_kwargs(args, prompts))
        except FastSAMError as e:
            bad += 1
            print(f"[{n}/{len(images)}] {rel}: skipped: {e}", file=sys.stderr)
            continue
        data = result.to_json(str(rel))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        if args.coco is not None:
            image_id = len(coco["images"]) + 1
            coco["images"].append({"id": image_id, "file_name": str(rel), "width": result.orig_shape[1], "height": result.orig_shape[0]})
            for inst in data["instances"]:
                x1, y1, x2, y2 = inst["box"]
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                    "bbox": [x1, y1, round(x2 - x1, 3), round(y2 - y1, 3)], "area": inst["area"],
                    "score": inst["score"], "segmentation": inst["segmentation"], "iscrowd": 0,
                })
        done += 1
        print(f"[{n}/{len(images)}] {rel}: {len(result)} instances", file=sys.stderr)
    if args.coco is not None:
        args.coco.write_text(json.dumps(coco, separators=(",", ":")) + "\n")
    print(
        f"{folder}: {done} segmented, {skipped} skipped (existing), {bad} bad, "
        f"{len(images)} images in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 1 if bad else 0


def run_video(args: argparse.Namespace, model, prompts: dict) -> int:
    import cv2

    from ..draw import draw_overlay
    from . import UsageError

    source = int(args.image) if args.image.isdigit() and not Path(args.image).exists() else args.image
    if isinstance(source, str) and not Path(source).is_file():
        raise UsageError(f"video file not found: {source}")
    if args.out is None and args.json is None:
        raise UsageError("a video needs --out VIDEO (masks drawn) and/or --json FILE (one JSON line per frame)")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise UsageError(f"cannot open video {source!r}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    jsonl = None if args.json is None else open(args.json, "w")
    frames = 0
    interrupted = False
    t0 = time.perf_counter()
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            result = model.segment(frame, **_segment_kwargs(args, prompts))
            if args.out is not None:
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if args.out.suffix.lower() == ".avi" else "mp4v"))
                    writer = cv2.VideoWriter(str(args.out), fourcc, fps, (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise UsageError(f"cannot write video {args.out} (use .mp4 or .avi)")
                writer.write(draw_overlay(result))
            if jsonl is not None:
                jsonl.write(json.dumps({"frame": frames, **result.to_json()}, separators=(",", ":")) + "\n")
            frames += 1
            if frames % 10 == 0:
                print(f"\rframe {frames}: {len(result)} instances", end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # a camera never ends: Ctrl-C stops it and keeps the frames written so far
        interrupted = True
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
    if frames == 0:
        raise UsageError(f"no frames read from {source!r}")
    dt = time.perf_counter() - t0
    stopped = " (stopped by Ctrl-C)" if interrupted else ""
    print(f"\r{source}: {frames} frames in {dt:.1f} s ({frames / dt:.1f} fps){stopped}", file=sys.stderr)
    return 0

"""``fastsam-onnx segment VIDEO|CAMERA``: masks drawn into a video and/or one JSON line per frame.

``--out`` must name a container OpenCV writes here (.mp4, .m4v, .mov, .mkv: mp4v; .avi: MJPG), checked before
the capture is opened. Both outputs are written to temporary files and renamed at the end, so an existing
output is replaced only once the run has frames to put there; Ctrl-C (the way to stop a camera) keeps the
frames so far, any error keeps the previous outputs untouched. Each JSON line is ``{"frame": N, ...}`` with
``image.path`` the source (file path or camera index) and ``image.frame`` the frame number (0-based).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from ..progress import Progress, clean
from .segment_many import VIDEO_OUT_FOURCC, check_output_file, maybe_atomic, plural, segment_kwargs


def check_video_outputs(args: argparse.Namespace) -> None:
    """Refuse (UsageError) a video run without an output, or with an unusable ``--out``/``--json``."""
    from .usage import UsageError

    if args.out is None and args.json is None:
        raise UsageError("a video needs --out VIDEO (masks drawn) and/or --json FILE (one JSON line per frame)")
    if args.out is not None and args.out.suffix.lower() not in VIDEO_OUT_FOURCC:
        raise UsageError(
            f"--out {clean(args.out)}: not a video container this build writes (use {', '.join(VIDEO_OUT_FOURCC)})"
        )
    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")


def run_video(args: argparse.Namespace, model, prompts: dict) -> int:
    """Segment the frames of ``args.image`` (a video file or a camera index); returns 0 (also when stopped
    by Ctrl-C, the usual end of a camera stream: the frames so far are kept)."""
    import cv2

    from ..outputs.draw import draw_overlay
    from .usage import UsageError

    camera = args.image.isdigit() and not Path(args.image).exists()
    source: int | str = int(args.image) if camera else args.image
    if not camera and not Path(args.image).is_file():
        raise UsageError(f"video file not found: {clean(source)}")
    check_video_outputs(args)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise UsageError(f"cannot open video {clean(repr(source))}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    count = 0 if camera else int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    known = [n for n in (count, args.max_frames) if n]
    total = min(known) if known else None  # a camera, or a file that does not say: no total
    frames = instances = 0
    interrupted = False
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp_video = stack.enter_context(maybe_atomic(args.out))
        tmp_json = stack.enter_context(maybe_atomic(args.json))
        jsonl = None if tmp_json is None else stack.enter_context(open(tmp_json, "w", encoding="utf-8"))
        writer = None
        progress = Progress(total, str(source), enabled=not args.quiet, unit="frame")
        try:
            while args.max_frames is None or frames < args.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                result = model.segment(frame, **segment_kwargs(args, prompts))
                if tmp_video is not None:
                    if writer is None:
                        fourcc = cv2.VideoWriter_fourcc(*VIDEO_OUT_FOURCC[args.out.suffix.lower()])
                        writer = cv2.VideoWriter(str(tmp_video), fourcc, fps, (frame.shape[1], frame.shape[0]))
                        if not writer.isOpened():
                            raise UsageError(f"cannot write video {clean(args.out)} (use .mp4 or .avi)")
                    writer.write(draw_overlay(result))
                if jsonl is not None:
                    data = result.to_json(str(args.image), compressed=not getattr(args, "uncompressed_rle", False))
                    data["image"]["frame"] = frames
                    jsonl.write(json.dumps({"frame": frames, **data}, separators=(",", ":")) + "\n")
                frames += 1
                instances += len(result)
                progress.update(status=plural(len(result), "instance"))
        except KeyboardInterrupt:  # a camera never ends: Ctrl-C stops it and keeps the frames written so far
            interrupted = True
        finally:
            progress.close()
            cap.release()
            if writer is not None:
                writer.release()
        if frames == 0:  # raised inside the stack: the temporary files go, existing outputs stay
            raise UsageError(f"no frames read from {clean(repr(source))}")
    dt = max(time.perf_counter() - t0, 1e-9)
    stopped = " (stopped by Ctrl-C)" if interrupted else ""
    progress.write(
        f"{source}: {plural(frames, 'frame')} in {dt:.1f} s ({frames / dt:.1f} fps), "
        f"{plural(instances, 'instance')} in all{stopped}"
    )
    return 0

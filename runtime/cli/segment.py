"""``fastsam-onnx segment IMAGE|FOLDER|VIDEO``: segment everything, write an overlay and/or a JSON file.

One image: ``--out overlay.png`` and/or ``--json result.json``. A folder or a video: see
:mod:`fastsam_onnx.cli.folder` and :mod:`fastsam_onnx.cli.video`. Options that do not apply to the input's
kind are refused, numbers and prompts are checked and output locations tested before the model runs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from ..progress import clean
from ..prompts import POINT_MODES, PROMPT_FORMS, PROMPT_KEYS, TEXT_MODES
from .models import CLIP_HELP, MODEL_HELP, fetch_models, say_if_demo

# argparse takes "-5,10" for an option (only "-5" and "-.5" look like numbers to it); make every
# comma list of numbers with a leading minus a value, so `--point -5,10` and `--box -5,-5,20,20` work.
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(?:\.?\d|inf|nan)[\w.,+-]*,[\w.,+-]*$", re.IGNORECASE)

MAX_PROMPTS_BYTES = 64 << 20


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment everything in an image, a folder or a video",
        description="Segment everything in an image, a folder of images (recursively) or a video / camera. "
        "Options that do not apply to the input's kind are refused; outputs are written atomically.",
    )
    p._negative_number_matcher = _NEGATIVE_VALUE  # see _NEGATIVE_VALUE
    p.add_argument("image", help="image file, folder of images (recursive), video file or camera index (0, 1, ...)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--conf", type=float, default=0.4, help="confidence threshold in [0, 1] (default 0.4)")
    p.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold in [0, 1] (default 0.9)")
    p.add_argument("--imgsz", type=int, default=None, help="network input size, pixels (default: the model's)")
    p.add_argument("--max-det", type=int, default=300, help="maximum number of instances, >= 1 (default 300)")
    p.add_argument("--no-retina", action="store_true", help="masks at the network-input size, letterboxed")
    p.add_argument("--resize", choices=("linear", "opencv"), default="linear",
                   help="letterbox resize: linear (default: the reference's x86 cv2.INTER_LINEAR values on every CPU) "
                   "or opencv (this machine's cv2.INTER_LINEAR: faster on arm64, slightly different there; see docs/arm64.md)")
    p.add_argument("--out", type=Path, help="image: write an overlay (PNG/JPEG); video: write a video (.mp4/.avi/...)")
    p.add_argument("--json", type=Path, help="image: write the instances as JSON (boxes, scores, COCO RLE masks); video: JSON lines; '-': standard output")
    p.add_argument(
        "--providers", default=None, metavar="auto|cpu|cuda|tensorrt|LIST",
        help="execution providers: auto (default, or $FASTSAM_ONNX_PROVIDERS), cpu, cuda, tensorrt, "
        "or a comma list of onnxruntime provider names",
    )
    p.add_argument("--strict", action="store_true", help="fail instead of falling back when a provider is unavailable")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output; failures and the summary still print")
    b = p.add_argument_group("folders and videos (see fastsam_onnx.cli.folder and fastsam_onnx.cli.video)")
    b.add_argument("--out-dir", type=Path, help="folder: write one JSON per image here (the folder's tree mirrored)")
    b.add_argument("--overlays", type=Path, metavar="DIR", help="folder: write one overlay PNG per image here (tree mirrored)")
    b.add_argument("--coco", type=Path, help="folder: write one COCO-style JSON of every image ('-': standard output)")
    b.add_argument(
        "--skip-existing", action="store_true",
        help="folder: skip images whose outputs exist (JSON that parses; with --coco it is read back into the COCO file)",
    )
    b.add_argument("--max-frames", type=int, default=None, help="video/camera: stop after this many frames (>= 1)")
    from .edges_proposals import add_output_arguments

    add_output_arguments(p)  # --edges, --proposals
    g = p.add_argument_group("prompts (each repeatable; only the selected instances are kept)")
    g.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2", help="box prompt, pixels (negative: --box -5,0,20,20 or --box=-5,0,20,20)")
    g.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]", help="point prompt, pixels; label 1 (default) or 0")
    g.add_argument("--text", action="append", default=[], metavar="TEXT", help="text prompt (CLIP)")
    forms = ", ".join(f'"{k}": {v}' for k, v in PROMPT_FORMS.items())
    g.add_argument("--prompts", type=Path, help=f"JSON file: {{{forms}}}")
    g.add_argument("--clip", help=CLIP_HELP)
    g.add_argument(
        "--point-mode", choices=POINT_MODES, default="select",
        help="merge = original FastSAM: one merged mask; each = one instance per positive point (tag point:K)",
    )
    g.add_argument(
        "--text-mode", choices=TEXT_MODES, default="select",
        help="original = one text, one mask; all = every instance whose CLIP cosine similarity >= --text-threshold",
    )
    g.add_argument("--text-threshold", type=float, default=None, metavar="T", help="--text-mode all: cosine similarity in [-1, 1] (demo CLIP: ~0.65)")
    a = p.add_argument_group("annotation files (see fastsam_onnx.outputs.formats)")
    a.add_argument(
        "--format", choices=["coco", "labelme", "yolo"], default="coco",
        help="what --json (one image) and --out-dir (folder: a/b.jpg.json, a/b.json, a/b.txt) hold: "
        "coco = instance JSON with COCO RLE masks (default), labelme JSON, YOLO-seg txt",
    )
    a.add_argument(
        "--uncompressed-rle", action="store_true",
        help="coco JSON (and a video's JSON lines): each mask's RLE counts as a list of run lengths instead of COCO's "
        "compressed string (pycocotools reads both; the list after frPyObjects)",
    )
    a.add_argument("--epsilon", type=float, default=None, help="labelme/yolo polygon simplification, fraction of the perimeter (default 0.001; 0 = every traced vertex)")
    a.add_argument("--label", default=None, help="labelme: the shapes' label (default: object)")
    a.add_argument("--embeddings", type=Path, metavar="FILE.npy", help="one image: write (N, D) float32 CLIP embeddings of the instances' crops, row i = instance i")
    from .distributed import add_ray_arguments

    add_ray_arguments(p.add_argument_group("scale-out on Ray Data (see fastsam_onnx.cli.distributed)"))
    p.set_defaults(run=run)


def _numbers(text: str, sizes: tuple[int, ...], what: str) -> list[float]:
    from ..errors import BadPromptError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in sizes:
        raise BadPromptError(
            f"--{what} expects {' or '.join(map(str, sizes))} comma-separated numbers, got {clean(repr(text))} "
            f"(negative values: --{what}=-5,10)"
        )
    if not all(math.isfinite(v) for v in values):
        raise BadPromptError(f"--{what} {clean(text)}: NaN or infinite values are not coordinates")
    return values


def _label(value: object, where: str) -> int:
    from ..errors import BadPromptError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1):
        raise BadPromptError(f"{where}: a point label is 1 (foreground) or 0 (background), got {clean(repr(value))}")
    return int(value)


def _rows(value: object, width: int, field: str, where: str) -> list[list[float]]:
    """A prompts-file field holding one row or a list of rows of ``width`` finite numbers."""
    from ..errors import BadPromptError

    if isinstance(value, list) and len(value) == width and all(not isinstance(v, list) for v in value):
        value = [value]  # one box / point given flat
    shape = "[x1, y1, x2, y2]" if width == 4 else "[x, y]"
    if not isinstance(value, list):
        raise BadPromptError(f"{where}: {field!r} must be a list of {shape}, got {type(value).__name__}")
    for row in value:
        if not (isinstance(row, list) and len(row) == width
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)):
            raise BadPromptError(f"{where}: {field!r} must be a list of {shape} numbers, got {clean(repr(row))[:80]}")
        if not all(math.isfinite(v) for v in row):
            raise BadPromptError(f"{where}: {field!r} holds NaN or infinite values: {row}")
    return [list(map(float, row)) for row in value]


def read_prompts_file(path: Path) -> dict:
    """The prompts, a list per :data:`~fastsam_onnx.prompts.PROMPT_KEYS` key, from a JSON file, every field
    type-checked (BadPromptError naming the file and the field; UsageError when the file cannot be read or is
    not JSON)."""
    from ..errors import BadPromptError
    from .usage import UsageError

    where = clean(path)
    try:
        if path.stat().st_size > MAX_PROMPTS_BYTES:
            raise UsageError(f"prompts file {where} is over {MAX_PROMPTS_BYTES >> 20} MB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise UsageError(f"cannot read prompts file {where}: JSON nested too deeply") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read prompts file {where}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict) or set(data) - set(PROMPT_KEYS):
        raise UsageError(f"{where}: expected an object with keys {', '.join(PROMPT_KEYS)}")
    out: dict = {k: [] for k in PROMPT_KEYS}
    if data.get("boxes") is not None:
        out["boxes"] = _rows(data["boxes"], 4, "boxes", where)
    if data.get("points") is not None:
        out["points"] = _rows(data["points"], 2, "points", where)
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, list):
            raise BadPromptError(f"{where}: 'labels' must be a list of 0/1, got {type(labels).__name__}")
        if len(labels) != len(out["points"]):
            raise BadPromptError(f"{where}: {len(out['points'])} points but {len(labels)} labels")
        out["labels"] = [_label(v, f"{where}: 'labels'") for v in labels]
    else:
        out["labels"] = [1] * len(out["points"])
    texts = data.get("texts")
    if texts is not None:
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadPromptError(f"{where}: 'texts' must be a string or a list of strings, got {clean(repr(data['texts']))[:80]}")
        out["texts"] = texts
    return out


def check_mode_prompts(args: argparse.Namespace, points: bool, texts: bool) -> None:
    """Refuse (UsageError) a --point-mode/--text-mode other than select with none of its prompts: it would
    change nothing (`--point-mode each` without points selected by boxes or texts alone, or nothing)."""
    from .usage import UsageError

    if args.point_mode != "select" and not points:
        raise UsageError(f"--point-mode {args.point_mode} needs points (--point X,Y or \"points\" in --prompts)")
    if args.text_mode != "select" and not texts:
        raise UsageError(f"--text-mode {args.text_mode} needs texts (--text TEXT or \"texts\" in --prompts)")


def gather_prompts(args: argparse.Namespace) -> dict:
    """Prompts from --box/--point/--text and --prompts FILE, merged; keys as ``FastSAM.prompt`` takes them."""
    boxes = [_numbers(b, (4,), "box") for b in args.box]
    points, labels = [], []
    for text in args.point:
        v = _numbers(text, (2, 3), "point")
        points.append(v[:2])
        labels.append(_label(v[2], f"--point {clean(text)}") if len(v) == 3 else 1)
    texts = list(args.text)
    if args.prompts is not None:
        data = read_prompts_file(args.prompts)
        boxes += data["boxes"]
        points += data["points"]
        labels += data["labels"]
        texts += data["texts"]
    from ..prompts import parse_boxes, parse_points, parse_texts

    check_mode_prompts(args, bool(points), bool(texts))
    out: dict = {}
    huge = (1 << 31, 1 << 31)  # check with the API's own parsers once, not once per image of a folder
    if boxes:
        parse_boxes(boxes, huge)
        out["bboxes"] = boxes
    if points:
        parse_points(points, labels, huge)
        out["points"], out["labels"] = points, labels
    if texts:
        parse_texts(texts)
        out["texts"] = texts
    if args.text_threshold is not None:
        out["text_threshold"] = args.text_threshold
    return out


def run(args: argparse.Namespace) -> int:
    import cv2

    from .. import FastSAM
    from .distributed import check_engine, run_ray
    from .folder import run_folder
    from .options import check_options
    from ..fileio import image_suffix
    from .segment_many import check_output_file, check_stdout_once, kind_of, plural
    from .usage import UsageError
    from .video import run_video

    if check_engine(args) == "ray":
        return run_ray(args, gather_prompts(args))
    kind = kind_of(args.image)
    check_options(args, kind)
    from .edges_proposals import check_outputs

    check_outputs(args, kind)  # --edges, --proposals
    check_stdout_once(args)  # "-": standard output, for one output at most
    prompts = gather_prompts(args)
    if kind == "folder":
        from .folder import check_folder_outputs

        check_folder_outputs(args)
    elif kind == "video":
        from .video import check_video_outputs

        check_video_outputs(args)
    else:
        check_output_file(args.json, "--json")
        check_output_file(args.out, "--out")
        check_output_file(args.embeddings, "--embeddings")
        if args.out is not None and not cv2.haveImageWriter("overlay" + image_suffix(args.out)):  # none: PNG
            raise UsageError(f"cannot write overlay {clean(args.out)}: unknown image extension (use .png or .jpg)")
    fetch_models(args.model, args.clip, quiet=args.quiet, need_clip=bool(prompts.get("texts")) or args.embeddings is not None)
    model = FastSAM(args.model, clip=args.clip, providers=args.providers, strict=args.strict, resize=args.resize)
    if kind != "image":
        say_if_demo(model, args.quiet)  # once, before the progress bar
        return (run_folder if kind == "folder" else run_video)(args, model, prompts)
    from ..outputs.draw import draw_overlay
    from ..fileio import atomic_imwrite
    from ..outputs.formats import DEFAULT_EPSILON, write_annotation, write_embeddings
    from .segment_many import segment_kwargs

    result = model.segment(args.image, edges=args.edges is not None, **segment_kwargs(args, prompts))
    embeddings = None if args.embeddings is None else result.embeddings(model.clip)  # before any file is written
    dest = args.json
    try:  # atomic: a failed write (disk full, ...) leaves any previous file as it was
        if dest is not None and args.proposals is not None:  # COCO result records (fastsam_onnx.cli.edges_proposals)
            from ..fileio import atomic_write_json
            from ..outputs.proposals import proposal_records

            atomic_write_json(dest, proposal_records(result, 1, args.proposals))
        elif dest is not None:
            eps = DEFAULT_EPSILON if args.epsilon is None else args.epsilon
            write_annotation(dest, result, args.format, image_path=str(args.image), epsilon=eps, label=args.label or "object",
                             compressed=not args.uncompressed_rle)
        dest = args.embeddings
        if dest is not None:
            write_embeddings(dest, embeddings)
        dest = args.edges
        if dest is not None:
            from .edges_proposals import write_edge_map

            write_edge_map(dest, result.edges())
        dest = args.out
        if dest is not None and not atomic_imwrite(dest, draw_overlay(result)):
            raise UsageError(f"cannot write overlay {clean(dest)}")
    except OSError as e:
        raise UsageError(f"cannot write {clean(dest)}: {e.strerror or e}") from None
    say_if_demo(model, args.quiet)  # an image was segmented with it and written (not said when anything failed)
    from ..prompts import unmatched_texts

    for line in unmatched_texts(result, args.text_threshold):  # --text-mode all: why a text selected nothing
        print(clean(f"{args.image}: --text-mode all: {line}"), file=sys.stderr)
    t = result.timings
    print(
        clean(
            f"{args.image}: {plural(len(result), 'instance')}, {result.orig_shape[1]}x{result.orig_shape[0]}, "
            f"preprocess {t['preprocess']:.1f} ms, inference {t['inference']:.1f} ms, postprocess {t['postprocess']:.1f} ms"
        ),
        file=sys.stderr,
    )
    return 0

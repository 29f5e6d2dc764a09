"""``fastsam-onnx evaluate proposals|edges``: proposal recall on COCO-style ground truth, boundary F on edge maps.

``evaluate proposals --gt annotations.json --images DIR`` runs the model on every image of the annotations
(``file_name`` under DIR; or ``--results FILE``: COCO result records made before, e.g. by ``segment
--proposals``; a folder's file maps its images onto the ground truth's by ``file_name``) and prints box and mask AR@10/100/1000 and AR small/medium/large at 1000, class-agnostic
(pycocotools ``COCOeval`` with ``useCats = 0``; needs the ``[eval]`` extra).

``evaluate edges --gt DIR --images DIR`` makes the edge map of every image (or reads ``--pred DIR``: one PNG
per image, 8 or 16 bit, named like the image) and compares it with the ground-truth boundaries of the same
name under ``--gt``: ``NAME.png`` (non-zero = boundary), a folder ``NAME/`` of such PNGs (one per annotator),
or BSDS's ``NAME.mat`` (``groundTruth{k}.Boundaries``; needs scipy). Prints ODS and OIS precision, recall and
F at a tolerance of 0.0075 × the image diagonal (see :mod:`fastsam_onnx.metrics` for how the matching differs
from BSDS's). ``--json FILE`` writes the figures of either command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..progress import Progress, clean


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="proposal recall (COCO AR) or boundary F (ODS/OIS) of the model",
                       description=__doc__.split("\n\n")[0])
    kinds = p.add_subparsers(dest="what", required=True)
    for name in ("proposals", "edges"):
        k = kinds.add_parser(name, help={"proposals": "box and mask AR@10/100/1000 (pycocotools)",
                                         "edges": "boundary precision/recall/F: ODS and OIS"}[name])
        k.add_argument("--model", help="bundle directory or .onnx file (default: the shipped demo model)")
        k.add_argument("--images", type=Path, help="folder of the images")
        k.add_argument("--imgsz", type=int, default=None, help="network input size (default: the model's)")
        k.add_argument("--json", type=Path, help="write the figures as JSON here")
        k.add_argument("--providers", default=None, help="execution providers (see segment --help)")
        k.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        k.set_defaults(run=run)
    pr, ed = kinds.choices["proposals"], kinds.choices["edges"]
    from ..outputs.proposals import CONF, IOU, MAX_DET

    pr.add_argument("--gt", type=Path, required=True, help="COCO annotations JSON (instances)")
    pr.add_argument("--results", type=Path, help="COCO result records to evaluate instead of running the model (a list, or segment FOLDER --proposals --coco's file)")
    pr.add_argument("--max-det", type=int, default=MAX_DET, help=f"proposals per image (default {MAX_DET})")
    pr.add_argument("--conf", type=float, default=CONF, help=f"confidence threshold (default {CONF})")
    pr.add_argument("--iou", type=float, default=IOU, help=f"NMS IoU threshold (default {IOU})")
    ed.add_argument("--gt", type=Path, required=True, help="folder of ground-truth boundaries (NAME.png, NAME/, NAME.mat)")
    ed.add_argument("--pred", type=Path, help="folder of edge maps (NAME.png) to evaluate instead of running the model")
    ed.add_argument("--tolerance", type=float, default=0.0075, help="match distance / image diagonal (default 0.0075)")
    ed.add_argument("--thresholds", type=int, default=99, help="number of thresholds (default 99, as BSDS)")
    ed.add_argument("--thin", action="store_true", help="thin every thresholded map (Zhang-Suen) as BSDS does (slower)")


def run(args: argparse.Namespace) -> int:
    from .usage import UsageError

    if args.imgsz is not None and args.imgsz <= 0:
        raise UsageError(f"--imgsz must be a positive number of pixels, got {args.imgsz}")
    if args.what == "proposals":
        figures = _proposals(args)
        lines = [f"{'':6} {'AR@10':>7} {'AR@100':>7} {'AR@1000':>7} {'AR_s':>7} {'AR_m':>7} {'AR_l':>7}"]
        for kind in ("box", "mask"):
            f = figures[kind]
            cells = [f[k] for k in ("AR@10", "AR@100", "AR@1000", "AR_small", "AR_medium", "AR_large")]
            lines.append(f"{kind:6} " + " ".join(f"{'n/a' if v is None else f'{v:.3f}':>7}" for v in cells))
    else:
        figures = _edges(args)
        lines = [f"{'':4} {'F':>6} {'P':>6} {'R':>6}"]
        for kind in ("ods", "ois"):
            f = figures[kind]
            lines.append(f"{kind.upper():4} {f['f']:6.3f} {f['precision']:6.3f} {f['recall']:6.3f}"
                         + (f"  (threshold {f['threshold']:.2f})" if "threshold" in f else ""))
        lines.append(f"{figures['images']} images, tolerance {args.tolerance:g} x diagonal")
    print("\n".join(lines))
    if args.json is not None:
        from ..fileio import atomic_write_json

        atomic_write_json(args.json, figures)
    return 0


def _model(args: argparse.Namespace):
    from .. import FastSAM

    return FastSAM(args.model, providers=args.providers)


def _proposals(args: argparse.Namespace) -> dict:
    from .usage import UsageError
    from .extras import require

    require("eval", "pycocotools", what="fastsam-onnx evaluate proposals")
    for name in ("conf", "iou"):
        if not 0 <= getattr(args, name) <= 1:
            raise UsageError(f"--{name} must be within [0, 1], got {getattr(args, name)}")
    if args.max_det < 1:
        raise UsageError(f"--max-det must be >= 1, got {args.max_det}")
    if (args.images is None) == (args.results is None):
        raise UsageError("give --images DIR (run the model) or --results FILE (evaluate saved proposals)")
    import contextlib
    import io

    from pycocotools.coco import COCO

    from ..metrics import proposal_recall
    from ..outputs.proposals import proposal_records

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(args.gt))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"cannot read ground truth {clean(args.gt)}: {e}") from None
    if args.results is not None:
        try:
            results = json.loads(args.results.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read results {clean(args.results)}: {e}") from None
        from ..outputs.proposals import records_for

        try:  # a folder's proposals (segment FOLDER --proposals --coco): its images mapped to the ground truth's by file_name
            results = records_for(results, None if isinstance(results, list) else {im["file_name"]: i for i, im in coco.imgs.items()})
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{clean(args.results)}: {e}") from None
    else:
        imgs = [coco.imgs[i] for i in sorted(coco.getImgIds())]
        missing = [im["file_name"] for im in imgs if not (args.images / im["file_name"]).is_file()]
        if missing:
            raise UsageError(f"{len(missing)} images of {clean(args.gt)} are not under {clean(args.images)}, e.g. {clean(missing[0])}")
        model = _model(args)
        results = []
        progress = Progress(len(imgs), "proposals", enabled=not args.quiet, unit="image")
        try:
            for im in imgs:
                r = model.segment(str(args.images / im["file_name"]), conf=args.conf, iou=args.iou,
                                  max_det=args.max_det, imgsz=args.imgsz)
                results += proposal_records(r, im["id"], args.max_det)
                progress.update(status=f"{im['file_name']}: {len(r)}")
        finally:
            progress.close()
    out = {"images": len(coco.getImgIds()), "proposals": len(results)}
    for kind, iou_type in (("box", "bbox"), ("mask", "segm")):
        out[kind] = proposal_recall(coco, results, iou_type)
    return out


def _read_map(path: Path) -> "np.ndarray":
    import cv2
    import numpy as np

    from ..errors import BadImageError

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise BadImageError(f"cannot read {clean(path)}")
    if a.ndim == 3:
        a = a[..., 0]
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)


def _ground_truth(gt: Path, stem: str) -> list:
    from .usage import UsageError

    if (gt / f"{stem}.png").is_file():
        return [_read_map(gt / f"{stem}.png") > 0]
    if (gt / stem).is_dir():
        return [_read_map(p) > 0 for p in sorted((gt / stem).glob("*.png"))]
    if (gt / f"{stem}.mat").is_file():
        from .extras import require

        require("eval", "scipy", what="reading BSDS .mat ground truth")
        from scipy.io import loadmat

        cells = loadmat(str(gt / f"{stem}.mat"))["groundTruth"][0]
        return [c["Boundaries"][0, 0].astype(bool) for c in cells]
    raise UsageError(f"no ground truth for {clean(stem)} under {clean(gt)} ({stem}.png, {stem}/ or {stem}.mat)")


def _edges(args: argparse.Namespace) -> dict:
    from ..image import list_images
    from ..metrics import boundary_counts, ods_ois
    from .usage import UsageError

    if not 0 < args.tolerance < 1:
        raise UsageError(f"--tolerance must be within (0, 1), got {args.tolerance}")
    if not 1 <= args.thresholds <= 1000:
        raise UsageError(f"--thresholds must be within [1, 1000], got {args.thresholds}")
    if (args.images is None) == (args.pred is None):
        raise UsageError("give --images DIR (run the model) or --pred DIR (evaluate saved edge maps)")
    folder = args.images if args.images is not None else args.pred
    if not folder.is_dir() or not args.gt.is_dir():
        raise UsageError(f"not a folder: {clean(folder if not folder.is_dir() else args.gt)}")
    images = list_images(folder)
    if not images:
        raise UsageError(f"no images under {clean(folder)}")
    model = _model(args) if args.images is not None else None
    counts = []
    progress = Progress(len(images), "edges", enabled=not args.quiet, unit="image")
    try:
        for path in images:
            gts = _ground_truth(args.gt, path.stem)
            edge = model.edges(str(path), imgsz=args.imgsz) if model is not None else _read_map(path)
            if any(g.shape != edge.shape for g in gts):
                raise UsageError(f"{clean(path.name)}: ground truth {gts[0].shape} does not match the map {edge.shape}")
            counts.append(boundary_counts(edge, gts, args.thresholds, args.tolerance, thin=args.thin))
            progress.update(status=path.name)
    finally:
        progress.close()
    return ods_ois(counts, args.thresholds)


"""``segment``'s edge-map and proposal outputs: ``--edges EDGES.png`` (one image) and ``--proposals [N]``.

``--edges-dir DIR`` (a folder): one edge map per image, the folder's tree mirrored as ``--overlays`` does
(``a/b.jpg`` → ``DIR/a/b.jpg.png``, a 16-bit PNG as ``--edges`` writes it).

``--edges FILE``: the image's edge map (:meth:`FastSAM.edges`, computed in the same pass as the masks) as a
16-bit PNG/TIFF (0-65535 = 0-1; PNG for a name without an extension, such as ``-`` or ``/dev/stdout``), an
8-bit image for other extensions, or ``.npy`` (the float32 array).

``--proposals [N]`` (N default 1000): object-proposal mode. Up to N instances ranked by score, conf 0.01
(when ``--conf`` is left at its default 0.4) and ``--iou`` as given (default 0.9), written as COCO *result*
records (:mod:`fastsam_onnx.outputs.proposals`) — one image: to ``--json`` (image_id 1); a folder: to ``--coco``
(a COCO-style dict for the whole folder: ``images`` with each image's id and ``file_name`` relative to the folder,
``annotations`` the records, image_id = the image's position + 1; :func:`~fastsam_onnx.outputs.proposals.proposals_dataset`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..progress import clean

SEGMENT_DEFAULT_CONF = 0.4


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--edges`` and ``--proposals`` options of ``segment``."""
    from ..outputs.proposals import CONF, MAX_DET

    g = p.add_argument_group("edge maps and object proposals (see fastsam_onnx.cli.edges_proposals)")
    g.add_argument("--edges", type=Path, metavar="EDGES.png",
                   help="one image: write its edge map (16-bit PNG/TIFF, 8-bit for other image types, .npy float32)")
    g.add_argument("--edges-dir", type=Path, metavar="DIR",
                   help="folder: write one edge map per image here, the tree mirrored (a/b.jpg -> DIR/a/b.jpg.png, 16-bit)")
    g.add_argument("--proposals", type=int, nargs="?", const=MAX_DET, default=None, metavar="N",
                   help=f"object proposals: up to N (default {MAX_DET}) instances by score, conf {CONF} unless --conf "
                   "is given; --json (one image) / --coco (folder) then hold COCO result records")


def check_outputs(args: argparse.Namespace, kind: str) -> None:
    """Refuse (UsageError) ``--edges``/``--proposals`` where they do not apply; set the proposal settings."""
    from .usage import UsageError
    from .segment_many import check_output_file

    if args.edges is not None:
        if kind != "image":
            raise UsageError("--edges applies to one image (a folder or a video has no single edge map"
                             + ("; use --edges-dir DIR)" if kind == "folder" else ")"))
        check_output_file(args.edges, "--edges")
        from ..fileio import image_suffix

        if image_suffix(args.edges) != ".npy":
            import cv2

            if not cv2.haveImageWriter("edges" + image_suffix(args.edges)):  # no extension: PNG
                raise UsageError(f"cannot write edge map {clean(args.edges)}: unknown image extension (use .png or .npy)")
    if getattr(args, "edges_dir", None) is not None:
        if kind != "folder":
            raise UsageError("--edges-dir applies to a folder" + (" (use --edges FILE)" if kind == "image" else ""))
        from .segment_many import check_output_dir

        check_output_dir(args.edges_dir, "--edges-dir")
    if args.proposals is None:
        return
    if args.proposals < 1:
        raise UsageError(f"--proposals must be >= 1, got {args.proposals}")
    if kind == "video":
        raise UsageError("--proposals applies to an image (--json) or a folder (--coco)")
    if kind == "image" and args.json is None:
        raise UsageError("--proposals needs --json FILE (the COCO result records it writes)")
    if kind == "folder" and args.coco is None:
        raise UsageError("--proposals needs --coco FILE (one list of COCO result records for the folder)")
    if getattr(args, "format", "coco") != "coco" and kind == "image":
        raise UsageError("--proposals writes COCO result records: it does not combine with --format labelme/yolo")
    if kind == "folder" and args.skip_existing:
        raise UsageError("--proposals does not combine with --skip-existing (the per-image JSON holds no proposals)")
    from ..outputs.proposals import CONF

    args.max_det = args.proposals
    if args.conf == SEGMENT_DEFAULT_CONF:
        args.conf = CONF


def write_edge_map(path: Path, edges: np.ndarray) -> None:
    """Write an (H, W) float32 map in [0, 1] atomically (see the module doc for the formats)."""
    from ..fileio import atomic_imwrite, atomic_path, image_suffix

    if image_suffix(path) == ".npy":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(edges, np.float32))
        return
    wide = image_suffix(path) in (".png", ".tif", ".tiff")
    scale = 65535 if wide else 255
    img = np.rint(np.clip(edges, 0, 1) * scale).astype(np.uint16 if wide else np.uint8)
    if not atomic_imwrite(path, img):
        from .usage import UsageError

        raise UsageError(f"cannot write edge map {clean(path)}")

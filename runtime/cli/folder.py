"""``fastsam-onnx segment FOLDER``: every image under a folder (recursively), nothing lost on bad files.

Outputs (at least one): ``--out-dir DIR`` one JSON per image (``a/b.jpg`` → ``DIR/a/b.jpg.json``),
``--overlays DIR`` one overlay PNG per image (``DIR/a/b.jpg.png``), ``--edges-dir DIR`` one 16-bit edge-map
PNG per image (``DIR/a/b.jpg.png``), ``--coco FILE`` one COCO-style JSON of all
images. Output locations are checked before the first image; every file is written atomically. With
``--format labelme|yolo`` the ``--out-dir`` files are labelme JSON (``a/b.json``, imagePath relative to it) or
YOLO-seg txt (``a/b.txt``) instead (:mod:`fastsam_onnx.outputs.formats`); two images with one stem in one folder are
refused before the first image, since both would write the same file.

Any per-image failure (a typed error such as an undecodable file, or anything else the image triggers, e.g. an
OpenCV error) is reported on one sanitized line naming the file, counted and skipped; the run goes on, the COCO
file is written with the images that succeeded, and the exit status is 1. Ctrl-C stops the run after writing the
COCO file of the images done so far (exit status 130). Errors that are not about one image (a bad setting, prompt
or model: ``BadArgumentError``, ``BadPromptError``, ``BadModelError``, ``ProviderError``) stop the run at once
with exit status 2, as they would fail every image; the files written so far stay.

``--skip-existing`` skips an image when its outputs exist: its JSON in ``--out-dir`` must parse as a result JSON
(a truncated or foreign file is redone) and, with ``--overlays``, its overlay must exist. With ``--coco`` the
skipped images' existing JSON is read back into the COCO file, so a resumed run still writes a COCO file of
every image; that is why ``--skip-existing --coco`` needs ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import one_line
from ..image import list_images
from ..progress import Progress, clean
from .segment_many import check_output_dir, check_output_file, plural, segment_kwargs


def check_folder_outputs(args: argparse.Namespace) -> None:
    """Refuse (UsageError) a folder run without an output, or with an unusable output location."""
    from .usage import UsageError

    edges_dir = getattr(args, "edges_dir", None)
    if args.out_dir is None and args.coco is None and args.overlays is None and edges_dir is None:
        raise UsageError("a folder needs --out-dir DIR (one JSON per image), --overlays DIR, --edges-dir DIR and/or --coco FILE")
    if args.skip_existing and args.out_dir is None and args.overlays is None and edges_dir is None:
        raise UsageError("--skip-existing needs --out-dir, --overlays or --edges-dir (the outputs it looks for)")
    if args.skip_existing and args.coco is not None and args.out_dir is None:
        raise UsageError("--skip-existing with --coco needs --out-dir: the COCO file is rebuilt from the existing per-image JSON")
    if args.skip_existing and args.coco is not None and getattr(args, "format", "coco") != "coco":
        raise UsageError("--skip-existing with --coco needs --format coco: the COCO file is rebuilt from the per-image result JSON")
    check_output_file(args.coco, "--coco")
    check_output_dir(args.out_dir, "--out-dir")
    check_output_dir(args.overlays, "--overlays")


def read_result_json(path: Path) -> dict[str, Any] | None:
    """The result JSON at ``path`` if it exists and has the shape ``Result.to_json`` writes, else None
    (missing, truncated, not JSON, or another structure: the image is redone)."""
    try:
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        image, instances = data["image"], data["instances"]
        ok = isinstance(image["width"], int) and isinstance(image["height"], int) and isinstance(instances, list)
        for inst in instances:
            ok = ok and len(inst["box"]) == 4 and "area" in inst and "score" in inst and "segmentation" in inst
        return data if ok else None
    except (OSError, ValueError, RecursionError, KeyError, TypeError, IndexError):
        return None


def add_to_coco(coco: dict[str, list], file_name: str, data: dict[str, Any]) -> None:
    """Append one image's result JSON to a COCO dict (image id = position + 1, category 1 "object")."""
    image_id = len(coco["images"]) + 1
    coco["images"].append({"id": image_id, "file_name": file_name, "width": data["image"]["width"], "height": data["image"]["height"]})
    for inst in data["instances"]:
        x1, y1, x2, y2 = inst["box"]
        coco["annotations"].append({
            "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
            "bbox": [x1, y1, round(x2 - x1, 3), round(y2 - y1, 3)], "area": inst["area"],
            "score": inst["score"], "segmentation": inst["segmentation"], "iscrowd": 0,
        })


def run_folder(args: argparse.Namespace, model, prompts: dict) -> int:
    """Segment every image under ``args.image``; returns 0 (all done), 1 (some failed) or 130 (Ctrl-C)."""
    from ..outputs.draw import draw_overlay
    from ..errors import BadArgumentError, BadModelError, BadPromptError, ProviderError
    from ..fileio import atomic_imwrite, atomic_write_json
    from .usage import UsageError

    folder = Path(args.image)
    edges_dir = getattr(args, "edges_dir", None)  # segment --edges-dir (fastsam_onnx.cli.edges_proposals)
    images = list_images(folder, exclude=(args.out_dir, args.overlays, edges_dir))
    if not images:
        raise UsageError(f"no images under {clean(folder)} (extensions: .jpg .png .bmp .tif .webp ...)")
    from ..outputs.formats import DEFAULT_EPSILON, annotation_path, check_unique_outputs, read_annotation, write_annotation

    fmt = getattr(args, "format", "coco")  # --out-dir files: coco (result JSON), labelme JSON or YOLO-seg txt
    eps = DEFAULT_EPSILON if getattr(args, "epsilon", None) is None else args.epsilon
    if fmt != "coco" and args.out_dir is not None:
        check_unique_outputs([p.relative_to(folder) for p in images], fmt)
    coco: dict[str, list] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    props: list | None = None if getattr(args, "proposals", None) is None else []  # segment --proposals
    done = skipped = bad = instances = 0
    interrupted = False
    total = len(images)
    t0 = time.perf_counter()
    progress = Progress(total, str(folder), enabled=not args.quiet, unit="image")
    try:
        for n, path in enumerate(images, 1):
            rel = path.relative_to(folder)
            out = None if args.out_dir is None else annotation_path(args.out_dir, rel, fmt)
            overlay = None if args.overlays is None else args.overlays / rel.with_name(rel.name + ".png")
            edge_map = None if edges_dir is None else edges_dir / rel.with_name(rel.name + ".png")
            if args.skip_existing:
                existing = None if out is None else read_result_json(out) if fmt == "coco" else read_annotation(out, fmt)
                if (out is None or existing is not None) and all(f is None or f.is_file() for f in (overlay, edge_map)):
                    if args.coco is not None and existing is not None:
                        add_to_coco(coco, str(rel), existing)
                    skipped += 1
                    progress.update(status=f"{rel}: skipped (existing)")
                    continue
            try:
                result = model.segment(str(path), edges=edge_map is not None, **segment_kwargs(args, prompts))
                data = result.to_json(str(rel), compressed=not getattr(args, "uncompressed_rle", False))
                if out is not None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if fmt == "coco":
                        atomic_write_json(out, data)
                    else:
                        write_annotation(out, result, fmt, image_path=str(path), epsilon=eps, label=getattr(args, "label", None) or "object")
                if overlay is not None:
                    overlay.parent.mkdir(parents=True, exist_ok=True)
                    if not atomic_imwrite(overlay, draw_overlay(result)):
                        raise OSError(f"cannot encode overlay {overlay}")
                if edge_map is not None:
                    from .edges_proposals import write_edge_map

                    edge_map.parent.mkdir(parents=True, exist_ok=True)
                    write_edge_map(edge_map, result.edges())
            except (BadArgumentError, BadModelError, BadPromptError, ProviderError):
                raise  # a setting, the model or a prompt: every image would fail the same way (exit 2)
            except Exception as e:  # noqa: BLE001 - one bad image never stops a folder run
                bad += 1
                progress.write(f"[{n}/{total}] {clean(rel)}: skipped: {one_line(e)}")
                progress.update(status=f"{rel}: failed")
                continue
            if args.coco is not None:
                add_to_coco(coco, str(rel), data)
                if props is not None:  # COCO result records, image_id = the image's id in the COCO dict
                    from ..outputs.proposals import proposal_records

                    props += proposal_records(result, len(coco["images"]), args.proposals)
            done += 1
            instances += len(result)
            from ..prompts import unmatched_texts

            for line in unmatched_texts(result, getattr(args, "text_threshold", None)):  # --text-mode all
                progress.write(f"[{n}/{total}] {clean(rel)}: {line}")
            progress.update(status=f"{rel}: {plural(len(result), 'instance')}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    if args.coco is not None:
        from ..outputs.proposals import proposals_dataset

        atomic_write_json(args.coco, coco if props is None else proposals_dataset(coco["images"], props))
    stopped = f", stopped by Ctrl-C after {done + skipped + bad}" if interrupted else ""
    progress.write(
        f"{folder}: {done} segmented, {skipped} skipped (existing), {bad} bad, {plural(total, 'image')}{stopped} "
        f"in {time.perf_counter() - t0:.1f} s; {plural(instances, 'instance')} found"
        + (f"; COCO file {args.coco}" if args.coco is not None else "")
    )
    return 130 if interrupted else (1 if bad else 0)

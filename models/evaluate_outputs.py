"""Edge maps and object proposals of a model on held-out synthetic scenes, whose ground truth is exact.

The scenes are :func:`fastsam_onnx.models.evaluate.heldout_scenes` (``make_scene(default_rng([seed, i]))``,
never used in training). :func:`write_dataset` writes them as the ``evaluate`` command reads data sets:

- ``DIR/images/NNNN.png``: the scenes;
- ``DIR/boundaries/NNNN.png``: exact boundaries, from the instance label map (a pixel whose label differs
  from the pixel to its right or below: :func:`fastsam_onnx.metrics.labels_to_boundaries`; 255 = boundary);
- ``DIR/annotations.json``: COCO instances (category 1, exact masks as RLE, bbox, area, iscrowd 0).

Then the figures come from the same functions as ``fastsam-onnx evaluate edges|proposals``::

    python -m fastsam_onnx.models.evaluate_outputs --out /tmp/synth-eval        # demo model, 50 scenes
    fastsam-onnx evaluate edges --gt /tmp/synth-eval/boundaries --images /tmp/synth-eval/images
    fastsam-onnx evaluate proposals --gt /tmp/synth-eval/annotations.json --images /tmp/synth-eval/images
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .evaluate import heldout_scenes


def write_dataset(out: Path, n_images: int = 50, seed: int = 12345, size: int = 512) -> Path:
    """Write the held-out scenes, their boundaries and COCO annotations under ``out``; returns ``out``."""
    from fastsam_onnx.metrics import labels_to_boundaries
    from fastsam_onnx.outputs.rle import encode_rle

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "boundaries").mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for i, scene in enumerate(heldout_scenes(n_images, seed, size)):
        name = f"{i:04d}.png"
        cv2.imwrite(str(out / "images" / name), scene.image)
        cv2.imwrite(str(out / "boundaries" / name), labels_to_boundaries(scene.label_map()).astype(np.uint8) * 255)
        h, w = scene.image.shape[:2]
        coco["images"].append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for m in scene.masks:
            ys, xs = np.nonzero(m)
            if ys.size == 0:
                continue
            x0, y0 = int(xs.min()), int(ys.min())
            crop = m[y0 : ys.max() + 1, x0 : xs.max() + 1]
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "bbox": [x0, y0, crop.shape[1], crop.shape[0]], "area": int(m.sum()),
                "segmentation": encode_rle(x0, y0, crop, (h, w), compressed=True),
            })
    (out / "annotations.json").write_text(json.dumps(coco))
    return out


def evaluate(out: Path, model: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None) -> dict[str, Any]:
    """ODS/OIS of ``model.edges`` and box/mask AR of its proposals on the data set written at ``out``."""
    from fastsam_onnx.metrics import boundary_counts, ods_ois, proposal_recall
    from fastsam_onnx.outputs.proposals import CONF, IOU, MAX_DET, proposal_records

    conf, iou, max_det = CONF if conf is None else conf, IOU if iou is None else iou, MAX_DET if max_det is None else max_det
    coco = json.loads((out / "annotations.json").read_text())
    counts, results = [], []
    for im in coco["images"]:
        path = str(out / "images" / im["file_name"])
        gt = cv2.imread(str(out / "boundaries" / im["file_name"]), cv2.IMREAD_GRAYSCALE) > 0
        counts.append(boundary_counts(model.edges(path), [gt]))
        results += proposal_records(model.segment(path, conf=conf, iou=iou, max_det=max_det), im["id"])
    figures: dict[str, Any] = {"edges": ods_ois(counts), "settings": {"conf": conf, "iou": iou, "max_det": max_det}}
    for kind, t in (("box", "bbox"), ("mask", "segm")):
        figures[kind] = proposal_recall(out / "annotations.json", results, t)
    figures["proposals_per_image"] = len(results) / max(len(coco["images"]), 1)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastsam_onnx.models.evaluate_outputs", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the data set")
    p.add_argument("--bundle", help="model bundle (default: the shipped demo model)")
    p.add_argument("--n-images", type=int, default=50)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--conf", type=float, default=None)
    p.add_argument("--iou", type=float, default=None)
    a = p.parse_args(argv)
    from fastsam_onnx import FastSAM

    write_dataset(a.out, a.n_images, a.seed)
    print(json.dumps(evaluate(a.out, FastSAM(a.bundle), a.conf, a.iou), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

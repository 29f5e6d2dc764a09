"""Object proposals: up to N class-agnostic instances per image, ranked by score, as COCO *results* JSON.

FastSAM's everything mode is a proposal generator once its thresholds are opened up: a low confidence
threshold (:data:`CONF`), NMS at :data:`IOU` and up to :data:`MAX_DET` instances (COCO's AR@1000 needs 1000).
Each proposal is one COCO result record (``pycocotools`` ``COCO.loadRes`` reads a list of them)::

    {"image_id": 1, "category_id": 1, "bbox": [x, y, w, h], "score": 0.93,
     "segmentation": {"size": [h0, w0], "counts": "<COCO compressed RLE>"}}

bbox in original-image pixels (XYWH), masks at the original size (letterboxed results are brought there
as :meth:`Result.original_crops` does). Memory stays proportional to the kept boxes' areas: each mask is
encoded from its crop (:func:`fastsam_onnx.outputs.rle.encode_rles`), never as a full (h0, w0) array per
instance. Nothing here imports pycocotools.

A folder's proposals (:func:`proposals_dataset`) are one COCO-style dict: ``images`` (``id``, ``file_name``
relative to the folder, ``width``, ``height``), ``annotations`` (the records, each with an ``id``) and
``categories``; ``COCO(file)`` reads it, ``gt.loadRes(records_for(data, gt_ids))`` evaluates it against ground
truth whose image ids differ (:func:`records_for` maps them by ``file_name``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .rle import encode_rles

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["CONF", "IOU", "MAX_DET", "proposal_records", "proposals_dataset", "records_for"]

#: proposal defaults: confidence threshold, NMS IoU threshold, number of proposals
CONF = 0.01
IOU = 0.9
MAX_DET = 1000


def proposal_records(result: "Result", image_id: int = 1, limit: int | None = None) -> list[dict[str, Any]]:
    """COCO result records of ``result``'s instances (best score first, at most ``limit``)."""
    order = np.argsort(-np.asarray(result.scores), kind="stable")[: limit]
    crops = result.original_crops()
    keep = order.tolist()
    rles = encode_rles([crops[i] for i in keep], result.orig_shape)  # on the output threads
    out = []
    for i, (rle, _) in zip(keep, rles):
        x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
        out.append({
            "image_id": int(image_id),
            "category_id": 1,
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(result.scores[i]), 6),
            "segmentation": rle,
        })
    return out


def proposals_dataset(images: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A folder's proposals as a COCO-style dict: ``images`` (their ``id`` and ``file_name``: which file each
    record's ``image_id`` is), ``annotations`` (the records, numbered ``id`` 1, 2, ...), ``categories``."""
    return {"images": images, "annotations": [{"id": n, **r} for n, r in enumerate(records, 1)],
            "categories": [{"id": 1, "name": "object"}]}


def records_for(data: Any, ids_by_file: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The result records of a proposals file (a list, or :func:`proposals_dataset`'s dict), their
    ``image_id`` mapped through ``ids_by_file`` (``file_name`` → another dataset's image id) when given.

    Raises ValueError for another structure or a file name missing from ``ids_by_file``."""
    if isinstance(data, list):
        if ids_by_file is not None:
            raise ValueError("a list of records names no files: its image ids cannot be mapped")
        return data
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)):
        raise ValueError("expected a list of COCO result records or a dict with 'images' and 'annotations'")
    records = [{k: v for k, v in a.items() if k != "id"} for a in data["annotations"]]
    if ids_by_file is None:
        return records
    files = {im["id"]: im["file_name"] for im in data["images"]}
    missing = sorted({files.get(r["image_id"], str(r["image_id"])) for r in records} - set(ids_by_file))
    if missing:
        raise ValueError(f"{len(missing)} images of the proposals are not in the ground truth, e.g. {missing[0]!r}")
    for r in records:
        r["image_id"] = ids_by_file[files[r["image_id"]]]
    return records

"""Object proposals: up to N class-agnostic instances per image, ranked by score, as COCO *results* JSON.

FastSAM's everything mode is a proposal generator once its thresholds are opened up: a low confidence
threshold (:data:`CONF`), NMS at :data:`IOU` and up to :data:`MAX_DET` instances (COCO's AR@1000 needs 1000).
Each proposal is one COCO result record (``pycocotools`` ``COCO.loadRes`` reads a list of them)::

    {"image_id": 1, "category_id": 1, "bbox": [x, y, w, h], "score": 0.93,
     "segmentation": {"size": [h0, w0], "counts": "<COCO compressed RLE>"}}

bbox in original-image pixels (XYWH), masks at the original size (letterboxed results are brought there
as :meth:`Result.original_crops` does). Memory stays proportional to the kept boxes' areas: each mask is
encoded from its crop (:func:`fastsam_onnx.outputs.rle.encode_rle`), never as a full (h0, w0) array per
instance. Nothing here imports pycocotools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .rle import encode_rle

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["CONF", "IOU", "MAX_DET", "proposal_records"]

#: proposal defaults: confidence threshold, NMS IoU threshold, number of proposals
CONF = 0.01
IOU = 0.9
MAX_DET = 1000


def proposal_records(result: "Result", image_id: int = 1, limit: int | None = None) -> list[dict[str, Any]]:
    """COCO result records of ``result``'s instances (best score first, at most ``limit``)."""
    order = np.argsort(-np.asarray(result.scores), kind="stable")[: limit]
    crops = result.original_crops()
    shape = result.orig_shape
    out = []
    for i in order.tolist():
        x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
        c = crops[i]
        out.append({
            "image_id": int(image_id),
            "category_id": 1,
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(result.scores[i]), 6),
            "segmentation": encode_rle(c.x0, c.y0, c.mask, shape, compressed=True),
        })
    return out

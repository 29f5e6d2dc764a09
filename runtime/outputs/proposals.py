"""Object proposals: up to N class-agnostic instances per image, ranked by score, as COCO *results* JSON.

FastSAM's everything mode is a proposal generator once its thresholds are opened up: a low confidence
threshold (:data:`CONF`), NMS at :data:`IOU` and up to :data:`MAX_DET` instances (COCO's AR@1000 needs 1000).
Each proposal is one COCO result record (``pycocotools`` ``COCO.loadRes`` reads a list of them)::

    {"image_id": 1, "category_id": 1, "bbox": [x, y, w, h], "score": 0.93,
     "segmentation": {"size": [h0, w0], "counts": "<COCO compressed RLE>"}}

bbox in original-image pixels (XYWH), masks at the original size (letterboxed results are brought there
as :meth:`Result.original_crops` does). Memory stays proportional to the kept boxes' areas: each mask is
encoded from its crop, never as a full (h0, w0) array per instance. Nothing here imports pycocotools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..result import Result

__all__ = ["CONF", "IOU", "MAX_DET", "proposal_records", "crop_rle", "rle_string"]

#: proposal defaults: confidence threshold, NMS IoU threshold, number of proposals
CONF = 0.01
IOU = 0.9
MAX_DET = 1000


def rle_string(counts: list[int]) -> str:
    """Run lengths → COCO's compressed RLE string (``rleToString`` of the COCO API: 5-bit groups, deltas
    against the count two back from the third on, offset 48)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def crop_rle(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    """COCO compressed RLE of a (h, w) bool crop placed at column ``x0``, row ``y0`` of an (H, W) canvas.

    Column-major runs, zeros first, computed from the crop's own columns: the zeros above and below
    it in each column, and the empty columns, are run lengths, never pixels."""
    H, W = int(shape[0]), int(shape[1])
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    if h == 0 or w == 0 or not m.any():
        return {"size": [H, W], "counts": rle_string([H * W])}
    col = np.zeros((h + 2, w), dtype=bool)  # a False row above and below: every column starts and ends off
    col[1:-1] = m
    d = np.diff(col.view(np.int8), axis=0)  # +1 where a run starts, -1 where it ends (per column)
    cs, rs = np.nonzero(d.T)  # column, row of each change, column-major order
    pos = (x0 + cs) * H + y0 + rs  # canvas position (column-major) of each change
    if h == H:  # a run reaching a column's bottom may go on at the next column's top: join them
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        pos = np.delete(pos, np.concatenate([dup, dup + 1]))
    bounds = np.concatenate([[0], pos, [H * W]])
    counts = np.diff(bounds).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the mask reaches the last pixel: no trailing zero run
        counts.pop()
    return {"size": [H, W], "counts": rle_string(counts)}


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
            "segmentation": crop_rle(c.x0, c.y0, c.mask, shape),
        })
    return out

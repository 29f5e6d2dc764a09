"""Decode the detector's ``output0`` and run non-maximum suppression, in numpy.

Reproduces ``ultralytics.utils.nms.non_max_suppression`` for one class with torchvision's greedy NMS
semantics (area without +1, a box is suppressed when its IoU with a kept box is > ``iou``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Detections(NamedTuple):
    """Kept detections, best score first.

    boxes: (N, 4) float32 xyxy in network-input pixels; scores: (N,) float32; coeffs: (N, 32) float32.
    """

    boxes: np.ndarray
    scores: np.ndarray
    coeffs: np.ndarray


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height → (N, 4) x1, y1, x2, y2 (same units and dtype)."""
    xy, half = xywh[:, :2], xywh[:, 2:4] / 2
    return np.concatenate([xy - half, xy + half], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int | None = None) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first.

    boxes: (N, 4) float32 xyxy; scores: (N,). Stops after ``max_det`` kept boxes (the greedy order makes
    the first ``max_det`` identical to a full run truncated).
    """
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    thr = np.float64(iou)
    keep: list[int] = []
    limit = len(order) if max_det is None else max_det
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 for two empty boxes: NaN, never > thr: kept
            order = rest[~(inter / (areas[i] + areas[rest] - inter) > thr)]  # float32 IoU vs float64 threshold, as torchvision
    return np.asarray(keep, dtype=np.int64)


def decode(
    output0: np.ndarray, *, conf: float, iou: float, max_det: int, max_nms: int = 30000
) -> Detections:
    """Select detections from one image's ``output0``.

    output0: (4 + 1 + 32, A) rows cx, cy, w, h (input pixels), score (sigmoid applied), 32 mask coefficients.
    Candidates have score > ``conf`` (strict); at most ``max_nms`` best go to NMS; at most ``max_det`` kept.
    """
    pred = np.asarray(output0, dtype=np.float32)
    scores = pred[4]
    cand = np.flatnonzero(scores > conf)
    if cand.size > max_nms:
        cand = cand[np.argsort(-scores[cand], kind="stable")[:max_nms]]
    boxes = xywh2xyxy(pred[:4, cand].T)
    kept = nms(boxes, scores[cand], iou, max_det)
    idx = cand[kept]
    return Detections(boxes[kept], scores[idx], np.ascontiguousarray(pred[5:, idx].T))

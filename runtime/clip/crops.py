"""What CLIP sees of an instance: the image inside the instance's box, black outside its own mask, as RGB.

Text prompts compare the texts with these crops (:func:`text_crops`, the instances over 100 px, as the
reference crops them) and :meth:`fastsam_onnx.Result.embeddings` encodes one per instance
(:func:`instance_crops`). Crops are cut from the original image with masks at the original size.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..errors import BadArgumentError
from ..masks import MaskCrop

__all__ = ["text_crops", "instance_crops"]


def text_crops(
    image: np.ndarray, boxes: np.ndarray, crops: Sequence[MaskCrop], min_area: int = 100
) -> tuple[list[np.ndarray], list[int]]:
    """CLIP inputs for text prompts: for each instance with mask area > ``min_area`` px, in order, the
    image inside its box (int-truncated xyxy) with everything outside the mask black, as RGB uint8.

    image: (h0, w0, 3) BGR uint8; crops at the original size. Returns (RGB crops, their instance indices).
    Only the instance's own mask is kept, so neighbouring segments never leak into a crop.
    """
    out, keep = [], []
    for i, (box, (x0, y0, m)) in enumerate(zip(boxes.tolist(), crops)):
        if np.count_nonzero(m) <= min_area:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)
        region = image[y1:y2, x1:x2]
        if region.size == 0:
            continue
        inside = np.zeros(region.shape[:2], dtype=np.uint8)
        xs, ys = max(x1, x0), max(y1, y0)
        xe, ye = min(x2, x0 + m.shape[1]), min(y2, y0 + m.shape[0])
        if xe > xs and ye > ys:
            inside[ys - y1 : ye - y1, xs - x1 : xe - x1] = m[ys - y0 : ye - y0, xs - x0 : xe - x0]
        rgb = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_BGR2RGB)
        out.append(cv2.bitwise_and(rgb, rgb, mask=inside))  # black outside the mask
        keep.append(i)
    return out, keep


def instance_crops(image: np.ndarray, boxes: np.ndarray, crops: Sequence[MaskCrop], indices: Sequence[int]) -> list[np.ndarray]:
    """The :func:`text_crops` crop (RGB uint8, black outside the mask) of each instance in ``indices``, whatever
    its area. An instance whose int-truncated box is empty (under 1 px wide or high) is cropped to its mask
    crop's rectangle instead, so every instance gets an image."""
    sub_boxes = []
    for i in indices:
        x1, y1, x2, y2 = (int(v) for v in boxes[i].tolist())
        x0, y0, m = crops[i]
        if x2 <= x1 or y2 <= y1:
            x1, y1, x2, y2 = x0, y0, x0 + m.shape[1], y0 + m.shape[0]
        sub_boxes.append([x1, y1, x2, y2])
    images, _ = text_crops(image, np.asarray(sub_boxes, np.float64).reshape(-1, 4), [crops[i] for i in indices], min_area=-1)
    if len(images) != len(indices):  # a crop outside the image: not possible for masks made by segment()
        raise BadArgumentError("some instance's crop lies outside the image")
    return images

"""FastSAM's box fix-up after mask assembly (masks are not changed).

Reproduces ``FastSAMPredictor.postprocess``: boxes within ``threshold`` pixels of a border snap to it,
then every box whose IoU with the whole image is > 0.9 becomes the whole image (all of them, not only
box 0: ultralytics PR 25175 fixed that bug).
"""

from __future__ import annotations

import numpy as np


def scale_boxes(boxes: np.ndarray, gain: tuple[float, float], pad: tuple[int, int], orig_shape: tuple[int, int]) -> np.ndarray:
    """Network-input xyxy → original-image xyxy, clipped to [0, w0] × [0, h0].

    boxes: (N, 4) float32; gain: (gain_x, gain_y) = resized / original size; pad: (left, top) pixels.
    """
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] -= np.float32(pad[0])
    out[:, [1, 3]] -= np.float32(pad[1])
    out[:, [0, 2]] /= np.float32(gain[0])
    out[:, [1, 3]] /= np.float32(gain[1])
    h, w = orig_shape
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def snap_to_border(boxes: np.ndarray, image_shape: tuple[int, int], threshold: float = 20) -> np.ndarray:
    """Boxes (N, 4) xyxy pixels: edges closer than ``threshold`` px to the image border move onto it."""
    h, w = image_shape
    out = boxes.copy()
    out[out[:, 0] < threshold, 0] = 0
    out[out[:, 1] < threshold, 1] = 0
    out[out[:, 2] > w - threshold, 2] = w
    out[out[:, 3] > h - threshold, 3] = h
    return out


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU matrix (N, M) of xyxy boxes a (N, 4) and b (M, 4), float32, ``eps`` added to the union."""
    a = a.astype(np.float32)[:, None]
    b = b.astype(np.float32)[None]
    inter = (np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])).clip(0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).prod(-1)
    return inter / (area_a + area_b - inter + np.float32(eps))


def fastsam_fixup(boxes: np.ndarray, image_shape: tuple[int, int], threshold: float = 20, full_iou: float = 0.9) -> np.ndarray:
    """Border snap then full-image swap; boxes (N, 4) float32 xyxy in original pixels → new array."""
    h, w = image_shape
    out = snap_to_border(boxes, image_shape, threshold)
    full = np.array([[0, 0, w, h]], dtype=np.float32)
    out[box_iou(full, out)[0] > full_iou] = full
    return out

"""Overlay drawing: masks in distinct colours with outlines, boxes and scores."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ..result import Result


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 BGR colours, well apart in hue (golden-ratio steps)."""
    cols = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95) for i in range(n)]
    return (np.array(cols, dtype=np.float64).reshape(-1, 3)[:, ::-1] * 255).astype(np.uint8)


def draw_overlay(result: Result, image: np.ndarray | None = None, alpha: float = 0.5, boxes: bool = True) -> np.ndarray:
    """The (h0, w0, 3) BGR image with every mask blended in its colour, outlined, and its box and score.

    Masks in letterboxed coordinates (non-retina) are mapped back to the original image first.
    """
    img = (result.orig_img if image is None else image).copy()
    h0, w0 = result.orig_shape
    cols = palette(len(result))
    order = np.argsort(-result.areas, kind="stable") if len(result) else []
    for i in order:  # large masks first so small ones stay visible
        m = result.mask(int(i))
        if m.shape != (h0, w0):
            m = _unletterbox(m, (h0, w0))
        ys, xs = np.nonzero(m)
        c = cols[i].astype(np.float32)
        img[ys, xs] = (img[ys, xs] * (1 - alpha) + c * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, tuple(int(v) for v in cols[i]), 2)
    if boxes:
        for i, (box, score) in enumerate(zip(result.boxes.astype(int).tolist(), result.scores.tolist())):
            col = tuple(int(v) for v in cols[i])
            cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), col, 1)
            cv2.putText(img, f"{score:.2f}", (box[0] + 2, box[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
    return img


def _unletterbox(mask: np.ndarray, orig_shape: tuple[int, int]) -> np.ndarray:
    """Letterboxed (H, W) bool mask → (h0, w0) bool, removing the centred padding (nearest neighbour)."""
    from ..letterbox import letterbox_geometry

    lb = letterbox_geometry(orig_shape, mask.shape)
    inner = mask[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w].astype(np.uint8)
    return cv2.resize(inner, (orig_shape[1], orig_shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)

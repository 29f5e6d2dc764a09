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

    Masks are taken at the original size as :meth:`Result.original_crops` gives them (letterboxed masks
    resized as the JSON outputs resize them); each is blended and outlined within its own crop.
    """
    img = (result.orig_img if image is None else image).copy()
    cols = palette(len(result))
    crops = result.original_crops()
    order = np.argsort(-result.areas, kind="stable") if len(result) else []
    for i in order:  # large masks first so small ones stay visible
        x0, y0, m = crops[i]
        if not m.any():
            continue
        region = img[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        c = cols[i].astype(np.float32)
        region[m] = (region[m] * (1 - alpha) + c * alpha).astype(np.uint8)
        # the full mask's contours: findContours pads what it traces with zeros, so the crop's edge is no edge
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
        cv2.drawContours(img, contours, -1, tuple(int(v) for v in cols[i]), 2)
    if boxes:
        for i, (box, score) in enumerate(zip(result.boxes.astype(int).tolist(), result.scores.tolist())):
            col = tuple(int(v) for v in cols[i])
            cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), col, 1)
            cv2.putText(img, f"{score:.2f}", (box[0] + 2, box[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
    return img


"""Box crops packed into a few shared canvases, for tracing them with one ``cv2.findContours`` call per canvas
(:func:`~fastsam_onnx.outputs.polygons.crops_polygons`): shelves of crops in strips of about ``STRIP_PX``
pixels, every crop with a border of zero pixels, so that no two crops' contours meet."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STRIP_PX", "KEY", "layout"]

STRIP_PX = 1 << 18  # pixels of one findContours canvas (its work buffers stay in cache); larger crops go alone
KEY = 1 << 32  # tile key = shelf number * KEY + column


def layout(shapes: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Pack (h, w) crops (pixels) into strips of shelves, every crop with zero rows and columns around it.

    Crops taller or wider than a strip get a strip of their own, (h + 2, w + 2) as
    :func:`~fastsam_onnx.outputs.polygons.mask_polygons` pads them; the others go by decreasing height into
    shelves of strips ``isqrt(STRIP_PX)`` wide (next fit). Strips are stacked in one virtual (x, y) plane. Returns
    per tile (placement order: shelf by shelf, left to right) its crop number and the x, y of its pixel (0, 0) as
    a (T, 3) int64 array; the shelves' top rows; the tiles' keys (shelf * ``KEY`` + x, increasing); the strips as
    (first row, rows, width, [(crop, x, row in the strip)]).
    """
    side = math.isqrt(STRIP_PX)
    order = sorted(range(len(shapes)), key=lambda i: -shapes[i][0])
    tiles: list[tuple[int, int, int]] = []  # (crop, x, y)
    keys, tops, strips = [], [], []
    y0 = 0
    for i in order:
        h, w = shapes[i]
        if h + 2 > side or w + 2 > side:
            strips.append((y0, h + 2, w + 2, [(i, 1, 1)]))
            keys.append(len(tops) * KEY + 1)
            tops.append(y0 + 1)
            tiles.append((i, 1, y0 + 1))
            y0 += h + 2
    placed, top, x, shelf_h, width = [], y0 + 1, side, 0, 0
    for i in order:
        h, w = shapes[i]
        if h + 2 > side or w + 2 > side:
            continue
        if x + w + 1 > side:  # a new shelf, in a new strip when it would pass STRIP_PX
            if placed and (top + shelf_h + h + 3 - y0) * side > STRIP_PX:
                strips.append((y0, top + shelf_h + 1 - y0, width, placed))
                placed, y0, width = [], top + shelf_h + 1, 0
                top = y0 + 1
            elif placed:
                top += shelf_h + 1
            x, shelf_h = 1, h
            tops.append(top)
        placed.append((i, x, top - y0))
        keys.append((len(tops) - 1) * KEY + x)
        tiles.append((i, x, top))
        x += w + 1
        width = max(width, x)
    if placed:
        strips.append((y0, top + shelf_h + 1 - y0, width, placed))
    return np.array(tiles, np.int64).reshape(-1, 3), np.asarray(tops, np.int64), np.asarray(keys, np.int64), strips

"""Overlay drawing: masks in distinct colours with outlines, boxes and scores.

The masks are drawn as a label map: every pixel takes the colour of the last mask drawn over it (large masks
first, so small ones stay visible), blended with the image at ``alpha``, and the borders between differently
labelled pixels are outlined (2 px, in the colour of the later mask). The image is drawn in bands of rows,
spread over the cores (:mod:`fastsam_onnx.parallel`): per band, the labels of the masks whose crops reach it
(one pass over those rows of each crop), then a few passes over the band. The only full-size array is the
output image.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ..errors import BadArgumentError
from ..parallel import chunks, parallel_map, workers
from ..result import Result

_BAND_PX = 1 << 20  # pixels of all the bands composed at once: their temporaries (~20 B/px) stay ~20 MB, whatever the threads
_CROSS = np.ones((3, 3), np.uint8)
_U16_LABELS = 1 << 16  # instances that uint16 labels can tell apart (with 0 for none)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 BGR colours, well apart in hue (golden-ratio steps)."""
    cols = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95) for i in range(n)]
    return (np.array(cols, dtype=np.float64).reshape(-1, 3)[:, ::-1] * 255).astype(np.uint8)


def band_labels(placed: list, r0: int, r1: int, width: int) -> np.ndarray:
    """(r1 - r0, width) labels of image rows [r0, r1): at each pixel, the rank of the last of ``placed``
    ((rank, x0, y0, (h, w) bool mask), ranks increasing from 1 in drawing order) whose mask covers it, else 0.

    Ranks increase in drawing order, so the last mask over a pixel is the one of highest rank there: per crop
    one ``max`` of the band's rows with mask × rank (two vectorised OpenCV passes over those rows)."""
    # uint16 labels; past 65535 instances float32 (exact to 2**24; OpenCV's dilate/erode take no 32-bit ints)
    wide = len(placed) >= _U16_LABELS
    top = np.zeros((r1 - r0, width), np.float32 if wide else np.uint16)
    depth = cv2.CV_32F if wide else cv2.CV_16U
    for rank, x0, y0, m in placed:
        a, b = max(r0, y0), min(r1, y0 + m.shape[0])
        if a < b and m.shape[1]:
            region, part = top[a - r0 : b - r0, x0 : x0 + m.shape[1]], m[a - y0 : b - y0]
            if part.size > 1:
                cv2.max(region, cv2.multiply(part.view(np.uint8), rank, dtype=depth), dst=region)
            else:  # OpenCV's bindings read a one-element array as a scalar
                np.copyto(region, rank, where=part, casting="unsafe")
    return top


def draw_overlay(result: Result, image: np.ndarray | None = None, alpha: float = 0.5, boxes: bool = True) -> np.ndarray:
    """The (h0, w0, 3) BGR uint8 image with every mask blended in its colour, the masks' borders outlined, and
    each instance's box and score.

    Masks are taken at the original size as :meth:`Result.original_crops` gives them (letterboxed masks
    resized as the JSON outputs resize them). Instance i has colour ``palette(N)[i]``.
    """
    img = np.array(result.orig_img if image is None else image, copy=True)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise BadArgumentError(f"the overlay draws on an (h0, w0, 3) BGR uint8 image, got {img.dtype} {img.shape}")
    if tuple(img.shape[:2]) != tuple(result.orig_shape):
        raise BadArgumentError(f"the image is {img.shape[1]}x{img.shape[0]}, the result's {result.orig_shape[1]}x{result.orig_shape[0]}")
    n = len(result)
    cols = palette(n)
    if n:
        crops = result.original_crops()
        order = np.argsort(-result.original_areas(), kind="stable")  # large first
        placed = [(rank, *crops[i]) for rank, i in enumerate(order.tolist(), 1)]
        lut = np.zeros((n + 1, 4), np.uint8)  # label -> BGRA colour, packed in one uint32 for one gather
        lut[1:, :3] = cols[order]
        packed = lut.view(np.uint32).ravel()
        H, W = img.shape[:2]

        def colours(labels: np.ndarray) -> np.ndarray:  # label map -> its BGR image, in one gather
            return cv2.cvtColor(packed.take(labels).view(np.uint8).reshape(*labels.shape, 4), cv2.COLOR_BGRA2BGR)

        def paint(strip: np.ndarray, t: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
            """Blend the labelled pixels of ``strip`` with their colours, then outline the borders."""
            border = cv2.compare(hi, lo, cv2.CMP_NE)  # a label differs within 1 px: the later mask's colour
            if cv2.countNonZero(border):
                t = t.copy()
                cv2.copyTo(hi, border, t)
            inside = cv2.compare(t, 0, cv2.CMP_GT)
            if cv2.countNonZero(inside):
                colour = colours(t)
                cv2.copyTo(cv2.addWeighted(strip, 1 - alpha, colour, alpha, 0), inside, strip)
                cv2.copyTo(colour, border, strip)

        def compose(rows: tuple[int, int]) -> None:
            r0, r1 = rows
            a0, a1 = max(0, r0 - 1), min(H, r1 + 1)  # one row of halo for the borders
            here = [c for c in placed if c[2] < a1 and c[2] + c[3].shape[0] > a0 and c[3].size]
            if not here:
                return
            # the columns the band's crops span, with one of halo: nothing changes outside them
            c0 = max(0, min(c[1] for c in here) - 1)
            c1 = min(W, max(c[1] + c[3].shape[1] for c in here) + 1)
            t = band_labels([(k, x0 - c0, y0, m) for k, x0, y0, m in here], a0, a1, c1 - c0)
            hi, lo = cv2.dilate(t, _CROSS), cv2.erode(t, _CROSS)
            t, hi, lo = t[r0 - a0 : r1 - a0], hi[r0 - a0 : r1 - a0], lo[r0 - a0 : r1 - a0]
            if t.dtype == np.float32:  # labels past uint16: gathered as ints, compared as ints
                t, hi, lo = t.astype(np.int32), hi.astype(np.int32), lo.astype(np.int32)
            strip = img[r0:r1, c0:c1]
            if t.size == 1:  # OpenCV's bindings read a one-element array as a scalar: paint a padded copy
                pad = lambda a: np.pad(a, [(0, 0), (0, 1)] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
                wide = pad(strip)
                paint(wide, pad(t), pad(hi), pad(lo))
                strip[:] = wide[:, :1]
            else:
                paint(strip, t, hi, lo)

        rows = max(1, _BAND_PX // (workers() * max(W, 1)))
        parallel_map(compose, chunks(H, -(-H // rows)))
    if boxes:
        for i, (box, score) in enumerate(zip(result.boxes.astype(int).tolist(), result.scores.tolist())):
            col = tuple(int(v) for v in cols[i])
            cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), col, 1)
            cv2.putText(img, f"{score:.2f}", (box[0] + 2, box[1] + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
    return img

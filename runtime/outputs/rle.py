"""COCO run-length encoding of instance masks, from each instance's crop (the package's one RLE encoder).

A mask is given as its box-sized crop placed at column ``x0``, row ``y0`` of an (H, W) canvas (a
:class:`~fastsam_onnx.masks.MaskCrop`); the work scales with the crop, never with H × W: the zeros above and
below it in each column, and the empty columns, are run lengths, never pixels. The output is what
``pycocotools.mask.encode`` gives for the full (Fortran-order) mask: run lengths in column-major order, zeros
first, as a list (:func:`run_lengths`, the uncompressed form ``frPyObjects`` reads) or as COCO's compressed
string (:func:`rle_string`, ``rleToString``). Nothing here imports pycocotools.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["run_lengths", "rle_string", "encode_rle", "decode_rle"]


def run_lengths(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int]) -> list[int]:
    """Run lengths of the (h, w) bool crop ``mask`` at column ``x0``, row ``y0`` of an (H, W) canvas:
    column-major, zeros first (a leading 0 when the canvas's first pixel is on), no trailing zero run."""
    H, W = int(shape[0]), int(shape[1])
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    if h == 0 or w == 0 or not m.any():
        return [H * W]
    col = np.zeros((h + 2, w), dtype=bool)  # a False row above and below: every column starts and ends off
    col[1:-1] = m
    d = np.diff(col.view(np.int8), axis=0)  # +1 where a run starts, -1 where it ends (per column)
    cs, rs = np.nonzero(d.T)  # column, row of each change, column-major order
    pos = (x0 + cs) * H + y0 + rs  # canvas position (column-major) of each change
    if h == H:  # a run reaching a column's bottom may go on at the next column's top: join them
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        pos = np.delete(pos, np.concatenate([dup, dup + 1]))
    counts = np.diff(np.concatenate([[0], pos, [H * W]])).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the mask reaches the last pixel: no trailing zero run
        counts.pop()
    return counts


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


def encode_rle(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int], compressed: bool = False) -> dict[str, Any]:
    """COCO RLE ``{"size": [H, W], "counts": ...}`` of the crop ``mask`` at (``x0``, ``y0``) of an (H, W)
    canvas: ``counts`` the run lengths (a list of ints), or with ``compressed`` COCO's string."""
    counts = run_lengths(x0, y0, mask, shape)
    return {"size": [int(shape[0]), int(shape[1])], "counts": rle_string(counts) if compressed else counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle` (uncompressed counts) → the full (H, W) bool mask (for tests and readers)."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")

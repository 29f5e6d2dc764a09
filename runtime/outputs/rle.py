"""COCO run-length encoding of binary masks (the uncompressed-counts form pycocotools reads)."""

from __future__ import annotations

import numpy as np


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool → ``{"size": [H, W], "counts": [...]}``: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle` (uncompressed counts) → (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")

"""The result of one segmentation: boxes, scores and masks, stored per instance as box-sized crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .masks import MaskCrop, rescale_crops, unpad_axes
from .rle import encode_rle


@dataclass
class Result:
    """Instances found in one image, in the reference's order (best score first).

    Attributes:
        boxes: (N, 4) float32 xyxy in original-image pixels.
        scores: (N,) float32 confidences.
        crops: per instance, its mask inside its box (:class:`MaskCrop`), on a canvas of ``mask_shape``.
        mask_shape: (H, W) of the masks: the original image size with retina masks, else the network
            input size (letterboxed coordinates, as the reference returns them).
        orig_shape: (h0, w0) of the original image.
        timings: milliseconds per stage: ``preprocess``, ``inference``, ``postprocess``.
        orig_img: the (h0, w0, 3) BGR uint8 image, kept for prompts and drawing.
    """

    boxes: np.ndarray
    scores: np.ndarray
    crops: list[MaskCrop]
    mask_shape: tuple[int, int]
    orig_shape: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    orig_img: np.ndarray | None = field(default=None, repr=False)
    selected_by: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.crops)

    def mask(self, i: int) -> np.ndarray:
        """Full-size (H, W) bool mask of instance ``i``."""
        out = np.zeros(self.mask_shape, dtype=bool)
        x0, y0, m = self.crops[i]
        out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool masks, built on each access: N × H × W bytes; prefer :meth:`mask` for big images."""
        out = np.zeros((len(self), *self.mask_shape), dtype=bool)
        for i, (x0, y0, m) in enumerate(self.crops):
            out[i, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 mask areas in pixels of the mask canvas."""
        return np.array([int(c.mask.sum()) for c in self.crops], dtype=np.int64)

    def original_crops(self) -> list[MaskCrop]:
        """The instance masks at the original image size (letterboxed masks are resized as the
        reference's prompt step resizes them: bilinear, on where > 0.5)."""
        if self.mask_shape == self.orig_shape:
            return list(self.crops)
        return rescale_crops(self.crops, *unpad_axes(self.mask_shape, self.orig_shape))

    def select(self, idx: Sequence[int] | np.ndarray, selected_by: list[list[str]] | None = None) -> "Result":
        """A new result with the instances ``idx`` (indices or a boolean mask), in that order."""
        sel = np.asarray(idx)
        if sel.dtype != bool:
            sel = sel.astype(np.int64)
        idx = np.arange(len(self))[sel] if len(self) else np.zeros(0, dtype=np.int64)
        return Result(
            self.boxes[idx], self.scores[idx], [self.crops[i] for i in idx], self.mask_shape,
            self.orig_shape, dict(self.timings), self.orig_img, selected_by,
        )

    def to_json(self, image_path: str | None = None) -> dict[str, Any]:
        """JSON-ready dict: ``image`` (path, width, height), ``instances`` (box, score, area, COCO RLE
        ``segmentation`` of the full-size mask) and ``timings_ms``."""
        h0, w0 = self.orig_shape
        instances = []
        for i, (box, score, crop) in enumerate(zip(self.boxes.tolist(), self.scores.tolist(), self.crops)):
            instances.append(
                {
                    "id": i,
                    "box": [round(v, 3) for v in box],
                    "score": round(score, 6),
                    "area": int(crop.mask.sum()),
                    "segmentation": encode_rle(self.mask(i)),
                }
            )
            if self.selected_by is not None:
                instances[-1]["selected_by"] = self.selected_by[i]
        return {
            "image": {"path": image_path, "width": w0, "height": h0},
            "mask_size": {"width": self.mask_shape[1], "height": self.mask_shape[0]},
            "instances": instances,
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }

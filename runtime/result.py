"""The result of one segmentation: boxes, scores and masks, stored per instance as box-sized crops."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import BadArgumentError
from .masks import MaskCrop, rescale_crops, unpad_axes
from .outputs.rle import encode_rles

if TYPE_CHECKING:
    from .outputs.polygons import Polygon


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
        selected_by: per instance, the prompts that picked it (None for a segment-everything result).
        path: the image file the result came from (None for an array); :meth:`to_json` reports it.
        prompt_scores: per instance, ``{tag: score}`` for the prompts that score their picks (today
            ``text_mode="all"``: ``{"text:red circle": cosine}``); None when no prompt scored.
        best_prompt_scores: ``{tag: best score}`` of each scoring prompt over every candidate, whether or not it
            reached the threshold (``text_mode="all"``: the best cosine similarity of each text, None when no
            instance was a candidate): why a text selected nothing. None when no prompt scored.

    ``repr(result)`` is a one-line summary, never the arrays.
    """

    boxes: np.ndarray
    scores: np.ndarray
    crops: list[MaskCrop]
    mask_shape: tuple[int, int]
    orig_shape: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    orig_img: np.ndarray | None = field(default=None, repr=False)
    selected_by: list[list[str]] | None = None
    path: str | None = None
    prompt_scores: list[dict[str, float]] | None = None
    best_prompt_scores: dict[str, float | None] | None = None
    _clip_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _clip_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    # edge maps (fastsam_onnx.outputs.edges): (protos (32, mh, mw), coeffs (N, 32), retina) kept by postprocess, and
    # the everything-mode map computed in the same pass by segment(edges=True): {band: (h0, w0) float32}
    _logits: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _edges: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _areas: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _original_areas: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)  # letterboxed

    def __getstate__(self) -> dict[str, Any]:  # picklable (multiprocessing, Ray): the CLIP cache stays behind
        state = dict(self.__dict__)
        state["_clip_cache"], state["_clip_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clip_lock = threading.Lock()

    def nbytes(self) -> int:
        """Bytes of the arrays this result keeps alive: mask crops, boxes, scores, the image, the prototypes
        kept for edge maps (shared with selections of it), cached edge maps and CLIP embeddings."""
        arrays = [c.mask for c in self.crops] + [self.boxes, self.scores, self.orig_img]
        arrays += list(self._logits[:2]) if self._logits is not None else []
        arrays += list(self._edges.values())
        for entry in list(self._clip_cache.values()):
            arrays += [v for v in entry if isinstance(v, np.ndarray)]
        return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))

    def __len__(self) -> int:
        return len(self.crops)

    def __repr__(self) -> str:
        n = len(self)
        parts = [
            f"{n} instance{'' if n == 1 else 's'}",
            f"image {self.orig_shape[1]}x{self.orig_shape[0]}",
            f"masks {self.mask_shape[1]}x{self.mask_shape[0]}",
        ]
        if self.path is not None:
            parts.append(f"path={self.path!r}")
        if self.selected_by is not None:
            tags = sorted({t for ts in self.selected_by for t in ts})
            shown = ", ".join(tags[:4]) + (f", … {len(tags) - 4} more" if len(tags) > 4 else "")
            parts.append(f"selected_by=[{shown}]")
        if self.timings:
            parts.append("timings " + " ".join(f"{k}={v:.1f}ms" for k, v in self.timings.items()))
        return f"Result({', '.join(parts)})"

    __str__ = __repr__

    def _index(self, i) -> int:
        """``i`` as an instance index in [0, N) (negative counts from the end); BadArgumentError otherwise."""
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise BadArgumentError(f"an instance index must be an int, got {i!r}")
        n = len(self)
        if not -n <= int(i) < n:
            raise BadArgumentError(f"instance index {int(i)} is out of range for a result of {n} instance{'' if n == 1 else 's'}")
        return int(i) % n

    def mask(self, i: int) -> np.ndarray:
        """Full-size (H, W) bool mask of instance ``i`` (an int; negative counts from the end)."""
        out = np.zeros(self.mask_shape, dtype=bool)
        x0, y0, m = self.crops[self._index(i)]
        out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool masks, built on each access: N × H × W bytes; prefer :meth:`mask` for big images."""
        out = np.zeros((len(self), *self.mask_shape), dtype=bool)
        for i, (x0, y0, m) in enumerate(self.crops):
            out[i, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out

    def _holds_all(self, cached: np.ndarray | None) -> bool:
        """Whether a per-instance cache was filled for this result's instances (one entry per crop)."""
        return cached is not None and len(cached) == len(self.crops)

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 mask areas in pixels of the mask canvas (counted once per result; a copy)."""
        if not self._holds_all(self._areas):
            self._areas = np.array([np.count_nonzero(c.mask) for c in self.crops], dtype=np.int64)
        return self._areas.copy()

    def original_areas(self) -> np.ndarray:
        """(N,) int64 mask areas of :meth:`original_crops`: :attr:`areas` with retina masks, else counted on the
        resized crops."""
        if self.mask_shape == self.orig_shape:
            return self.areas
        if not self._holds_all(self._original_areas):
            self.original_crops()  # counts them as it resizes
        return self._original_areas.copy()

    def original_crops(self) -> list[MaskCrop]:
        """The instance masks at the original image size (letterboxed masks are resized as the
        reference's prompt step resizes them: bilinear, on where > 0.5; their areas are kept for
        :meth:`original_areas`, so callers holding the crops do not resize them again for it)."""
        if self.mask_shape == self.orig_shape:
            return list(self.crops)
        crops = rescale_crops(self.crops, *unpad_axes(self.mask_shape, self.orig_shape))
        if not self._holds_all(self._original_areas):
            self._original_areas = np.array([np.count_nonzero(c.mask) for c in crops], dtype=np.int64)
        return crops

    def select(self, idx: Sequence[int] | np.ndarray, selected_by: list[list[str]] | None = None) -> "Result":
        """A new result with the instances ``idx``, in that order: ints in [-N, N) or an (N,) bool mask.

        Floats, out-of-range indices, a bool mask of another length or ``selected_by`` of another length
        raise :class:`BadArgumentError`.
        """
        try:
            sel = np.asarray(idx)
        except (TypeError, ValueError):
            raise BadArgumentError(f"select takes instance indices or a boolean mask, got {idx!r}") from None
        n = len(self)
        if sel.dtype == bool:
            if sel.shape != (n,):
                raise BadArgumentError(f"a boolean selection must have shape ({n},), got {sel.shape}")
            rows = np.flatnonzero(sel)
        elif sel.size == 0:
            rows = np.zeros(0, dtype=np.int64)
        elif sel.ndim != 1 or not np.issubdtype(sel.dtype, np.integer):
            raise BadArgumentError(f"select takes a list of int indices or a boolean mask, got {idx!r}")
        else:
            if (sel < -n).any() or (sel >= n).any():
                raise BadArgumentError(f"instance indices {sel.tolist()} out of range for a result of {n} instances")
            rows = sel.astype(np.int64) % max(n, 1)
        if selected_by is not None and len(selected_by) != len(rows):
            raise BadArgumentError(f"selected_by has {len(selected_by)} entries for {len(rows)} instances")
        scores = None if self.prompt_scores is None else [dict(self.prompt_scores[i]) for i in rows]
        out = Result(
            self.boxes[rows], self.scores[rows], [self.crops[i] for i in rows], self.mask_shape,
            self.orig_shape, dict(self.timings), self.orig_img, selected_by, self.path, scores,
            None if self.best_prompt_scores is None else dict(self.best_prompt_scores),
        )
        if self._logits is not None:  # edges of a selection: its own instances' logits
            out._logits = (self._logits[0], self._logits[1][rows], self._logits[2])
        return out

    def clear_clip_cache(self) -> None:
        """Drop the CLIP image embeddings cached on this result (:meth:`text_crop_embeddings`,
        :meth:`embeddings`): their memory, or to time a first text prompt again."""
        with self._clip_lock:
            self._clip_cache.clear()

    def text_crop_embeddings(self, clip: Any) -> tuple[np.ndarray, list[int]]:
        """CLIP image embeddings of the crops text prompts compare with: ((K, D) float32 L2-normalised, the
        instance index of each row). Crops as :func:`fastsam_onnx.clip.crops.text_crops` makes them (instances
        with masks over 100 px). Encoded once per CLIP object and kept on this result (thread-safe), so
        further text prompts on it cost only the text tower; ``clip`` needs ``encode_images(images)``."""
        from .clip.crops import text_crops

        key = id(clip)
        with self._clip_lock:  # one encoding per CLIP even when threads prompt the same result at once
            hit = self._clip_cache.get(key)
            if hit is None or hit[0] is not clip:
                if self.orig_img is None:
                    raise BadArgumentError("this result keeps no image (orig_img): text prompts need it")
                images, keep = text_crops(self.orig_img, self.boxes, self.original_crops())
                feats = clip.encode_images(images) if images else np.zeros((0, 0), np.float32)
                hit = self._clip_cache[key] = (clip, feats, keep)
        return hit[1], list(hit[2])

    def embeddings(self, clip: Any) -> np.ndarray:
        """(N, D) float32 CLIP image embeddings, L2-normalised (cosine similarity = dot product); row i is
        instance i (as in :meth:`to_json`). Each row encodes the instance's masked crop, the crop text prompts
        use (:func:`fastsam_onnx.clip.crops.instance_crops`: its box, black outside its own mask), so
        ``embeddings(clip) @ clip.encode_texts([t]).T`` are the text prompt's similarities. The text
        candidates' rows come from :meth:`text_crop_embeddings`; the small instances (masks <= 100 px) are
        encoded once more; the whole array is cached per CLIP object on this result. Returns a copy."""
        from .clip.crops import instance_crops

        feats, keep = self.text_crop_embeddings(clip)
        key = ("all", id(clip))
        with self._clip_lock:
            hit = self._clip_cache.get(key)
            if hit is None or hit[0] is not clip:
                rest = sorted(set(range(len(self))) - set(keep))
                extra = clip.encode_images(instance_crops(self.orig_img, self.boxes, self.original_crops(), rest)) if rest else None
                dim = feats.shape[1] if keep else extra.shape[1] if extra is not None else int(clip.embed_dim)
                out = np.zeros((len(self), dim), np.float32)
                if keep:
                    out[keep] = feats
                if extra is not None:
                    out[rest] = extra
                hit = self._clip_cache[key] = (clip, out)
        return hit[1].copy()

    def edges(self, band: int = 1) -> np.ndarray:
        """Edge map of this result's instances: (h0, w0) float32 in [0, 1] at the original image size
        (Sobel of each instance's mask probability within ``band`` px of its boundary, maximum over
        instances, non-maximum suppression, divided by the maximum). See :mod:`fastsam_onnx.outputs.edges`."""
        from .outputs.edges import check_band, result_edges

        band = check_band(band)
        hit = self._edges.get(band)
        return hit.copy() if hit is not None else result_edges(self, band)

    def polygons(self, epsilon: float = 0.0) -> list[list["Polygon"]]:
        """Per instance, its mask as polygons (outer contours with their holes) in original-image pixels,
        largest part first; ``epsilon``: simplification relative to each contour's perimeter (X-AnyLabeling's
        ``epsilon_factor``). See :mod:`fastsam_onnx.outputs.polygons`."""
        from .outputs.polygons import crops_polygons

        return crops_polygons(self.original_crops(), epsilon)

    def exteriors(self, epsilon: float = 0.0) -> list[list[np.ndarray]]:
        """Per instance, the outer contour of each of its parts as a (K, 2) float32 array of x, y in original-image
        pixels, largest first: what outputs without holes write (labelme, YOLO-seg, X-AnyLabeling and Label Studio
        polygons). ``cv2.RETR_EXTERNAL``, as X-AnyLabeling and ultralytics trace masks: the exteriors of
        :meth:`polygons` less those of parts lying in another part's hole (its filled exterior covers them)."""
        from .outputs.polygons import crops_exteriors

        pts, lens, owner = crops_exteriors(self.original_crops(), epsilon)
        out: list[list[np.ndarray]] = [[] for _ in range(len(self))]
        for i, part in zip(owner.tolist(), np.split(pts, np.cumsum(lens)[:-1])):
            out[i].append(part)
        return out

    def to_json(self, image_path: str | None = None, *, compressed: bool = True) -> dict[str, Any]:
        """JSON-ready dict: ``image`` (path, width, height), ``instances`` (box, score, area, COCO RLE
        ``segmentation`` of the mask on its ``mask_shape`` canvas, encoded from the crop) and ``timings_ms``.

        ``segmentation.counts`` is COCO's compressed RLE string, or with ``compressed=False`` the run lengths as a
        list of ints; ``pycocotools.mask.decode`` reads the string as it is, and the list after ``frPyObjects``.
        ``image.path`` is ``image_path`` when given, else :attr:`path` (the file ``segment`` read), else None."""
        if image_path is None:
            image_path = self.path
        h0, w0 = self.orig_shape
        encoded = encode_rles(self.crops, self.mask_shape, compressed)
        segmentations = [rle for rle, _ in encoded]
        if not self._holds_all(self._areas):  # counted off the runs: no pass over the crops
            self._areas = np.array([area for _, area in encoded], dtype=np.int64)
        areas = self._areas.tolist()
        instances = []
        for i, (box, score, seg) in enumerate(zip(self.boxes.tolist(), self.scores.tolist(), segmentations)):
            instances.append(
                {
                    "id": i,
                    "box": [round(v, 3) for v in box],
                    "score": round(score, 6),
                    "area": areas[i],
                    "segmentation": seg,
                }
            )
            if self.selected_by is not None:
                instances[-1]["selected_by"] = self.selected_by[i]
            if self.prompt_scores is not None:
                instances[-1]["prompt_scores"] = self.prompt_scores[i]
        out = {
            "image": {"path": image_path, "width": w0, "height": h0},
            "mask_size": {"width": self.mask_shape[1], "height": self.mask_shape[0]},
            "instances": instances,
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.best_prompt_scores is not None:
            out["best_prompt_scores"] = dict(self.best_prompt_scores)
        return out

"""``FastSAM``: the torch-free pipeline image → letterbox → session → decode/NMS → masks → fix-up → result."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import BadArgumentError, BadModelError, BadPromptError
from .fixup import fastsam_fixup, scale_boxes
from .image import MAX_PIXELS, ImageLike, load_image
from .letterbox import Letterbox, letterbox, letterbox_geometry, to_tensor
from .manifest import resolve_fastsam
from .masks import MaskCrop, crop_masks, input_axes, retina_axes
from .prompts import merge_by_points, parse_boxes, parse_points, parse_texts, select_by_boxes, select_by_points, select_by_texts, text_crops
from .nms import decode
from .result import Result
from .session import OnnxSession, ProviderSpec

if TYPE_CHECKING:
    from .clip import CLIP


def default_model() -> Path:
    """The demo bundle shipped inside the package (``fastsam_onnx/models/demo``)."""
    from .models import demo_bundle

    return demo_bundle()


class FastSAM:
    """A FastSAM ONNX model ready to segment images.

    Args:
        model: a bundle directory (``fastsam.onnx`` + ``manifest.json``) or an .onnx file; ``None`` = the
            shipped demo model.
        providers: "auto" (None: TensorRT, CUDA, CPU, whichever this onnxruntime build offers), "cpu",
            "cuda", "tensorrt", or a list of provider names / (name, options) pairs; see
            :mod:`fastsam_onnx.providers`. :attr:`providers` reports what onnxruntime kept.
        strict: a requested provider that is not offered or does not come up raises
            :class:`~fastsam_onnx.errors.ProviderError` instead of a warning and a fallback.
        verify: check the .onnx file against the SHA-256 in the bundle's manifest once, at load (a
            mismatch raises :class:`~fastsam_onnx.errors.BadModelError`; ~17 ms for the 4 MB demo).
        max_pixels: larger images raise :class:`~fastsam_onnx.errors.BadImageError` (default
            :data:`fastsam_onnx.image.MAX_PIXELS`, 100 MP; None = no limit).

    One object may be shared by threads: sessions are created once here, and :meth:`segment` and
    :meth:`prompt` mutate no shared state (onnxruntime's ``run`` is thread-safe).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        providers: str | Sequence[ProviderSpec] | None = None,
        clip: "str | os.PathLike[str] | CLIP | None" = None,
        strict: bool = False,
        verify: bool = True,
        max_pixels: int | None = MAX_PIXELS,
    ):
        self._clip_spec = clip
        self._providers = providers
        self._strict = strict
        self.max_pixels = max_pixels
        self._clip_lock = threading.Lock()
        self.onnx_path, self.manifest = resolve_fastsam(default_model() if model is None else model, verify=verify)
        self.session = OnnxSession(self.onnx_path, providers, strict=strict)
        shape = self.session.input_shape
        out_ranks = [len(o.shape) for o in self.session.session.get_outputs()[:2]]
        if len(shape) != 4 or shape[1] not in (3, None) or len(self.session.output_names) < 2 or out_ranks != [3, 4]:
            raise BadModelError(
                f"{self.onnx_path} is not a FastSAM/YOLOv8-seg graph (input {shape}, outputs {self.session.output_names}); "
                "export one with: fastsam-onnx export fastsam --weights WEIGHTS.pt --out DIR"
            )
        self.dynamic = shape[2] is None or shape[3] is None
        self.batch = shape[0] or 1
        self.stride = int(self.manifest.get("stride", 32))
        if self.dynamic:
            imgsz = self.manifest.get("imgsz", 1024)
            self.imgsz: tuple[int, int] = tuple(imgsz) if isinstance(imgsz, list) else (int(imgsz), int(imgsz))
        else:
            self.imgsz = (int(shape[2]), int(shape[3]))

    @property
    def providers(self) -> list[str]:
        """Execution providers onnxruntime actually uses for this model."""
        return self.session.providers

    def _input_size(self, imgsz: int | Sequence[int] | None) -> tuple[int, int]:
        if imgsz is None:
            return self.imgsz
        hw = (int(imgsz), int(imgsz)) if np.isscalar(imgsz) else tuple(int(v) for v in imgsz)  # type: ignore[arg-type]
        if len(hw) != 2 or min(hw) <= 0:
            raise BadArgumentError(f"imgsz must be a positive int or (h, w), got {imgsz!r}")
        if not self.dynamic:
            if hw != self.imgsz:
                raise BadArgumentError(
                    f"this model was exported with a static input of {self.imgsz}; got imgsz={imgsz!r} "
                    "(re-export with --dynamic to choose the size at run time)"
                )
            return hw
        s = self.stride
        return (math.ceil(hw[0] / s) * s, math.ceil(hw[1] / s) * s)

    def preprocess(self, image: np.ndarray, imgsz: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
        """(h0, w0, 3) BGR uint8 → ((B, 3, H, W) input tensor, letterbox geometry)."""
        lb = letterbox_geometry(image.shape[:2], imgsz, auto=self.dynamic, stride=self.stride)
        x = to_tensor(letterbox(image, lb), self.session.input_dtype)
        if self.batch > 1:
            x = np.concatenate([x, np.zeros((self.batch - 1, *x.shape[1:]), x.dtype)])
        return x, lb

    def segment(
        self,
        image: ImageLike,
        *,
        imgsz: int | Sequence[int] | None = None,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina_masks: bool = True,
        bboxes=None,
        points=None,
        labels=None,
        texts: str | Sequence[str] | None = None,
        point_mode: str = "select",
        text_mode: str = "select",
    ) -> Result:
        """Segment ``image`` (a path, or an (H, W, 3) BGR uint8 array as OpenCV reads it).

        conf: keep detections scoring > conf; iou: NMS suppresses IoU > iou; max_det: at most this many.
        retina_masks: masks at the original size (True) or at the network-input size, in letterboxed
        coordinates (False, as the reference). Boxes are always in original-image pixels.
        With prompts (``bboxes``, ``points``/``labels``, ``texts``) only the selected instances are
        returned: see :meth:`prompt`.
        """
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise BadArgumentError(f"conf and iou must be within [0, 1], got conf={conf}, iou={iou}")
        if int(max_det) < 1:
            raise BadArgumentError(f"max_det must be >= 1, got {max_det}")
        t0 = time.perf_counter()
        img = load_image(image, self.max_pixels)
        x, lb = self.preprocess(img, self._input_size(imgsz))
        t1 = time.perf_counter()
        output0, protos = self.session.run(x)[:2]
        t2 = time.perf_counter()
        if output0.ndim != 3 or protos.ndim != 4 or output0.shape[1] != 5 + protos.shape[1]:
            raise BadModelError(
                f"{self.onnx_path} returned outputs {output0.shape}, {protos.shape}: not a one-class "
                "FastSAM/YOLOv8-seg graph (expected (B, 5 + M, A) and (B, M, H/4, W/4))"
            )
        result = postprocess(
            output0[0], protos[0], lb, conf=conf, iou=iou, max_det=int(max_det), retina_masks=retina_masks
        )
        t3 = time.perf_counter()
        result.orig_img = img
        result.timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        if bboxes is None and points is None and texts is None:
            return result
        return self.prompt(
            result, bboxes=bboxes, points=points, labels=labels, texts=texts, point_mode=point_mode, text_mode=text_mode
        )

    @property
    def clip(self) -> "CLIP":
        """The CLIP model for text prompts, loaded on first use (default: the shipped demo CLIP)."""
        with self._clip_lock:  # threads sharing this object load CLIP once
            if not hasattr(self, "_clip"):
                from .clip import CLIP

                spec = self._clip_spec
                if isinstance(spec, CLIP):
                    self._clip = spec
                else:
                    from .models import demo_clip_bundle

                    self._clip = CLIP(demo_clip_bundle() if spec is None else spec, providers=self._providers, strict=self._strict)
        return self._clip

    def prompt(
        self,
        result: Result,
        *,
        bboxes=None,
        points=None,
        labels=None,
        texts: str | Sequence[str] | None = None,
        point_mode: str = "select",
        text_mode: str = "select",
    ) -> Result:
        """Select instances of a segment-everything ``result`` (reuse one result for many prompts).

        bboxes: (4,) or (K, 4) xyxy pixels — per box the instance with the best mask-vs-box IoU.
        points: (2,) or (K, 2) x, y pixels with ``labels`` (1 foreground, 0 background; default all 1) —
        instances hit by a positive point and by no negative one.
        texts: a string or a list — per text the instance whose masked crop CLIP matches best.
        Each prompt type ORs into one selection; instances keep their order (ultralytics semantics); the
        result's ``selected_by`` says which prompts picked each instance.

        ``point_mode="merge"`` is the original FastSAM point prompt: ONE mask merged from the instances the
        points hit (largest first; positive points paint on, negative off). ``text_mode="original"`` is
        the original FastSAM text prompt: exactly one text, and the one best instance. Both return a
        single-instance result and cannot be combined with other prompt types.
        """
        if point_mode not in ("select", "merge") or text_mode not in ("select", "original"):
            raise BadArgumentError(f"point_mode is 'select' or 'merge', text_mode 'select' or 'original'; got {point_mode!r}, {text_mode!r}")
        t0 = time.perf_counter()
        shape = result.orig_shape
        boxes_p = None if bboxes is None else parse_boxes(bboxes, shape)
        points_p = None if points is None else parse_points(points, labels, shape)
        if points is None and labels is not None:
            raise BadPromptError("labels given without points")
        texts_p = None if texts is None else parse_texts(texts)
        special = (point_mode == "merge" and points_p is not None) or (text_mode == "original" and texts_p is not None)
        if special and sum(p is not None for p in (boxes_p, points_p, texts_p)) > 1:
            raise BadArgumentError("point_mode='merge' and text_mode='original' take only their own prompt type")
        if text_mode == "original" and texts_p is not None and len(texts_p) != 1:
            raise BadPromptError(f"text_mode='original' takes exactly one text, got {len(texts_p)}")
        if len(result) == 0:
            return result.select([], [])
        crops = result.original_crops()
        tags: list[list[str]] = [[] for _ in crops]
        if boxes_p is not None:
            for k, i in enumerate(select_by_boxes(crops, boxes_p)):
                tags[i].append(f"box:{k}")
        if points_p is not None:
            if point_mode == "merge":
                return _merged_result(result, merge_by_points(crops, *points_p, shape), select_by_points(crops, *points_p))
            for i in np.flatnonzero(select_by_points(crops, *points_p)):
                tags[i].append("points")
        if texts_p is not None:
            images, keep = text_crops(result.orig_img, result.boxes, crops)
            if images:
                sim = self.clip.similarity(images, texts_p)
                for k, i in enumerate(select_by_texts(sim, keep)):
                    if f"text:{texts_p[k]}" not in tags[i]:  # a repeated text tags once
                        tags[i].append(f"text:{texts_p[k]}")
        idx = [i for i, t in enumerate(tags) if t]
        out = result.select(idx, [tags[i] for i in idx])
        out.timings["prompt"] = (time.perf_counter() - t0) * 1e3
        return out


def _merged_result(result: Result, mask: np.ndarray, hit: np.ndarray) -> Result:
    """A one-instance result holding ``mask`` (original size): box = the mask's extent, score = the best
    score among the instances the points selected; empty when the mask is empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return result.select([], [])
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    score = result.scores[hit].max() if hit.any() else np.float32(0)
    return Result(
        np.array([[x0, y0, x1, y1]], dtype=np.float32), np.array([score], dtype=np.float32),
        [MaskCrop(int(x0), int(y0), mask[y0:y1, x0:x1].copy())], result.orig_shape, result.orig_shape,
        dict(result.timings), result.orig_img, [["points:merged"]],
    )


def postprocess(
    output0: np.ndarray,
    protos: np.ndarray,
    lb: Letterbox,
    *,
    conf: float,
    iou: float,
    max_det: int,
    retina_masks: bool,
) -> Result:
    """Network outputs of one image → :class:`Result`.

    output0: (37, A) decoded boxes, scores and mask coefficients; protos: (32, H/4, W/4).
    """
    protos = np.asarray(protos, dtype=np.float32)
    det = decode(output0, conf=conf, iou=iou, max_det=max_det)
    gain = (lb.new_w / lb.orig_shape[1], lb.new_h / lb.orig_shape[0])
    boxes = scale_boxes(det.boxes, gain, (lb.left, lb.top), lb.orig_shape)
    if retina_masks:
        mask_shape = lb.orig_shape
        crops = crop_masks(protos, det.coeffs, boxes, *retina_axes(protos.shape[1:], lb.orig_shape))
    else:
        mask_shape = lb.input_shape
        crops = crop_masks(protos, det.coeffs, det.boxes, *input_axes(protos.shape[1:], lb.input_shape))
    keep = np.array([c is not None for c in crops], dtype=bool)
    boxes = fastsam_fixup(boxes[keep], lb.orig_shape)
    return Result(boxes, det.scores[keep], [c for c in crops if c is not None], mask_shape, lb.orig_shape)

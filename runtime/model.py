"""``FastSAM``: the torch-free pipeline image → letterbox → session → decode/NMS → masks → fix-up → result."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BadArgumentError, BadModelError
from .fixup import fastsam_fixup, scale_boxes
from .image import ImageLike, load_image
from .letterbox import Letterbox, letterbox, letterbox_geometry, to_tensor
from .manifest import resolve_fastsam
from .masks import crop_masks, input_axes, retina_axes
from .nms import decode
from .result import Result
from .session import OnnxSession, ProviderSpec


def default_model() -> Path:
    """The demo bundle shipped inside the package (``fastsam_onnx/models/demo``)."""
    from .models import demo_bundle

    return demo_bundle()


class FastSAM:
    """A FastSAM ONNX model ready to segment images.

    Args:
        model: a bundle directory (``fastsam.onnx`` + ``manifest.json``) or an .onnx file; ``None`` = the
            shipped demo model.
        providers: onnxruntime execution providers, default CUDA (when available) then CPU.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, providers: Sequence[ProviderSpec] | None = None):
        self.onnx_path, self.manifest = resolve_fastsam(default_model() if model is None else model)
        self.session = OnnxSession(self.onnx_path, providers)
        shape = self.session.input_shape
        if len(shape) != 4 or shape[1] not in (3, None) or len(self.session.output_names) < 2:
            raise BadModelError(
                f"{self.onnx_path} is not a FastSAM/YOLOv8-seg graph (input {shape}, outputs {self.session.output_names})"
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
    ) -> Result:
        """Segment everything in ``image`` (a path, or an (H, W, 3) BGR uint8 array as OpenCV reads it).

        conf: keep detections scoring > conf; iou: NMS suppresses IoU > iou; max_det: at most this many.
        retina_masks: masks at the original size (True) or at the network-input size, in letterboxed
        coordinates (False, as the reference). Boxes are always in original-image pixels.
        """
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise BadArgumentError(f"conf and iou must be within [0, 1], got conf={conf}, iou={iou}")
        if int(max_det) < 1:
            raise BadArgumentError(f"max_det must be >= 1, got {max_det}")
        t0 = time.perf_counter()
        img = load_image(image)
        x, lb = self.preprocess(img, self._input_size(imgsz))
        t1 = time.perf_counter()
        output0, protos = self.session.run(x)[:2]
        t2 = time.perf_counter()
        result = postprocess(
            output0[0], protos[0], lb, conf=conf, iou=iou, max_det=int(max_det), retina_masks=retina_masks
        )
        t3 = time.perf_counter()
        result.orig_img = img
        result.timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return result


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

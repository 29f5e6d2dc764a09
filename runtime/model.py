"""``FastSAM``: the torch-free pipeline image → letterbox → session → decode/NMS → masks → fix-up → result."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import BadArgumentError, BadModelError
from .fixup import fastsam_fixup, scale_boxes
from .image import MAX_PIXELS, ImageLike, load_image
from .letterbox import DEFAULT_RESIZE, RESIZES, Letterbox, letterbox, letterbox_geometry, to_tensor
from .zoo import default_clip, default_fastsam, resolve_fastsam
from .outputs.edges import BAND
from .masks import crop_masks, input_axes, retina_axes
from .prompts import apply_prompts
from .nms import decode
from .result import Result
from .session import OnnxSession, ProviderSpec

if TYPE_CHECKING:
    from .clip.model import CLIP


def default_model() -> Path:
    """The demo bundle shipped inside the package (``fastsam_onnx/models/demo``)."""
    from .models import demo_bundle

    return demo_bundle()


#: the largest network input, h × w pixels of the padded letterbox (× the graph's batch): 8192 × 8192
#: (67 MP; the float32 input tensor alone is 0.8 GB there, the activations several times more). A dynamic
#: model's run-time ``imgsz`` above it is a BadArgumentError, a bundle whose static shape or manifest
#: ``imgsz`` is above it a BadModelError at load. Independent of ``max_pixels``, which bounds images.
MAX_INPUT_PIXELS = 8192 * 8192


class FastSAM:
    """A FastSAM ONNX model ready to segment images.

    Args:
        model: a bundle directory (``fastsam.onnx`` + ``manifest.json``), an .onnx file or a model-zoo
            name (``"fastsam-s"``: fetched and converted on first use, see :mod:`fastsam_onnx.zoo`); ``None`` =
            ``$FASTSAM_ONNX_MODEL`` when set, else the shipped demo model (a toy of synthetic shapes).
        providers: "auto" (None: TensorRT, CUDA, CPU, whichever this onnxruntime build offers), "cpu",
            "cuda", "tensorrt", or a list of provider names / (name, options) pairs; see
            :mod:`fastsam_onnx.providers`. :attr:`providers` reports what onnxruntime kept.
        clip: the CLIP bundle (path or zoo name) or a CLIP object for text prompts; None =
            ``$FASTSAM_ONNX_CLIP`` when set, else the demo CLIP.
        strict: a requested provider that is not offered or does not come up raises
            :class:`~fastsam_onnx.errors.ProviderError` instead of a warning and a fallback.
        verify: check the .onnx file against the SHA-256 in the bundle's manifest once, at load (a
            mismatch raises :class:`~fastsam_onnx.errors.BadModelError`; ~17 ms for the 4 MB demo). A
            manifest without a digest loads with an ``UnverifiedModelWarning``.
        max_pixels: larger images raise :class:`~fastsam_onnx.errors.BadImageError` (default
            :data:`fastsam_onnx.image.MAX_PIXELS`, 100 MP; None = no limit).
        max_input_pixels: the bound on the network input (padded h × w), default :data:`MAX_INPUT_PIXELS`.
        resize: the letterbox's resize: "linear" (default: x86 OpenCV's ``INTER_LINEAR``, the reference's, with
            the same values on every CPU) or "opencv" (this machine's ``cv2.INTER_LINEAR``: the same on x86, faster
            but slightly different on arm64); see docs/arm64.md.

    Wrongly typed or out-of-range arguments raise :class:`~fastsam_onnx.errors.BadArgumentError`.
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
        max_input_pixels: int = MAX_INPUT_PIXELS,
        resize: str = DEFAULT_RESIZE,
    ):
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise BadArgumentError(f"model must be a path, a model-zoo name or None, got {type(model).__name__}")
        if providers is not None and not isinstance(providers, (str, list, tuple)):
            raise BadArgumentError(f"providers must be a string or a list of providers, got {providers!r}")
        if clip is not None and not isinstance(clip, (str, os.PathLike)) and not hasattr(clip, "similarity"):
            raise BadArgumentError(f"clip must be a CLIP bundle path, a zoo name or a CLIP object, got {type(clip).__name__}")
        if not isinstance(resize, str) or resize not in RESIZES:
            raise BadArgumentError(f"resize must be one of {', '.join(map(repr, RESIZES))}, got {resize!r}")
        self.resize = resize
        self._strict = _flag("strict", strict)
        _flag("verify", verify)
        self.max_pixels = None if max_pixels is None else _integer("max_pixels", max_pixels, 1)
        self.max_input_pixels = _integer("max_input_pixels", max_input_pixels, 1)
        self._clip_spec = clip
        self._providers = providers
        self._clip_lock = threading.Lock()
        self.onnx_path, self.manifest = resolve_fastsam(default_fastsam() if model is None else model, verify=verify)
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
        self.stride = int(self.manifest.get("stride", 32))  # validated by read_manifest
        if self.dynamic:
            imgsz = self.manifest.get("imgsz", 1024)
            self.imgsz: tuple[int, int] = tuple(imgsz) if isinstance(imgsz, list) else (int(imgsz), int(imgsz))
        else:
            self.imgsz = (int(shape[2]), int(shape[3]))
        if self.batch * self.imgsz[0] * self.imgsz[1] > self.max_input_pixels:
            what = "manifest imgsz" if self.dynamic else "static input shape"
            raise BadModelError(
                f"{self.onnx_path}: its {what} {self.batch} x {self.imgsz[0]} x {self.imgsz[1]} exceeds "
                f"max_input_pixels={self.max_input_pixels} (MAX_INPUT_PIXELS = 8192 x 8192)"
            )

    @property
    def providers(self) -> list[str]:
        """Execution providers onnxruntime actually uses for this model."""
        return self.session.providers

    def _input_size(self, imgsz: int | Sequence[int] | None) -> tuple[int, int]:
        if imgsz is None:
            return self.imgsz
        if isinstance(imgsz, (int, np.integer)) and not isinstance(imgsz, (bool, np.bool_)):
            hw = (int(imgsz), int(imgsz))
        elif isinstance(imgsz, (list, tuple, np.ndarray)) and len(imgsz) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in imgsz
        ):
            hw = (int(imgsz[0]), int(imgsz[1]))
        else:
            raise BadArgumentError(f"imgsz must be a positive int or (h, w) ints, got {imgsz!r}")
        if min(hw) <= 0:
            raise BadArgumentError(f"imgsz must be a positive int or (h, w), got {imgsz!r}")
        if not self.dynamic:
            if hw != self.imgsz:
                raise BadArgumentError(
                    f"this model was exported with a static input of {self.imgsz}; got imgsz={imgsz!r} "
                    "(re-export without --static, the default, to choose the size at run time)"
                )
            return hw
        s = self.stride
        padded = (math.ceil(hw[0] / s) * s, math.ceil(hw[1] / s) * s)
        if self.batch * padded[0] * padded[1] > self.max_input_pixels:
            raise BadArgumentError(
                f"imgsz={imgsz!r} gives a network input of {padded[0]} x {padded[1]} pixels, more than "
                f"max_input_pixels={self.max_input_pixels} (MAX_INPUT_PIXELS = 8192 x 8192)"
            )
        return padded

    def preprocess(self, image: np.ndarray, imgsz: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
        """(h0, w0, 3) BGR uint8 → ((B, 3, H, W) input tensor, letterbox geometry)."""
        lb = letterbox_geometry(image.shape[:2], imgsz, auto=self.dynamic, stride=self.stride)
        x = to_tensor(letterbox(image, lb, resize=self.resize), self.session.input_dtype)
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
        edges: bool = False,
        bboxes=None,
        points=None,
        labels=None,
        texts: str | Sequence[str] | None = None,
        point_mode: str = "select",
        text_mode: str = "select",
        text_threshold: float | None = None,
    ) -> Result:
        """Segment ``image`` (a path, or an (H, W, 3) BGR uint8 array as OpenCV reads it).

        conf: keep detections scoring > conf; iou: NMS suppresses IoU > iou (both numbers in [0, 1]);
        max_det: at most this many (an int >= 1). imgsz: an int or (h, w) for dynamic models, padded up to
        the stride, at most ``max_input_pixels``. retina_masks (a bool): masks at the original size (True)
        or at the network-input size, in letterboxed coordinates (False, as the reference). Boxes are
        always in original-image pixels. The result's ``path`` is the image path (None for an array).
        With prompts (``bboxes``, ``points``/``labels``, ``texts``) only the selected instances are
        returned: see :meth:`prompt`. ``edges=True`` also computes the everything-mode edge map in the
        same pass (from the logits the masks are made of; ``result.edges()`` then returns it, timed as
        ``timings["edges"]``); see :meth:`edges`.
        """
        conf = _number("conf", conf, 0, 1)
        iou = _number("iou", iou, 0, 1)
        max_det = _integer("max_det", max_det, 1)
        _flag("retina_masks", retina_masks)
        _flag("edges", edges)
        size = self._input_size(imgsz)
        t0 = time.perf_counter()
        img = load_image(image, self.max_pixels)
        x, lb = self.preprocess(img, size)
        t1 = time.perf_counter()
        output0, protos = self.session.run(x)[:2]
        t2 = time.perf_counter()
        if output0.ndim != 3 or protos.ndim != 4 or output0.shape[1] != 5 + protos.shape[1]:
            raise BadModelError(
                f"{self.onnx_path} returned outputs {output0.shape}, {protos.shape}: not a one-class "
                "FastSAM/YOLOv8-seg graph (expected (B, 5 + M, A) and (B, M, H/4, W/4))"
            )
        result = postprocess(
            output0[0], protos[0], lb, conf=conf, iou=iou, max_det=max_det, retina_masks=bool(retina_masks),
            edges_band=BAND if edges else None,
        )
        t3 = time.perf_counter()
        result.orig_img = img
        result.path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        result.timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        if edges:  # the edge work ran inside postprocess: report it apart
            result.timings["edges"] = result._edges.pop("ms")
            result.timings["postprocess"] -= result.timings["edges"]
        if bboxes is None and points is None and texts is None:
            return result
        return self.prompt(
            result, bboxes=bboxes, points=points, labels=labels, texts=texts, point_mode=point_mode, text_mode=text_mode,
            text_threshold=text_threshold,
        )

    def edges(self, image: ImageLike, **kwargs) -> np.ndarray:
        """The edge map of everything found in ``image``: (h0, w0) float32 in [0, 1], original size.

        SAM's zero-shot edge recipe on FastSAM's instances (see :mod:`fastsam_onnx.outputs.edges`): per instance
        the Sobel gradient of its mask probability (sigmoid of the logits, upsampled as the masks are, zero
        outside its box crop) within ``edges.BAND`` px of its own boundary, the pixel-wise maximum, thinned
        by non-maximum suppression along the gradient, divided by its maximum. ``kwargs`` are
        :meth:`segment`'s (conf, iou, max_det, imgsz, retina_masks, prompts: edges of the selected
        instances only). Same as ``segment(image, edges=True, ...).edges()``.
        """
        return self.segment(image, edges=True, **kwargs).edges()

    @property
    def clip(self) -> "CLIP":
        """The CLIP model for text prompts, loaded on first use (default: ``$FASTSAM_ONNX_CLIP``, else the demo CLIP)."""
        with self._clip_lock:  # threads sharing this object load CLIP once
            if not hasattr(self, "_clip"):
                from .clip.model import CLIP

                spec = self._clip_spec
                if isinstance(spec, CLIP):
                    self._clip = spec
                else:
                    self._clip = CLIP(default_clip() if spec is None else spec, providers=self._providers, strict=self._strict)
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
        text_threshold: float | None = None,
    ) -> Result:
        """Select instances of a segment-everything ``result`` (reuse one result for many prompts).

        bboxes: (4,) or (K, 4) xyxy pixels — per box the instance with the best mask-vs-box IoU.
        points: (2,) or (K, 2) x, y pixels with ``labels`` (1 foreground, 0 background; default all 1) —
        instances hit by a positive point and by no negative one.
        texts: a string or a list — per text the instance whose masked crop CLIP matches best.
        Each prompt type ORs into one selection; instances keep their order (ultralytics semantics); the
        result's ``selected_by`` says which prompts picked each instance (``box:k``, ``point:k``, ``text:TEXT``,
        k = the prompt's index in its list; in every point mode).

        ``point_mode="merge"`` is the original FastSAM point prompt: ONE mask merged from the instances the
        points hit (largest first; positive points paint on, negative off). ``text_mode="original"`` is
        the original FastSAM text prompt: exactly one text, and the one best instance. Both return a
        single-instance result and cannot be combined with other prompt types.

        ``point_mode="each"``: one instance per positive point k, tagged ``point:k`` (k = its index in
        ``points``): the highest-scoring instance containing the point that no negative point hits (a
        point on nothing picks nothing; two points on one instance give it both tags).
        ``text_mode="all"`` with ``text_threshold`` (required; a cosine similarity in [-1, 1]): per text,
        every candidate whose crop's CLIP cosine similarity is >= the threshold; the similarities are in
        the result's ``prompt_scores`` (``{"text:TEXT": cosine}`` per instance). Both combine with the
        other prompt types like the default modes.
        """
        return apply_prompts(
            result, lambda: self.clip, bboxes=bboxes, points=points, labels=labels, texts=texts,
            point_mode=point_mode, text_mode=text_mode, text_threshold=text_threshold,
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
    edges_band: int | None = None,
) -> Result:
    """Network outputs of one image → :class:`Result`.

    output0: (37, A) decoded boxes, scores and mask coefficients; protos: (32, H/4, W/4). The result keeps
    ``protos`` and the kept coefficients (a reference, no copy) for :meth:`Result.edges`; with
    ``edges_band`` (pixels) the edge map is also made from the logits as the masks are assembled.
    """
    protos = np.asarray(protos, dtype=np.float32)
    det = decode(output0, conf=conf, iou=iou, max_det=max_det)
    gain = (lb.new_w / lb.orig_shape[1], lb.new_h / lb.orig_shape[0])
    boxes = scale_boxes(det.boxes, gain, (lb.left, lb.top), lb.orig_shape)
    mask_shape = lb.orig_shape if retina_masks else lb.input_shape
    canvas = sink = None
    if edges_band is not None:
        from .outputs.edges import EdgeCanvas, LetterboxedSink

        te = time.perf_counter()
        canvas = EdgeCanvas(lb.orig_shape, edges_band)
        sink = canvas.add_logits if retina_masks else LetterboxedSink(canvas, mask_shape)
        sink = _timed(sink, canvas, time.perf_counter() - te)
    if retina_masks:
        crops = crop_masks(protos, det.coeffs, boxes, *retina_axes(protos.shape[1:], lb.orig_shape), sink=sink)
    else:
        crops = crop_masks(protos, det.coeffs, det.boxes, *input_axes(protos.shape[1:], lb.input_shape), sink=sink)
    keep = np.array([c is not None for c in crops], dtype=bool)
    boxes = fastsam_fixup(boxes[keep], lb.orig_shape)
    result = Result(boxes, det.scores[keep], [c for c in crops if c is not None], mask_shape, lb.orig_shape)
    result._logits = (protos, det.coeffs[keep], bool(retina_masks))
    if canvas is not None:
        te = time.perf_counter()
        result._edges[canvas.band] = canvas.finish()
        result._edges["ms"] = (canvas.seconds + time.perf_counter() - te) * 1e3
    return result


def _timed(sink, canvas, seconds: float):
    """``sink`` that adds its run time to ``canvas.seconds`` (edge work apart from the masks in timings)."""
    canvas.seconds = seconds

    def run(x0: int, y0: int, logits: np.ndarray, mask: np.ndarray) -> None:
        t = time.perf_counter()
        sink(x0, y0, logits, mask)
        canvas.seconds += time.perf_counter() - t

    return run


def _number(name: str, value, lo: float, hi: float) -> float:
    """``value`` as a float in [lo, hi]; a bool, a non-number or NaN raises :class:`BadArgumentError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadArgumentError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    if not lo <= float(value) <= hi:  # NaN fails too
        raise BadArgumentError(f"{name} must be within [{lo}, {hi}], got {value!r}")
    return float(value)


def _integer(name: str, value, lo: int) -> int:
    """``value`` as an int >= lo; a bool, a float or a non-number raises :class:`BadArgumentError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise BadArgumentError(f"{name} must be an int >= {lo}, got {value!r}")
    if int(value) < lo:
        raise BadArgumentError(f"{name} must be >= {lo}, got {value!r}")
    return int(value)


def _flag(name: str, value) -> bool:
    """``value`` as a bool; anything but True/False raises :class:`BadArgumentError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise BadArgumentError(f"{name} must be True or False, got {value!r}")
    return bool(value)

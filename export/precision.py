"""Precision variants of an exported fp32 FastSAM graph, and their accuracy against it.

- fp16: weights and compute in float16, inputs and outputs kept float32 (onnxconverter-common's
  ``convert_float_to_float16(keep_io_types=True)``), so the runtime feeds it exactly like the fp32 graph.
  The export leaves the ``Cast``-to-float nodes in fp32 (:func:`float_casts`: in a dynamic graph, the anchor
  grid built at run time from integer ``Range``\ s), which the converter would otherwise mistype.
- int8: static QDQ quantization (``onnxruntime.quantization.quantize_static``): int8 per-channel weights,
  uint8 activations calibrated on letterboxed photographs (the runtime's own :func:`fastsam_onnx.letterbox`).
  The head's decoding tail (see :func:`tail_nodes`) stays in float: quantizing box coordinates in pixels and
  the class scores next to the threshold is what costs accuracy, and it is a negligible share of the compute.

:func:`variant_accuracy` runs the fp32 and the variant graph through the torch-free runtime
(:class:`fastsam_onnx.FastSAM`) on the same photographs and matches their instances.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import ExportError
from .quantize import _quiet_quantizer, to_int8_dynamic  # noqa: F401  # here too: the CLIP exporter's import

VARIANTS = ("fp32", "fp16", "int8")
#: the accuracy each variant is expected to reach (mean mask IoU of matched instances vs the fp32 graph)
TARGET_MASK_IOU = {"fp16": 0.99, "int8": 0.95}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: a pair of instances counts as matched at this mask IoU or above
MATCH_IOU = 0.5
#: what the accuracy record says when the fp32 graph finds nothing to compare with
NOT_MEASURED = "no instances on the calibration images: accuracy not measured"


def head_prefix(model) -> str:
    """``/model.N/``: the name prefix of the Detect/Segment head, the highest-numbered ultralytics module."""
    indices = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not indices:
        raise ExportError("cannot find the ultralytics module names (/model.N/...) in the graph")
    return f"/model.{max(indices)}/"


def tail_nodes(model, *, last_convs: bool = False) -> list[str]:
    """Names of the head's decoding tail: the head's own nodes that belong to no conv branch.

    That is the reshapes/concats that gather the levels, the DFL (softmax + its fixed 1x1 conv), the anchor
    arithmetic (dist2bbox: Slice/Sub/Add/Div/Mul), the class sigmoid and the final concat — everything under
    ``/model.N/`` outside ``cv2``/``cv3``/``cv4`` (box, class, mask-coefficient branches) and ``proto``.
    last_convs: also the last conv of each branch (the raw box distributions, class logits and mask
    coefficients).
    """
    prefix = head_prefix(model)
    branches = tuple(prefix + b for b in ("cv2", "cv3", "cv4", "proto"))
    names = [n.name for n in model.graph.node if n.name.startswith(prefix) and not n.name.startswith(branches)]
    if last_convs:
        last = re.compile(re.escape(prefix) + r"cv[234]\.\d+/cv[234]\.\d+\.2/")
        names += [n.name for n in model.graph.node if last.match(n.name)]
    return names


def float_casts(model) -> list[str]:
    """Names of the ``Cast(to=FLOAT)`` nodes of ``model``. onnxconverter-common types their outputs float16 but
    keeps ``to=FLOAT``, an invalid graph; blocked, they stay fp32 and get a Cast to fp16 after them. A static
    FastSAM graph has none; a dynamic one casts its anchor grid (integer ``Range``) to float."""
    import onnx

    return [
        n.name for n in model.graph.node
        if n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)
    ]


def to_fp16(src: str | Path, dst: str | Path, *, block: Sequence[str] = ()) -> None:
    """fp32 graph ``src`` → fp16 weights and compute with fp32 inputs/outputs at ``dst``.

    block: node names left in fp32 (onnxconverter-common's ``node_block_list``).
    """
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise ExportError(f"--half needs onnxconverter-common: pip install 'fastsam-onnx[export]' ({e})") from None
    model = onnx.load(str(src))
    with warnings.catch_warnings():  # "the float32 number 7e-08 will be truncated to 1e-07", per tiny weight
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(block) or None)
    _copy_metadata(model, half)
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst))


def _copy_metadata(src_model, dst_model) -> None:
    """Give ``dst_model`` the metadata properties (ultralytics' stride, names, imgsz...) of ``src_model``."""
    import onnx

    del dst_model.metadata_props[:]
    onnx.helper.set_model_props(dst_model, {p.key: p.value for p in src_model.metadata_props})


def calibration_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (not recursive), sorted; ExportError when there are none."""
    d = Path(folder)
    if not d.is_dir():
        raise ExportError(f"calibration folder not found: {d}")
    images = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {d}")
    return images


def letterboxed(path: Path, imgsz: tuple[int, int], *, auto: bool, stride: int = 32) -> np.ndarray:
    """An image file → the (1, 3, H, W) float32 network input the runtime would feed for it."""
    from fastsam_onnx.image import load_image
    from fastsam_onnx.letterbox import letterbox, letterbox_geometry, to_tensor

    img = load_image(path)
    lb = letterbox_geometry(img.shape[:2], imgsz, auto=auto, stride=stride)
    return to_tensor(letterbox(img, lb))


def _reader(input_name: str, images: Sequence[Path], imgsz: tuple[int, int], auto: bool, batch: int = 1):
    from onnxruntime.quantization import CalibrationDataReader

    class LetterboxReader(CalibrationDataReader):
        """Feeds each calibration image once, letterboxed as the runtime does (repeated to a static batch)."""

        def __init__(self):
            self._it = iter(images)

        def get_next(self):
            path = next(self._it, None)
            if path is None:
                return None
            x = letterboxed(path, imgsz, auto=auto)
            return {input_name: np.repeat(x, batch, axis=0) if batch > 1 else x}

        def rewind(self):
            self._it = iter(images)

    return LetterboxReader()


def to_int8(
    src: str | Path,
    dst: str | Path,
    images: Sequence[Path],
    imgsz: tuple[int, int],
    *,
    dynamic: bool = False,
    exclude_last_convs: bool = False,
    method: str = "MinMax",
) -> dict:
    """fp32 graph ``src`` → static QDQ int8 graph at ``dst``, calibrated on ``images``; returns the settings.

    Weights int8 per output channel (symmetric), activations uint8 (asymmetric, ranges from ``method``:
    MinMax | Percentile | Entropy). The decoding tail (:func:`tail_nodes`) stays float. The input is fed
    letterboxed to ``imgsz`` (rectangular minimal padding when the graph is ``dynamic``, as the runtime does).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    excluded = tail_nodes(model, last_convs=exclude_last_convs)
    inp = model.graph.input[0]
    batch = inp.type.tensor_type.shape.dim[0].dim_value or 1
    with _quiet_quantizer():
        quantize_static(
            str(src),
            str(dst),
            _reader(inp.name, images, imgsz, auto=dynamic, batch=batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod[method],
        )
    quantized = onnx.load(str(dst))
    _copy_metadata(model, quantized)
    onnx.save(quantized, str(dst))
    onnx.checker.check_model(str(dst))
    return {
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "uint8",
        "calibration": {"method": method, "images": len(images)},
        "float_nodes": len(excluded),
    }


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W) and (M, H, W) bool masks → (N, M) IoU."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_instances(ref_masks: np.ndarray, masks: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by mask IoU (best pair first), pairs with IoU >= :data:`MATCH_IOU`."""
    iou = _mask_iou(ref_masks, masks)
    pairs = []
    if iou.size:
        used_r, used_c = set(), set()
        for flat in np.argsort(-iou, axis=None):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < MATCH_IOU:
                break
            if i in used_r or j in used_c:
                continue
            used_r.add(i)
            used_c.add(j)
            pairs.append((i, j, float(iou[i, j])))
    return pairs


def variant_accuracy(
    ref_onnx: str | Path,
    onnx_path: str | Path,
    images: Iterable[Path],
    *,
    imgsz: tuple[int, int] | None = None,
    conf: float = 0.4,
    iou: float = 0.9,
) -> dict:
    """Segment ``images`` with the fp32 graph and the variant (torch-free runtime, CPU) and compare.

    Returns ``mask_iou_mean`` (mean mask IoU of matched instance pairs), ``matched`` (pairs), ``instances``
    ([fp32, variant] count per image), ``instances_fp32`` / ``instances_variant`` (totals),
    ``count_agreement`` (matched pairs / max(fp32, variant) count, summed over the images: 1.0 = every
    instance has its partner), ``measured`` and ``images`` (file names).
    When the fp32 graph finds no instance on any image nothing can be compared: ``measured`` is False,
    ``mask_iou_mean`` is None (and ``count_agreement`` too unless the variant found instances: then 0.0),
    and ``note`` says so; never a made-up 1.0.
    """
    from fastsam_onnx import FastSAM

    ref, var = FastSAM(ref_onnx, providers="cpu"), FastSAM(onnx_path, providers="cpu")
    names, counts, ious = [], [], []
    for path in images:
        a = ref.segment(path, imgsz=imgsz, conf=conf, iou=iou)
        b = var.segment(path, imgsz=imgsz, conf=conf, iou=iou)
        pairs = match_instances(a.masks, b.masks)
        names.append(Path(path).name)
        counts.append([len(a), len(b)])
        ious += [p[2] for p in pairs]
    total = sum(max(c) for c in counts)
    n_fp32, n_variant = sum(c[0] for c in counts), sum(c[1] for c in counts)
    measured = n_fp32 > 0
    out = {
        "images": names,
        "conf": conf,
        "iou": iou,
        "instances": counts,
        "instances_fp32": n_fp32,
        "instances_variant": n_variant,
        "matched": len(ious),
        "measured": measured,
        "mask_iou_mean": round(float(np.mean(ious)), 5) if ious else (0.0 if measured else None),
        "count_agreement": round(len(ious) / total, 5) if total else None,
    }
    if not measured:
        out["note"] = NOT_MEASURED
    return out


def accuracy_line(variant: str, accuracy: dict) -> str:
    """The one-line summary of :func:`variant_accuracy` (+ ``target_mask_iou``); a warning when not measured
    or below the target."""
    n = len(accuracy["images"])
    if not accuracy.get("measured", True):
        found = accuracy.get("instances_variant")
        extra = f" (the {variant} graph found {found})" if found else ""
        return f"warning: {variant} vs fp32 on {n} images: {NOT_MEASURED}{extra}; give --calib DIR with photos of real scenes"
    iou, target = accuracy["mask_iou_mean"], accuracy.get("target_mask_iou")
    below = target is not None and iou < target
    return (
        f"{'warning: ' if below else ''}{variant} vs fp32 on {n} images: mean mask IoU {iou:.4f}"
        f"{f' (target {target})' if target is not None else ''}{' — below the target' if below else ''}, "
        f"matched {accuracy['count_agreement']:.0%} of instances ({accuracy['instances_fp32']} in fp32)"
    )

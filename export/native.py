"""The native converter (issue 24): FastSAM and CLIP checkpoints → bundles without PyTorch.

``convert_fastsam`` and ``convert_clip`` take the options of the torch exporters (:func:`.fastsam.export_fastsam`,
:func:`.clip.export_clip`) and write bundles of the same layout and manifest, plus ``"converter": "native"``
(the torch exporters write ``"converter": "torch"``; a manifest without the field predates it: torch). They need
numpy and ``onnx`` (the base install) and onnxruntime (the [cpu] or [gpu] extra); torch, torchvision, ultralytics
and clip are never imported. The checkpoint is read without running any of it (:mod:`.checkpoint`).

What it covers: ultralytics YOLOv8-seg checkpoints with one class (FastSAM-s, FastSAM-x and models trained the
same way), dynamic or static graphs, fp32, int8 (static QDQ, calibrated on ``calib`` images with onnxruntime's
quantization tools) and fp16 (``onnxconverter-common``, where installed); OpenAI ViT CLIP (TorchScript archives such
as ``ViT-B-32.pt``, or saved state dicts), fp32 or int8. What still needs the torch exporter (``[export]``): other
architectures (YOLOv8 detection or other heads, ResNet CLIP), a CLIP given by its model name (downloaded by the clip
module), a choice of ONNX opset, and the comparison with PyTorch that the torch exporter records as ``parity``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from .bundle import variant_of
from .native_bundle import CONVERTER, FASTSAM_STEPS, Steps, step_lines, write_fastsam
from .native_clip_bundle import CLIP_STEPS, write_clip

__all__ = ["CONVERTER", "FASTSAM_STEPS", "CLIP_STEPS", "convert_fastsam", "convert_clip", "converter_of"]


def _report(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def converter_of(manifest: dict[str, Any]) -> str:
    """Which converter made a bundle: its manifest's ``converter`` (``"native"`` or ``"torch"``); a manifest
    written before the field existed was made by the torch exporter."""
    value = manifest.get("converter", "torch")
    return value if isinstance(value, str) else "torch"


def _variant_step(variant: str, calib_images: Optional[list[Path]], imgsz: int, dynamic: bool,
                  report: Callable[[str], None]):
    """The fp16/int8 step of :func:`.native_bundle.write_fastsam`: the variant of the checked fp32 graph, and its
    accuracy against it on the ``calib`` images (fp16 without them: the self-check photograph) with the runtime."""

    def step(fp32_path: Path, onnx_path: Path) -> dict[str, Any]:
        import onnx

        from fastsam_onnx.manifest import UnverifiedModelWarning
        from fastsam_onnx.models import check_photo

        from . import precision

        images = calib_images or [check_photo()]
        quantization = None
        if variant == "fp16":
            precision.to_fp16(fp32_path, onnx_path, block=precision.float_casts(onnx.load(str(fp32_path))))
        else:
            quantization = precision.to_int8(fp32_path, onnx_path, images, (imgsz, imgsz), dynamic=dynamic)
        with warnings.catch_warnings():  # the graphs of the work directory have no manifest (no digest) yet
            warnings.simplefilter("ignore", UnverifiedModelWarning)
            accuracy = precision.variant_accuracy(fp32_path, onnx_path, images, imgsz=(imgsz, imgsz))
        accuracy["target_mask_iou"] = precision.TARGET_MASK_IOU[variant]
        report(precision.accuracy_line(variant, accuracy))
        fields: dict[str, Any] = {"variant": variant, "accuracy": {"reference": "fp32", **accuracy}}
        if quantization is not None:
            fields["quantization"] = quantization
        return fields

    return step


def convert_fastsam(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    imgsz: int = 1024,
    dynamic: bool = True,
    batch: int = 1,
    half: bool = False,
    int8: bool = False,
    calib: str | os.PathLike[str] | None = None,
    progress: Optional[Steps] = None,
    report: Callable[[str], None] = _report,
) -> Path:
    """Convert a FastSAM / one-class YOLOv8-seg checkpoint to ``out/fastsam.onnx`` + ``out/manifest.json``; returns
    ``out``. Options as :func:`.fastsam.export_fastsam` (without ``opset``): imgsz (a multiple of 32), dynamic
    (default) or a fixed ``batch`` × 3 × imgsz × imgsz graph, ``half`` (fp16; needs onnxconverter-common) or
    ``int8`` (static QDQ calibrated on the images of the folder ``calib``, required); the manifest's ``accuracy``
    compares the variant with the fp32 graph. progress(step, text): as each step starts (default: lines on stderr);
    report(text): one-line results (the variant's accuracy).
    Raises :class:`~fastsam_onnx.errors.BadModelError` for a checkpoint it cannot read or does not know,
    :class:`ExportError` for a bad option or a failed self-check, and
    :class:`~fastsam_onnx.errors.MissingExtraError` for ``half`` without onnxconverter-common.
    """
    variant = variant_of(half, int8, calib)
    if half:
        from fastsam_onnx.extras import require_extra

        require_extra("fp16", "onnxconverter_common", what="--half (fp16 conversion)")
    calib_images = None
    if calib is not None:
        from .precision import calibration_images

        calib_images = calibration_images(calib)
    step = None if variant == "fp32" else _variant_step(variant, calib_images, imgsz, dynamic, report)
    return write_fastsam(weights, out, imgsz=imgsz, dynamic=dynamic, batch=batch, variant=step,
                         progress=progress or step_lines(FASTSAM_STEPS + (step is not None)), report=report)


def convert_clip(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    int8: bool = False,
    progress: Optional[Steps] = None,
    report: Callable[[str], None] = _report,
) -> Path:
    """Convert OpenAI's ``ViT-B-32.pt`` (a TorchScript archive) or a saved ViT CLIP state dict to a CLIP bundle at
    ``out`` (``clip_image.onnx``, ``clip_text.onnx``, the BPE vocabulary, ``manifest.json``); returns ``out``.
    int8: int8 matrix products (dynamic quantization, no calibration), checked at cosine >= 0.99 of the fp32 towers.
    Raises :class:`~fastsam_onnx.errors.BadModelError` (unreadable or unknown checkpoint) or :class:`ExportError`."""
    return write_clip(weights, out, int8=int8, progress=progress or step_lines(CLIP_STEPS + bool(int8)), report=report)

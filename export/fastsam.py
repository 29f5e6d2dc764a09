"""Export a FastSAM / one-class YOLOv8-seg checkpoint to a simplified ONNX bundle with a manifest.

Steps: load and check the checkpoint → ultralytics ONNX export → onnxsim → onnx.checker → PyTorch vs
onnxruntime on a real photograph → [a precision variant: fp16 or int8, see :mod:`.precision`, and its
accuracy against the fp32 graph] → manifest. Everything is written to a temporary directory beside the
target and renamed into place only at the end, so a failure leaves no half-written bundle.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fastsam_onnx.manifest import FASTSAM_ONNX, sha256_file

from . import ExportError, require
from .bundle import check_out, fastsam_description, graph_facts, manifest, staging, variant_of, versions, write_manifest
from .rewrite import dfl_last_axis, upsample_as_conv

#: PyTorch vs onnxruntime check, element-wise: |onnx - torch| <= PARITY_ATOL + PARITY_RTOL * |torch|.
PARITY_ATOL = 1e-3
PARITY_RTOL = 1e-3

STEPS = 6
CONVERTER = "torch"  # the manifest's converter: which path made the bundle (fastsam_onnx.export.native: "native")
#: the packages whose versions the manifest's ``tools`` records
TOOLS = ("torch", "ultralytics", "onnx", "onnxsim", "onnxruntime", "onnxconverter-common")


def _progress(step: int, text: str, total: int = STEPS) -> None:
    print(f"[{step}/{total}] {text}", file=sys.stderr, flush=True)


def _report(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence the tools during an export: every Python warning (torch/onnx/onnxsim/ultralytics deprecation
    and tracer noise) and ultralytics' LOGGER (its banner, tips and ``Predict:`` lines naming the temporary
    work files). The warning filters and the logger level are restored afterwards."""
    logger = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from ultralytics.utils import LOGGER as logger  # configures its level at import: import it first
        except ImportError:
            pass
        level = logger.level if logger is not None else None
        if logger is not None:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            if logger is not None:
                logger.setLevel(level)


def load_checkpoint(weights: str | os.PathLike[str]):
    """Load an ultralytics checkpoint and check it is a one-class segmentation model; returns the YOLO object."""
    p = Path(weights)
    if not p.is_file():
        raise ExportError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise ExportError(f"checkpoint is empty: {p}")
    from ultralytics import YOLO

    try:
        model = YOLO(str(p), task="segment")
        net = model.model
    except Exception as e:  # torch.load / unpickling errors of every kind
        raise ExportError(f"cannot load checkpoint {p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    from ultralytics.nn.tasks import SegmentationModel

    if not isinstance(net, SegmentationModel):
        raise ExportError(f"{p} is a {type(net).__name__} ({getattr(net, 'task', '?')}), not a segmentation model")
    nc = int(net.model[-1].nc)
    if nc != 1:
        raise ExportError(f"{p} has {nc} classes; FastSAM models have exactly one")
    return model


def check_image(imgsz: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A real photograph (ultralytics' bus.jpg) letterboxed to ``imgsz``: ((1, 3, H, W) float32, name)."""
    import cv2
    from ultralytics.utils import ASSETS

    from fastsam_onnx.letterbox import letterbox, letterbox_geometry, to_tensor

    path = ASSETS / "bus.jpg"
    img = cv2.imread(str(path))
    lb = letterbox_geometry(img.shape[:2], imgsz)
    return to_tensor(letterbox(img, lb)), path.name


def check_image_path(name: str = "bus.jpg") -> Path:
    """A photograph shipped inside the ultralytics package (bus.jpg, zidane.jpg)."""
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / name


def parity(torch_model, onnx_path: Path, x: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output between PyTorch (fp32) and onnxruntime (CPU) on input x."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        (out0, proto), _ = torch_model(torch.from_numpy(x))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, {sess.get_inputs()[0].name: x})
    diffs = {}
    for name, ref, out in zip(names, (out0.numpy(), proto.numpy()), got):
        if ref.shape != out.shape:
            raise ExportError(f"output {name}: PyTorch shape {ref.shape} != ONNX shape {out.shape}")
        err = np.abs(ref - out)
        bad = err > PARITY_ATOL + PARITY_RTOL * np.abs(ref)
        if bad.any() or not np.isfinite(out).all():
            raise ExportError(
                f"PyTorch and onnxruntime disagree on {name}: {int(bad.sum())} values beyond "
                f"{PARITY_ATOL} + {PARITY_RTOL}*|ref| (max |diff| {float(err.max()):.3g})"
            )
        diffs[name] = float(err.max())
    return diffs


def export_fastsam(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    imgsz: int = 1024,
    dynamic: bool = True,
    opset: int | None = None,
    batch: int = 1,
    half: bool = False,
    int8: bool = False,
    calib: str | os.PathLike[str] | None = None,
    progress: Callable[[int, str], None] = _progress,
    report: Callable[[str], None] = _report,
) -> Path:
    """Export ``weights`` to ``out/fastsam.onnx`` + ``out/manifest.json``; returns ``out``.

    imgsz: network input side in pixels (a multiple of 32); dynamic: dynamic batch/height/width axes (the
    default: each photo runs at its own aspect ratio; False: a fixed imgsz × imgsz graph, for TensorRT
    engines and NPUs); opset: ONNX opset (ultralytics' choice when None); batch: static batch size.
    half: ship an fp16 graph (fp16 weights and compute, fp32 input/output); int8: ship a static-QDQ int8
    graph calibrated on the images of the folder ``calib`` (required). The manifest's ``variant`` says
    which (fp32/fp16/int8) and, for fp16/int8, ``accuracy`` compares it with the fp32 graph on the ``calib``
    images (fp16 without ``calib``: ultralytics' bus.jpg and zidane.jpg).
    progress(step, text): called as each step starts (``STEPS``, one more for fp16/int8); report(text): one-line
    results and warnings (the variant's accuracy). Third-party warnings and log lines are silenced.
    Raises :class:`ExportError` for a bad checkpoint or option, or a PyTorch/onnxruntime disagreement;
    :class:`~fastsam_onnx.errors.MissingExtraError` without the ``[export]`` extra.
    """
    require("fastsam", half=half)
    with quiet_tools():
        return _export_fastsam(weights, out, imgsz, dynamic, opset, batch, half, int8, calib, progress, report)


def _export_fastsam(weights, out, imgsz, dynamic, opset, batch, half, int8, calib, progress, report) -> Path:
    import onnx
    import onnxsim

    from . import precision

    variant = variant_of(half, int8, calib)
    calib_images = precision.calibration_images(calib) if calib is not None else None
    if variant != "fp32" and progress is _progress:
        progress = functools.partial(_progress, total=STEPS + 1)
    if imgsz <= 0 or imgsz % 32:
        raise ExportError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    out = Path(out)
    check_out(out)
    weights = Path(weights)

    progress(1, f"loading checkpoint {weights}")
    model = load_checkpoint(weights)
    with staging(out) as tmp:
        shape = "dynamic" if dynamic else f"static, batch {batch}"
        progress(2, f"exporting to ONNX (imgsz {imgsz}, {shape})")
        work = tmp / "work"
        work.mkdir()
        src = work / "model.pt"
        shutil.copyfile(weights, src)
        from ultralytics import YOLO

        raw = YOLO(str(src), task="segment").export(
            format="onnx", imgsz=imgsz, dynamic=dynamic, opset=opset, batch=batch, simplify=False,
            device="cpu", verbose=False,
        )
        proto = onnx.load(raw)
        metadata = {p.key: p.value for p in proto.metadata_props}

        progress(3, "simplifying with onnxsim")
        simplified, ok = onnxsim.simplify(proto)
        if not ok:
            raise ExportError("onnxsim could not validate the simplified graph")
        del simplified.metadata_props[:]
        onnx.helper.set_model_props(simplified, metadata)
        rewrites = {"dfl_last_axis": dfl_last_axis(simplified), "upsample_as_conv": upsample_as_conv(simplified)}

        progress(4, "checking the graph with onnx.checker")
        onnx_path = tmp / FASTSAM_ONNX
        onnx.save(simplified, str(onnx_path))
        onnx.checker.check_model(str(onnx_path))
        shutil.rmtree(work)

        progress(5, "comparing PyTorch and onnxruntime on a real image")
        torch_model = model.model.float().eval()
        x, image_name = check_image((imgsz, imgsz))
        if batch > 1:
            x = np.repeat(x, batch, axis=0)
        diffs = parity(torch_model, onnx_path, x)

        accuracy = quantization = None
        if variant != "fp32":
            progress(6, f"making the {variant} variant and comparing it with fp32")
            images = calib_images or [check_image_path(name) for name in ("bus.jpg", "zidane.jpg")]
            fp32_path = tmp / "fp32.onnx"
            onnx_path.rename(fp32_path)
            if variant == "fp16":
                precision.to_fp16(fp32_path, onnx_path, block=precision.float_casts(onnx.load(str(fp32_path))))
            else:
                quantization = precision.to_int8(fp32_path, onnx_path, images, (imgsz, imgsz), dynamic=dynamic)
            accuracy = precision.variant_accuracy(fp32_path, onnx_path, images, imgsz=(imgsz, imgsz))
            accuracy["target_mask_iou"] = precision.TARGET_MASK_IOU[variant]
            report(precision.accuracy_line(variant, accuracy))
            fp32_path.unlink()
            simplified = onnx.load(str(onnx_path), load_external_data=False)

        progress(6 + (variant != "fp32"), "writing manifest")
        description = fastsam_description(
            imgsz=imgsz, dynamic=dynamic, batch=batch, stride=int(model.model.stride.max()),
            facts=graph_facts(simplified), rewrites=rewrites, num_masks=int(model.model.model[-1].nm), variant=variant,
        )
        m = manifest(
            description,
            sha256={"onnx": sha256_file(onnx_path), "weights": sha256_file(weights)},
            source={"weights": weights.name, "parameters": int(sum(p.numel() for p in torch_model.parameters()))},
            parity={
                "image": image_name,
                "max_abs_diff": diffs,
                "tolerance": f"|onnx - pytorch| <= {PARITY_ATOL} + {PARITY_RTOL} * |pytorch| element-wise",
                "graph": "fp32",
            },
            converter=CONVERTER,
            tools=versions(*TOOLS),
        )
        if accuracy is not None:
            m["accuracy"] = {"reference": "fp32", **accuracy}
        if quantization is not None:
            m["quantization"] = quantization
        write_manifest(tmp, m)
    return out

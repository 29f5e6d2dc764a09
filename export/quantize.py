"""Dynamic int8 quantization of transformer graphs (onnxruntime's own tools: no torch, no calibration images).

Apart from :mod:`.precision` (fp16, static int8 and their accuracy, which runs the FastSAM runtime) so that the
torch-free bundle writer (:mod:`.native_bundle`, reached from the zoo's first-use conversion) can make an int8 CLIP
bundle without reaching back into the runtime.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

__all__ = ["to_int8_dynamic"]


def to_int8_dynamic(src: str | Path, dst: str | Path) -> dict:
    """fp32 transformer graph ``src`` → int8 graph at ``dst`` with dynamic quantization; returns the settings.

    The weights of every MatMul/Gemm become int8 (per output channel); activations are quantized to uint8 at
    run time, per tensor, so no calibration images are needed. Used for the CLIP towers, where the matrix
    products are almost all of the time (onnxruntime's CPU kernels run them with VNNI/AMX integer units).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantizer():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    onnx.checker.check_model(str(dst))
    return {"format": "dynamic", "weights": "int8 per-channel (MatMul, Gemm)", "activations": "uint8, quantized at run time"}


@contextlib.contextmanager
def _quiet_quantizer():
    """Drop onnxruntime.quantization's root-logger advice to run its pre-processing (measured: it changes
    neither the accuracy nor the speed of these graphs)."""

    def advice(record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)

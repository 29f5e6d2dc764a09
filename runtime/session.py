"""One ONNX Runtime session wrapper, shared by every model family (FastSAM and, later, the CLIP towers)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import onnxruntime as ort

from .errors import BadModelError

log = logging.getLogger(__name__)

ProviderSpec = Union[str, tuple[str, dict]]

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


def default_providers() -> list[str]:
    """CUDA then CPU, among the providers this onnxruntime build offers."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxSession:
    """An ``onnxruntime.InferenceSession`` with its input/output names, shapes and dtypes at hand.

    Attributes:
        path: the .onnx file; input_name/input_shape/input_dtype: the first input (shape entries are ints
        or None for dynamic axes); output_names; providers: what onnxruntime actually kept.
    """

    def __init__(self, path: str | os.PathLike[str], providers: Sequence[ProviderSpec] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise BadModelError(f"ONNX file not found: {self.path}")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=list(providers or default_providers()))
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise BadModelError(f"cannot load ONNX model {self.path}: {str(e).splitlines()[0]}") from e
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        if inp.type not in _ORT_DTYPES:
            raise BadModelError(f"{self.path}: unsupported input type {inp.type}")
        self.input_dtype = np.dtype(_ORT_DTYPES[inp.type])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on the single input ``x`` (cast to the graph's input dtype); outputs in graph order."""
        return self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})

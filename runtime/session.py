"""One ONNX Runtime session wrapper, shared by every model family (FastSAM and, later, the CLIP towers)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BadModelError, ProviderError
from .extras import MissingRuntimeError
from .gpulibs import preload_gpu_libraries
from .parallel import share_malloc_arena

try:
    import onnxruntime as ort
except ModuleNotFoundError as _e:  # the base install leaves the build to the user: the [cpu] or the [gpu] extra
    if _e.name != "onnxruntime":
        raise
    ort = None  # sessions raise MissingRuntimeError (one line naming both extras)
from .providers import (
    CPU,
    GPU_PROVIDERS,
    ProviderSpec,
    check_providers,
    default_cache_dir,
    provider_name,
    resolve_providers,
    session_options,
    warn_fallback,
)

log = logging.getLogger(__name__)

__all__ = ["OnnxSession", "ProviderSpec", "default_providers", "run_with_binding"]

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


def default_providers() -> list[ProviderSpec]:
    """The "auto" request: TensorRT, CUDA, CPU among the providers this build offers, with their options."""
    if ort is None:
        raise MissingRuntimeError(what="fastsam-onnx")
    return resolve_providers(None, ort.get_available_providers())


def trt_cache_dir(path: Path) -> Path:
    """``<cache>/tensorrt/<model stem>-<key>``: one TensorRT engine/timing cache folder per model file.

    The key changes when the file is replaced (path, size, modification time), so a re-exported model never
    picks up a stale engine that onnxruntime would otherwise match by file name.
    """
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return default_cache_dir() / "tensorrt" / f"{path.stem}-{key}"


def run_with_binding(session, input_name: str, x: np.ndarray, output_names: Sequence[str]) -> list[np.ndarray]:
    """Run ``session`` through an ``io_binding``: the C-contiguous CPU array ``x`` is bound as it is (the
    provider copies it to the device once) and every output is bound to CPU memory that onnxruntime fills
    with one device→host copy; the returned arrays share that memory (``OrtValue.numpy()`` does not copy).

    ``session`` needs only ``io_binding()`` and ``run_with_iobinding()``, so a stand-in object can test it.
    """
    binding = session.io_binding()
    binding.bind_cpu_input(input_name, x)
    for name in output_names:
        binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    return [value.numpy() for value in binding.get_outputs()]


class OnnxSession:
    """An ``onnxruntime.InferenceSession`` with its input/output names, shapes and dtypes at hand.

    Args:
        path: the .onnx file.
        providers: "auto" (None), "cpu", "cuda", "tensorrt", or a list of provider names / (name, options)
            pairs: see :mod:`fastsam_onnx.providers` (also for the environment variables).
        strict: a requested provider that this build does not offer or that does not come up raises
            :class:`ProviderError`; otherwise a warning, and the session runs on what remains.
        sess_options: ``onnxruntime.SessionOptions``; default: thread counts from ``$FASTSAM_ONNX_THREADS``.

    Attributes:
        path: the .onnx file; input_name/input_shape/input_dtype: the first input (shape entries are ints
        or None for dynamic axes); output_names; requested: the resolved provider list given to onnxruntime;
        providers: what onnxruntime actually kept; use_io_binding: runs go through ``io_binding`` (CUDA or
        TensorRT first).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str | Sequence[ProviderSpec] | None = None,
        strict: bool = False,
        *,
        sess_options: ort.SessionOptions | None = None,
    ):
        if ort is None:
            raise MissingRuntimeError(what="fastsam-onnx")
        self.path = Path(path)
        if not self.path.is_file():
            raise BadModelError(f"ONNX file not found: {self.path}")
        available = ort.get_available_providers()
        cache = trt_cache_dir(self.path)
        self.requested = resolve_providers(providers, available, strict=strict, cache_dir=cache)
        names = [provider_name(p) for p in self.requested]
        if "TensorrtExecutionProvider" in names:
            cache.mkdir(parents=True, exist_ok=True)
        so = sess_options if sess_options is not None else session_options()
        share_malloc_arena()  # before onnxruntime's threads start (fastsam_onnx.parallel says why)
        if any(n in GPU_PROVIDERS for n in names):
            preload_gpu_libraries()  # CUDA and cuDNN from NVIDIA's pip wheels, where installed
        try:
            # a provider that fails to load makes onnxruntime print an "EP Error" banner to stdout, where `--json -`
            # writes: sent to stderr (the post-check below reports it in one line)
            with contextlib.redirect_stdout(sys.stderr) if names != [CPU] else contextlib.nullcontext():
                self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=self.requested)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            if names == [CPU]:
                raise BadModelError(f"cannot load ONNX model {self.path}: {str(e).splitlines()[0]}") from e
            self.session = self._cpu_fallback(so, names, e, strict)
            self.requested = [CPU]  # the fallback has been reported
        self.providers = self.session.get_providers()
        check_providers(self.requested, self.providers, strict=strict, what=self.path.name)
        self.use_io_binding = self.providers[0] in GPU_PROVIDERS
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        if inp.type not in _ORT_DTYPES:
            raise BadModelError(f"{self.path}: unsupported input type {inp.type}")
        self.input_dtype = np.dtype(_ORT_DTYPES[inp.type])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def _cpu_fallback(self, so, names: list[str], error: Exception, strict: bool):
        """The session could not be created with ``names``: a CPU session when the model itself is fine."""
        try:
            session = ort.InferenceSession(str(self.path), sess_options=so, providers=[CPU])
        except Exception as e:
            raise BadModelError(f"cannot load ONNX model {self.path}: {str(e).splitlines()[0]}") from e
        message = f"cannot create a session for {self.path.name} with {', '.join(names)}: {str(error).splitlines()[0]}"
        if strict:
            raise ProviderError(message) from error
        warn_fallback(f"{message}; using {CPU}")
        return session

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on the single input ``x`` (cast to the graph's input dtype); outputs in graph order.

        On CUDA/TensorRT the run goes through :func:`run_with_binding` (one copy each way); on CPU a plain run.
        """
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if self.use_io_binding:
            return run_with_binding(self.session, self.input_name, x, self.output_names)
        return self.session.run(self.output_names, {self.input_name: x})

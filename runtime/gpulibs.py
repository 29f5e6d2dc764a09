"""What this machine and onnxruntime build offer the GPU providers: the onnxruntime distribution installed and
the CUDA, cuDNN and TensorRT shared libraries that can be loaded (used by provider checks and ``doctor``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata

__all__ = [
    "GPU_LIBRARIES", "PROVIDER_LIBRARIES", "ORT_DISTRIBUTIONS", "ort_packages", "ort_package",
    "find_gpu_libraries", "library_hint",
]

#: shared libraries the GPU providers load, by what they are (sonames of CUDA 12/13, cuDNN 9, TensorRT 10)
GPU_LIBRARIES = {
    "CUDA runtime": ("libcudart.so.12", "libcudart.so.13"),
    "cuBLAS": ("libcublasLt.so.12", "libcublasLt.so.13"),
    "cuDNN": ("libcudnn.so.9",),
    "TensorRT": ("libnvinfer.so.10",),
}
#: which of GPU_LIBRARIES each provider needs
PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": ("CUDA runtime", "cuBLAS", "cuDNN"),
    "TensorrtExecutionProvider": ("CUDA runtime", "TensorRT"),
}


ORT_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon")


def ort_packages() -> list[str]:
    """The installed distributions that provide an ``onnxruntime`` module (more than one shadow each other)."""
    found = []
    for dist in ORT_DISTRIBUTIONS:
        try:
            importlib.metadata.version(dist)
            found.append(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def ort_package() -> str:
    """The installed onnxruntime distribution: "onnxruntime", "onnxruntime-gpu", ... ("unknown" for a source
    build; the GPU one when several are installed)."""
    found = ort_packages()
    return found[0] if found else "unknown"


def find_gpu_libraries() -> dict[str, str | None]:
    """What → the first loadable soname of :data:`GPU_LIBRARIES` (``ctypes.CDLL``), or None."""
    out: dict[str, str | None] = {}
    for what, sonames in GPU_LIBRARIES.items():
        out[what] = None
        for soname in sonames:
            if _loadable(soname):
                out[what] = soname
                break
    return out


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


def library_hint(what: str) -> str | None:
    """``ctypes.util.find_library``'s answer for a library of :data:`GPU_LIBRARIES` (any version), or None."""
    stem = GPU_LIBRARIES[what][0].removeprefix("lib").split(".so")[0]
    return ctypes.util.find_library(stem)

"""What the installed onnxruntime build needs for its GPU providers, read from the build itself, and whether this
machine can load it (used by the provider post-check, the sessions and ``doctor``).

The onnxruntime-gpu wheel says which CUDA it was built for (``onnxruntime/capi/build_and_package_info.py``:
``cuda_version``, e.g. ``"12.8"`` up to onnxruntime-gpu 1.26 on PyPI, ``"13.0"`` from 1.27) and its provider
libraries name the shared libraries they link (ELF ``DT_NEEDED``: ``libcudart.so.13``, ``libnvinfer.so.10`` ...).
cuDNN, which the CUDA provider opens at run time instead of linking it, is read from the wheel's own
``cudnn`` extra (``nvidia-cudnn-cu13~=9.0`` → ``libcudnn.so.9``). Nothing here imports onnxruntime.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import io
import logging
import re
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "ORT_DISTRIBUTIONS", "PROVIDER_FILES", "ort_packages", "ort_package", "ort_dir", "build_info", "elf_needed",
    "provider_libraries", "describe_library", "loadable", "missing_libraries", "driver_cuda_version",
    "preload_gpu_libraries",
]

ORT_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon")
#: the provider library of each GPU provider in ``onnxruntime/capi`` (Linux)
PROVIDER_FILES = {
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
}
#: NVIDIA libraries among a provider's DT_NEEDED (the rest is libc, libstdc++ ...): soname stem → what it is
_NVIDIA = {
    "libcuda": "NVIDIA driver", "libcudart": "CUDA runtime", "libcublas": "cuBLAS", "libcublasLt": "cuBLASLt",
    "libcurand": "cuRAND", "libcufft": "cuFFT", "libnvrtc": "NVRTC", "libcudnn": "cuDNN", "libnvinfer": "TensorRT",
    "libnvinfer_plugin": "TensorRT plugins", "libnvonnxparser": "TensorRT ONNX parser",
}


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
    """The installed onnxruntime distribution: "onnxruntime", "onnxruntime-gpu", ... ("none" when no distribution
    is installed, "unknown" for a module without one, e.g. a source build; the GPU one when several are)."""
    found = ort_packages()
    if found:
        return found[0]
    return "unknown" if ort_dir() is not None else "none"


def ort_dir() -> Path | None:
    """The folder of the ``onnxruntime`` package that ``import onnxruntime`` would load (not imported), or None."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def build_info(root: Path | None = None) -> dict[str, str | None]:
    """What the onnxruntime build in ``root`` (default :func:`ort_dir`) says of itself, without importing it:
    ``package_name``, ``version`` and ``cuda_version`` (``"13.0"``; None for a CPU build or when unreadable).
    Builds before 1.21 have no ``build_and_package_info.py``: their CUDA major version is read from the CUDA
    provider's ``libcudart.so.N`` (``"12"``)."""
    root = ort_dir() if root is None else root
    out: dict[str, str | None] = {"package_name": None, "version": None, "cuda_version": None}
    if root is None:
        return out
    try:
        tree = ast.parse((root / "capi" / "build_and_package_info.py").read_text())
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("package_name", "__version__", "cuda_version"):
                    out["version" if target.id == "__version__" else target.id] = node.value.value or None
    if out["cuda_version"] is None:
        cudart = [s for s in elf_needed(root / "capi" / PROVIDER_FILES["CUDAExecutionProvider"]) if _stem(s) == "libcudart"]
        if cudart:
            out["cuda_version"] = cudart[0].split(".so.")[-1].split(".")[0] or None
    return out


def elf_needed(path: str | Path) -> list[str]:
    """The ``DT_NEEDED`` entries (sonames) of an ELF shared library, read from its dynamic section; [] when the
    file is missing or not ELF."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    wide, end = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if wide:
            shoff, = struct.unpack_from(end + "Q", data, 0x28)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
            sh_fmt, dyn_fmt = end + "IIQQQQIIQQ", end + "qQ"
        else:
            shoff, = struct.unpack_from(end + "I", data, 0x20)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
            sh_fmt, dyn_fmt = end + "IIIIIIIIII", end + "iI"
        sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
        needed = []
        for sh in sections:
            if sh[1] != 6:  # SHT_DYNAMIC
                continue
            strtab = sections[sh[6]]  # sh_link: the string table of the dynamic section
            step = struct.calcsize(dyn_fmt)
            for off in range(sh[4], sh[4] + sh[5], step):
                tag, value = struct.unpack_from(dyn_fmt, data, off)
                if tag == 0:  # DT_NULL
                    break
                if tag == 1:  # DT_NEEDED
                    start = strtab[4] + value
                    needed.append(data[start:data.index(b"\0", start)].decode("utf-8", "replace"))
        return needed
    except (struct.error, IndexError, ValueError):
        return []


def _stem(soname: str) -> str:
    return soname.split(".so")[0]


def _cudnn_from_metadata(package: str) -> str | None:
    """``libcudnn.so.N`` from the ``cudnn`` extra of the installed onnxruntime-gpu (``nvidia-cudnn-cu13~=9.0``)."""
    try:
        requires = importlib.metadata.requires(package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        m = re.match(r"\s*nvidia-cudnn[-\w]*\s*[~=>]=\s*(\d+)", req)
        if m:
            return f"libcudnn.so.{m.group(1)}"
    return None


def provider_libraries(root: Path | None = None, package: str | None = None) -> dict[str, list[str]]:
    """GPU provider → the NVIDIA shared libraries (sonames) the installed build needs for it, read from the build:
    its provider library's ``DT_NEEDED`` plus cuDNN from its metadata where the CUDA provider opens cuDNN at run
    time. Only providers whose library this build ships (an empty dict for a CPU build)."""
    root = ort_dir() if root is None else root
    if root is None:
        return {}
    out: dict[str, list[str]] = {}
    for provider, filename in PROVIDER_FILES.items():
        lib = root / "capi" / filename
        if not lib.is_file():
            continue
        needed = [s for s in elf_needed(lib) if _stem(s) in _NVIDIA]
        if provider == "CUDAExecutionProvider" and not any(_stem(s) == "libcudnn" for s in needed):
            cudnn = _cudnn_from_metadata(package or ort_package())
            if cudnn:
                needed.append(cudnn)
        out[provider] = needed
    return out


def describe_library(soname: str, cuda_version: str | None = None) -> str:
    """A soname as people name it: ``libcudart.so.13`` → "CUDA 13 runtime (libcudart.so.13)", ``libcudnn.so.9`` →
    "cuDNN 9 (libcudnn.so.9)", ``libnvinfer.so.10`` → "TensorRT 10 (libnvinfer.so.10)"."""
    stem, _, major = soname.partition(".so")
    major = major.lstrip(".").split(".")[0]
    what = _NVIDIA.get(stem, stem)
    if stem in ("libcudart", "libcublas", "libcublasLt", "libnvrtc"):
        cuda = major or (cuda_version or "").split(".")[0]
        what = f"CUDA {cuda} runtime" if stem == "libcudart" else f"{what} (CUDA {cuda})"
    elif stem in ("libcudnn", "libnvinfer", "libnvinfer_plugin", "libnvonnxparser", "libcurand", "libcufft") and major:
        what = f"{what} {major}"
    return f"{what} ({soname})"


def loadable(soname: str) -> bool:
    """Whether ``ctypes.CDLL(soname)`` loads it (the loader's search path, or a copy already loaded)."""
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


def missing_libraries(sonames) -> list[str]:
    """The sonames among ``sonames`` that cannot be loaded here, in order, once each."""
    return [s for s in dict.fromkeys(sonames) if not loadable(s)]


def driver_cuda_version() -> str | None:
    """The newest CUDA the installed NVIDIA driver supports ("12.4", from ``cuDriverGetVersion``), or None without
    a driver (``libcuda.so.1`` does not load)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


_preload_lock = threading.Lock()
_preloaded = False


def preload_gpu_libraries() -> None:
    """Let a GPU build find CUDA and cuDNN installed as NVIDIA's pip wheels (``onnxruntime-gpu[cuda,cudnn]``):
    ``onnxruntime.preload_dlls()`` once per process, for builds that have it (onnxruntime-gpu >= 1.21); a no-op
    for CPU builds. System libraries keep working as before (the loader finds those on its own)."""
    global _preloaded
    with _preload_lock:
        if _preloaded or not build_info().get("cuda_version"):
            return
        _preloaded = True
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)
        if preload is None:
            return
        # it prints what it could not find to stdout (where `--json -` writes): sent to the log instead;
        # the provider post-check and doctor name the missing libraries
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                preload(cuda=True, cudnn=True)
            except Exception as e:  # noqa: BLE001 - a best effort
                out.write(f"onnxruntime.preload_dlls failed: {e}")
        if out.getvalue().strip():
            log.debug("onnxruntime.preload_dlls: %s", " ".join(out.getvalue().split()))

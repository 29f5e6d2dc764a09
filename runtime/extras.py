"""Optional extras: which importable modules are missing, checked without importing anything heavy.

:func:`require_extra` raises :class:`~fastsam_onnx.errors.MissingExtraError` (one line: the extra and its ``pip
install`` command) where a module or a function of the package needs an extra that is not installed; the CLI turns
the same check into its one-line usage error, exit status 2, before work starts
(:func:`fastsam_onnx.cli.extras.require`); the export stage and the benchmarks ask the same question here.

ONNX Runtime itself is an extra too: ``[cpu]`` (the ``onnxruntime`` wheel) or ``[gpu]`` (``onnxruntime-gpu``, CUDA
and TensorRT). Both wheels install the same ``onnxruntime`` module and overwrite each other's files, so the base
install depends on neither and the user picks one; without either, :func:`require_runtime` raises
:class:`MissingRuntimeError`, one line naming both.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

__all__ = [
    "CPU_INSTALL", "GPU_INSTALL", "GPU_SWITCH", "EXTRA_OF", "MissingRuntimeError", "extra_of", "missing_modules",
    "require_extra", "require_runtime",
]

#: the one recipe for each onnxruntime build (README, docs/gpu.md, doctor and the error messages say the same)
CPU_INSTALL = "pip install 'fastsam-onnx[cpu]'"
GPU_INSTALL = "pip install 'fastsam-onnx[gpu]'"
#: from the CPU build to the GPU build: the two wheels share the module's files, so the CPU one goes first
GPU_SWITCH = "pip uninstall -y onnxruntime && pip install 'fastsam-onnx[gpu]'"

#: top-level module → the extra that installs it (names an ImportError that slipped past a check)
EXTRA_OF = {m: "export" for m in ("torch", "torchvision", "ultralytics", "onnxsim", "clip")}  # onnx: base install
EXTRA_OF["onnxconverter_common"] = "fp16"  # also in [export]
EXTRA_OF["matplotlib"] = "dev"
EXTRA_OF["pycocotools"] = "eval"
EXTRA_OF["onnxruntime"] = "cpu"  # or [gpu]: MissingRuntimeError names both
EXTRA_OF.update(ray="ray", pyarrow="ray", fastapi="server", uvicorn="server", starlette="server", multipart="server", pydantic="server")


def extra_of(module: str | None) -> str | None:
    """The extra that provides ``module`` (a dotted name; its top-level package decides), or None."""
    return EXTRA_OF.get(str(module).split(".")[0]) if module else None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
        return False


def missing_modules(*modules: str) -> list[str]:
    """The names among ``modules`` (dotted names allowed) that cannot be imported here (find_spec only)."""
    return [m for m in modules if not _importable(m)]


def require_extra(extra: str, *modules: str, what: str = "this") -> None:
    """Raise :class:`~fastsam_onnx.errors.MissingExtraError` naming ``extra`` unless every module of ``modules``
    can be imported (:func:`missing_modules`: nothing is imported). ``what``: who needs it, for the message."""
    missing = missing_modules(*modules)
    if missing:
        raise MissingExtraError(extra, missing, what)


class MissingRuntimeError(MissingExtraError):
    """No ONNX Runtime installed (neither the ``[cpu]`` nor the ``[gpu]`` extra): one line naming both commands, e.g.
    ``FastSAM needs ONNX Runtime, which the base install leaves to you: pip install 'fastsam-onnx[cpu]' (CPU) or
    pip install 'fastsam-onnx[gpu]' (NVIDIA CUDA and TensorRT)``. A :class:`MissingExtraError` (``extra`` "cpu")."""

    def __init__(self, extra: str = "cpu", missing: tuple[str, ...] | list[str] = ("onnxruntime",), what: str = "this"):
        super().__init__(extra, missing, what)
        self.msg = (f"{what} needs ONNX Runtime, which the base install leaves to you: {CPU_INSTALL} (CPU) or "
                    f"{GPU_INSTALL} (NVIDIA CUDA and TensorRT)")
        self.args = (self.msg,)


def require_runtime(what: str = "this") -> None:
    """Raise :class:`MissingRuntimeError` unless an ``onnxruntime`` module can be imported (find_spec only)."""
    if missing_modules("onnxruntime"):
        raise MissingRuntimeError(what=what)

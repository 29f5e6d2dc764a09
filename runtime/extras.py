"""Optional extras: which importable modules are missing, checked without importing anything heavy.

The CLI turns a missing extra into one line and exit status 2 before work starts
(:func:`fastsam_onnx.cli.extras.require`); the export stage and the benchmarks ask the same question here.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA_OF", "extra_of", "missing_modules"]

#: top-level module → the extra that installs it (names an ImportError that slipped past a check)
EXTRA_OF = {m: "export" for m in ("torch", "torchvision", "ultralytics", "onnx", "onnxsim", "clip", "onnxconverter_common")}
EXTRA_OF["matplotlib"] = "dev"
EXTRA_OF["pycocotools"] = "eval"
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

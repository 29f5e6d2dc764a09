"""Optional extras: which importable modules are missing, checked without importing anything heavy.

:func:`require_extra` raises :class:`~fastsam_onnx.errors.MissingExtraError` (one line: the extra and its ``pip
install`` command) where a module or a function of the package needs an extra that is not installed; the CLI turns
the same check into its one-line usage error, exit status 2, before work starts
(:func:`fastsam_onnx.cli.extras.require`); the export stage and the benchmarks ask the same question here.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

__all__ = ["EXTRA_OF", "extra_of", "missing_modules", "require_extra"]

#: top-level module → the extra that installs it (names an ImportError that slipped past a check)
EXTRA_OF = {m: "export" for m in ("torch", "torchvision", "ultralytics", "onnxsim", "clip")}  # onnx: base install
EXTRA_OF["onnxconverter_common"] = "fp16"  # also in [export]
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


def require_extra(extra: str, *modules: str, what: str = "this") -> None:
    """Raise :class:`~fastsam_onnx.errors.MissingExtraError` naming ``extra`` unless every module of ``modules``
    can be imported (:func:`missing_modules`: nothing is imported). ``what``: who needs it, for the message."""
    missing = missing_modules(*modules)
    if missing:
        raise MissingExtraError(extra, missing, what)

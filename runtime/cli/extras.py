"""Optional extras of the package: check that one is installed before a command starts its work.

``require("export", "torch", "onnx")`` raises the CLI's one-line :class:`~fastsam_onnx.cli.UsageError`
(exit status 2) naming the extra and the ``pip install`` line when any of those modules cannot be imported.
Only :func:`importlib.util.find_spec` is used: nothing heavy is imported by the check.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXPORT_MODULES", "extra_of", "missing_modules", "require"]

#: modules the export stage imports, per kind of model (the [export] extra provides them)
EXPORT_MODULES: dict[str, tuple[str, ...]] = {
    "fastsam": ("torch", "ultralytics", "onnx", "onnxsim"),
    "clip": ("torch", "clip", "onnx", "onnxsim"),
}

#: top-level module → the extra that installs it (for an ImportError that slips past :func:`require`)
_EXTRA_OF = {m: "export" for m in ("torch", "torchvision", "ultralytics", "onnx", "onnxsim", "clip", "onnxconverter_common")}


def extra_of(module: str | None) -> str | None:
    """The extra that provides ``module`` (a dotted name; its top-level package decides), or None."""
    return _EXTRA_OF.get(str(module).split(".")[0]) if module else None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
        return False


def missing_modules(*modules: str) -> list[str]:
    """The names among ``modules`` (dotted names allowed) that cannot be imported."""
    return [m for m in modules if not _importable(m)]


def require(extra: str, *modules: str, what: str = "this command", hint: str = "") -> None:
    """Raise :class:`UsageError` unless every module of ``modules`` is importable.

    extra: the extra's name (``"export"``, ``"server"``, ...); what: who needs it, for the message
    (``"fastsam-onnx export"``); hint: appended to the message (e.g. what to run after installing).
    """
    missing = missing_modules(*modules)
    if missing:
        from . import UsageError

        raise UsageError(
            f"{what} needs the [{extra}] extra (missing: {', '.join(missing)}): "
            f"pip install 'fastsam-onnx[{extra}]'{hint}"
        )

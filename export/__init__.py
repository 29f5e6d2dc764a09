"""The export stage (needs the ``[export]`` extra: torch, ultralytics, onnx, onnxsim; clip for CLIP,
onnxconverter-common for fp16). Importing this package is light: it imports none of them."""

from __future__ import annotations

#: import name → the pip distribution that provides it
PIP_NAMES = {
    "torch": "torch",
    "ultralytics": "ultralytics",
    "onnx": "onnx",
    "onnxsim": "onnxsim",
    "torchvision": "torchvision",
    "clip": "clip-anytorch",
    "onnxconverter_common": "onnxconverter-common",
}


class ExportError(Exception):
    """An export failed for a reason the user can fix (bad checkpoint, parity failure, bad option)."""


def required_modules(kind: str, *, half: bool = False) -> list[str]:
    """Import names an export of ``kind`` ("fastsam" or "clip") needs; ``half``: the fp16 variant too."""
    names = ["torch", "ultralytics", "onnx", "onnxsim"]
    if kind == "clip":
        names += ["torchvision", "clip"]
    if half:
        names.append("onnxconverter_common")
    return names


def missing_modules(kind: str, *, half: bool = False) -> list[str]:
    """The :func:`required_modules` that are not installed (``importlib.util.find_spec``: nothing is imported)."""
    from ..extras import missing_modules as missing

    return missing(*required_modules(kind, half=half))


def require(kind: str, *, half: bool = False) -> None:
    """Raise :class:`~fastsam_onnx.errors.MissingExtraError` (the ``[export]`` extra) unless every module an
    export of ``kind`` needs is installed; the exporters call it before they start."""
    from ..extras import require_extra

    require_extra("export", *required_modules(kind, half=half), what=f"fastsam_onnx.export ({kind})")


def missing_message(kind: str, missing: list[str]) -> str:
    """One line: what is missing for an export of ``kind`` and the pip command that installs it."""
    pips = " ".join(PIP_NAMES.get(m, m) for m in missing)
    return (
        f"export {kind} needs the [export] extra; missing: {', '.join(missing)} "
        f"(pip install 'fastsam-onnx[export]', or pip install {pips})"
    )

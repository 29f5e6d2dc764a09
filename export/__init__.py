"""The export stage (needs the ``[export]`` extra: torch, ultralytics, onnx, onnxsim)."""

from __future__ import annotations


class ExportError(Exception):
    """An export failed for a reason the user can fix (bad checkpoint, parity failure, bad option)."""

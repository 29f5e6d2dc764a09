"""Optional extras of the package: check that one is installed before a command starts its work.

``require("export", "torch", "onnx")`` raises the CLI's one-line :class:`~fastsam_onnx.cli.UsageError`
(exit status 2) naming the extra and the ``pip install`` line when any of those modules cannot be imported.
Only :func:`importlib.util.find_spec` is used: nothing heavy is imported by the check.
"""

from __future__ import annotations

from ..errors import MissingExtraError
from ..extras import extra_of, missing_modules, require_extra

__all__ = ["extra_of", "missing_modules", "require"]


def require(extra: str, *modules: str, what: str = "this command", hint: str = "") -> None:
    """Raise :class:`UsageError` unless every module of ``modules`` is importable.

    extra: the extra's name (``"export"``, ``"server"``, ...); what: who needs it, for the message
    (``"fastsam-onnx export"``); hint: appended to the message (e.g. what to run after installing).
    """
    try:
        require_extra(extra, *modules, what=what)
    except MissingExtraError as e:  # the same line, as the CLI's usage error (exit status 2)
        from .usage import UsageError

        raise UsageError(f"{e}{hint}") from None

"""Typed errors of the runtime. Every error a user can cause derives from :class:`FastSAMError`."""

from __future__ import annotations

from .progress import clean


class FastSAMError(Exception):
    """Base class of the errors raised for bad input, bad models or bad settings."""


class BadImageError(FastSAMError, ValueError):
    """The image is missing, unreadable or of a kind the runtime does not accept."""


class ImageTooLargeError(BadImageError):
    """The image has more pixels, or its file more bytes, than the limits allow (refused before decoding;
    the server answers HTTP 413, where an undecodable image is 400)."""


class BadModelError(FastSAMError, ValueError):
    """The model file or bundle is missing, corrupt or not a FastSAM graph."""


class BadArgumentError(FastSAMError, ValueError):
    """A setting (threshold, image size, ...) is out of its valid range."""


class BadPromptError(FastSAMError, ValueError):
    """A box, point, label or text prompt is malformed (NaN, wrong shape, x2 < x1, empty text, ...)."""


class ProviderError(FastSAMError, RuntimeError):
    """A requested execution provider is not offered by this onnxruntime build, or did not come up."""


class DownloadError(FastSAMError, RuntimeError):
    """A download failed: offline, HTTP error, interrupted transfer or checksum mismatch."""


class MissingExtraError(FastSAMError, ImportError):
    """An optional extra of the package is not installed: one line naming the extra and the command that installs it,
    e.g. ``fastsam_onnx.server needs the [server] extra (missing: fastapi): pip install 'fastsam-onnx[server]'``.

    Raised when a module that needs the extra is imported (``fastsam_onnx.server``) or when a function that needs
    it is called (:func:`fastsam_onnx.distributed.segment_dataset`, the exporters); an :class:`ImportError`, so
    ``except ImportError`` still catches it. ``extra``: the extra's name; ``missing``: the import names not found.
    """

    def __init__(self, extra: str, missing: tuple[str, ...] | list[str] = (), what: str = "this"):
        self.extra, self.missing, self.what = extra, tuple(missing), what
        names = f" (missing: {', '.join(self.missing)})" if self.missing else ""
        super().__init__(f"{what} needs the [{extra}] extra{names}: pip install 'fastsam-onnx[{extra}]'",
                         name=self.missing[0] if self.missing else None)

    def __reduce__(self):  # pickles (Ray, multiprocessing) with its own arguments, not the message
        return type(self), (self.extra, self.missing, self.what)


def one_line(e: BaseException) -> str:
    """An exception as one sanitized line: typed errors by message, others with their type name."""
    text = " ".join(str(e).split())
    if not isinstance(e, FastSAMError):
        kind = type(e).__qualname__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__qualname__}"
        text = f"{kind}: {text}" if text else kind
    return clean(text)

"""Typed errors of the runtime. Every error a user can cause derives from :class:`FastSAMError`."""

from __future__ import annotations


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

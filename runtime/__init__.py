"""fastsam-onnx: FastSAM (Fast Segment Anything) on ONNX Runtime, without PyTorch."""

from . import image as _image  # noqa: F401  # first: it caps OpenCV's pixel limit before cv2 is imported
from .errors import (
    BadArgumentError,
    BadImageError,
    BadModelError,
    BadPromptError,
    DownloadError,
    FastSAMError,
    ImageTooLargeError,
    MissingExtraError,
    ProviderError,
)
from .manifest import UnverifiedModelWarning
from .model import FastSAM
from .result import Result

#: the package's one version: pyproject.toml reads it from here (a plain string literal, read without importing)
__version__ = "0.1.0"
__all__ = [
    "FastSAM",
    "Result",
    "FastSAMError",
    "BadImageError",
    "ImageTooLargeError",
    "BadModelError",
    "BadArgumentError",
    "BadPromptError",
    "ProviderError",
    "DownloadError",
    "MissingExtraError",
    "UnverifiedModelWarning",
    "__version__",
]

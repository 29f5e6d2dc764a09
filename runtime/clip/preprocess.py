"""CLIP's image preprocessing without PyTorch, identical to ``clip.clip._transform(n_px)``.

Resize (short side → n_px, PIL bicubic with its antialiasing) → centre crop n_px × n_px → RGB →
[0, 1] → per-channel normalisation. Needs Pillow (imported on first use).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import BadImageError

IMAGE_RESOLUTION = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(f"CLIP image preprocessing needs Pillow, a base dependency of fastsam-onnx: reinstall it ({e})") from None
    return Image


def resized_size(width: int, height: int, n_px: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(n_px)``: the short side becomes n_px and the long
    side ``int(n_px * long / short)`` (float division, truncated), in pixels."""
    if width <= height:
        return n_px, int(n_px * height / width)
    return int(n_px * width / height), n_px


def to_pil(image: Any):
    """A PIL image as is, or an (H, W, 3) RGB uint8 array (H, W >= 1) as a PIL RGB image."""
    Image = _pil()
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise BadImageError(f"empty image of size {image.size}")
        return image
    if not isinstance(image, np.ndarray):
        raise BadImageError(f"expected a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadImageError(f"expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise BadImageError(f"empty image of shape {image.shape}")
    return Image.fromarray(np.ascontiguousarray(image))


def resize_crop(image: Any, n_px: int = IMAGE_RESOLUTION) -> np.ndarray:
    """One image (PIL, or (H, W, 3) RGB uint8) → its (n_px, n_px, 3) RGB uint8 centre crop after CLIP's
    resize (short side → n_px, PIL bicubic). Same order of operations as CLIP (resize and crop before the
    RGB conversion), so PIL images of other modes give what CLIP gives them."""
    Image = _pil()
    img = to_pil(image)
    size = resized_size(img.width, img.height, n_px)
    if size != img.size:  # torchvision returns the image untouched when the size already matches
        img = img.resize(size, Image.BICUBIC)
    # Resize(n_px) leaves both sides >= n_px, so the centre crop never needs padding.
    top = int(round((img.height - n_px) / 2.0))
    left = int(round((img.width - n_px) / 2.0))
    return np.asarray(img.crop((left, top, left + n_px, top + n_px)).convert("RGB"))


def normalize(pixels: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> np.ndarray:
    """(B, n, n, 3) RGB uint8 → (B, 3, n, n) float32: ``(pixels / 255 - mean) / std`` per channel, in
    float32 in that order (torchvision's ToTensor + Normalize, bit for bit)."""
    x = pixels.astype(np.float32)
    x /= np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(
    image: Any,
    n_px: int = IMAGE_RESOLUTION,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    """One image (PIL, or (H, W, 3) RGB uint8) → (3, n_px, n_px) float32, CHW, normalised RGB."""
    return normalize(resize_crop(image, n_px)[None], mean, std)[0]


def preprocess_batch(
    images: Sequence[Any],
    n_px: int = IMAGE_RESOLUTION,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    """Several images → (B, 3, n_px, n_px) float32 (B may be 0)."""
    pixels = np.empty((len(images), n_px, n_px, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        pixels[i] = resize_crop(image, n_px)
    return normalize(pixels, mean, std)

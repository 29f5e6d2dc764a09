"""The torch-free CLIP preprocessing equals the clip module's ``_transform`` on photos and odd crops."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from fastsam_onnx.clip.preprocess import MEAN, STD, preprocess, preprocess_batch, resized_size
from fastsam_onnx.errors import BadImageError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clip = pytest.importorskip("clip")

ATOL = 1e-6
_REFERENCE: dict[int, object] = {}


def reference(image, n_px: int = 224) -> np.ndarray:
    """The clip module's own transform (torchvision on a PIL image) → (3, n, n) float32."""
    if n_px not in _REFERENCE:
        _REFERENCE[n_px] = clip.clip._transform(n_px)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
    return _REFERENCE[n_px](pil).numpy()


def assert_same(image, n_px: int = 224) -> float:
    got, ref = preprocess(image, n_px), reference(image, n_px)
    assert got.dtype == np.float32 and got.shape == ref.shape == (3, n_px, n_px)
    diff = float(np.abs(got - ref).max())
    assert diff <= ATOL, diff
    return diff


@pytest.fixture(scope="module")
def photos(assets) -> dict[str, np.ndarray]:
    """RGB uint8 arrays of bus.jpg (1080x810) and zidane.jpg (720x1280)."""
    return {name: cv2.imread(str(assets / name))[:, :, ::-1].copy() for name in ("bus.jpg", "zidane.jpg")}


def test_real_photos_pil_and_array(photos, assets):
    for name, rgb in photos.items():
        assert_same(rgb)
        assert_same(Image.open(assets / name))  # JPEG decoded by PIL, mode RGB
        np.testing.assert_array_equal(preprocess(rgb), preprocess(Image.fromarray(rgb)))


@pytest.mark.parametrize(
    "box",  # x1, y1, x2, y2 in bus.jpg pixels; sizes 1x1, 1x500, 500x1, 223x225, 225x223, 224x224, ...
    [
        (100, 100, 101, 101),
        (300, 200, 301, 700),
        (100, 600, 600, 601),
        (50, 60, 273, 285),
        (50, 60, 275, 283),
        (10, 10, 234, 234),
        (0, 0, 224, 300),
        (0, 0, 810, 1080),
        (5, 7, 17, 13),
        (400, 300, 403, 900),
        (0, 500, 810, 503),
    ],
)
def test_odd_crops(photos, box):
    x1, y1, x2, y2 = box
    assert_same(photos["bus.jpg"][y1:y2, x1:x2])  # a non-contiguous view, as masked crops are


def test_large_image(photos):
    big = cv2.resize(photos["zidane.jpg"], (4000, 2250), interpolation=cv2.INTER_LINEAR)
    assert_same(big)
    assert_same(cv2.resize(photos["bus.jpg"], (3, 4000), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("n_px", [32, 225, 336])
def test_other_resolutions(photos, n_px):
    assert_same(photos["bus.jpg"], n_px)
    assert_same(photos["zidane.jpg"][100:333, 200:201], n_px)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_pil_modes_follow_clip_order(photos, mode):
    # CLIP resizes and crops before converting to RGB; for palette images that changes the result.
    img = Image.fromarray(photos["zidane.jpg"][::3, ::3].copy())
    img = img.convert(mode) if mode != "I;16" else img.convert("L").convert("I;16")
    try:
        ref = reference(img)
    except Exception as e:  # a mode the reference cannot handle either
        pytest.skip(f"clip's transform fails on mode {mode}: {e}")
    np.testing.assert_allclose(preprocess(img), ref, rtol=0, atol=ATOL)


def test_resized_size_matches_torchvision():
    from torchvision.transforms.functional import _compute_resized_output_size

    for w, h in [(1, 1), (1, 500), (500, 1), (223, 225), (225, 223), (224, 224), (810, 1080), (1280, 720), (7, 3), (3, 7)]:
        for n in (224, 336, 32):
            th, tw = _compute_resized_output_size((h, w), [n])
            assert resized_size(w, h, n) == (tw, th)


def test_batch(photos):
    crops = [photos["bus.jpg"], photos["zidane.jpg"][:50, :70], photos["bus.jpg"][:1, :1]]
    batch = preprocess_batch(crops)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    for x, crop in zip(batch, crops):
        np.testing.assert_array_equal(x, preprocess(crop))
    assert preprocess_batch([]).shape == (0, 3, 224, 224)


def test_constants_are_clips():
    normalize = clip.clip._transform(224).transforms[-1]
    assert tuple(normalize.mean) == MEAN and tuple(normalize.std) == STD


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 5, 3), np.uint8), np.zeros((5, 0, 3), np.uint8), np.zeros((5, 5), np.uint8),
     np.zeros((5, 5, 4), np.uint8), np.zeros((5, 5, 3), np.float32), "image.jpg", None],
)
def test_bad_images(bad):
    with pytest.raises(BadImageError):
        preprocess(bad)

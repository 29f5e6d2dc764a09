"""Image loading and conversion: the reference's conversions or a clear BadImageError."""

import cv2
import numpy as np
import pytest

from fastsam_onnx.errors import BadImageError
from fastsam_onnx.image import load_image, to_bgr


def test_bgr_passes_through_unchanged():
    img = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = to_bgr(img)
    np.testing.assert_array_equal(out, img)


def test_grayscale_2d_and_1ch():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for arr in (g, g[..., None]):
        out = to_bgr(arr)
        assert out.shape == (3, 4, 3)
        np.testing.assert_array_equal(out[..., 0], g)
        np.testing.assert_array_equal(out[..., 2], g)


def test_bgra_drops_alpha_and_gray_alpha():
    bgra = np.random.default_rng(1).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr(bgra), bgra[..., :3])
    ga = np.random.default_rng(2).integers(0, 256, (4, 4, 2), dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr(ga)[..., 1], ga[..., 0])


def test_16_bit_keeps_high_byte():
    img = np.random.default_rng(3).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    np.testing.assert_array_equal(to_bgr(img), (img >> 8).astype(np.uint8))


def test_non_contiguous_and_read_only():
    img = np.random.default_rng(4).integers(0, 256, (10, 10, 3), dtype=np.uint8)[::2, ::-1]
    img.setflags(write=False)
    out = to_bgr(img)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8), np.zeros((2, 4, 4, 3), np.uint8), np.zeros((4, 4, 5), np.uint8), "not an array".encode()]
)
def test_bad_arrays_raise(bad):
    with pytest.raises(BadImageError):
        load_image(bad)


def test_files(tmp_path):
    img = np.random.default_rng(5).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), img)
    gray16 = (np.arange(72, dtype=np.uint16).reshape(8, 9) * 900)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    out = load_image(str(tmp_path / "g.png"))
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 1], cv2.imread(str(tmp_path / "g.png"))[..., 1])
    with pytest.raises(BadImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(BadImageError, match="cannot decode"):
        load_image(tmp_path / "text.jpg")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(BadImageError):
        load_image(tmp_path / "trunc.png")

"""The letterbox's "linear" resize: the numpy replica used off x86 equals x86 OpenCV's INTER_LINEAR bit for bit
(downscaling, upscaling, one axis each way, the exact 2x reduction OpenCV does as an area average, tiny and
grayscale images), and the resize option's API and CLI. The arm64 side is run by tools/arm64-check (CI)."""

from __future__ import annotations

import platform

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx import resize as resize_mod
from fastsam_onnx.errors import BadArgumentError
from fastsam_onnx.letterbox import letterbox, letterbox_geometry
from fastsam_onnx.models import check_photo

x86 = pytest.mark.skipif(not resize_mod.NATIVE_IS_X86, reason=f"OpenCV's x86 INTER_LINEAR is the reference; this is {platform.machine()}")


def _cases():
    rng = np.random.default_rng(0)
    photo = cv2.imread(str(check_photo()))
    yield photo, 768, 1024  # bus.jpg into a 1024 letterbox
    yield photo, 1024, 1365  # upscaled
    yield cv2.resize(photo, (1280, 720)), 640, 360  # exact 2x: OpenCV's area average
    yield photo[:1, :1], 5, 7
    yield photo[:3], 640, 2
    yield rng.integers(0, 256, (50, 70), dtype=np.uint8), 33, 21  # grayscale
    for _ in range(40):
        h0, w0 = rng.integers(1, 600, 2)
        h, w = rng.integers(1, 800, 2)
        yield rng.integers(0, 256, (h0, w0, 3), dtype=np.uint8), int(w), int(h)
    for _ in range(5):
        h, w = rng.integers(1, 300, 2)
        yield rng.integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8), int(w), int(h)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (600, 900, 3), dtype=np.uint8), (0, 0), 3)
    yield smooth, 1024, 683
    yield smooth, 450, 300


@x86
def test_replica_equals_opencv_x86():
    n = 0
    for image, w, h in _cases():
        ours = resize_mod._replica(image, w, h)
        ref = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        assert ours.shape == ref.shape and ours.dtype == np.uint8
        assert np.array_equal(ours, ref), (image.shape, w, h, int((ours != ref).sum()))
        n += 1
    assert n == 53


@x86
def test_letterbox_off_x86_uses_the_replica(monkeypatch):
    """With the machine taken for an arm64 one, "linear" computes in numpy and still gives x86's values."""
    image = cv2.imread(str(check_photo()))
    lb = letterbox_geometry(image.shape[:2], (1024, 1024), auto=True)
    x86_values = letterbox(image, lb)
    calls = []
    monkeypatch.setattr(resize_mod, "NATIVE_IS_X86", False)
    monkeypatch.setattr(resize_mod, "_replica", lambda *a: calls.append(a) or _replica(*a))
    assert np.array_equal(letterbox(image, lb), x86_values) and len(calls) == 1
    assert np.array_equal(letterbox(image, lb, resize="opencv"), x86_values) and len(calls) == 1  # OpenCV itself


_replica = resize_mod._replica


def test_resize_option(tmp_path):
    photo = check_photo()
    a = FastSAM().segment(photo)
    b = FastSAM(resize="opencv").segment(photo)
    if resize_mod.NATIVE_IS_X86:  # the two are the same computation on x86
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.masks, b.masks)
    for bad in ("exact", "", None, 1):
        with pytest.raises(BadArgumentError, match="resize must be one of"):
            FastSAM(resize=bad)


def test_cli_resize(tmp_path, capsys):
    from fastsam_onnx.cli import main

    photo = check_photo()
    assert main(["segment", str(photo), "--resize", "opencv", "--json", str(tmp_path / "r.json"), "-q"]) in (0, None)
    assert (tmp_path / "r.json").is_file()
    with pytest.raises(SystemExit) as e:
        main(["segment", str(photo), "--resize", "cubic"])
    assert e.value.code == 2
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.jpg").write_bytes(photo.read_bytes())
    code = main(["segment", str(tmp_path / "f"), "--engine", "ray", "--resize", "opencv", "--out", str(tmp_path / "o.jsonl")])
    assert code == 2
    assert "--resize applies to the local engine" in capsys.readouterr().err

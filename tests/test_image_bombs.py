"""Decompression bombs never decode (issue 11, item 1).

Every bomb is a small file crafted here the way an attacker would (valid CRCs, real encoder output with a
patched header); each must raise :class:`BadImageError` naming the size and the limit, with
``cv2.imdecode`` never called. Oversized and non-regular files are refused from ``stat``; OpenCV's own
limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) is set before ``cv2`` is imported and its errors are typed.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_onnx import image as image_mod
from fastsam_onnx.errors import BadImageError, ImageTooLargeError
from fastsam_onnx.image import MAX_FILE_BYTES, MAX_PIXELS, file_limit, header_size, read_image

# --- crafted bombs --------------------------------------------------------------------------------------


def jpeg_bomb(w: int = 65000, h: int = 65000, fill: bool = False, app1: int = 0) -> bytes:
    """A real 16 × 16 JPEG from cv2.imencode with its SOF patched to w × h; optionally a 0xFF fill byte
    before the SOF marker and/or ``app1`` 64 KB APP1 segments before it."""
    d = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    i = 2
    while d[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(d[i + 2 : i + 4], "big")
    d[i + 5 : i + 7] = h.to_bytes(2, "big")
    d[i + 7 : i + 9] = w.to_bytes(2, "big")
    pre = b"".join(b"\xff\xe1" + (65535).to_bytes(2, "big") + b"Exif\0\0" + b"\0" * 65527 for _ in range(app1))
    return bytes(d[:i]) + pre + (b"\xff" if fill else b"") + bytes(d[i:])


def png_bomb(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def bmp_bomb(w: int, h: int) -> bytes:
    d = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    d[18:26] = struct.pack("<ii", w, h)
    return bytes(d)


def tiff_bomb(w: int, h: int) -> bytes:
    """Little-endian baseline TIFF, 8-bit gray, one uncompressed 64-byte strip."""
    pix = b"\0" * 64
    tags = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1), (278, 4, h), (279, 4, len(pix))]
    entries = b"".join(struct.pack("<HHI", t, typ, 1) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v)) for t, typ, v in tags)
    return b"II*\0" + struct.pack("<I", 8 + len(pix)) + pix + struct.pack("<H", len(tags)) + entries + b"\0\0\0\0"


def webp_bomb(w: int, h: int) -> bytes:
    """A real 16 × 16 WebP frame (cv2.imencode) inside a VP8X chunk whose canvas is w × h."""
    frame = cv2.imencode(".webp", np.full((16, 16, 3), 99, np.uint8))[1].tobytes()[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_bomb(w: int, h: int) -> bytes:
    """A real 4 × 4 GIF (Pillow) whose logical screen is patched to w × h."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, "GIF")
    d = bytearray(buf.getvalue())
    d[6:10] = struct.pack("<HH", w, h)
    return bytes(d)


BOMBS = {
    "jpeg": (jpeg_bomb(), "65000 x 65000"),
    "jpeg_fill_byte": (jpeg_bomb(fill=True), "65000 x 65000"),
    "jpeg_two_app1": (jpeg_bomb(app1=2), "65000 x 65000"),
    "png": (png_bomb(65000, 65000), "65000 x 65000"),
    "png_150mp": (png_bomb(15000, 10000), "15000 x 10000"),  # between our limit and Pillow's warning/error
    "bmp": (bmp_bomb(100000, 100000), "100000 x 100000"),
    "tiff": (tiff_bomb(100000, 100000), "100000 x 100000"),
    "webp": (webp_bomb(65000, 65000), "65000 x 65000"),
    "webp_144mp": (webp_bomb(12000, 12000), "12000 x 12000"),
    "gif": (gif_bomb(65535, 65535), "65535 x 65535"),
    "gif_144mp": (gif_bomb(12000, 12000), "12000 x 12000"),
}
EXT = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp", "gif": ".gif"}


def write_bombs(folder: Path) -> list[Path]:
    paths = []
    for name, (data, _) in BOMBS.items():
        paths.append(folder / f"{name}{EXT[name.split('_')[0]]}")
        paths[-1].write_bytes(data)
    return paths


@pytest.fixture
def no_decode(monkeypatch):
    """Make any cv2.imdecode call fail the test."""

    def boom(*a, **k):
        raise AssertionError("cv2.imdecode was called on a bomb")

    monkeypatch.setattr(image_mod.cv2, "imdecode", boom)


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_from_its_header(tmp_path, no_decode, recwarn, name):
    data, size = BOMBS[name]
    assert len(data) < 200_000
    path = tmp_path / f"bomb{EXT[name.split('_')[0]]}"
    path.write_bytes(data)
    with pytest.raises(BadImageError, match=f"{size} = .* over the limit of 100,000,000") as e:
        read_image(path)
    assert str(path) in str(e.value)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "gif", "tiff"])
def test_header_sizes_match_opencv(tmp_path, name):
    """The size Pillow reads from a normal file is the size cv2 decodes, and pixels equal cv2.imread's."""
    img = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / f"a{EXT[name]}"
    assert cv2.imwrite(str(path), img)
    ref = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert header_size(np.fromfile(str(path), np.uint8)) == (37, 53)
    np.testing.assert_array_equal(read_image(path), ref)
    np.testing.assert_array_equal(read_image(path, max_pixels=None), ref)


def test_limit_is_adjustable_and_exact(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((10, 20, 3), np.uint8))
    assert read_image(path, max_pixels=200).shape == (10, 20, 3)
    with pytest.raises(BadImageError, match="20 x 10 = 200 pixels, over the limit of 199"):
        read_image(path, max_pixels=199)


def test_header_size_ignores_unknown_bytes():
    assert header_size(b"GIF89a" + b"\0" * 20) is None
    assert header_size(b"hello, not a picture") is None
    assert header_size(jpeg_bomb(fill=True, app1=2)) == (65000, 65000)


# --- file size and file kind ----------------------------------------------------------------------------


@pytest.mark.parametrize("gib", [3, 40])
def test_huge_sparse_file_is_refused_from_stat(tmp_path, no_decode, monkeypatch, gib):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.write(jpeg_bomb(100, 100))
        f.truncate(gib << 30)
    opened = []
    with monkeypatch.context() as mp:  # only around the call: os.open is global
        mp.setattr(image_mod.os, "open", lambda *a, **k: opened.append(a))
        with pytest.raises(BadImageError, match=f"{gib << 30:,} bytes, over the file-size limit of {MAX_FILE_BYTES:,}"):
            read_image(path)
    assert not opened


def test_file_limit():
    assert MAX_FILE_BYTES == 1 << 30
    assert file_limit(MAX_PIXELS) == 1 << 30
    assert file_limit(1_000_000_000) == 10_000_000_000
    assert file_limit(None) is None
    assert file_limit(100) == 1 << 30


def test_file_limit_is_adjustable(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((10, 20, 3), np.uint8))
    n = path.stat().st_size
    assert read_image(path, max_file_bytes=n).shape == (10, 20, 3)
    with pytest.raises(BadImageError, match=f"{n:,} bytes, over the file-size limit of {n - 1:,}"):
        read_image(path, max_file_bytes=n - 1)


def _call_with_guard(fn, *args):
    """Run fn(*args) in a daemon thread; return its exception, or fail if it has not returned (a hang)."""
    out: list[BaseException | None] = []

    def target():
        try:
            fn(*args)
            out.append(None)
        except BaseException as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(30)  # liveness guard only: a correct refusal returns at once
    assert out, "read_image blocked"
    return out[0]


def test_non_regular_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    cases = [(tmp_path, "is a directory"), (fifo, "not a regular file")]
    if os.path.exists("/dev/zero"):
        cases.append((Path("/dev/zero"), "not a regular file"))
    for path, msg in cases:
        err = _call_with_guard(read_image, path)
        assert isinstance(err, BadImageError) and msg in str(err), (path, err)
        err = _call_with_guard(read_image, path, None)  # no limits: still refused
        assert isinstance(err, BadImageError) and msg in str(err), (path, err)


def test_missing_and_empty_messages_kept(tmp_path):
    with pytest.raises(BadImageError, match="image file not found"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(BadImageError, match="image file not found"):
        read_image(tmp_path / "link.jpg")
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(BadImageError, match="image file is empty"):
        read_image(tmp_path / "e.png")


# --- child processes: OpenCV's limit and peak memory ----------------------------------------------------


def _child(code: str, *args: str, env: dict | None = None) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    full.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=full, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


HDR_BOMB = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n" + b"\x02\x02\x4e\x20" + b"\0" * 100

CAP_CODE = """
import json, os, sys
import fastsam_onnx.image as m
out = {"env_after_import": os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"), "limit": m.OPENCV_MAX_PIXELS, "errors": []}
for path, mp in [(sys.argv[1], m.MAX_PIXELS), (sys.argv[1], None), (sys.argv[2], m.MAX_PIXELS)]:
    try:
        im = m.read_image(path, mp)
        out["errors"].append(list(im.shape))
    except m.BadImageError as e:
        out["errors"].append(str(e))
print(json.dumps(out))
"""


def test_opencv_limit_is_capped_and_typed(tmp_path):
    """A 20000 × 20000 Radiance HDR (a format Pillow cannot read; OpenCV would allocate 4.8 GB of float
    pixels) is refused from its own header with a pixel limit, and by OpenCV's own limit without one
    (max_pixels=None), which image.py sets to MAX_PIXELS before importing cv2 and removes from the environment
    afterwards; a user's own setting is respected and its error is typed."""
    (tmp_path / "b.hdr").write_bytes(HDR_BOMB)
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((40, 40, 3), np.uint8))
    args = (str(tmp_path / "b.hdr"), str(tmp_path / "ok.png"))
    out = _child(CAP_CODE, *args)
    assert out["env_after_import"] is None and out["limit"] == MAX_PIXELS
    assert "400,000,000" in out["errors"][0] and "OpenCV" not in out["errors"][0]  # its header, before OpenCV
    msg = out["errors"][1]
    assert "over OpenCV's own limit of 100,000,000 pixels" in msg and "OPENCV_IO_MAX_IMAGE_PIXELS" in msg
    assert out["errors"][2] == [40, 40, 3]
    user = _child(CAP_CODE, *args, env={"OPENCV_IO_MAX_IMAGE_PIXELS": "1000"})
    assert user["env_after_import"] == "1000" and user["limit"] == 1000
    assert "over OpenCV's own limit of 1,000 pixels" in user["errors"][2]  # 1600 px: refused by OpenCV, typed


def test_unsizable_format_is_not_decoded_when_opencv_limit_is_not_ours(tmp_path):
    """cv2 imported before fastsam_onnx (variable unset): OpenCV's limit is its default 2**30; the HDR is still
    refused from its own header, and files Pillow sizes still decode."""
    (tmp_path / "b.hdr").write_bytes(HDR_BOMB)
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((40, 40, 3), np.uint8))
    out = _child("import cv2\n" + CAP_CODE, str(tmp_path / "b.hdr"), str(tmp_path / "ok.png"))
    assert out["limit"] == 1 << 30
    assert "400,000,000" in out["errors"][0]
    assert out["errors"][2] == [40, 40, 3]


MEM_CODE = """
import json, resource, sys
import fastsam_onnx.image as m

def peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

base = peak_kb()
refused = 0
for path in sys.argv[1:]:
    try:
        m.read_image(path)
    except m.BadImageError:
        refused += 1
print(json.dumps({"base_kb": base, "peak_kb": peak_kb(), "refused": refused}))
"""


def test_peak_memory_of_refusals(tmp_path):
    """Measured: the peak resident set size (VmHWM from /proc/self/status, ru_maxrss where that is missing)
    of a fresh child process, after ``import fastsam_onnx.image`` (baseline) and after read_image on every
    bomb above, the 20000 × 20000 HDR, and sparse 3 GB and 40 GB .jpg files (Pillow's import happens inside
    the measured part). Every call must raise BadImageError and the peak may grow by less than 100 MB:
    decoding any bomb (≥ 432 MB) or reading a sparse file (≥ 1 GiB) would exceed it."""
    paths = write_bombs(tmp_path)
    (tmp_path / "b.hdr").write_bytes(HDR_BOMB)
    paths.append(tmp_path / "b.hdr")
    for gib in (3, 40):
        with open(tmp_path / f"sparse{gib}.jpg", "wb") as f:
            f.write(jpeg_bomb(100, 100))
            f.truncate(gib << 30)
        paths.append(tmp_path / f"sparse{gib}.jpg")
    out = _child(MEM_CODE, *map(str, paths))
    assert out["refused"] == len(paths)
    assert (out["peak_kb"] - out["base_kb"]) / 1024 < 100, out


@pytest.mark.parametrize("data", [HDR_BOMB.replace(b"-Y 20000 +X 20000", b"-Y 10000 +X 10000"),
                                  b"P7\nWIDTH 20000\nHEIGHT 20000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + b"\0" * 99,
                                  b"PF\n20000 20000\n-1.0\n" + b"\0" * 99])
def test_formats_pillow_cannot_read_are_sized_by_their_own_header(data, no_decode):
    """Radiance HDR (the issue's 10000² .hdr decoded to 1.6 GB before its 413), PAM and PFM: over the limit from
    the header alone; cv2.imdecode is never called."""
    with pytest.raises(ImageTooLargeError, match="pixels"):
        image_mod.decode_image_bytes(data, "x", max_pixels=1_000_000)


def test_unsizable_bytes_are_refused_without_decoding(no_decode):
    with pytest.raises(BadImageError, match="size cannot be read from its header") as e:
        image_mod.decode_image_bytes(b"\x00\x01 something OpenCV might try" * 10, "x", max_pixels=1_000_000)
    assert not isinstance(e.value, ImageTooLargeError)

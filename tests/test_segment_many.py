"""``fastsam-onnx segment`` on a folder (per-image JSON, COCO JSON, --skip-existing, bad files counted) and on a
video file (masks drawn into an output video, JSON lines per frame); atomic outputs: a crash mid-write leaves no
partial file that --skip-existing would keep, and a failed video run keeps the previous outputs."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
from test_cli_inputs import Failing, one_error, synthetic, write

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main


@pytest.fixture
def folder(demo, tmp_path):
    d = tmp_path / "images"
    (d / "sub").mkdir(parents=True)
    shutil.copy(demo / "example.jpg", d / "a.jpg")
    cv2.imwrite(str(d / "sub" / "b.png"), cv2.imread(str(demo / "example.jpg"))[:200, :300])
    (d / "sub" / "bad.jpg").write_text("not an image")
    (d / "notes.txt").write_text("ignored: not an image extension")
    return d


def test_folder_json_per_image_and_coco(folder, tmp_path, capsys):
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    assert main(["segment", str(folder), "--out-dir", str(out), "--coco", str(coco)]) == 1  # one bad file
    err = capsys.readouterr().err
    assert "sub/bad.jpg: skipped" in err and "2 segmented, 0 skipped (existing), 1 bad, 3 images" in err
    a = json.loads((out / "a.jpg.json").read_text())
    b = json.loads((out / "sub" / "b.png.json").read_text())
    assert a["image"]["path"] == "a.jpg" and b["image"]["width"] == 300 and b["image"]["height"] == 200
    c = json.loads(coco.read_text())
    assert [i["file_name"] for i in c["images"]] == ["a.jpg", "sub/b.png"]
    assert len(c["annotations"]) == len(a["instances"]) + len(b["instances"]) > 0
    ann = c["annotations"][0]
    assert ann["image_id"] == 1 and ann["category_id"] == 1 and len(ann["bbox"]) == 4 and ann["segmentation"]["size"]


def test_folder_skip_existing(folder, tmp_path, capsys):
    out = tmp_path / "out"
    main(["segment", str(folder), "--out-dir", str(out)])
    capsys.readouterr()
    (out / "a.jpg.json").unlink()
    main(["segment", str(folder), "--out-dir", str(out), "--skip-existing"])
    assert "1 segmented, 1 skipped (existing), 1 bad" in capsys.readouterr().err


def test_folder_needs_an_output(folder, tmp_path, capsys):
    assert main(["segment", str(folder)]) == 2
    assert "--out-dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["segment", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "o")]) == 2


def test_video_file(demo, tmp_path, capsys):
    src = tmp_path / "in.avi"
    frame = cv2.imread(str(demo / "example.jpg"))[:256, :320]
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 256))
    assert w.isOpened()
    for k in range(4):
        w.write(np.roll(frame, 8 * k, axis=1))
    w.release()
    out, jl = tmp_path / "out.avi", tmp_path / "frames.jsonl"
    assert main(["segment", str(src), "--out", str(out), "--json", str(jl), "--max-frames", "3"]) == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2] and lines[0]["image"]["width"] == 320
    assert "3 frames" in capsys.readouterr().err


def test_video_errors(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    assert main(["segment", str(tmp_path / "junk.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert main(["segment", "99", "--out", str(tmp_path / "o.mp4"), "--max-frames", "1"]) == 2  # no camera 99


class _FakeCamera:
    """Stands in for ``cv2.VideoCapture(0)``: an endless stream of frames (no camera on the build machine)."""

    def __init__(self, frame: np.ndarray, interrupt_at: int | None = None):
        self.frame, self.interrupt_at, self.reads, self.released = frame, interrupt_at, 0, False

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0  # cameras often report no frame rate

    def read(self):
        self.reads += 1
        if self.interrupt_at is not None and self.reads == self.interrupt_at:
            raise KeyboardInterrupt
        return True, np.roll(self.frame, 4 * self.reads, axis=1)

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("interrupt_at", [None, 3])
def test_camera_index(demo, tmp_path, monkeypatch, capsys, interrupt_at):
    frame = cv2.imread(str(demo / "example.jpg"))[:240, :320]
    cams: list[_FakeCamera] = []
    real = cv2.VideoCapture

    def capture(source, *a):
        if isinstance(source, int):  # the CLI turns "0" into camera index 0
            cams.append(_FakeCamera(frame, interrupt_at))
            return cams[-1]
        return real(source, *a)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    out = tmp_path / "cam.avi"
    assert main(["segment", "0", "--out", str(out), "--max-frames", "5"]) == 0
    assert len(cams) == 1 and cams[0].released
    monkeypatch.setattr(cv2, "VideoCapture", real)
    cap, n = cv2.VideoCapture(str(out)), 0
    while cap.read()[0]:
        n += 1
    want = 5 if interrupt_at is None else interrupt_at - 1
    assert n == want and int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 240
    err = capsys.readouterr().err
    assert f"{want} frames" in err and (("Ctrl-C" in err) == (interrupt_at is not None))


# ---------------------------------------------------------------- atomic outputs, --skip-existing


def test_crash_mid_write_leaves_no_partial_json(tmp_path, monkeypatch, capsys):
    d = tmp_path / "images"
    for k in range(3):
        write(d / f"{k}.png", seed=k)
    out = tmp_path / "json"
    real, calls = os.fsync, []

    def fsync(fd):  # the 2nd file is written but not yet complete when the "crash" (Ctrl-C) comes
        calls.append(fd)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["segment", str(d), "--out-dir", str(out)]) == 130
    assert "stopped by Ctrl-C" in capsys.readouterr().err
    monkeypatch.setattr(os, "fsync", real)
    assert sorted(p.name for p in out.iterdir()) == ["0.png.json"]  # no partial 1.png.json, no temp file
    json.loads((out / "0.png.json").read_text())
    assert main(["segment", str(d), "--out-dir", str(out), "--skip-existing"]) == 0
    assert "2 segmented, 1 skipped (existing), 0 bad" in capsys.readouterr().err
    assert [json.loads(p.read_text())["image"]["path"] for p in sorted(out.iterdir())] == ["0.png", "1.png", "2.png"]


def test_failed_rename_is_a_reported_failure_not_a_partial_file(tmp_path, monkeypatch, capsys):
    d = tmp_path / "images"
    write(d / "a.png", seed=1)
    write(d / "b.png", seed=2)
    out = tmp_path / "json"
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith("a.png.json"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["segment", str(d), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "a.png: skipped: OSError" in err and "No space left" in err and "1 segmented" in err
    assert sorted(p.name for p in out.iterdir()) == ["b.png.json"]


def test_skip_existing_redoes_truncated_json_and_fills_coco(tmp_path, monkeypatch, capsys):
    d = tmp_path / "images"
    for k in range(3):
        write(d / f"{k}.png", seed=k)
    out, coco = tmp_path / "json", tmp_path / "coco.json"
    assert main(["segment", str(d), "--out-dir", str(out), "--coco", str(coco)]) == 0
    full = json.loads(coco.read_text())
    capsys.readouterr()
    text = (out / "0.png.json").read_text()
    (out / "0.png.json").write_text(text[: len(text) // 2])  # truncated by an older crash
    (out / "1.png.json").write_text('{"something": "else"}')  # parses, but is not a result
    coco.unlink()
    calls = Failing(monkeypatch)
    assert main(["segment", str(d), "--out-dir", str(out), "--coco", str(coco), "--skip-existing"]) == 0
    assert "2 segmented, 1 skipped (existing), 0 bad" in capsys.readouterr().err
    assert calls.calls == 2
    for k in range(3):
        assert json.loads((out / f"{k}.png.json").read_text())["image"]["path"] == f"{k}.png"
    again = json.loads(coco.read_text())
    assert [i["file_name"] for i in again["images"]] == ["0.png", "1.png", "2.png"]
    assert len(again["annotations"]) == len(full["annotations"])  # the skipped image read back in
    assert [a["bbox"] for a in again["annotations"]] == [a["bbox"] for a in full["annotations"]]


def test_skip_existing_with_overlays(tmp_path, monkeypatch, capsys):
    d = tmp_path / "images"
    write(d / "a.png")
    ov = tmp_path / "ov"
    assert main(["segment", str(d), "--overlays", str(ov)]) == 0
    calls = Failing(monkeypatch)
    assert main(["segment", str(d), "--overlays", str(ov), "--skip-existing"]) == 0
    assert calls.calls == 0 and "0 segmented, 1 skipped (existing)" in capsys.readouterr().err


def test_video_failure_keeps_existing_outputs(tmp_path, monkeypatch, capsys):
    from fastsam_onnx.errors import BadImageError

    src = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for k in range(3):
        w.write(synthetic(k))
    w.release()
    out, jl = tmp_path / "out.avi", tmp_path / "f.jsonl"
    out.write_text("old video")
    jl.write_text("old lines\n")
    real, n = FastSAM.segment, []

    def segment(self, image, **kw):
        n.append(1)
        if len(n) == 2:
            raise BadImageError("frame went bad")
        return real(self, image, **kw)

    monkeypatch.setattr(FastSAM, "segment", segment)
    assert main(["segment", str(src), "--out", str(out), "--json", str(jl), "--quiet"]) == 2
    one_error(capsys, "frame went bad")  # (without --quiet the last progress line comes before it)
    assert out.read_text() == "old video" and jl.read_text() == "old lines\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "in.avi", "out.avi"]
    monkeypatch.setattr(FastSAM, "segment", real)
    assert main(["segment", str(src), "--out", str(out), "--json", str(jl), "--max-frames", "1"]) == 0
    line = json.loads(jl.read_text())
    assert line["frame"] == 0 and line["image"]["path"] == str(src) and line["image"]["frame"] == 0
    assert "1 frame in" in capsys.readouterr().err  # singular


def test_killed_run_leaves_only_whole_outputs(tmp_path):
    """SIGKILL a real folder run while it writes: every JSON left parses, and --skip-existing finishes the rest."""
    import signal
    import subprocess
    import sys
    import time

    d = tmp_path / "images"
    for k in range(40):
        write(d / f"{k:02d}.png", seed=k)
    out = tmp_path / "json"
    cmd = [sys.executable, "-m", "fastsam_onnx", "segment", str(d), "--out-dir", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("*.png.json"))) < 3:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done = sorted(out.glob("*.png.json"))
    assert 3 <= len(done) < 40, len(done)
    for p in done:  # whole files only: a killed write leaves at most a hidden temp file
        json.loads(p.read_text())
    assert all(p.name.startswith(".") for p in out.iterdir() if not p.name.endswith(".png.json"))
    finished = subprocess.run(cmd[:-1] + ["--skip-existing"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{40 - len(done)} segmented, {len(done)} skipped (existing), 0 bad" in finished.stderr
    assert len(list(out.glob("*.png.json"))) == 40

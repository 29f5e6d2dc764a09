"""What ``fastsam-onnx segment`` prints on the terminal: singular counts, hostile file names escaped, plain progress
lines without a TTY, a progress bar on one, ``--quiet`` (failures and the summary only)."""

from __future__ import annotations

import io
import json
import sys

import cv2
import pytest
from test_cli_inputs import synthetic, write

from fastsam_onnx.cli import main


def test_singular_instance_and_image(tmp_path, demo, capsys):
    assert main(["segment", str(demo / "example.jpg"), "--max-det", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert ": 1 instance, " in capsys.readouterr().err
    d = tmp_path / "one"
    write(d / "a.png")
    assert main(["segment", str(d), "--max-det", "1", "--out-dir", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "1 image " in err and "1 instance found" in err and "images" not in err


def test_escape_sequences_in_file_names(tmp_path, capsys):
    d = tmp_path / "images"
    evil = "ev\x1b[31mil\nname.png"
    write(d / evil)
    (d / "b\x1b]0;pwned\x07ad.jpg").write_text("not an image")
    out = tmp_path / "o"
    assert main(["segment", str(d), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\r" not in err
    lines = err.strip().splitlines()
    assert sum("ad.jpg: skipped" in ln for ln in lines) == 1
    assert any("b\\x1b]0;pwned\\x07ad.jpg: skipped" in ln for ln in lines)
    assert "1 segmented, 0 skipped (existing), 1 bad, 2 images" in lines[-1]
    assert json.loads((out / (evil + ".json")).read_text())["image"]["path"] == evil  # the real name in JSON


def test_plain_progress_lines_when_not_a_tty(tmp_path, capsys):
    d = tmp_path / "images"
    for k in range(3):
        write(d / f"{k}.png", seed=k)
    assert main(["segment", str(d), "--out-dir", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.strip().splitlines()
    assert any(ln.startswith(f"{d}: 3/3 image") and "2.png" in ln for ln in lines), lines
    assert "3 segmented" in lines[-1]


def test_quiet(tmp_path, capsys):
    d = tmp_path / "images"
    write(d / "a.png")
    (d / "b.png").write_text("bad")
    assert main(["segment", str(d), "--out-dir", str(tmp_path / "o"), "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "b.png: skipped" in lines[0] and "1 segmented" in lines[1]  # failures + summary only


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, quiet):
    d = tmp_path / "images"
    for k in range(2):
        write(d / f"{k}.png", seed=k)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["segment", str(d), "--out-dir", str(tmp_path / "o"), *(["-q"] if quiet else [])]) == 0
    text = tty.getvalue()
    assert ("\r" in text and "2/2" in text) == (not quiet)
    assert "2 segmented" in text.strip().splitlines()[-1]


def test_video_progress_and_quiet(tmp_path, capsys):
    src = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for k in range(3):
        w.write(synthetic(k))
    w.release()
    jl = tmp_path / "f.jsonl"
    assert main(["segment", str(src), "--json", str(jl)]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(ln.startswith(f"{src}: 3/3 frame") for ln in lines) and "3 frames in" in lines[-1]
    assert main(["segment", str(src), "--json", str(jl), "--quiet"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "3 frames in" in lines[0]
    assert [json.loads(x)["image"]["frame"] for x in jl.read_text().splitlines()] == [0, 1, 2]

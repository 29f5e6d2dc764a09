"""Output paths are honoured, never replaced (fastsam_onnx.fileio.output_target).

A regular file or a new path gets a temporary file renamed into place (a failure leaves the old content); a
symlink keeps being a link (its target is written, atomically; a dangling link creates its target); a FIFO or a
character device (/dev/stdout, /dev/null) is written through; ``-`` is standard output, with nothing else there.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_onnx import fileio
from fastsam_onnx.cli import main
from fastsam_onnx.models import example_image

fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
IMAGE = str(example_image())


def _same(a: bytes | str, b: bytes | str) -> dict:
    """The result JSON of ``a``, checked equal to ``b``'s but for the run's own timings."""
    da, db = json.loads(a), json.loads(b)
    da.pop("timings_ms", None), db.pop("timings_ms", None)
    assert da == db and da["instances"]
    return da


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory) -> dict[str, bytes]:
    """Each output of one image written to regular files: what every other kind of path must receive."""
    d = tmp_path_factory.mktemp("reference")
    outs = {"json": "r.json", "out": "o.png", "edges": "e.png", "labelme": "l.json", "yolo": "y.txt"}
    assert main(["segment", IMAGE, "-q", "--json", str(d / "r.json"), "--out", str(d / "o.png"), "--edges", str(d / "e.png")]) == 0
    assert main(["segment", IMAGE, "-q", "--json", str(d / "l.json"), "--format", "labelme"]) == 0
    assert main(["segment", IMAGE, "-q", "--json", str(d / "y.txt"), "--format", "yolo"]) == 0
    return {k: (d / v).read_bytes() for k, v in outs.items()}


def _reader(path: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t, got


# --- fileio itself ---------------------------------------------------------------------------------------------

def test_targets_by_kind(tmp_path):
    reg, new, link, dangling = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "l.json", tmp_path / "d.json"
    reg.write_text("old")
    link.symlink_to(reg)
    dangling.symlink_to("sub/t.json")
    assert fileio.output_target(reg) == (reg, False) and fileio.output_target(new) == (new, False)
    assert fileio.output_target(link) == (Path(os.path.realpath(reg)), False)
    assert fileio.output_target(dangling) == (Path(os.path.realpath(tmp_path / "sub/t.json")), False)
    assert fileio.output_target("-") == (None, True)
    assert fileio.output_target("/dev/null") == (Path("/dev/null"), True)
    with pytest.raises(IsADirectoryError):
        fileio.output_target(tmp_path)


def test_regular_file_failure_keeps_the_old_content(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(TypeError):  # not JSON-serializable: nothing written
        fileio.atomic_write_json(dest, {"a": object()})
    with pytest.raises(RuntimeError), fileio.atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_symlink_target_replaced_link_kept(tmp_path):
    target, link = tmp_path / "t.json", tmp_path / "l.json"
    target.write_text("old")
    link.symlink_to("t.json")  # relative, as users make them
    fileio.atomic_write_json(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == "t.json" and json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError), fileio.atomic_path(link) as tmp:  # atomic in the target's directory
        tmp.write_text("half")
        raise RuntimeError
    assert json.loads(target.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["l.json", "t.json"]


def test_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "sub").mkdir()
    link = tmp_path / "l.png"
    link.symlink_to(tmp_path / "sub" / "t.png")
    assert fileio.atomic_imwrite(link, np.zeros((4, 4, 3), np.uint8))
    assert link.is_symlink() and (tmp_path / "sub" / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_stdout_without_a_binary_buffer(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with fileio.atomic_path("-") as tmp:  # the temporary-file writers too (cv2.VideoWriter, np.save)
        tmp.write_text("b\n")
    fileio.atomic_write_text("-", "a\n")
    assert out.getvalue() == "b\na\n"


@fifo_only
def test_fifo_written_through_by_both_writers(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for write in (lambda: fileio.atomic_write_text(fifo, "x" * 200_000), lambda: fileio.atomic_path(fifo)):
        t, got = _reader(fifo)
        ctx = write()
        if ctx is not None and not isinstance(ctx, Path):
            with ctx as tmp:
                tmp.write_text("y" * 200_000)
        t.join(30)
        assert fifo.exists() and not fifo.is_file() and got[0] in (b"x" * 200_000, b"y" * 200_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# --- the CLI, for each kind of path ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["coco", "labelme", "yolo"])
def test_stdout_dash_holds_the_file_alone(demo, reference, capsys, fmt):
    assert main(["segment", IMAGE, "--json", "-", "--format", fmt]) == 0
    out, err = capsys.readouterr()
    if fmt == "coco":
        _same(out, reference["json"])
    elif fmt == "labelme":
        data = json.loads(out)  # imagePath relative to the working directory (where "-" is)
        ref = json.loads(reference["labelme"])
        assert data["shapes"] == ref["shapes"] and data["imagePath"] == os.path.relpath(IMAGE)
    else:
        assert out.encode() == reference["yolo"]
    assert "instances" in err  # the summary goes to stderr


def test_folder_coco_to_stdout(demo, tmp_path, capsys):
    assert main(["segment", str(demo), "--coco", "-"]) == 0
    out, err = capsys.readouterr()
    coco = json.loads(out)  # the whole of stdout is the COCO file
    assert [im["file_name"] for im in coco["images"]] == ["example.jpg"] and coco["annotations"]
    assert "segmented" in err
    assert main(["segment", str(demo), "--coco", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text()) == coco


def test_only_one_output_on_stdout(demo, capsys):
    assert main(["segment", IMAGE, "--json", "-", "--out", "-"]) == 2
    assert "one output" in capsys.readouterr().err


def test_images_to_stdout_are_png(demo, reference):
    run = [sys.executable, "-m", "fastsam_onnx", "segment", IMAGE, "-q"]
    for flag, dest, key in (("--out", "-", "out"), ("--edges", "-", "edges"), ("--edges", "/dev/stdout", "edges")):
        r = subprocess.run([*run, flag, dest], capture_output=True, timeout=300)
        assert r.returncode == 0 and r.stdout == reference[key], r.stderr  # no extension: PNG (16-bit edges)


def test_embeddings_npy_to_each_kind(tmp_path, capsysbinary):
    from fastsam_onnx.outputs.formats import write_embeddings

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_embeddings("-", arr)
    assert np.array_equal(np.load(io.BytesIO(capsysbinary.readouterr().out)), arr)
    link = tmp_path / "l.npy"
    link.symlink_to(tmp_path / "t.npy")
    write_embeddings(link, arr)
    assert link.is_symlink() and np.array_equal(np.load(tmp_path / "t.npy"), arr)
    write_embeddings("/dev/null", arr)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "f.npy")
        t, got = _reader(tmp_path / "f.npy")
        write_embeddings(tmp_path / "f.npy", arr)
        t.join(30)
        assert np.array_equal(np.load(io.BytesIO(got[0])), arr)


def test_dev_stdout_via_subprocess(demo, reference):
    r = subprocess.run(
        [sys.executable, "-m", "fastsam_onnx", "segment", IMAGE, "--json", "/dev/stdout"], capture_output=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    _same(r.stdout, reference["json"])
    assert b"instances" in r.stderr


def test_dev_null_accepted_for_every_output(demo, capsys):
    assert main(["segment", IMAGE, "--json", "/dev/null", "--out", "/dev/null", "--edges", "/dev/null"]) == 0
    assert Path("/dev/null").is_char_device()
    assert capsys.readouterr().out == ""


@fifo_only
@pytest.mark.parametrize("flag,key", [("--json", "json"), ("--out", "out"), ("--edges", "edges")])
def test_fifo_read_while_segment_writes(demo, reference, tmp_path, flag, key):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t, got = _reader(fifo)
    assert main(["segment", IMAGE, "-q", flag, str(fifo)]) == 0  # a FIFO name without extension: PNG images
    t.join(60)
    assert fifo.exists() and not fifo.is_file()
    if key == "json":
        _same(got[0], reference["json"])
    else:
        assert got[0] == reference[key]


@pytest.mark.parametrize("flag,name,key", [
    ("--json", "r.json", "json"), ("--out", "o.png", "out"), ("--edges", "e.png", "edges"),
    ("--format labelme --json", "l.json", "labelme"), ("--format yolo --json", "y.txt", "yolo"),
])
def test_symlinks_kept_and_targets_written(demo, reference, tmp_path, flag, name, key):
    target, link = tmp_path / "target" / name, tmp_path / name
    target.parent.mkdir()
    target.write_bytes(b"old")
    link.symlink_to(target)
    dangling = tmp_path / f"d-{name}"
    dangling.symlink_to(tmp_path / "target" / f"new-{name}")
    for dest in (link, dangling):
        assert main(["segment", IMAGE, "-q", *flag.split()[:-1], flag.split()[-1], str(dest)]) == 0
        assert dest.is_symlink()
    for got in (target.read_bytes(), (tmp_path / "target" / f"new-{name}").read_bytes()):
        if key == "json":
            _same(got, reference["json"])
        elif key == "labelme":
            assert json.loads(got)["shapes"] == json.loads(reference["labelme"])["shapes"]
        else:
            assert got == reference[key]
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == sorted([name, f"new-{name}"])


def test_regular_and_new_paths_and_npy(demo, reference, tmp_path):
    old = tmp_path / "r.json"
    old.write_text("old")
    os.chmod(old, 0o600)
    npy = tmp_path / "e.npy"
    assert main(["segment", IMAGE, "-q", "--json", str(old), "--edges", str(npy)]) == 0
    _same(old.read_bytes(), reference["json"])
    assert (old.stat().st_mode & 0o777) == 0o600  # replaced, with the replaced file's mode
    edges = np.load(npy)
    png = cv2.imdecode(np.frombuffer(reference["edges"], np.uint8), cv2.IMREAD_UNCHANGED)
    assert edges.dtype == np.float32 and np.array_equal(np.rint(edges * 65535).astype(np.uint16), png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "r.json"]


def test_output_checks_accept_special_files_and_refuse_directories(demo, tmp_path, capsys):
    assert main(["segment", IMAGE, "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    link = tmp_path / "dir-link"
    link.symlink_to(tmp_path)
    assert main(["segment", IMAGE, "--json", str(link)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["segment", str(demo), "--coco", "/dev/null", "--out-dir", str(tmp_path / "o"), "--skip-existing"]) == 0
    assert main(["segment", str(demo), "--coco", "/dev/null", "--out-dir", str(tmp_path / "o"), "--skip-existing"]) == 0
    assert "1 skipped" in capsys.readouterr().err

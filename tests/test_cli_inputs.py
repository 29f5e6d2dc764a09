"""``fastsam-onnx segment`` against bad input: bad files in folders, refused flags, bad numbers and prompt files,
unusable output locations, crashes mid-write. Errors are one line, exit 2. (Hostile file names and progress
output: test_cli_terminal.py.)"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main


def synthetic(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    """A small BGR image with a few filled shapes (the demo model finds instances in it)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, np.uint8)
    cv2.circle(img, (int(rng.integers(25, 50)), 50), 22, (0, 200, 255), -1)
    cv2.rectangle(img, (80, 20), (int(rng.integers(110, 124)), 80), (255, 80, 0), -1)
    return img


def write(path, img=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), synthetic(seed) if img is None else img)
    return path


def one_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def image(tmp_path):
    return write(tmp_path / "in" / "pic.png")


@pytest.fixture
def no_model(monkeypatch):
    """Fail if any image is segmented (checks must come first)."""
    def segment(self, *a, **k):
        raise AssertionError("the model ran before the options were checked")

    monkeypatch.setattr(FastSAM, "segment", segment)


class Failing:
    """Patch ``FastSAM.segment`` to raise ``exc`` for images whose path ends with a given name."""

    def __init__(self, monkeypatch, **by_name: BaseException):
        self.real, self.by_name, self.calls = FastSAM.segment, by_name, 0
        outer = self

        def segment(model, image, **kw):
            outer.calls += 1
            for name, exc in outer.by_name.items():
                if isinstance(image, str) and image.endswith(name):
                    raise exc
            return outer.real(model, image, **kw)

        monkeypatch.setattr(FastSAM, "segment", segment)


# ---------------------------------------------------------------- folders lose nothing


def test_folder_every_kind_of_bad_file(tmp_path, monkeypatch, capsys):
    d = tmp_path / "images"
    good = [write(d / "good1.png", seed=1), write(d / "good2.jpg", seed=2), write(d / "sub" / "good3.png", seed=3)]
    for name in ("boom.png", "oops.png"):
        write(d / name, seed=4)
    (d / "empty.jpg").write_bytes(b"")
    jpeg = cv2.imencode(".jpg", synthetic(5))[1].tobytes()
    (d / "truncated.jpg").write_bytes(jpeg[:600])
    (d / "text.png").write_text("this is not a picture")
    (d / "zero.bmp").write_bytes(b"")
    bad = ["boom.png", "empty.jpg", "oops.png", "text.png", "truncated.jpg", "zero.bmp"]
    Failing(monkeypatch, **{"boom.png": cv2.error("OpenCV(5.0) x.cpp:1: error: (-215)\n in function 'f'\n"),
                            "oops.png": RuntimeError("untyped\nfailure")})
    out, ov, coco = tmp_path / "json", tmp_path / "ov", tmp_path / "coco.json"
    status = main(["segment", str(d), "--out-dir", str(out), "--overlays", str(ov), "--coco", str(coco)])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    for name in bad:
        hits = [ln for ln in lines if f"{name}: skipped" in ln]
        assert len(hits) == 1, (name, lines)
        assert not (out / f"{name}.json").exists() and not (ov / f"{name}.png").exists()
    assert any("boom.png: skipped: cv2.error: OpenCV(5.0) x.cpp:1: error: (-215) in function" in ln for ln in lines)
    assert any("RuntimeError: untyped failure" in ln for ln in lines)
    assert "3 segmented, 0 skipped (existing), 6 bad, 9 images" in lines[-1]
    for p in good:
        rel = p.relative_to(d)
        data = json.loads((out / rel.parent / (rel.name + ".json")).read_text())
        assert data["image"]["path"] == str(rel) and data["instances"]
        overlay = cv2.imread(str(ov / rel.parent / (rel.name + ".png")))
        assert overlay is not None and overlay.shape == (96, 128, 3)
    c = json.loads(coco.read_text())
    assert [i["file_name"] for i in c["images"]] == ["good1.png", "good2.jpg", "sub/good3.png"]
    assert len(c["annotations"]) > 0
    assert not list(tmp_path.rglob("*.tmp*"))


def test_coco_written_when_every_image_fails(tmp_path, capsys):
    d = tmp_path / "images"
    d.mkdir()
    (d / "a.png").write_text("nope")
    coco = tmp_path / "coco.json"
    assert main(["segment", str(d), "--coco", str(coco)]) == 1
    assert json.loads(coco.read_text())["images"] == []
    assert "1 bad, 1 image " in capsys.readouterr().err  # singular


@pytest.mark.parametrize(
    "opts,words",
    [
        (["--out-dir", "{file}"], ["--out-dir", "not a directory"]),
        (["--overlays", "{file}"], ["--overlays", "not a directory"]),
        (["--coco", "{dir}"], ["--coco", "is a directory"]),
        (["--coco", "{tmp}/missing/coco.json"], ["--coco", "does not exist"]),
        (["--coco", "{file}/coco.json"], ["--coco", "does not exist"]),
        (["--out-dir", "{file}/sub"], ["--out-dir", "cannot create"]),
        (["--skip-existing", "--coco", "{tmp}/c.json"], ["--skip-existing", "--out-dir"]),
        (["--skip-existing", "--overlays", "{tmp}/o", "--coco", "{tmp}/c.json"], ["--skip-existing", "--out-dir"]),
    ],
)
def test_folder_output_locations_checked_first(tmp_path, image, no_model, capsys, opts, words):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    fill = {"file": str(tmp_path / "afile"), "dir": str(tmp_path / "adir"), "tmp": str(tmp_path)}
    assert main(["segment", str(image.parent), *[o.format(**fill) for o in opts]]) == 2
    one_error(capsys, *words)


def test_unwritable_output_directory(tmp_path, image, no_model, monkeypatch, capsys):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)  # root ignores chmod: simulate a read-only place
    assert main(["segment", str(image.parent), "--coco", str(tmp_path / "c.json")]) == 2
    one_error(capsys, "--coco", "cannot write", "Permission denied")


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path, capsys):
    d = tmp_path / "images"
    write(d / "a.png")
    for _ in range(2):
        assert main(["segment", str(d), "--overlays", str(d / "overlays"), "--out-dir", str(d / "json")]) == 0
        assert "1 segmented, 0 skipped (existing), 0 bad, 1 image " in capsys.readouterr().err
    assert (d / "overlays" / "a.png.png").is_file() and not (d / "overlays" / "overlays").exists()


# ---------------------------------------------------------------- flags that do not apply


@pytest.mark.parametrize(
    "kind,opts,flag",
    [
        ("image", ["--out-dir", "{tmp}/o"], "--out-dir"),
        ("image", ["--coco", "{tmp}/c.json"], "--coco"),
        ("image", ["--skip-existing"], "--skip-existing"),
        ("image", ["--max-frames", "3"], "--max-frames"),
        ("image", ["--overlays", "{tmp}/o"], "--overlays"),
        ("folder", ["--json", "{tmp}/r.json"], "--json"),
        ("folder", ["--out", "{tmp}/o.png", "--out-dir", "{tmp}/o"], "--out"),
        ("folder", ["--max-frames", "2", "--out-dir", "{tmp}/o"], "--max-frames"),
        ("video", ["--out-dir", "{tmp}/o"], "--out-dir"),
        ("video", ["--coco", "{tmp}/c.json", "--out", "{tmp}/o.mp4"], "--coco"),
        ("video", ["--skip-existing", "--out", "{tmp}/o.mp4"], "--skip-existing"),
        ("video", ["--overlays", "{tmp}/o", "--out", "{tmp}/o.mp4"], "--overlays"),
        ("video", ["--max-frames", "0", "--out", "{tmp}/o.mp4"], "--max-frames"),
        ("video", ["--max-frames", "-2", "--out", "{tmp}/o.mp4"], "--max-frames"),
        ("video", ["--out", "{tmp}/o.png"], "--out"),
        ("video", ["--out", "{tmp}/o"], "--out"),
    ],
)
def test_refused_flags(tmp_path, image, no_model, monkeypatch, capsys, kind, opts, flag):
    def no_capture(*a, **k):
        raise AssertionError("the capture was opened before the options were checked")

    monkeypatch.setattr(cv2, "VideoCapture", no_capture)
    src = {"image": image, "folder": image.parent, "video": tmp_path / "clip.mp4"}[kind]
    if kind == "video":
        src.write_bytes(b"not opened")
    assert main(["segment", str(src), *[o.format(tmp=tmp_path) for o in opts]]) == 2
    one_error(capsys, flag)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.mp4").exists()


# ---------------------------------------------------------------- numbers and prompt files


@pytest.mark.parametrize(
    "opts,words",
    [
        (["--point", "10,10,0.7"], ["label", "0.7"]),
        (["--point", "10,10,2"], ["label"]),
        (["--point", "nan,10"], ["--point", "NaN"]),
        (["--point", "1e400,10"], ["--point", "infinite"]),
        (["--box", "0,0,inf,5"], ["--box", "infinite"]),
        (["--box", "0,0,-nan,5"], ["--box"]),
        (["--box", "1,2,3"], ["--box", "4"]),
        (["--box", "a,b,c,d"], ["--box"]),
        (["--box", "30,30,10,10"], ["x2 >= x1"]),
        (["--conf", "nan"], ["--conf"]),
        (["--conf", "-0.5"], ["--conf"]),
        (["--iou", "inf"], ["--iou"]),
        (["--imgsz", "-5"], ["--imgsz"]),
        (["--imgsz", "0"], ["--imgsz"]),
        (["--max-det", "0"], ["--max-det"]),
        (["--max-det", "-3"], ["--max-det"]),
    ],
)
def test_bad_numbers_one_line(tmp_path, image, capsys, opts, words):
    assert main(["segment", str(image), "--json", str(tmp_path / "r.json"), *opts]) == 2
    one_error(capsys, *words)
    assert not (tmp_path / "r.json").exists()


def test_bad_settings_refused_before_a_folder_run(tmp_path, image, no_model, capsys):
    assert main(["segment", str(image.parent), "--out-dir", str(tmp_path / "o"), "--conf", "nan"]) == 2
    one_error(capsys, "--conf")  # once, not once per image


@pytest.mark.parametrize(
    "content,field",
    [
        ('{"boxes": 5}', "boxes"),
        ('{"labels": 1}', "labels"),
        ('{"texts": {"a": 1}}', "texts"),
        ('{"texts": ["ok", 3]}', "texts"),
        ('{"points": "x"}', "points"),
        ('{"points": [[1, NaN]]}', "points"),
        ('{"points": [[1, 1e400]]}', "points"),
        ('{"boxes": [[0, 0, "a", 5]]}', "boxes"),
        ('{"boxes": [[[0, 0, 5, 5]]]}', "boxes"),
        ('{"points": [[1, 2]], "labels": [0.5]}', "label"),
        ('{"points": [[1, 2]], "labels": [true]}', "label"),
        ('{"points": [[1, 2]], "labels": [1, 0]}', "labels"),
        ('{"colour": "red"}', "keys"),
        ("[1, 2]", "keys"),
        ("not json", "cannot read"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        (b"\xff\xfe\x00bin", "cannot read"),
    ],
)
def test_bad_prompts_file_one_line(tmp_path, image, capsys, content, field):
    f = tmp_path / "prompts.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["segment", str(image), "--prompts", str(f), "--json", str(tmp_path / "r.json")]) == 2
    one_error(capsys, "prompts.json", field)


def test_prompts_file_flat_box_and_point(tmp_path, demo, capsys):
    f = tmp_path / "p.json"
    f.write_text('{"boxes": [100, 100, 400, 400], "points": [250, 250], "labels": [1]}')
    assert main(["segment", str(demo / "example.jpg"), "--prompts", str(f), "--json", str(tmp_path / "r.json")]) == 0
    tags = {t for i in json.loads((tmp_path / "r.json").read_text())["instances"] for t in i["selected_by"]}
    assert "box:0" in tags


@pytest.mark.parametrize(
    "form,clipped",
    [
        (["--point", "-5,250"], ["--point=0,250"]),
        (["--point=-5,250"], ["--point=0,250"]),
        (["--box", "-5,-5,300,300"], ["--box=0,0,300,300"]),
        (["--point", "-5,-5,0", "--point", "250,250"], ["--point=0,0,0", "--point=250,250"]),
    ],
)
def test_negative_coordinates_without_equals(tmp_path, demo, capsys, form, clipped):
    image = str(demo / "example.jpg")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["segment", image, *form, "--json", str(a)]) == 0, capsys.readouterr().err
    assert main(["segment", image, *clipped, "--json", str(b)]) == 0
    got, want = (json.loads(p.read_text())["instances"] for p in (a, b))
    assert got == want  # the negative values were read as coordinates (and clipped to the image)


@pytest.mark.parametrize(
    "opts,words",
    [(["--imgsz", "320"], ["static input"]), (["--box", "30,30,10,10"], ["x2 >= x1"]), (["--text", "  "], ["text"])],
)
def test_setting_errors_stop_a_folder_run_once(tmp_path, capsys, opts, words):
    d = tmp_path / "images"
    for k in range(3):
        write(d / f"{k}.png", seed=k)
    assert main(["segment", str(d), "--out-dir", str(tmp_path / "o"), "--quiet", *opts]) == 2
    one_error(capsys, *words)  # one line, not one per image


@pytest.mark.parametrize(
    "kind,opts,words",
    [
        ("image", ["--json", "{dir}"], ["--json", "is a directory"]),
        ("image", ["--out", "{dir}"], ["--out", "is a directory"]),
        ("image", ["--out", "{file}/o.png"], ["--out", "does not exist"]),
        ("video", ["--json", "{dir}"], ["--json", "is a directory"]),
        ("video", ["--out", "{tmp}/missing/o.mp4"], ["--out", "does not exist"]),
    ],
)
def test_single_and_video_output_locations_checked_first(tmp_path, image, no_model, monkeypatch, capsys, kind, opts, words):
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: pytest.fail("capture opened before the outputs were checked"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    src = image if kind == "image" else tmp_path / "clip.avi"
    if kind == "video":
        src.write_bytes(b"x")
    fill = {"file": str(tmp_path / "afile"), "dir": str(tmp_path / "adir"), "tmp": str(tmp_path)}
    assert main(["segment", str(src), *[o.format(**fill) for o in opts]]) == 2
    one_error(capsys, *words)


def test_single_image_write_failure_keeps_old_file(tmp_path, image, monkeypatch, capsys):
    dest = tmp_path / "r.json"
    dest.write_text("old")
    real = os.replace

    def replace(src, dst):
        if str(dst) == str(dest):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["segment", str(image), "--json", str(dest)]) == 2
    one_error(capsys, "r.json", "No space left")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.json"]

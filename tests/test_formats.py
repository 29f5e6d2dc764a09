"""Annotation formats: labelme JSON that labelme's own ``LabelFile`` loads, YOLO-seg txt that ultralytics' dataset
loader reads back into masks close to ours, the CLI's ``--format``/``--epsilon``/``--label`` for one image and for
folders (one file per image), ``--skip-existing`` with them, and the options that do not apply."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_onnx import BadArgumentError, FastSAM, Result
from fastsam_onnx.outputs.formats import (
    DEFAULT_EPSILON, annotation_path, check_unique_outputs, labelme_json, labelme_text, read_annotation, write_annotation,
    yolo_text,
)
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.models import example_image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # labelme imports Qt: no display needed


@pytest.fixture(scope="module")
def model():
    return FastSAM()


@pytest.fixture()
def image(tmp_path) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    shutil.copy(example_image(), d / "ex.jpg")
    return d / "ex.jpg"


def _solid(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled (what a polygon format without holes can hold)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_labelme_file_loads_with_labelme(model, image, tmp_path):
    from labelme import LabelFile
    from labelme.utils import shape_to_mask

    result = model.segment(str(image))
    (tmp_path / "ann").mkdir()
    dest = write_annotation(tmp_path / "ann" / "ex.json", result, "labelme")
    lf = LabelFile(str(dest))  # reads the image through imagePath and checks imageHeight / imageWidth against it
    assert lf.image_path == "../img/ex.jpg" and lf.image_data == image.read_bytes()
    polys = result.exteriors(DEFAULT_EPSILON)
    assert len(lf.shapes) == sum(len(p) for p in polys)
    assert {s["shape_type"] for s in lf.shapes} == {"polygon"} and {s["label"] for s in lf.shapes} == {"object"}
    raw = json.loads(dest.read_text())
    assert raw["imageData"] is None and (raw["imageHeight"], raw["imageWidth"]) == result.orig_shape
    shapes = iter(lf.shapes)
    holes = 0
    for i, parts in enumerate(polys):
        drawn = np.zeros(result.orig_shape, bool)
        for _ in parts:
            s = next(shapes)
            assert s["group_id"] == (i if len(parts) > 1 else None)
            assert s["other_data"]["score"] == pytest.approx(float(result.scores[i]), abs=1e-6)
            drawn |= shape_to_mask(result.orig_shape, s["points"], "polygon")
        assert _iou(drawn, _solid(result.mask(i))) > 0.98, i  # labelme's own rasteriser (PIL), exteriors only
    assert any(p.holes for parts in result.polygons(DEFAULT_EPSILON) for p in parts)  # the orange ring: its shape
    # is the exterior (documented), the hole is not kept
    exact = labelme_json(result, dest, epsilon=0.0)["shapes"]  # no simplification: the traced outline, pixel exact
    for i, parts in enumerate(result.exteriors(0.0)):
        drawn = np.zeros(result.orig_shape, bool)
        for _ in parts:
            drawn |= shape_to_mask(result.orig_shape, exact.pop(0)["points"], "polygon")
        assert (drawn == _solid(result.mask(i))).all(), i


def test_labelme_groups_the_parts_of_one_instance(tmp_path):
    m = np.zeros((40, 60), bool)
    m[2:12, 2:20] = True
    m[25:38, 30:58] = True  # a second part of the same instance
    r = Result(
        np.array([[2, 2, 58, 38], [0, 20, 10, 30]], np.float32), np.array([0.9, 0.8], np.float32),
        [MaskCrop(0, 0, m), MaskCrop(0, 20, np.ones((10, 10), bool))], (40, 60), (40, 60), path=str(tmp_path / "x.png"),
    )
    data = labelme_json(r, tmp_path / "x.json", label="cell", epsilon=0.0)
    assert [(s["label"], s["group_id"]) for s in data["shapes"]] == [("cell", 0), ("cell", 0), ("cell", None)]
    assert data["imagePath"] == "x.png"
    lines = yolo_text(r, epsilon=0.0, class_id=3).splitlines()
    assert len(lines) == 3 and all(line.startswith("3 ") for line in lines)  # one line per part
    for bad in (-1, 1.5, True):
        with pytest.raises(BadArgumentError):
            yolo_text(r, class_id=bad)
    with pytest.raises(BadArgumentError):
        labelme_json(r, tmp_path / "x.json", label=" ")
    r.path = None
    with pytest.raises(BadArgumentError):  # labelme needs the image file
        labelme_json(r, tmp_path / "x.json")
    with pytest.raises(BadArgumentError):
        write_annotation(tmp_path / "x.txt", r, "voc")


def test_a_part_inside_a_hole_is_covered_not_listed(tmp_path):
    """Formats without holes write the outer parts (cv2.RETR_EXTERNAL, as X-AnyLabeling and ultralytics trace
    masks): an island in a ring's hole lies inside the ring's filled exterior, so it is no shape of its own, and
    the shapes still rasterise to the hole-filled mask exactly; polygons() keeps ring, hole and island."""
    from labelme.utils import shape_to_mask
    from ultralytics.data.utils import polygon2mask

    m = np.zeros((50, 70), bool)
    m[5:45, 5:45] = True
    m[12:38, 12:38] = False  # the hole
    m[20:30, 20:30] = True  # an island in it
    m[10:30, 52:66] = True  # a second part beside the ring
    r = Result(np.array([[5, 5, 66, 45]], np.float32), np.array([0.9], np.float32), [MaskCrop(0, 0, m)], (50, 70),
               (50, 70), path=str(tmp_path / "x.png"))
    (parts,) = r.polygons(0.0)
    assert len(parts) == 3 and [len(p.holes) for p in parts] == [1, 0, 0]  # ring (with its hole), part, island
    (outer,) = r.exteriors(0.0)
    assert [o.tobytes() for o in outer] == [parts[0].exterior.tobytes(), parts[1].exterior.tobytes()]
    solid = _solid(m)
    shapes = labelme_json(r, tmp_path / "x.json", epsilon=0.0)["shapes"]
    assert [s["group_id"] for s in shapes] == [0, 0]
    drawn = np.zeros(m.shape, bool)
    for s in shapes:
        drawn |= shape_to_mask(m.shape, s["points"], "polygon")
    assert (drawn == solid).all()
    lines = yolo_text(r, epsilon=0.0).splitlines()
    xy = [np.array(line.split()[1:], np.float32).reshape(-1, 2) * np.float32([70, 50]) for line in lines]  # as read
    assert len(lines) == 2 and (np.logical_or.reduce([polygon2mask((50, 70), [p.reshape(-1)]) for p in xy]) == solid).all()


def test_labelme_text_is_labelme_json(monkeypatch, tmp_path):
    """The file's text (numbers formatted in whole arrays, several chunks on the pool) reads back as
    labelme_json's dict, one shape per line, for parts of one instance and instances of one part."""
    from fastsam_onnx.outputs import formats

    monkeypatch.setattr(formats, "_CHUNK", 64)  # a few shapes per chunk
    rng = np.random.default_rng(2)
    crops, boxes = [], []
    for k in range(12):
        h, w = (int(v) for v in rng.integers(8, 60, 2))
        m = cv2.resize((rng.random((4, 4)) < 0.5).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        m[0, 0] = True
        x0, y0 = int(rng.integers(0, 200 - w)), int(rng.integers(0, 150 - h))
        crops.append(MaskCrop(x0, y0, m))
        boxes.append([x0, y0, x0 + w, y0 + h])
    scores = rng.random(12).astype(np.float32)
    r = Result(np.array(boxes, np.float32), scores, crops, (150, 200), (150, 200), path=str(tmp_path / "x.png"))
    for eps in (0.0, DEFAULT_EPSILON):
        text = labelme_text(r, tmp_path / "x.json", label='a "cell"', epsilon=eps)
        data = labelme_json(r, tmp_path / "x.json", label='a "cell"', epsilon=eps)
        assert json.loads(text) == data and len(data["shapes"]) > 12  # some instances have several parts
        shape_lines = [line for line in text.splitlines() if line.startswith('    {"label"')]
        assert [json.loads(line.rstrip(",")) for line in shape_lines] == data["shapes"]


def test_polygon_files_write_the_vertices_as_python_formats_them(monkeypatch, tmp_path):
    """labelme's and YOLO-seg's numbers, looked up per pixel (whole-pixel vertices) or formatted digit by digit
    (the tables turned off), are Python's json.dumps(round(v, 1)) and f"{ceil(v / size * 1e6) / 1e6:.6f}"."""
    import math

    from fastsam_onnx.outputs import formats
    from fastsam_onnx.outputs.polygons import crops_exteriors

    rng = np.random.default_rng(5)
    crops = []
    for _ in range(9):
        h, w = (int(v) for v in rng.integers(5, 70, 2))
        m = cv2.resize((rng.random((5, 5)) < 0.6).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        crops.append(MaskCrop(int(rng.integers(0, 240 - w)), int(rng.integers(0, 130 - h)), m))
    boxes = np.array([[c.x0, c.y0, c.x0 + c.mask.shape[1], c.y0 + c.mask.shape[0]] for c in crops], np.float32)
    r = Result(boxes, np.full(9, 0.5, np.float32), crops, (130, 240), (130, 240), path=str(tmp_path / "x.png"))
    pts, lens, _ = crops_exteriors(r.original_crops(), DEFAULT_EPSILON)
    polys = np.split(pts.astype(np.float64), np.cumsum(lens)[:-1])
    want_yolo = "".join("0 " + " ".join(f"{math.ceil(v / s * 1e6) / 1e6:.6f}" for x, y in p for v, s in ((x, 240), (y, 130)))
                        + "\n" for p in polys)
    want_points = [[[json.loads(json.dumps(round(v, 1))) for v in xy] for xy in p.tolist()] for p in polys]
    for table_px in (formats._TABLE_PX, 0):  # the per-pixel tables, then the digits
        monkeypatch.setattr(formats, "_TABLE_PX", table_px)
        assert yolo_text(r) == want_yolo
        text = labelme_text(r, tmp_path / "x.json")
        assert [s["points"] for s in json.loads(text)["shapes"]] == want_points
        assert '"points": [[' + json.dumps(want_points[0])[2:] in text  # the numbers as json.dumps writes them


def test_yolo_labels_load_with_ultralytics(model, tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import polygon2mask

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(example_image(), root / "images" / "ex.jpg")
    cv2.imwrite(str(root / "images" / "blank.png"), np.full((64, 80, 3), 127, np.uint8))
    result = model.segment(str(root / "images" / "ex.jpg"))
    write_annotation(root / "labels" / "ex.txt", result, "yolo")
    blank = model.segment(str(root / "images" / "blank.png"))
    assert len(blank) == 0
    write_annotation(root / "labels" / "blank.txt", blank, "yolo")
    assert (root / "labels" / "blank.txt").read_text() == ""
    ds = YOLODataset(img_path=str(root / "images"), data={"names": {0: "object"}, "channels": 3}, task="segment", augment=False, imgsz=512)
    labels = {Path(lab["im_file"]).name: lab for lab in ds.labels}
    lab = labels["ex.jpg"]
    polys = result.exteriors(DEFAULT_EPSILON)
    assert len(lab["segments"]) == sum(len(p) for p in polys) and (lab["cls"] == 0).all() and lab["shape"] == (512, 512)
    assert len(labels["blank.png"]["segments"]) == 0
    h, w = result.orig_shape
    segments = iter(lab["segments"])
    for i, parts in enumerate(polys):
        drawn = np.zeros((h, w), bool)
        for _ in parts:
            xy = next(segments) * np.array([w, h], np.float32)
            drawn |= polygon2mask((h, w), [xy.reshape(-1)]).astype(bool)  # ultralytics' own rasteriser
        assert _iou(drawn, _solid(result.mask(i))) > 0.98, i  # measured: min 0.9965; 1.0 with --epsilon 0
    item = ds[[Path(f).name for f in ds.im_files].index("ex.jpg")]
    assert item["cls"].shape[0] == len(lab["segments"]) and item["masks"].shape[-2:] == (128, 128)


def test_epsilon_trades_vertices_for_fidelity(model):
    result = model.segment(str(example_image()))
    n = [yolo_text(result, epsilon=e).count(" ") for e in (0.0, DEFAULT_EPSILON, 0.01)]
    assert n[0] > n[1] > n[2]


def test_annotation_paths_and_collisions():
    rel = Path("a/b.jpg")
    assert annotation_path(Path("o"), rel, "coco") == Path("o/a/b.jpg.json")
    assert annotation_path(Path("o"), rel, "labelme") == Path("o/a/b.json")
    assert annotation_path(Path("o"), rel, "yolo") == Path("o/a/b.txt")
    check_unique_outputs([Path("a/b.jpg"), Path("a/b.png")], "coco")
    check_unique_outputs([Path("a/b.jpg"), Path("c/b.png")], "yolo")
    with pytest.raises(BadArgumentError, match="both write"):
        check_unique_outputs([Path("a/b.jpg"), Path("a/b.png")], "yolo")


def test_read_annotation_accepts_only_complete_files(tmp_path, model):
    result = model.segment(str(example_image()))
    yolo, lm = tmp_path / "x.txt", tmp_path / "x.json"
    write_annotation(yolo, result, "yolo")
    write_annotation(lm, result, "labelme", image_path=str(example_image()))
    assert len(read_annotation(yolo, "yolo")) == yolo.read_text().count("\n")
    assert read_annotation(lm, "labelme")["shapes"]
    assert read_annotation(lm, "coco") is None and read_annotation(lm, "yolo") is None
    yolo.write_text(yolo.read_text()[:-40])  # truncated
    assert read_annotation(yolo, "yolo") is None
    lm.write_text(lm.read_text()[:100])
    assert read_annotation(lm, "labelme") is None and read_annotation(tmp_path / "none.txt", "yolo") is None


def test_cli_one_image(model, image, tmp_path):
    from fastsam_onnx.cli import main
    from labelme import LabelFile

    out = tmp_path / "out"
    out.mkdir()
    result = model.segment(str(image))
    assert main(["segment", str(image), "--json", str(out / "ex.json"), "--format", "labelme", "--label", "shape"]) == 0
    lf = LabelFile(str(out / "ex.json"))
    assert lf.image_path == "../img/ex.jpg" and {s["label"] for s in lf.shapes} == {"shape"}
    assert main(["segment", str(image), "--json", str(out / "ex.txt"), "--format", "yolo"]) == 0
    assert (out / "ex.txt").read_text() == yolo_text(result)
    assert main(["segment", str(image), "--json", str(out / "ex0.txt"), "--format", "yolo", "--epsilon", "0"]) == 0
    assert (out / "ex0.txt").read_text() == yolo_text(result, epsilon=0.0)
    assert main(["segment", str(image), "--json", str(out / "r.json")]) == 0  # the default stays the instance JSON
    assert json.loads((out / "r.json").read_text())["instances"][0]["segmentation"]["size"] == [512, 512]
    for bad in (
        ["--json", str(out / "b.json"), "--epsilon", "0.01"],  # polygons only
        ["--json", str(out / "b.json"), "--format", "yolo", "--label", "x"],  # labels are labelme's
        ["--json", str(out / "b.json"), "--format", "labelme", "--epsilon", "1.5"],
        ["--format", "yolo", "--out", str(out / "b.png")],  # nothing to write the format to
    ):
        assert main(["segment", str(image), *bad]) == 2, bad
    with pytest.raises(SystemExit) as e:  # argparse's choices
        main(["segment", str(image), "--json", str(out / "b.json"), "--format", "voc"])
    assert e.value.code == 2
    assert main(["segment", "0", "--json", str(out / "b.jsonl"), "--format", "yolo"]) == 2  # a camera: JSON lines only
    assert not any(p.name.startswith("b.") for p in out.iterdir())
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in out.iterdir())


def test_cli_folder_one_file_per_image(model, tmp_path, capsys):
    from fastsam_onnx.cli import main
    from labelme import LabelFile

    src = tmp_path / "images"
    (src / "a").mkdir(parents=True)
    shutil.copy(example_image(), src / "a" / "ex.jpg")
    cv2.imwrite(str(src / "flip.png"), cv2.flip(cv2.imread(str(example_image())), 1))
    labels = tmp_path / "labels"
    assert main(["segment", str(src), "--out-dir", str(labels), "--format", "yolo", "-q"]) == 0
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*") if p.is_file()) == ["a/ex.txt", "flip.txt"]
    assert (labels / "a" / "ex.txt").read_text() == yolo_text(model.segment(str(src / "a" / "ex.jpg")))
    lm = tmp_path / "lm"
    assert main(["segment", str(src), "--out-dir", str(lm), "--format", "labelme", "-q"]) == 0
    lf = LabelFile(str(lm / "a" / "ex.json"))
    assert lf.image_path == "../../images/a/ex.jpg" and lf.shapes

    (labels / "flip.txt").write_text((labels / "flip.txt").read_text()[:-30])  # truncated: redone
    before = (labels / "a" / "ex.txt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["segment", str(src), "--out-dir", str(labels), "--format", "yolo", "--skip-existing"]) == 0
    assert "1 segmented, 1 skipped" in capsys.readouterr().err
    assert (labels / "a" / "ex.txt").stat().st_mtime_ns == before and read_annotation(labels / "flip.txt", "yolo")

    coco = tmp_path / "all.json"
    assert main(["segment", str(src), "--out-dir", str(labels), "--format", "yolo", "--skip-existing", "--coco", str(coco)]) == 2
    assert main(["segment", str(src), "--coco", str(coco), "--format", "labelme"]) == 2  # the format needs --out-dir
    cv2.imwrite(str(src / "a" / "ex.png"), np.zeros((32, 32, 3), np.uint8))  # a/ex.jpg and a/ex.png → a/ex.txt twice
    shutil.rmtree(labels)
    assert main(["segment", str(src), "--out-dir", str(labels), "--format", "yolo"]) == 2
    assert not any(p.is_file() for p in labels.rglob("*"))  # refused before the first image
    assert main(["segment", str(src), "--out-dir", str(labels), "-q"]) == 0  # coco names keep the extension: no clash


def test_formats_need_no_torch(tmp_path):
    from torchfree import run_blocked

    script = r"""
import sys
from fastsam_onnx.cli import main
from fastsam_onnx.models import example_image
d = sys.argv[1]
s = [main(["segment", str(example_image()), "--json", d + "/a.json", "--format", "labelme", "--embeddings", d + "/e.npy"]),
     main(["segment", str(example_image()), "--json", d + "/a.txt", "--format", "yolo"])]
report(status=s)
"""
    report = run_blocked(script, str(tmp_path))
    assert report["status"] == [0, 0] and report["loaded"] == [] and report["attempts"] == []
    assert (tmp_path / "a.txt").stat().st_size > 0 and (tmp_path / "e.npy").stat().st_size > 0

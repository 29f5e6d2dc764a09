"""Object proposals (fastsam_onnx.outputs.proposals): COCO result records pycocotools reads, CLI, memory."""

import contextlib
import io
import json
import shutil
import tracemalloc

import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.letterbox import letterbox_geometry
from fastsam_onnx.model import postprocess
from fastsam_onnx.models import demo_bundle
from fastsam_onnx.outputs.proposals import CONF, MAX_DET, proposal_records, records_for

EXAMPLE = demo_bundle() / "example.jpg"
mask_utils = pytest.importorskip("pycocotools.mask")


def _coco(images):
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def test_records_rank_by_score_and_load_with_pycocotools():
    r = FastSAM().segment(str(EXAMPLE), conf=CONF, max_det=MAX_DET)
    recs = proposal_records(r, image_id=7)
    assert len(recs) == len(r) > 13  # the low threshold finds more than the everything-mode default
    scores = [x["score"] for x in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(x["category_id"] == 1 and x["image_id"] == 7 for x in recs)
    x, y, w, h = recs[0]["bbox"]
    i = int(np.argmax(r.scores))
    np.testing.assert_allclose([x, y, x + w, y + h], r.boxes[i], atol=1e-3)
    dt = _coco([{"id": 7, "width": 512, "height": 512}]).loadRes(recs)
    ann = dt.anns[1]
    assert ann["area"] == pytest.approx(w * h)  # loadRes takes the box's area when a record has a bbox
    np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), r.mask(i))
    assert len(proposal_records(r, limit=5)) == 5


def test_cli_proposals_one_image_and_folder(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["segment", str(EXAMPLE), "--proposals", "8", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())
    assert len(recs) == 8 and {x["image_id"] for x in recs} == {1}
    assert main(["segment", str(EXAMPLE), "--proposals", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())) > 13  # default 1000 at conf 0.01
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "sub").mkdir()
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        shutil.copy(EXAMPLE, folder / name)
    coco = tmp_path / "all.json"
    assert main(["segment", str(folder), "--proposals", "4", "--coco", str(coco), "-q"]) == 0
    data = json.loads(coco.read_text())  # images (id → file_name, relative to the folder), annotations, categories
    recs = data["annotations"]
    assert len(recs) == 12 and sorted({x["image_id"] for x in recs}) == [1, 2, 3]
    assert sorted(im["file_name"] for im in data["images"]) == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert [r["id"] for r in recs] == list(range(1, 13))
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        own = COCO(str(coco))  # pycocotools reads the file as it is
    assert own.imgs[recs[0]["image_id"]]["file_name"] in ("a.jpg", "b.jpg", "sub/c.jpg") and len(own.anns) == 12
    gt_ids = {"sub/c.jpg": 11, "a.jpg": 12, "b.jpg": 13}  # another dataset's ids, mapped by file_name
    mapped = records_for(data, gt_ids)
    files = {im["id"]: im["file_name"] for im in data["images"]}
    assert [r["image_id"] for r in mapped] == [gt_ids[files[r["image_id"]]] for r in recs]
    _coco([{"id": i, "width": 512, "height": 512} for i in (11, 12, 13)]).loadRes(mapped)
    assert records_for(data) == [{k: v for k, v in r.items() if k != "id"} for r in recs]
    with pytest.raises(ValueError, match="not in the ground truth"):
        records_for(data, {"a.jpg": 1})
    gt = tmp_path / "gt.json"  # the folder's own instances as ground truth, under other image ids
    assert main(["segment", str(folder), "--coco", str(gt), "-q"]) == 0
    g = json.loads(gt.read_text())
    new = {im["id"]: gt_ids[im["file_name"]] for im in g["images"]}
    for im in g["images"]:
        im["id"] = new[im["id"]]
    for ann in g["annotations"]:
        ann["image_id"] = new[ann["image_id"]]
    gt.write_text(json.dumps(g))
    figures = tmp_path / "fig.json"
    assert main(["evaluate", "proposals", "--gt", str(gt), "--results", str(coco), "--json", str(figures), "-q"]) == 0
    assert json.loads(figures.read_text())["proposals"] == 12
    capsys.readouterr()
    assert main(["segment", str(EXAMPLE), "--proposals", "5"]) == 2
    assert "--proposals needs --json" in capsys.readouterr().err
    assert main(["segment", str(EXAMPLE), "--proposals", "0", "--json", str(out)]) == 2


def test_proposals_memory_scales_with_the_kept_boxes():
    rng = np.random.default_rng(1)
    a = 128 ** 2 + 64 ** 2 + 32 ** 2
    out = np.zeros((37, a), np.float32)
    out[0:2] = rng.uniform(0, 1024, (2, a))
    out[2:4] = rng.uniform(10, 120, (2, a))
    out[4] = rng.uniform(0.02, 1.0, a)
    out[5:] = rng.normal(0, 1, (32, a))
    yy, xx = np.mgrid[0:256, 0:256] / 256
    protos = np.stack([np.sin((i + 1) * 3 * xx + i) * np.cos((i % 5 + 1) * 3 * yy) for i in range(32)]).astype(np.float32)
    lb = letterbox_geometry((3000, 3000), (1024, 1024))
    tracemalloc.start()
    r = postprocess(out, protos, lb, conf=CONF, iou=0.9, max_det=MAX_DET, retina_masks=True)
    recs = proposal_records(r)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(r) >= 900 and len(recs) == len(r)
    kept = sum(c.mask.nbytes for c in r.crops)
    assert peak < 3 * kept + 100e6, (peak / 1e6, kept / 1e6)
    assert peak < len(r) * 3000 * 3000 / 20  # far below N x H x W, even as bool

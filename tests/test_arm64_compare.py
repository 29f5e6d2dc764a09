"""tools/arm64_compare.py, the comparison behind tools/arm64-check (CI's arm64 run): identical documents pass,
a moved box, a changed score, a flipped mask block, another count or other prompt picks fail; COCO's compressed
RLE strings (the server's answers) decode to the run lengths they encode."""

from __future__ import annotations

import copy

import numpy as np

from arm64_compare import AGREE, IDENTICAL, _counts, compare, table
from fastsam_onnx import FastSAM
from fastsam_onnx.models import check_photo
from fastsam_onnx.outputs.rle import rle_string, run_lengths


def _doc(compressed: bool = False) -> dict:
    doc = FastSAM().segment(check_photo()).to_json(compressed=compressed)  # the demo model: 15 instances
    doc["instances"][0]["selected_by"] = ["box:0", "text:a bus"]  # as a prompted run tags its picks
    return doc


def test_identical_and_mismatches():
    doc = _doc()
    assert len(doc["instances"]) >= 2
    for exact in (True, False):
        row = compare("c", "bus.jpg", doc, copy.deepcopy(doc), exact)
        assert row.ok and row.box == 0 and row.score == 0 and row.iou_min == 1.0 and "box:0" in row.picks
    moved = copy.deepcopy(doc)
    moved["instances"][0]["box"][0] += 0.05
    assert not compare("c", "i", doc, moved, True).ok and compare("c", "i", doc, moved, False).ok
    scored = copy.deepcopy(doc)
    scored["instances"][-1]["score"] += 1e-2
    assert not compare("c", "i", doc, scored, False).ok
    fewer = copy.deepcopy(doc)
    fewer["instances"].pop()
    row = compare("c", "i", doc, fewer, False)
    assert not row.ok and "instance counts differ" in row.notes
    picks = copy.deepcopy(doc)
    picks["instances"][0]["selected_by"] = ["point:0"]
    assert "prompt picks differ" in compare("c", "i", doc, picks, False).notes
    assert IDENTICAL["box"] < AGREE["box"] and IDENTICAL["iou"] > AGREE["iou"]
    assert "MISMATCH" in table([compare("c", "i", doc, fewer, False)], False)


def test_compressed_masks_and_swapped_order():
    plain, packed = _doc(), _doc(compressed=True)
    assert isinstance(packed["instances"][0]["segmentation"]["counts"], str)
    assert compare("c", "i", plain, packed, True).ok
    plain["instances"][0]["selected_by"] = []
    swapped = copy.deepcopy(plain)
    swapped["instances"][1:3] = swapped["instances"][2:0:-1]  # near-equal scores may swap two on the other CPU
    assert compare("c", "i", plain, swapped, True).ok


def test_rle_string_decoding():
    rng = np.random.default_rng(0)
    for shape in ((50, 40), (1, 1), (7, 300)):
        mask = rng.random(shape) > 0.6
        counts = [int(c) for c in run_lengths(0, 0, mask, shape)]
        assert _counts(rle_string(counts)) == counts

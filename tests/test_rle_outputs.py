"""COCO RLE in the CLI's JSON: compressed counts strings by default, run-length lists on request, both decoded by
pycocotools to the masks of the Python API (issue 25 item 1)."""

import json

import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.outputs.rle import string_counts

mask_utils = pytest.importorskip("pycocotools.mask")


def _masks(data: dict) -> list[np.ndarray]:
    h, w = data["mask_size"]["height"], data["mask_size"]["width"]
    out = []
    for inst in data["instances"]:
        seg = inst["segmentation"]
        rle = seg if isinstance(seg["counts"], str) else mask_utils.frPyObjects(seg, h, w)
        out.append(mask_utils.decode(rle).astype(bool))
    return out


def test_json_strings_by_default_lists_on_request(demo, tmp_path, capsys):
    image = demo / "example.jpg"
    assert main(["segment", str(image), "--json", str(tmp_path / "s.json")]) == 0
    assert main(["segment", str(image), "--json", str(tmp_path / "l.json"), "--uncompressed-rle"]) == 0
    s, lists = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "sl")
    assert s["instances"] and all(isinstance(i["segmentation"]["counts"], str) for i in s["instances"])
    assert all(isinstance(i["segmentation"]["counts"], list) for i in lists["instances"])
    for a, b in zip(s["instances"], lists["instances"]):
        assert string_counts(a["segmentation"]["counts"]).tolist() == b["segmentation"]["counts"]
    result = FastSAM(demo).segment(image)
    for mask_s, mask_l, i in zip(_masks(s), _masks(lists), range(len(result))):
        np.testing.assert_array_equal(mask_s, result.mask(i))
        np.testing.assert_array_equal(mask_l, result.mask(i))
    assert (tmp_path / "s.json").stat().st_size < (tmp_path / "l.json").stat().st_size


def test_folder_json_and_coco_file_carry_strings_or_lists(demo, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes((demo / "example.jpg").read_bytes())
    for flag, kind in (([], str), (["--uncompressed-rle"], list)):
        out, coco = tmp_path / f"out{len(flag)}", tmp_path / f"coco{len(flag)}.json"
        assert main(["segment", str(src), "--out-dir", str(out), "--coco", str(coco), *flag]) == 0
        per_image = json.loads((out / "a.jpg.json").read_text())
        anns = json.loads(coco.read_text())["annotations"]
        assert anns and all(isinstance(a["segmentation"]["counts"], kind) for a in anns)
        assert [a["segmentation"] for a in anns] == [i["segmentation"] for i in per_image["instances"]]


@pytest.mark.parametrize("extra", [["--format", "labelme"], ["--format", "yolo"]])
def test_uncompressed_rle_applies_to_coco_only(demo, tmp_path, capsys, extra):
    status = main(["segment", str(demo / "example.jpg"), "--json", str(tmp_path / "x"), "--uncompressed-rle", *extra])
    assert status == 2
    assert "--uncompressed-rle applies to --format coco" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

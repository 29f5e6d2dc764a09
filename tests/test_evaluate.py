"""Evaluation (fastsam_onnx.metrics, ``fastsam-onnx evaluate``): boundary matching, ODS/OIS, proposal AR, and
the demo model's figures on held-out synthetic scenes (floors = 90 % of the values measured for the README)."""

import json

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.metrics import TOLERANCE, boundary_counts, f_score, ods_ois, proposal_recall, thin_binary
from fastsam_onnx.models.evaluate_outputs import evaluate, write_dataset

pytest.importorskip("pycocotools")


def _curves(shape=(200, 300)):
    g = np.zeros(shape, np.uint8)
    cv2.circle(g, (150, 100), 60, 1, 1)
    cv2.line(g, (10, 10), (250, 190), 1, 1)
    return g.astype(bool)


@pytest.mark.parametrize("thin", [False, True])
def test_a_perfect_map_scores_one(thin):
    g = _curves()
    res = ods_ois([boundary_counts(g.astype(np.float32), [g], thin=thin)])
    assert res["ods"]["f"] == res["ois"]["f"] == 1.0


@pytest.mark.parametrize("thin", [False, True])
def test_a_shift_within_the_tolerance_matches_and_beyond_it_does_not(thin):
    g = np.zeros((200, 300), bool)
    g[100, 20:280] = True
    tol = TOLERANCE * np.hypot(200, 300)  # 2.70 px
    assert 2 < tol < 3
    for shift, f in ((2, 1.0), (3, 0.0), (10, 0.0)):
        pred = np.roll(g, shift, axis=0).astype(np.float32)
        assert ods_ois([boundary_counts(pred, [g], thin=thin)])["ods"]["f"] == f, shift
    # both annotators count for recall; a pixel matched to either is a hit for precision
    c = boundary_counts(g.astype(np.float32), [g, np.roll(g, 40, axis=0)], [0.5])
    assert c.tolist() == [[260, 520, 260, 260]]


def test_thinning_does_not_change_a_one_pixel_map_and_thins_a_thick_one():
    g = _curves()
    np.testing.assert_array_equal(thin_binary(g), g)
    thick = np.zeros((40, 60), bool)
    thick[10:15, 5:55] = True
    t = thin_binary(thick)
    assert t.sum(axis=0)[10:50].max() == 1 and t[12, 10:50].all()


def test_ods_takes_one_threshold_ois_one_per_image():
    ts = [0.25, 0.75]
    a = [[10, 10, 10, 20], [5, 10, 5, 5]]  # image 1: best F at 0.75 (P 1, R .5 -> .667 vs .667) ...
    b = [[10, 10, 10, 10], [0, 10, 0, 0]]  # image 2: best at 0.25
    res = ods_ois([np.array(a), np.array(b)], ts)
    p, r, f = f_score(*np.sum([a, b], axis=0).T)
    assert res["ods"]["f"] == pytest.approx(f.max()) and res["ods"]["threshold"] == 0.25
    assert res["ois"]["f"] >= res["ods"]["f"]


def _gt_json(tmp_path, n=20):
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [20 * i, 10, 15, 15], "area": 225,
             "segmentation": [[20 * i, 10, 20 * i + 15, 10, 20 * i + 15, 25, 20 * i, 25]]} for i in range(n)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": [{"id": 1, "width": 400, "height": 60, "file_name": "a.png"}],
                                "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    return path, anns


def test_proposal_recall_counts_at_10_100_1000(tmp_path):
    path, anns = _gt_json(tmp_path)
    results = [{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 1 - i / 100} for i, a in enumerate(anns)]
    ar = proposal_recall(path, results, "bbox")
    assert ar["AR@10"] == pytest.approx(0.5) and ar["AR@100"] == ar["AR@1000"] == pytest.approx(1.0)
    assert ar["AR_small"] == pytest.approx(1.0) and ar["AR_large"] is None  # no large objects
    assert proposal_recall(path, [], "bbox")["AR@1000"] == 0.0


def test_cli_evaluate_on_a_tiny_synthetic_set(tmp_path, capsys):
    data = write_dataset(tmp_path / "synth", n_images=2)
    out = tmp_path / "e.json"
    assert main(["evaluate", "edges", "--gt", str(data / "boundaries"), "--images", str(data / "images"), "--json", str(out), "-q"]) == 0
    assert "ODS" in capsys.readouterr().out and 0.5 < json.loads(out.read_text())["ods"]["f"] <= 1
    assert main(["evaluate", "edges", "--gt", str(data / "boundaries"), "--pred", str(data / "boundaries"), "-q"]) == 0
    assert "ODS   1.000  1.000  1.000" in capsys.readouterr().out
    assert main(["evaluate", "proposals", "--gt", str(data / "annotations.json"), "--images", str(data / "images"),
                 "--json", str(out), "-q"]) == 0
    figures = json.loads(out.read_text())
    assert set(figures["mask"]) == {"AR@10", "AR@100", "AR@1000", "AR_small", "AR_medium", "AR_large"}
    assert main(["evaluate", "proposals", "--gt", str(data / "annotations.json")]) == 2
    assert "--images DIR" in capsys.readouterr().err
    assert main(["evaluate", "edges", "--gt", str(tmp_path), "--images", str(data / "images"), "-q"]) == 2
    assert "no ground truth" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_model_on_heldout_synthetic_scenes(tmp_path):
    """Measured for the README (50 scenes): ODS F 0.949, OIS F 0.950; box AR@10/100/1000 0.780/0.892/0.892,
    mask 0.814/0.914/0.914. Floors: 90 % of those."""
    f = evaluate(write_dataset(tmp_path / "synth", n_images=50), FastSAM())
    assert f["edges"]["ods"]["f"] >= 0.85 and f["edges"]["ois"]["f"] >= 0.85
    assert f["box"]["AR@10"] >= 0.70 and f["box"]["AR@1000"] >= 0.80
    assert f["mask"]["AR@10"] >= 0.73 and f["mask"]["AR@1000"] >= 0.82

"""Box and point prompts: ultralytics' FastSAMPredictor.prompt semantics, bad prompts, reference bugs absent."""

from __future__ import annotations

import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.errors import BadArgumentError, BadPromptError
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.prompts import merge_by_points, parse_boxes, parse_points, parse_texts, select_by_boxes, select_by_points, select_by_texts
from parity import match, reference_arrays

SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)


def _crops():
    a = np.zeros((10, 10), bool)
    a[2:8, 2:8] = True  # instance 0: a 6x6 square at (10, 10)
    b = np.ones((4, 4), bool)  # instance 1: 4x4 at (12, 12), inside instance 0
    c = np.ones((5, 20), bool)  # instance 2: 20x5 at (0, 30)
    return [MaskCrop(8, 8, a), MaskCrop(12, 12, b), MaskCrop(0, 30, c)]


def test_box_selection_by_mask_box_iou():
    crops = _crops()
    assert select_by_boxes(crops, np.array([[10, 10, 16, 16]])).tolist() == [0]
    assert select_by_boxes(crops, np.array([[12, 12, 16, 16]])).tolist() == [1]
    assert select_by_boxes(crops, np.array([[0, 30, 20, 35], [12, 12, 16, 16]])).tolist() == [2, 1]


def test_point_selection_labels():
    crops = _crops()
    lab = lambda *v: np.array(v)  # noqa: E731
    assert select_by_points(crops, np.array([[13, 13]]), lab(1)).tolist() == [True, True, False]
    assert select_by_points(crops, np.array([[13, 13], [10, 10]]), lab(1, 0)).tolist() == [False, True, False]
    assert select_by_points(crops, np.array([[11, 11], [13, 13]]), lab(1, 0)).tolist() == [False, False, False]
    assert select_by_points(crops, np.array([[11, 11]]), lab(0)).tolist() == [False, True, True]  # all negative
    assert select_by_points(crops, np.array([[1, 31]]), lab(1)).tolist() == [False, False, True]


def test_merged_points_original_fastsam():
    crops = _crops()
    m = merge_by_points(crops, np.array([[13, 13]]), np.array([1]), (40, 40))
    assert m.sum() == 36  # square 0 painted (largest first), square 1 inside it
    m = merge_by_points(crops, np.array([[13, 13], [12, 12]]), np.array([1, 0]), (40, 40))
    assert m.sum() == 0


@pytest.mark.parametrize(
    "boxes", [[float("nan"), 0, 1, 1], [0, 0, float("inf"), 1], [5, 0, 1, 9], [0, 9, 9, 1], [[0, 0, 1]], [], "abc"]
)
def test_bad_boxes(boxes):
    with pytest.raises(BadPromptError):
        parse_boxes(boxes, (100, 100))


def test_boxes_outside_the_image_are_clipped_and_truncated():
    out = parse_boxes([[-50.7, -3, 150.9, 99.99], [10.9, 10.1, 20.5, 30.99]], (100, 120))
    assert out.tolist() == [[0, 0, 120, 99], [10, 10, 20, 30]]


def test_points_clip_and_negative_coordinates_do_not_wrap():
    # ultralytics PR 25916: negative coordinates once indexed from the far edge
    coords, labels = parse_points([[-5, -5], [500, 10], [3.9, 4.2]], None, (100, 200))
    assert coords.tolist() == [[0, 0], [199, 10], [3, 4]] and labels.tolist() == [1, 1, 1]
    crops = [MaskCrop(190, 90, np.ones((10, 10), bool))]  # bottom-right corner
    assert select_by_points(crops, *parse_points([[-1, -1]], [1], (100, 200))).tolist() == [False]


@pytest.mark.parametrize(
    "points,labels", [([[1, 2]], [1, 0]), ([[1, 2], [3, 4]], [1]), ([[1, float("nan")]], None), ([[1, 2, 3]], None), ([[1, 2]], [2])]
)
def test_bad_points(points, labels):
    with pytest.raises(BadPromptError):
        parse_points(points, labels, (10, 10))


@pytest.mark.parametrize("texts", ["", "   ", [], ["ok", ""], [None]])
def test_bad_texts(texts):
    with pytest.raises(BadPromptError):
        parse_texts(texts)


def test_text_index_remap_past_skipped_masks():
    # ultralytics PR 23764 / 24952, original PR 93: crops skip small masks; picks map back through keep
    sim = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.3]])
    assert select_by_texts(sim, [1, 4, 7]).tolist() == [4, 1]


def test_text_crops_do_not_leak_neighbours():
    from fastsam_onnx.clip.crops import text_crops

    img = np.full((40, 40, 3), 200, np.uint8)
    img[:, :, 0] = 10  # B channel
    crops = [MaskCrop(0, 0, np.ones((20, 20), bool)), MaskCrop(10, 10, np.pad(np.ones((11, 11), bool), ((0, 9), (0, 9))))]
    boxes = np.array([[0, 0, 20, 20], [10, 10, 30, 30]], np.float32)
    out, keep = text_crops(img, boxes, crops)
    assert keep == [0, 1]
    assert out[1].shape == (20, 20, 3)
    assert (out[1][11:, :] == 0).all() and (out[1][:, 11:] == 0).all()  # instance 0 overlaps the box, not shown
    assert (out[0][..., 2] == 10).all()  # BGR -> RGB


# --- on a real model and photographs, against ultralytics ----------------------------------------------------


@pytest.fixture(scope="module")
def s_pair(s_checkpoint, export_bundle):
    pytest.importorskip("ultralytics")
    return s_checkpoint, FastSAM(export_bundle(s_checkpoint, 1024, True))


def _ref_prompt(checkpoint, image, retina, **prompts):
    import ultralytics

    ref = ultralytics.FastSAM(str(checkpoint))
    everything = ref.predict(str(image), imgsz=1024, retina_masks=retina, verbose=False, device="cpu", **SETTINGS)
    return everything[0], ref.predictor.prompt(everything, **prompts)[0]


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterboxed"])
def test_box_and_point_prompts_match_reference(s_pair, assets, retina):
    checkpoint, model = s_pair
    image = assets / "bus.jpg"
    everything = model.segment(image, retina_masks=retina, **SETTINGS)
    rng = np.random.default_rng(0)
    h, w = everything.orig_shape
    cases = []
    for _ in range(6):
        x1, y1 = rng.uniform(-20, w * 0.7), rng.uniform(-20, h * 0.7)
        cases.append({"bboxes": [[x1, y1, x1 + rng.uniform(5, w / 2), y1 + rng.uniform(5, h / 2)]]})
    cases.append({"bboxes": [[0, 0, w, h], [100.7, 300.2, 400.9, 900.5], [-30, -30, 50, 50]]})
    for _ in range(4):
        pts = np.stack([rng.uniform(-10, w + 10, 4), rng.uniform(-10, h + 10, 4)], 1).tolist()
        cases.append({"points": pts, "labels": rng.integers(0, 2, 4).tolist()})
    cases.append({"points": [[400, 600]]})
    cases.append({"points": [[400, 600], [100, 100]], "labels": [0, 0]})
    cases.append({"bboxes": [50, 400, 300, 900], "points": [[500, 500], [200, 700]], "labels": [1, 0]})
    for prompts in cases:
        ref_all, ref_sel = _ref_prompt(checkpoint, image, retina, **prompts)
        assert len(ref_all) == len(everything)
        ours = model.prompt(everything, **prompts)
        rb, _, rm = reference_arrays(ref_sel)
        assert len(ours) == len(rb), prompts
        if len(rb):
            idx = match(rb, ours.boxes)
            np.testing.assert_allclose(ours.boxes[idx], rb, atol=1.0)
            om = ours.masks[idx]
            iou = (om & rm).sum((1, 2)) / np.maximum((om | rm).sum((1, 2)), 1)
            assert iou.min() >= 0.95, prompts
        # the same through segment(), without reusing the result
        assert len(model.segment(image, retina_masks=retina, **SETTINGS, **prompts)) == len(rb)


def test_prompts_on_no_detections(s_pair, assets):
    _, model = s_pair
    empty = model.segment(assets / "bus.jpg", conf=0.9999)
    assert len(empty) == 0
    assert len(model.prompt(empty, bboxes=[0, 0, 10, 10], points=[[1, 1]])) == 0


def test_prompt_mode_errors(s_pair, assets):
    _, model = s_pair
    r = model.segment(assets / "bus.jpg", **SETTINGS)
    with pytest.raises(BadArgumentError):
        model.prompt(r, points=[[1, 1]], point_mode="nope")
    with pytest.raises(BadArgumentError):
        model.prompt(r, points=[[1, 1]], bboxes=[0, 0, 5, 5], point_mode="merge")
    with pytest.raises(BadPromptError):
        model.prompt(r, labels=[1])
    merged = model.prompt(r, points=[[400, 600], [200, 300]], point_mode="merge")
    assert len(merged) <= 1 and (len(merged) == 0 or merged.selected_by[0] in (["point:0"], ["point:1"], ["point:0", "point:1"]))


def test_point_that_hits_nothing_gives_empty_result(demo):
    model = FastSAM(demo)
    r = model.segment(demo / "example.jpg")
    empty_corner = model.prompt(r, points=[[0, 0]], labels=[1])
    assert len(empty_corner) == 0 and empty_corner.masks.shape == (0, *r.mask_shape)
    assert len(r.select([])) == 0 and len(r.select(np.zeros(len(r), bool))) == 0

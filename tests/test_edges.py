"""Edge maps (fastsam_onnx.outputs.edges): shape and range, the band, the thinning, the CLI flag, memory."""

import tracemalloc

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.outputs.edges import EdgeCanvas, edge_directions, thin_edges
from fastsam_onnx.errors import BadArgumentError
from fastsam_onnx.letterbox import letterbox_geometry
from fastsam_onnx.model import postprocess
from fastsam_onnx.models import demo_bundle
from fastsam_onnx.result import Result

EXAMPLE = str(demo_bundle() / "example.jpg")


@pytest.fixture(scope="module")
def model():
    return FastSAM()


def test_edges_are_hw_float32_in_unit_range_at_the_original_size(model):
    img = cv2.resize(cv2.imread(EXAMPLE), (450, 300))  # not the network's square: letterboxed
    for retina in (True, False):
        e = model.edges(img, retina_masks=retina)
        assert e.shape == (300, 450) and e.dtype == np.float32
        assert e.min() >= 0 and e.max() == pytest.approx(1.0)
        assert 0.005 < (e > 0).mean() < 0.1  # thin lines, not regions


def test_same_pass_equals_recomputed_and_selection_has_its_own_edges(model):
    r = model.segment(EXAMPLE, edges=True)
    assert "edges" in r.timings
    same = r.edges()
    again = r.select(np.arange(len(r))).edges()  # no cached map: recomputed from the kept prototypes
    np.testing.assert_allclose(same, again, atol=1e-5)
    one = r.select([0]).edges()
    x0, y0, m = r.crops[0]
    ys, xs = np.nonzero(one)
    assert ys.min() >= y0 - 2 and ys.max() <= y0 + m.shape[0] + 1  # only instance 0's boundary
    assert xs.min() >= x0 - 2 and xs.max() <= x0 + m.shape[1] + 1
    with pytest.raises(BadArgumentError):
        r.edges(band=-1)
    with pytest.raises(BadArgumentError):
        r.edges(band="2")


def _disc(shape=(120, 160), centre=(80, 60), radius=30.0, softness=2.5):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(xx - centre[0], yy - centre[1]) - radius
    return (1 / (1 + np.exp(d / softness))).astype(np.float32), d


def test_disc_gives_one_thin_ring_on_its_boundary():
    prob, d = _disc()
    c = EdgeCanvas(prob.shape)
    c.add(0, 0, prob, prob > 0.5)
    e = c.finish()
    on = e > 0
    assert np.abs(d[on]).max() <= 1.5  # on the true circle
    angles = np.arctan2(*np.nonzero(on)[::-1] - np.array([[80], [60]]))
    assert np.histogram(angles, bins=36)[0].min() > 0  # all the way round
    assert on.sum() < 2.5 * 2 * np.pi * 30  # about one pixel per boundary pixel, not a 4-px strip


def test_gradients_away_from_the_boundary_are_dropped_and_box_cuts_are_edges():
    prob, _ = _disc()
    yy, xx = np.mgrid[: prob.shape[0], : prob.shape[1]]
    prob = prob * (1 - 0.3 * np.exp(-((xx - 80) ** 2 + (yy - 60) ** 2) / 50)).astype(np.float32)  # soft dip > 0.5
    c = EdgeCanvas(prob.shape)
    c.add(0, 0, prob, prob > 0.5)
    e = c.finish()
    assert e[50:70, 70:90].max() == 0  # the dip inside the disc gives no edge
    c = EdgeCanvas(prob.shape)  # the same disc, cut by a box through its middle
    c.add(80, 0, prob[:, 80:], prob[:, 80:] > 0.5)
    e = c.finish()
    assert (e[40:80, 79:82] > 0).any(axis=1).all()  # the cut is an edge


def test_image_frame_is_no_edge():
    c = EdgeCanvas((40, 50))
    c.add(0, 0, np.ones((40, 50), np.float32), np.ones((40, 50), bool))
    assert c.finish().max() == 0


def test_thinning_keeps_one_pixel_lines_and_thins_plateaus():
    e = np.zeros((60, 60), np.float32)
    d = np.zeros((60, 60), np.uint8)
    e[10, 5:50], d[10, 5:50] = 1, 3  # horizontal line: vertical gradient
    e[15:55, 55], d[15:55, 55] = 0.5, 1  # vertical line
    idx = np.arange(20, 50)
    e[idx, idx - 15], d[idx, idx - 15] = 0.7, 4  # diagonal line: anti-diagonal gradient
    np.testing.assert_array_equal(thin_edges(e, d), e)
    img = np.zeros((80, 80), np.uint8)
    cv2.circle(img, (40, 40), 25, 1, 1)
    ys, xs = np.nonzero(img)
    circle = img.astype(np.float32)
    dirs = np.zeros_like(img)
    dirs[ys, xs] = edge_directions((xs - 40).astype(np.float32), (ys - 40).astype(np.float32))
    np.testing.assert_array_equal(thin_edges(circle, dirs), circle)
    wide = np.zeros((20, 20), np.float32)
    wide[5:8, 2:18] = [[0.5], [1.0], [1.0]]
    out = thin_edges(wide, np.full((20, 20), 3, np.uint8))
    assert (out > 0).sum(axis=0)[2:18].tolist() == [1] * 16


def test_result_without_logits_uses_binary_masks():
    m = np.zeros((30, 40), bool)
    m[5:20, 8:30] = True
    r = Result(np.array([[8, 5, 30, 20]], np.float32), np.ones(1, np.float32), [(0, 0, m)], (30, 40), (30, 40))
    e = r.edges()
    assert e.shape == (30, 40) and e.max() == 1
    assert e[10:16, 12:26].max() == 0 and e[5:20, 7:9].max() > 0


def test_cli_writes_the_edge_map(tmp_path, capsys):
    out = tmp_path / "edges.png"
    assert main(["segment", EXAMPLE, "--edges", str(out)]) == 0
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.shape == (512, 512) and img.max() == 65535
    npy = tmp_path / "edges.npy"
    assert main(["segment", EXAMPLE, "--edges", str(npy)]) == 0
    np.testing.assert_allclose(np.load(npy), img / 65535, atol=1e-4)
    folder = tmp_path / "f"
    folder.mkdir()
    assert main(["segment", str(folder), "--edges", str(out), "--coco", str(tmp_path / "c.json")]) == 2
    assert "--edges applies to one image" in capsys.readouterr().err


def _outputs(n, imgsz=1024, seed=0):
    rng = np.random.default_rng(seed)
    a = (imgsz // 8) ** 2 + (imgsz // 16) ** 2 + (imgsz // 32) ** 2
    out = np.zeros((37, a), dtype=np.float32)
    out[0:2] = rng.uniform(0, imgsz, (2, a))
    out[2:4] = rng.uniform(40, 400, (2, a))
    out[4, rng.choice(a, n, replace=False)] = rng.uniform(0.5, 1.0, n)
    out[5:] = rng.normal(0, 1, (32, a))
    m = imgsz // 4
    yy, xx = np.mgrid[0:m, 0:m] / m
    protos = np.stack([np.sin((i % 3 + 1) * 2 * xx + i) * np.cos((i % 2 + 1) * 2 * yy) for i in range(32)]).astype(np.float32)
    return out, protos


def test_edge_memory_scales_with_the_boxes_not_n_h_w():
    out, protos = _outputs(40)
    H = W = 4512
    lb = letterbox_geometry((H, W), (1024, 1024))
    tracemalloc.start()
    r = postprocess(out, protos, lb, conf=0.4, iou=0.9, max_det=300, retina_masks=True, edges_band=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    e = r._edges[1]
    assert e.shape == (H, W) and e.dtype == np.float32 and e.max() == 1
    n = len(r)
    assert n >= 20
    kept = sum(c.mask.nbytes for c in r.crops)
    largest = max(c.mask.size for c in r.crops)
    canvases = 3 * 4 * (H + 2) * (W + 2)  # the float32 canvas, its uint8 direction map, the thinned output
    assert peak < kept + canvases + 16 * largest + 100e6, peak / 1e6  # + a few float buffers of the largest box
    assert peak < n * H * W * 4 / 4  # (the three canvases alone are 244 MB at 4512²)


def test_edges_proposals_and_evaluate_modules_are_torch_and_pycocotools_free(tmp_path):
    from torchfree import run_blocked

    code = r"""
import sys
import fastsam_onnx, fastsam_onnx.outputs.edges, fastsam_onnx.outputs.proposals, fastsam_onnx.metrics, fastsam_onnx.cli.evaluate
from fastsam_onnx.cli import build_parser, main
build_parser()
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pycocotools', 'matplotlib', 'fastapi', 'ray'})
status = main(["segment", sys.argv[1], "--edges", sys.argv[2], "--proposals", "--json", sys.argv[3]])
report(heavy=heavy, status=status)
"""
    rep = run_blocked(code, EXAMPLE, str(tmp_path / "e.png"), str(tmp_path / "p.json"))
    assert rep["heavy"] == [] and rep["status"] == 0
    assert rep["loaded"] == [] and rep["attempts"] == []


def test_batches_count_the_margins_so_wide_bands_on_many_small_crops_stay_bounded(monkeypatch):
    from fastsam_onnx.outputs import edges

    monkeypatch.setattr(edges, "BATCH_PIXELS", 1 << 16)
    packed = []
    real_pack = edges.shelf_pack

    def spy(sizes, width):
        packed.append(sum(h * w for h, w in sizes))
        return real_pack(sizes, width)

    monkeypatch.setattr(edges, "shelf_pack", spy)
    c = EdgeCanvas((300, 300), band=8)  # a margin of 19 px around every 3 x 3 crop: 41² px per tile
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    for x, y in np.random.default_rng(0).integers(0, 297, (400, 2)).tolist():
        c.add(x, y, m.astype(np.float32), m)
    e = c.finish()
    assert e.max() == 1 and e.shape == (300, 300)
    assert len(packed) >= 10 and max(packed) <= (1 << 16) + 41 * 41  # not one batch of 400 × 41² px
    whole = EdgeCanvas((300, 300), band=8)  # the same crops in one batch, in reverse order: the same map
    monkeypatch.setattr(edges, "BATCH_PIXELS", 1 << 30)
    for x, y in np.random.default_rng(0).integers(0, 297, (400, 2)).tolist()[::-1]:
        whole.add(x, y, m.astype(np.float32), m)
    np.testing.assert_array_equal(whole.finish(), e)


def test_map_does_not_depend_on_the_instances_order_nor_batches(monkeypatch):
    from fastsam_onnx.outputs import edges

    rng = np.random.default_rng(3)
    crops = []
    for k in range(60):  # overlapping binary and ragged masks: many exactly equal gradients
        h, w = rng.integers(5, 80, 2)
        m = rng.random((h, w)) > 0.5 if k % 3 == 0 else np.pad(np.ones((h - h // 2, w - w // 2), bool), ((h // 4, h // 4 + h % 2), (w // 4, w // 4 + w % 2)))
        crops.append((int(rng.integers(-10, 230)), int(rng.integers(-10, 190)), m))
    maps = []
    for batch, order in ((1 << 22, 1), (1 << 12, 1), (1 << 12, -1)):
        monkeypatch.setattr(edges, "BATCH_PIXELS", batch)
        c = EdgeCanvas((200, 240))
        for x0, y0, m in crops[::order]:
            c.add(x0, y0, m.astype(np.float32), m)
        maps.append(c.finish())
    assert (maps[0] > 0).sum() > 1000
    np.testing.assert_array_equal(maps[0], maps[1])
    np.testing.assert_array_equal(maps[0], maps[2])

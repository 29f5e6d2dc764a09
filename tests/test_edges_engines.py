"""The two edge engines (fastsam_onnx.edges: numpy, and numba's compiled loops from the ``[fast]`` extra) make
the same maps: on trained masks, ragged masks, crops at the image frame, several bands, probabilities and
logits, ties; the engine is chosen as documented and numba is never imported unless it is used."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.edges import EdgeCanvas, resolve_engine
from fastsam_onnx.errors import BadArgumentError
from fastsam_onnx.model import postprocess
from fastsam_onnx.models import demo_bundle

pytest.importorskip("numba", reason="the numba engine is the [fast] extra (installed by the dev extra and CI)")

EXAMPLE = str(demo_bundle() / "example.jpg")


def _both(shape, crops, band=1, logits=True):
    maps = []
    for engine in ("numpy", "numba"):
        c = EdgeCanvas(shape, band, engine=engine)
        assert c.engine == engine
        for x0, y0, v, m in crops:
            (c.add_logits if logits else c.add)(x0, y0, v, m)
        maps.append(c.finish())
    return maps


@pytest.fixture(scope="module")
def demo_result():
    model = FastSAM()
    img = cv2.imread(EXAMPLE)
    x, lb = model.preprocess(img, model._input_size(None))
    o, p = model.session.run(x)[:2]
    return postprocess(o[0], p[0], lb, conf=0.1, iou=0.9, max_det=300, retina_masks=True)


@pytest.mark.parametrize("band", [0, 1, 2, 5])
def test_trained_masks_give_the_same_map(demo_result, band, monkeypatch):
    assert len(demo_result) >= 10
    maps = []
    for engine in ("numpy", "numba"):  # the path segment() and result.edges() take
        monkeypatch.setenv("FASTSAM_ONNX_EDGES", engine)
        assert resolve_engine() == engine
        maps.append(demo_result.edges(band))
    a, b = maps
    assert (a > 0).sum() > 1000
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert ((a > 0) != (b > 0)).sum() <= 2  # (float ties at the last bit: OpenCV's scalar tail columns)


def test_ragged_masks_frame_crops_and_probabilities_give_the_same_map():
    rng = np.random.default_rng(7)
    H, W = 150, 170
    crops = []
    for k in range(40):  # noise logits (ragged masks), many crossing or touching the image frame
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        x0, y0 = int(rng.integers(-20, W - 5)), int(rng.integers(-20, H - 5))
        v = (rng.normal(size=(h, w)) * 4 + (2 if k % 2 else -1)).astype(np.float32)
        crops.append((x0, y0, v, v > 0))
    for band in (0, 1, 3):
        a, b = _both((H, W), crops, band)
        assert (a > 0).sum() > 500
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
        assert ((a > 0) != (b > 0)).mean() < 1e-3
    probs = [(x0, y0, 1 / (1 + np.exp(-v)), m) for x0, y0, v, m in crops]  # the letterboxed path's add()
    a, b = _both((H, W), probs, 1, logits=False)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_binary_masks_with_exact_ties_give_the_same_directions():
    rng = np.random.default_rng(3)
    crops = []
    for _ in range(30):  # overlapping 0/1 masks: equal gradients everywhere they cross
        h, w = (int(v) for v in rng.integers(4, 60, 2))
        m = np.zeros((h, w), bool)
        m[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
        crops.append((int(rng.integers(-5, 110)), int(rng.integers(-5, 90)), m.astype(np.float32), m))
    a, b = _both((100, 120), crops, 1, logits=False)
    np.testing.assert_array_equal(b, a)


def test_segment_uses_the_engine_and_both_give_the_same_map(monkeypatch):
    model = FastSAM()
    maps = {}
    for engine in ("numpy", "numba"):
        monkeypatch.setenv("FASTSAM_ONNX_EDGES", engine)
        maps[engine] = model.edges(EXAMPLE)
        maps[engine + "-letterboxed"] = model.edges(EXAMPLE, retina_masks=False)
    np.testing.assert_allclose(maps["numba"], maps["numpy"], atol=1e-6)
    np.testing.assert_allclose(maps["numba-letterboxed"], maps["numpy-letterboxed"], atol=1e-6)


def test_engine_choice_and_errors(monkeypatch):
    monkeypatch.delenv("FASTSAM_ONNX_EDGES", raising=False)
    assert resolve_engine() == "numba" and EdgeCanvas((4, 4)).engine == "numba"  # the default: auto
    assert resolve_engine("auto") == "numba" and resolve_engine("numba") == "numba"
    monkeypatch.setenv("FASTSAM_ONNX_EDGES", "auto")
    assert resolve_engine() == "numba" and EdgeCanvas((4, 4)).engine == "numba"
    for bad in ("cuda", "", 3):
        with pytest.raises(BadArgumentError, match="edge engine"):
            resolve_engine(bad)
    monkeypatch.setenv("FASTSAM_ONNX_EDGES", "fast")
    with pytest.raises(BadArgumentError, match="FASTSAM_ONNX_EDGES|edge engine"):
        EdgeCanvas((4, 4))
    monkeypatch.setattr("fastsam_onnx.extras.missing_modules", lambda *m: list(m))  # as without the [fast] extra
    assert resolve_engine("auto") == "numpy"
    monkeypatch.delenv("FASTSAM_ONNX_EDGES")
    assert resolve_engine() == "numpy" and EdgeCanvas((4, 4)).engine == "numpy"  # the base install's default
    with pytest.raises(BadArgumentError, match=r"fastsam-onnx\[fast\]"):
        resolve_engine("numba")


def test_numba_is_imported_only_when_an_edge_map_uses_it(monkeypatch):
    monkeypatch.delenv("FASTSAM_ONNX_EDGES", raising=False)
    code = (
        "import sys\nimport numpy as np\nimport fastsam_onnx\nfrom fastsam_onnx.edges import EdgeCanvas\n"
        "m = np.zeros((8, 8), bool); m[2:6, 2:6] = True\n"
        "c = EdgeCanvas((10, 10), engine='numpy'); c.add(1, 1, m.astype(np.float32), m); c.finish()\n"
        "from fastsam_onnx.edges import resolve_engine\nassert resolve_engine() == 'numba'\n"  # (found, not imported)
        "print('numba' in sys.modules)\n"
        "c = EdgeCanvas((10, 10)); c.add(1, 1, m.astype(np.float32), m)\n"
        "print(c.finish().max(), 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "1.0", "True"]


def test_numba_batches_pool_and_mixed_kinds_give_the_numpy_map(monkeypatch):
    """Small batch buffers (many runs, crops larger than the buffers), logits and probabilities in one map,
    the touched list grown from a small start, and a pooled workspace reused: the numpy engine's map each time,
    and the pooled canvases left zeroed."""
    from fastsam_onnx import edges_numba

    rng = np.random.default_rng(11)
    H, W = 130, 150
    crops = []
    for k in range(30):
        h, w = (int(v) for v in rng.integers(2, 60, 2))
        v = (rng.normal(size=(h, w)) * 3 + 1).astype(np.float32)
        crops.append((int(rng.integers(-10, W - 2)), int(rng.integers(-10, H - 2)), v, v > 0, k % 3 == 0))

    def draw(engine):
        c = EdgeCanvas((H, W), 1, engine=engine)
        for x0, y0, v, m, prob in crops:
            if prob:
                c.add(x0, y0, 1 / (1 + np.exp(-v)), m)
            else:
                c.add_logits(x0, y0, v, m)
        return c.finish()

    want = draw("numpy")
    monkeypatch.setattr(edges_numba, "BATCH_PIXELS", 700)  # a batch every few crops; some crops alone
    monkeypatch.setattr(edges_numba, "_pool", [])
    for _ in range(3):  # the second and third take the pooled workspace
        got = draw("numba")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert ((got > 0) != (want > 0)).sum() <= 2
    (ws,) = edges_numba._pool
    assert ws.shape == (H, W) and not ws.dir.any()


def test_numba_pool_is_bounded(monkeypatch):
    from fastsam_onnx import edges_numba

    monkeypatch.setattr(edges_numba, "_pool", [])
    monkeypatch.setattr(edges_numba, "BATCH_PIXELS", 1 << 10)
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    for side in (100, 200, 300, 400):
        c = EdgeCanvas((side, side), engine="numba")
        c.add(0, 0, m.astype(np.float32), m)
        assert c.finish().max() == 1
    sizes = [ws.nbytes() for ws in edges_numba._pool]
    monkeypatch.setattr(edges_numba, "POOL_BYTES", sum(sizes[:2]))
    c = EdgeCanvas((50, 50), engine="numba")
    c.add(0, 0, m.astype(np.float32), m)
    c.finish()
    assert sum(ws.nbytes() for ws in edges_numba._pool) <= edges_numba.POOL_BYTES
    assert edges_numba._pool[0].shape == (50, 50)  # newest first, the oldest dropped


def test_numba_maps_made_in_threads_at_once_are_the_same(demo_result, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("FASTSAM_ONNX_EDGES", "numba")
    want = demo_result.edges()
    with ThreadPoolExecutor(4) as pool:  # workspaces are taken from and given back to one pool
        maps = list(pool.map(lambda _: demo_result.edges(), range(12)))
    for got in maps:
        np.testing.assert_array_equal(got, want)


def test_a_finished_numba_canvas_gives_its_map_again_and_takes_no_more():
    m = np.zeros((20, 20), bool)
    m[5:15, 4:12] = True
    c = EdgeCanvas((30, 30), engine="numba")
    c.add(2, 3, m.astype(np.float32), m)
    first = c.finish()
    np.testing.assert_array_equal(c.finish(), first)
    assert first.max() == 1
    with pytest.raises(BadArgumentError, match="finished"):
        c.add(0, 0, m.astype(np.float32), m)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (2, 7), (3, 3), (6, 5)])
def test_tiny_canvases_and_the_image_frame_give_the_numpy_map(shape):
    """Canvases of 1-9 px a side: (nearly) every edge pixel is on the image frame, where the in-place thinning of the
    numba engine reads its neighbours with bounds (outside the image counts as 0)."""
    rng = np.random.default_rng(sum(shape))
    H, W = shape
    crops = []
    for _ in range(6):
        h, w = int(rng.integers(1, H + 3)), int(rng.integers(1, W + 3))
        v = (rng.normal(size=(h, w)) * 3).astype(np.float32)
        crops.append((int(rng.integers(-2, W)), int(rng.integers(-2, H)), v, v > 0))
    for band in (0, 1, 2):
        a, b = _both(shape, crops, band)
        assert a.shape == b.shape == shape and (a > 0).sum() >= (0 if shape == (1, 1) else 2)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
        assert ((a > 0) != (b > 0)).sum() == 0
    empty = EdgeCanvas(shape, engine="numba").finish()
    assert empty.shape == shape and empty.dtype == np.float32 and not empty.any()

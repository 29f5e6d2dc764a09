"""One ``FastSAM`` object shared by 8 threads gives exactly the serial results, creates no new sessions
and mutates no shared state per call.

Uses the demo checkpoint exported at a dynamic 64 × 64 input (see ``smallmodel.py``). Measured on the
2-core CI machine: 8 threads × 200 calls (1600 segment calls, every third with prompts) ~3.3 s.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from fastsam_onnx import FastSAM
from smallmodel import small_demo_bundle

THREADS = 8


@pytest.fixture(scope="module")
def small(cache_dir):
    return small_demo_bundle(cache_dir)


def _images(n: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        h, w = int(rng.integers(8, 80)), int(rng.integers(8, 80))
        im = np.zeros((h, w, 3), np.uint8)
        im[:] = rng.integers(0, 60, 3, dtype=np.uint8)
        for _ in range(3):  # a few flat rectangles: something to find
            y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            im[y0 : y0 + int(rng.integers(3, h)), x0 : x0 + int(rng.integers(3, w))] = rng.integers(100, 256, 3, dtype=np.uint8)
        out.append(im)
    return out


def _call(model: FastSAM, im: np.ndarray, k: int):
    """One call of a fixed recipe: segment everything, every 3rd call with a box + point prompt."""
    h, w = im.shape[:2]
    r = model.segment(im, conf=0.1, iou=0.7)
    if k % 3 == 0:
        r = model.prompt(r, bboxes=[[0, 0, w // 2 + 1, h // 2 + 1]], points=[[w // 2, h // 2]], labels=[1])
    return r.boxes, r.scores, r.masks


def _same(a, b) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def _run_threads(model: FastSAM, images, calls: int) -> None:
    serial = {(i, k % 3 == 0): _call(model, im, k) for i, im in enumerate(images) for k in (0, 1)}
    assert any(len(v[0]) for v in serial.values()), "the images should give detections"
    session = model.session.session
    state = dict(vars(model))
    created = []
    original_init = ort.InferenceSession.__init__

    def counting_init(self, *a, **kw):  # any session made during the run is a failure
        created.append(a)
        original_init(self, *a, **kw)

    barrier = threading.Barrier(THREADS)

    def worker(t: int) -> int:
        barrier.wait()
        mismatches = 0
        for k in range(calls):
            i = (t * 7 + k) % len(images)
            if not _same(_call(model, images[i], t + k), serial[(i, (t + k) % 3 == 0)]):
                mismatches += 1
        return mismatches

    ort.InferenceSession.__init__ = counting_init
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            mismatches = list(pool.map(worker, range(THREADS)))
    finally:
        ort.InferenceSession.__init__ = original_init
    assert mismatches == [0] * THREADS
    assert created == []
    assert model.session.session is session
    assert vars(model).keys() == state.keys() and all(vars(model)[k] is v for k, v in state.items())


def test_threads_give_serial_results_8x200(small):
    _run_threads(FastSAM(small), _images(), calls=200)


def test_clip_loads_once_and_text_cache_is_thread_safe():
    from fastsam_onnx.clip import CLIP
    from fastsam_onnx.models import demo_clip_bundle

    if not (demo_clip_bundle() / "manifest.json").is_file():
        pytest.skip("demo CLIP bundle not built")
    clip = CLIP(demo_clip_bundle())
    texts = [f"a photo of thing {i}" for i in range(40)]
    serial = CLIP(demo_clip_bundle()).encode_texts(texts)
    barrier = threading.Barrier(THREADS)

    def worker(t: int):
        barrier.wait()
        order = texts[t:] + texts[:t]
        return np.array_equal(clip.encode_texts(order), np.roll(serial, -t, axis=0))

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(worker, range(THREADS)))
    assert set(clip._text_cache) == set(texts)


def test_lazy_clip_property_is_created_once(small, monkeypatch):
    import fastsam_onnx.clip.model as clip_mod

    made = []

    class FakeCLIP:
        def __init__(self, *a, **kw):
            made.append(1)

    monkeypatch.setattr(clip_mod, "CLIP", FakeCLIP)
    model = FastSAM(small, clip="whatever")
    barrier = threading.Barrier(THREADS)

    def get(_):
        barrier.wait()
        return model.clip

    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(get, range(THREADS)))
    assert len(made) == 1 and all(g is got[0] for g in got)

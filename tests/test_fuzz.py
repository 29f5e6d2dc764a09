"""Property tests of the numeric stages against straightforward reference formulations, and a fuzz run of
the public API.

- decode/NMS vs an O(n²) pure-Python greedy NMS (torchvision semantics: suppress when IoU > iou);
- crop_masks vs dense full-canvas masks (logits of every prototype pixel, dense bilinear matrices);
- select_by_boxes / select_by_points vs the same questions asked of dense (N, H, W) masks;
- ``FastSAM.segment`` + ``.prompt`` on random tiny images and garbage prompts: nothing but FastSAMError.
  Measured on the 2-core CI machine: 10,000 inputs in ~15 s (with the 64 × 64 demo export).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastsam_onnx.errors import FastSAMError
from fastsam_onnx.masks import MaskCrop, box_span, crop_masks, input_axes, resize_matrix, retina_axes
from fastsam_onnx.nms import decode, nms
from fastsam_onnx.prompts import parse_boxes, parse_points, select_by_boxes, select_by_points

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
f32 = np.float32


# --- NMS -----------------------------------------------------------------------------------------------


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, max_det: int) -> list[int]:
    """Greedy NMS, pair by pair in float32 scalars: take the best remaining box, drop every box whose IoU
    with it is > thr (stable order on score ties)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    suppressed = set()
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        if len(keep) == max_det:
            break
        ax1, ay1, ax2, ay2 = boxes[i]
        area_i = (ax2 - ax1) * (ay2 - ay1)
        for j in order[pos + 1 :]:
            bx1, by1, bx2, by2 = boxes[j]
            w = max(min(ax2, bx2) - max(ax1, bx1), f32(0))
            h = max(min(ay2, by2) - max(ay1, by1), f32(0))
            inter = w * h
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / (area_i + (bx2 - bx1) * (by2 - by1) - inter)
            if float(iou) > thr:  # float32 IoU, compared in float64 (as torchvision's C++ kernel does)
                suppressed.add(j)
    return keep


coord = st.floats(0, 100, width=32)


@st.composite
def box_sets(draw, max_n=40):
    n = draw(st.integers(0, max_n))
    grid = draw(st.booleans())  # coarse grid coordinates: many exact ties and duplicates
    el = st.integers(0, 8).map(lambda v: v * 8.0) if grid else coord
    xy = draw(hnp.arrays(f32, (n, 2), elements=el))
    wh = draw(hnp.arrays(f32, (n, 2), elements=st.integers(0, 4).map(lambda v: v * 8.0) if grid else st.floats(0, 60, width=32)))
    scores = draw(hnp.arrays(f32, n, elements=st.sampled_from([0.5, 0.25, 0.75]) if grid else st.floats(0, 1, width=32)))
    return np.concatenate([xy, xy + wh], 1).astype(f32), scores


@SETTINGS
@given(box_sets(), st.floats(0, 1), st.integers(1, 50))
def test_nms_matches_reference(bs, thr, max_det):
    boxes, scores = bs
    np.testing.assert_array_equal(nms(boxes, scores, thr, max_det), reference_nms(boxes, scores, thr, max_det))


@SETTINGS
@given(st.integers(0, 60), st.floats(0, 1), st.floats(0, 1), st.integers(1, 30), st.integers(1, 80), st.data())
def test_decode_matches_reference(a, conf, thr, max_det, max_nms, data):
    out = data.draw(hnp.arrays(f32, (37, a), elements=st.floats(-5, 100, width=32)))
    out[4] = data.draw(hnp.arrays(f32, a, elements=st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1, width=32)))
    det = decode(out, conf=conf, iou=thr, max_det=max_det, max_nms=max_nms)
    cand = [i for i in sorted(range(a), key=lambda i: -out[4, i]) if out[4, i] > conf][:max_nms]
    cx, cy, w, h = (out[k, cand] for k in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(f32).reshape(-1, 4)
    # the reference keeps candidates in index order before NMS; scores decide the NMS order
    by_index = sorted(range(len(cand)), key=lambda k: cand[k])
    keep = reference_nms(boxes[by_index], out[4, cand][by_index], thr, max_det)
    idx = [cand[by_index[k]] for k in keep]
    np.testing.assert_array_equal(det.scores, out[4, idx])
    np.testing.assert_array_equal(det.coeffs, out[5:, idx].T.reshape(-1, 32))
    np.testing.assert_array_equal(det.boxes, boxes[by_index][keep].reshape(-1, 4))


# --- masks ---------------------------------------------------------------------------------------------


def dense(axis, n_in: int) -> np.ndarray:
    """An :class:`Axis` as its dense (out, n_in) matrix (scatter-add of its taps)."""
    m = np.zeros((len(axis.idx), n_in), np.float64)
    np.add.at(m, (np.repeat(np.arange(len(axis.idx)), axis.idx.shape[1]), axis.idx.ravel()), axis.w.ravel())
    return m


def check_crops(protos, coeffs, boxes, ay, ax, my, mx):
    """crop_masks vs full-canvas masks = My @ (coeffs @ protos) @ Mx.T > 0, cropped by box_span.

    Pixels whose dense logit is within 1e-4 of 0 may differ by float summation order and are not compared."""
    crops = crop_masks(protos, coeffs, boxes, ay, ax)
    logits = np.einsum("nc,chw->nhw", coeffs.astype(np.float64), protos.astype(np.float64))
    full = np.einsum("Hh,nhw,Ww->nHW", my, logits, mx)
    H, W = full.shape[1:]
    for crop, f, (x1, y1, x2, y2) in zip(crops, full, boxes.tolist()):
        r0, r1 = box_span(y1, y2, H)
        c0, c1 = box_span(x1, x2, W)
        expect = np.zeros((H, W), bool)
        sure = np.ones((H, W), bool)
        expect[r0:r1, c0:c1] = f[r0:r1, c0:c1] > 0
        sure[r0:r1, c0:c1] = np.abs(f[r0:r1, c0:c1]) > 1e-4
        got = np.zeros((H, W), bool)
        if crop is not None:
            got[crop.y0 : crop.y0 + crop.mask.shape[0], crop.x0 : crop.x0 + crop.mask.shape[1]] = crop.mask
        elif sure.all():
            assert not expect.any()
        np.testing.assert_array_equal(got[sure], expect[sure])


@st.composite
def mask_case(draw):
    mh, mw, n = draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(0, 5))
    protos = draw(hnp.arrays(f32, (4, mh, mw), elements=st.floats(-2, 2, width=32)))
    coeffs = draw(hnp.arrays(f32, (n, 4), elements=st.floats(-2, 2, width=32)))
    return protos, coeffs


@st.composite
def boxes_on(draw, n, h, w):
    x = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(-5, w + 5)))
    y = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(-5, h + 5)))
    x.sort(1)
    y.sort(1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(f32)


@SETTINGS
@given(mask_case(), st.data())
def test_crop_masks_input_size(case, data):
    protos, coeffs = case
    H, W = 4 * protos.shape[1], 4 * protos.shape[2]
    boxes = data.draw(boxes_on(len(coeffs), H, W))
    ay, ax = input_axes(protos.shape[1:], (H, W))
    check_crops(protos, coeffs, boxes, ay, ax, resize_matrix(protos.shape[1], H), resize_matrix(protos.shape[2], W))


@SETTINGS
@given(mask_case(), st.integers(1, 70), st.integers(1, 70), st.data())
def test_crop_masks_retina(case, h0, w0, data):
    protos, coeffs = case
    boxes = data.draw(boxes_on(len(coeffs), h0, w0))
    ay, ax = retina_axes(protos.shape[1:], (h0, w0))
    check_crops(protos, coeffs, boxes, ay, ax, dense(ay, protos.shape[1]), dense(ax, protos.shape[2]))


# --- prompts -------------------------------------------------------------------------------------------


@st.composite
def crop_sets(draw):
    h, w, n = draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(1, 6))
    crops, full = [], np.zeros((n, h, w), bool)
    for i in range(n):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        m = draw(hnp.arrays(bool, (draw(st.integers(1, h - y0)), draw(st.integers(1, w - x0)))))
        crops.append(MaskCrop(x0, y0, m))
        full[i, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
    return crops, full


@SETTINGS
@given(crop_sets(), st.data())
def test_select_by_boxes_matches_dense(cs, data):
    crops, full = cs
    n, h, w = full.shape
    raw = data.draw(boxes_on(data.draw(st.integers(1, 4)), h, w)).astype(np.float64)
    boxes = parse_boxes(raw, (h, w))
    areas = full.sum((1, 2))
    expect = []
    for x1, y1, x2, y2 in boxes.tolist():
        inter = full[:, y1:y2, x1:x2].sum((1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter.astype(f32) / ((x2 - x1) * (y2 - y1) + areas - inter).astype(f32)
        expect.append(int(np.argmax(iou)))
    np.testing.assert_array_equal(select_by_boxes(crops, boxes), expect)


@SETTINGS
@given(crop_sets(), st.data())
def test_select_by_points_matches_dense(cs, data):
    crops, full = cs
    n, h, w = full.shape
    k = data.draw(st.integers(1, 5))
    pts = data.draw(hnp.arrays(np.float64, (k, 2), elements=st.floats(-10, 40)))
    labels = data.draw(hnp.arrays(np.int64, k, elements=st.integers(0, 1)))
    coords, lab = parse_points(pts, labels, (h, w))
    hit = full[:, coords[:, 1], coords[:, 0]]  # (n, k)
    pos = hit[:, lab == 1].any(1) if (lab == 1).any() else np.ones(n, bool)
    np.testing.assert_array_equal(select_by_points(crops, coords, lab), pos & ~hit[:, lab == 0].any(1))


# --- the public API ------------------------------------------------------------------------------------

FUZZ_RUNS = int(os.environ.get("FASTSAM_FUZZ_RUNS", "10000"))


def pick(rng, options):
    """One of ``options`` (any objects; ``rng.choice`` would build an array of them)."""
    return options[int(rng.integers(len(options)))]


def _random_image(rng):
    kind = rng.integers(0, 20)
    if kind == 0:
        return pick(rng, [None, 3, "", "no/such/file.png", [[1, 2]], b"xx", np.float64(1.0)])
    hi = 160 if rng.random() < 0.05 else 40  # a few bigger images: masks over 100 px reach CLIP
    h, w = int(rng.integers(0, hi)), int(rng.integers(0, hi))
    ch = pick(rng, [0, 1, 2, 3, 3, 3, 4, 5])
    shape = (h, w) if ch == 0 else (h, w, int(ch))
    if rng.random() < 0.03:
        shape = tuple(int(v) for v in rng.integers(0, 6, rng.integers(0, 5)))
    dtype = pick(rng, [np.uint8] * 6 + [np.uint16, np.uint16, np.float32, np.int8, np.bool_, np.float64])
    im = (rng.random(shape) * 300).astype(dtype)
    r = rng.random()
    if r < 0.1 and im.ndim >= 2:
        im = im[::-1, ::2]
    elif r < 0.2:
        im.setflags(write=False)
    elif r < 0.25:
        im = np.asfortranarray(im)
    return im


def _garbage_value(rng, h, w):
    kind = rng.integers(0, 12)
    if kind == 0:
        return None
    if kind == 1:
        return "garbage"
    if kind == 2:
        return [float("nan")] * int(rng.integers(1, 5))
    if kind == 3:
        return rng.normal(0, 1e12, rng.integers(0, 4, rng.integers(0, 4))).tolist()
    if kind == 4:
        return [[1, 2, 3], [4, 5]]
    if kind == 5:
        return {"x": 1}
    if kind == 6:
        return [float("inf"), 1, 2, 3]
    return None


def _random_prompts(rng, h, w):
    kw = {}
    r = rng.random()
    if r < 0.35:
        k = int(rng.integers(1, 4))
        x = np.sort(rng.uniform(-5, w + 5, (k, 2)), 1)
        y = np.sort(rng.uniform(-5, h + 5, (k, 2)), 1)
        kw["bboxes"] = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1) if rng.random() < 0.9 else rng.normal(0, 50, (k, 4))
    elif r < 0.5:
        kw["bboxes"] = _garbage_value(rng, h, w)
    if rng.random() < 0.4:
        k = int(rng.integers(1, 4))
        kw["points"] = rng.uniform(-5, max(w, 1) + 5, (k, 2))
        if rng.random() < 0.7:
            kw["labels"] = rng.integers(-1, 3, k if rng.random() < 0.9 else k + 1)
    elif rng.random() < 0.1:
        kw["points"], kw["labels"] = _garbage_value(rng, h, w), _garbage_value(rng, h, w)
    if rng.random() < 0.15:
        kw["texts"] = pick(rng, ["a dog", "", "   ", ["x", 3], [], ["ok", "fine"], 7])
    if rng.random() < 0.1:
        kw["point_mode"] = pick(rng, ["select", "merge", "bogus"])
    if rng.random() < 0.05:
        kw["text_mode"] = pick(rng, ["select", "original", None])
    return kw


@pytest.fixture(scope="module")
def small(cache_dir):
    from smallmodel import small_demo_bundle

    from fastsam_onnx import FastSAM

    return FastSAM(small_demo_bundle(cache_dir))


def test_public_api_fuzz(small):
    """FUZZ_RUNS (10,000) random inputs: each one segment call (random image, settings) and, when it
    succeeds, one prompt call with random, often malformed, prompts. Only FastSAMError may escape."""
    rng = np.random.default_rng(20261125)
    outcomes = {"ok": 0, "typed": 0}
    clip_calls = []
    try:  # count the prompts that reach CLIP (none when the demo CLIP bundle is not built: BadModelError)
        real_similarity = small.clip.similarity
        small.clip.similarity = lambda *a, **k: clip_calls.append(1) or real_similarity(*a, **k)
    except FastSAMError:
        pass
    t0 = time.perf_counter()
    warnings.simplefilter("ignore")  # pytest restores the filters after the test
    for run in range(FUZZ_RUNS):
        im = _random_image(rng)
        settings_kw = {}
        if rng.random() < 0.2:
            settings_kw = {
                "conf": float(pick(rng, [0.0, 0.01, 0.5, 0.9999, 1.0, -1, 2, np.nan])),
                "iou": float(pick(rng, [0.0, 0.5, 1.0, 1.5])),
                "max_det": int(pick(rng, [1, 3, 300, 0, -2])),
                "retina_masks": bool(rng.random() < 0.5),
            }
            if rng.random() < 0.3:
                settings_kw["imgsz"] = pick(rng, [32, 64, 33, 0, -5, (32, 96)])
        kw = _random_prompts(rng, 40, 40)
        try:
            result = small.segment(im, **settings_kw)
            assert result.masks.shape == (len(result), *result.mask_shape)
            if kw:
                out = small.prompt(result, **kw)
                assert out.masks.shape[1:] == out.mask_shape
            outcomes["ok"] += 1
        except FastSAMError:
            outcomes["typed"] += 1
        except Exception as e:  # pragma: no cover - the failure report
            raise AssertionError(f"run {run}: {type(e).__name__}: {e}\nimage: {getattr(im, 'shape', im)!r} "
                                 f"{getattr(im, 'dtype', '')}, settings {settings_kw}") from e
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: {FUZZ_RUNS} runs in {elapsed:.1f} s: {outcomes}, {len(clip_calls)} CLIP calls")
    assert outcomes["ok"] > FUZZ_RUNS // 5 and outcomes["typed"] > FUZZ_RUNS // 20

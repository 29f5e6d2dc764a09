"""Edge maps against an independent reference: the SAM recipe written out plainly on full canvases.

The engine (:mod:`fastsam_onnx.outputs.edges`) packs crops onto shared canvases, batches them, runs Sobel and
the band as one call per batch, keeps the maximum with ``np.maximum.at`` and thins with flat-index tricks. The
reference below does none of that: per instance one full-size float64 probability map, a Sobel written as
a 3 × 3 sum of shifted copies (replicated border), the boundary as "differs from a 4-neighbour", the band as
a Chebyshev dilation by explicit shifts, then a pixel-wise maximum over instances keeping the winner's
direction (ties: the smallest code), non-maximum suppression along the direction quantised from the gradient
angle, and a division by the maximum. It follows the choices written in the module docstring of
:mod:`fastsam_onnx.outputs.edges` and calls none of the module's helpers. The full-size logits come from the
mask pipeline's resize axes (:mod:`fastsam_onnx.masks`, checked against ultralytics elsewhere) as plain dense
matrices.

Cases: trained masks (the demo model on its example image and on a non-square copy of it, retina and
letterboxed, the map of ``segment(edges=True)`` and the one ``result.edges()`` recomputes, bands 0-2), and
ragged masks on :class:`EdgeCanvas` (noise logits, crops cut by the image frame or partly outside it, holes,
probabilities with a mask of their own, binary probabilities whose overlapping instances tie, several bands,
one batch and many). Maps must agree within 1e-6 everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.masks import input_axes, retina_axes, unpad_axes
from fastsam_onnx.models import demo_bundle, example_image
from fastsam_onnx.outputs import edges as edges_module
from fastsam_onnx.outputs.edges import EdgeCanvas

ATOL = 1e-6
#: neighbour offset (dy, dx) along the gradient, per direction code: 1 horizontal gradient (0°), 2 diagonal
#: (45°: x right, y down), 3 vertical (90°), 4 anti-diagonal (135°)
OFFSETS = {1: (0, 1), 2: (1, 1), 3: (1, 0), 4: (1, -1)}


# ------------------------------------------------------------------------------------------------ the reference


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The probability as the module docstring fixes it: (1 + tanh(x / 2)) / 2 with tanh in float32, so that
    it saturates to exactly 0 and 1 (below about 3e-8 from them) as the engine's does; the rest in float64.
    (With a float64 tanh, steep logits make 2-px plateaus whose two sides differ by ~1e-9: the thinning
    then keeps the other pixel of the pair than the engine, a tie decided by rounding, not by the recipe.)"""
    t = np.tanh(np.asarray(x, np.float32) * np.float32(0.5))
    return 0.5 * (1.0 + t.astype(np.float64))


def shifted(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """b[y, x] = a[y + dy, x + dx], ``fill`` where that is outside ``a``."""
    H, W = a.shape
    out = np.full_like(a, fill)
    ys, yd = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
    xs, xd = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
    out[yd, xd] = a[ys, xs]
    return out


def sobel(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3 × 3 Sobel (gx: right minus left, gy: down minus up) with the image's border replicated."""
    q = np.pad(p, 1, mode="edge")
    H, W = p.shape

    def at(dy: int, dx: int) -> np.ndarray:
        return q[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return gx, gy


def band_of(mask: np.ndarray, band: int) -> np.ndarray:
    """Pixels within ``band`` px (Chebyshev) of a boundary pixel: one whose mask value differs from one of its
    4-neighbours inside the image (both sides of every transition; the image frame is no boundary)."""
    m = mask.astype(bool)
    boundary = np.zeros_like(m)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        inside = shifted(np.ones_like(m), dy, dx, False)
        boundary |= inside & (m != shifted(m, dy, dx, False))
    out = np.zeros_like(m)
    for dy in range(-band, band + 1):
        for dx in range(-band, band + 1):
            out |= shifted(boundary, dy, dx, False)
    return out


def direction_codes(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The gradient's angle (degrees, mod 180) quantised to the nearest of 0°, 45°, 90°, 135°: codes 1-4."""
    theta = np.degrees(np.arctan2(gy, gx)) % 180.0
    return np.select([theta < 22.5, theta < 67.5, theta < 112.5, theta < 157.5], [1, 2, 3, 4], 1).astype(np.uint8)


def reference_edges(shape: tuple[int, int], instances, band: int, tie=np.minimum) -> np.ndarray:
    """The edge map of ``instances``, each (probability (H, W), mask (H, W)) on the full canvas.

    The magnitudes are kept as float32, as the module docstring's "(H, W) float32 canvas" says: the thinning
    compares them, and a step of saturated probabilities makes a 2-px plateau whose two sides are equal in
    float32 (4.0 and 3.99999994 in float64): which pixel of it survives is part of the recipe (the one that
    is > its + neighbour and >= its - neighbour), and float32 decides whether it is a plateau. ``tie``: the
    direction kept between equal magnitudes (the recipe's smallest code; another rule shows that a case
    has ties that matter)."""
    best = np.zeros(shape, np.float64)
    code = np.zeros(shape, np.uint8)
    for prob, mask in instances:
        gx, gy = sobel(np.asarray(prob, np.float64))
        mag = np.where(band_of(mask, band), np.hypot(gx, gy).astype(np.float32), 0.0)
        d = direction_codes(gx, gy)
        higher = mag > best
        tied = (mag == best) & (mag > 0)
        code = np.where(higher, d, np.where(tied, tie(code, d), code))
        best = np.where(higher, mag, best)
    keep = np.zeros(shape, bool)
    for c, (dy, dx) in OFFSETS.items():
        ahead, behind = shifted(best, dy, dx, 0.0), shifted(best, -dy, -dx, 0.0)
        keep |= (code == c) & (best > ahead) & (best >= behind)
    thin = np.where(keep & (best > 0), best, 0.0)
    return thin / thin.max() if thin.max() > 0 else thin


def on_canvas(shape: tuple[int, int], x0: int, y0: int, crop: np.ndarray, fill=0) -> np.ndarray:
    """``crop`` placed with its top-left at column ``x0``, row ``y0`` of a full canvas (the part that is on it)."""
    H, W = shape
    out = np.full(shape, fill, dtype=crop.dtype)
    h, w = crop.shape
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, H), min(x0 + w, W)
    if ys < ye and xs < xe:
        out[ys:ye, xs:xe] = crop[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


def dense(axis, n_in: int) -> np.ndarray:
    """A resize axis (sparse taps) from ``n_in`` inputs as a dense float64 (out, n_in) matrix."""
    m = np.zeros((len(axis.idx), n_in), np.float64)
    rows = np.repeat(np.arange(len(axis.idx)), axis.idx.shape[1])
    np.add.at(m, (rows, axis.idx.ravel()), axis.w.ravel().astype(np.float64))
    return m


def result_instances(result):
    """Per instance of a ``segment`` result: (probability, mask) on the original image's full canvas.

    Full-size logits = Ay · (coefficients · prototypes) · Axᵀ on the mask canvas (dense matrices of the
    pipeline's resize axes), zero probability outside the instance's box crop. Retina masks: the mask is
    logit > 0. Letterboxed: probability (zero outside the crop) resized to the original size with the axes
    of ``Result.original_crops``; the mask is the result's own original-size mask."""
    protos, coeffs, retina = result._logits
    H, W = result.mask_shape
    if retina:
        ay, ax = retina_axes(protos.shape[1:], result.orig_shape)
    else:
        ay, ax = input_axes(protos.shape[1:], result.mask_shape)
    Ay, Ax = dense(ay, protos.shape[1]), dense(ax, protos.shape[2])
    P = protos.astype(np.float64)
    out = []
    originals = result.original_crops()
    if not retina:  # input canvas -> original image
        uy, ux = (dense(a, n) for a, n in zip(unpad_axes(tuple(result.mask_shape), tuple(result.orig_shape)), (H, W)))
    for i, (coef, (x0, y0, m)) in enumerate(zip(np.asarray(coeffs, np.float64), result.crops)):
        logits = Ay @ np.tensordot(coef, P, axes=1) @ Ax.T
        inside = on_canvas((H, W), x0, y0, np.ones(m.shape, bool), False)
        prob = np.where(inside, sigmoid(logits), 0.0)
        if retina:
            out.append((prob, inside & (logits > 0)))
        else:
            ox, oy, om = originals[i]
            out.append((uy @ prob @ ux.T, on_canvas(result.orig_shape, ox, oy, om, False)))
    return out


def compare(engine: np.ndarray, reference: np.ndarray, what: str) -> float:
    """Max |engine - reference|; fails, saying how many pixels differ, beyond :data:`ATOL`."""
    assert engine.shape == reference.shape and engine.dtype == np.float32, what
    diff = np.abs(engine.astype(np.float64) - reference)
    bad = diff > ATOL
    ys, xs = np.nonzero(bad)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} pixels differ by more than {ATOL} "
                           f"(max {diff.max():.3g}; first at (y, x) {list(zip(ys[:5].tolist(), xs[:5].tolist()))})")
    return float(diff.max())


# ------------------------------------------------------------------------------------------ trained masks


@pytest.fixture(scope="module")
def model():
    return FastSAM(demo_bundle())


def _images():
    img = cv2.imread(str(example_image()))
    return {"example": img, "example-450x300": cv2.resize(img, (450, 300), interpolation=cv2.INTER_AREA)}


@pytest.mark.parametrize("retina", [True, False], ids=["retina", "letterboxed"])
@pytest.mark.parametrize("name", ["example", "example-450x300"])
def test_trained_masks_match_the_reference(model, name, retina):
    image = _images()[name]
    r = model.segment(image, retina_masks=retina, edges=True)
    assert len(r) >= 10, len(r)
    instances = result_instances(r)
    worst = {}
    for band in (1, 0, 2):
        ref = reference_edges(r.orig_shape, instances, band)
        assert ref.max() == 1.0 and 0.005 < (ref > 0).mean() < 0.2  # a real map: thin lines, not nothing
        if band == 1:
            worst["in the pass"] = compare(r.edges(), ref, f"{name} retina={retina} segment(edges=True)")
            fresh = model.segment(image, retina_masks=retina)  # no map made in the pass: recomputed
            worst["recomputed"] = compare(fresh.edges(), ref, f"{name} retina={retina} result.edges()")
        else:
            worst[f"band {band}"] = compare(r.edges(band=band), ref, f"{name} retina={retina} band {band}")
    print(f"\n{name} {'retina' if retina else 'letterboxed'}: {len(r)} instances, max |engine - reference| {worst}")


# ------------------------------------------------------------------------------------------ ragged masks


def _noise(rng, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth noise logits of about ``scale`` in magnitude: ragged masks with holes and islands."""
    small = rng.normal(0, 1, (max(h // 4, 2), max(w // 4, 2)))
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (scale * up + rng.normal(0, 0.3 * scale, (h, w))).astype(np.float32)


def _ragged(rng, shape, n: int):
    """n instances as (kind, x0, y0, values, mask or None): logits, or probabilities with a mask of their own;
    many crops touch the image frame, some stick out of it, one lies wholly outside."""
    H, W = shape
    items = []
    for i in range(n):
        h, w = int(rng.integers(3, H // 2)), int(rng.integers(3, W // 2))
        where = i % 5
        if where == 0:  # sticks out top-left
            x0, y0 = -int(rng.integers(1, w)), -int(rng.integers(1, h))
        elif where == 1:  # sticks out bottom-right
            x0, y0 = W - int(rng.integers(1, w)), H - int(rng.integers(1, h))
        elif where == 2:  # touches the left and bottom frame exactly
            x0, y0 = 0, H - h
        else:
            x0, y0 = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        logits = _noise(rng, h, w, float(rng.choice([0.5, 3.0, 20.0])))
        if i % 3 == 2:  # a probability map and a mask that is not simply prob > 0.5
            items.append(("prob", x0, y0, 1 / (1 + np.exp(-logits)), _noise(rng, h, w, 1.0) > -0.3))
        else:
            items.append(("logits", x0, y0, logits, None))
    items.append(("logits", W + 5, 2, _noise(rng, 6, 6, 3.0), None))  # wholly outside: ignored
    return items


def _engine(shape, items, band: int) -> np.ndarray:
    canvas = EdgeCanvas(shape, band)
    for kind, x0, y0, values, mask in items:
        if kind == "logits":
            canvas.add_logits(x0, y0, values)
        else:
            canvas.add(x0, y0, values, mask)
    return canvas.finish()


def _reference(shape, items, band: int) -> np.ndarray:
    instances = []
    for kind, x0, y0, values, mask in items:
        inside = on_canvas(shape, x0, y0, np.ones(values.shape, bool), False)
        if kind == "logits":
            v = on_canvas(shape, x0, y0, values.astype(np.float64))
            instances.append((np.where(inside, sigmoid(v), 0.0), inside & (v > 0)))
        else:
            instances.append((on_canvas(shape, x0, y0, values.astype(np.float64)), on_canvas(shape, x0, y0, mask, False)))
    return reference_edges(shape, instances, band)


@pytest.mark.parametrize("band", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ragged_masks_match_the_reference(band, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(40, 120)), int(rng.integers(40, 160)))
    items = _ragged(rng, shape, 14)
    ref = _reference(shape, items, band)
    assert ref.max() == 1.0 and (ref > 0).sum() > 100
    worst = compare(_engine(shape, items, band), ref, f"seed {seed} band {band}, one batch")
    monkeypatch.setattr(edges_module, "BATCH_PIXELS", 1)  # every instance a batch of its own
    worst_batched = compare(_engine(shape, items, band), ref, f"seed {seed} band {band}, a batch per instance")
    print(f"\nragged seed {seed} band {band} {shape}: max |engine - reference| {worst:.2g} (one batch), "
          f"{worst_batched:.2g} (a batch per instance)")


def _binary(rng, shape, n: int):
    """n overlapping binary instances (0/1 probability, mask = probability): discs and striped blocks, so that
    Sobel magnitudes are few exact values (square roots of integers) and overlapping instances tie."""
    items = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(4, 20, 2))
        yy, xx = np.mgrid[:h, :w]
        if i % 2:
            m = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) < 1
        else:
            m = (yy + xx * int(rng.integers(0, 3))) % 7 < 4
        x0, y0 = int(rng.integers(-3, shape[1] - 3)), int(rng.integers(-3, shape[0] - 3))
        items.append(("prob", x0, y0, m.astype(np.float32), m))
    return items


@pytest.mark.parametrize("seed", [0, 10, 18])
def test_tied_binary_instances_keep_the_smallest_direction_code(seed):
    """Binary probabilities give exact ties between overlapping instances with different directions: the
    winner's direction is the smallest code, whatever the order the instances come in (these seeds have
    ties that change the map: keeping the largest code instead gives another one)."""
    shape = (40, 50)
    items = _binary(np.random.default_rng(seed), shape, 8)
    for band in (0, 1):
        ref = _reference(shape, items, band)
        instances = [(on_canvas(shape, x0, y0, v.astype(np.float64)), on_canvas(shape, x0, y0, m, False))
                     for _, x0, y0, v, m in items]
        assert (np.abs(reference_edges(shape, instances, band, tie=np.maximum) - ref) > ATOL).any()
        for order in (items, items[::-1], items[3:] + items[:3]):
            compare(_engine(shape, order, band), ref, f"binary ties, seed {seed}, band {band}")

"""COCO RLE: pycocotools decodes our encoding to the same mask."""

import numpy as np
import pytest

from fastsam_onnx.outputs.rle import decode_rle, encode_rle

mask_utils = pytest.importorskip("pycocotools.mask")


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 48), (300, 200)])
@pytest.mark.parametrize("fill", ["random", "empty", "full", "first-on"])
def test_pycocotools_roundtrip(shape, fill):
    rng = np.random.default_rng(shape[0])
    m = {"random": rng.random(shape) > 0.6, "empty": np.zeros(shape, bool), "full": np.ones(shape, bool)}.get(fill)
    if m is None:
        m = np.zeros(shape, bool)
        m[0, 0] = True
    rle = encode_rle(m)
    coco = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), m)
    assert int(mask_utils.area(coco)) == int(m.sum())
    np.testing.assert_array_equal(decode_rle(rle), m)

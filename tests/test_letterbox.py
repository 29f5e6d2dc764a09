"""Letterbox geometry and pixels against ultralytics' LetterBox."""

import numpy as np
import pytest

from fastsam_onnx.letterbox import letterbox, letterbox_geometry, to_tensor

LetterBox = pytest.importorskip("ultralytics.data.augment").LetterBox

SHAPES = [(1080, 810), (720, 1280), (1, 1), (3, 5000), (4512, 4512), (333, 517), (1023, 1025), (640, 480), (17, 1024)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("new", [(640, 640), (1024, 1024), (512, 512)])
@pytest.mark.parametrize("auto", [False, True])
def test_letterbox_matches_reference(shape, new, auto):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ref = LetterBox(new, auto=auto, stride=32)(image=img)
    lb = letterbox_geometry(shape, new, auto=auto, stride=32)
    ours = letterbox(img, lb)
    assert ours.shape == ref.shape == (*lb.input_shape, 3)
    np.testing.assert_array_equal(ours, ref)


def test_to_tensor_matches_reference_division():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    ref = torch.from_numpy(img)[None].permute(0, 3, 1, 2).flip(1).float().div_(255).numpy()
    np.testing.assert_array_equal(to_tensor(img), ref)
    assert to_tensor(img, np.float16).dtype == np.float16

"""The README's text-prompt examples name objects that are in the example image, and the demo CLIP finds them."""

import re
from pathlib import Path

import numpy as np
import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.models import example_image
from fastsam_onnx.models.synth import COLORS, SHAPES

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_texts() -> list[str]:
    """Every text prompt the README's examples use: ``--text "..."`` and ``texts=[...]`` lists."""
    s = README.read_text()
    found = re.findall(r'--text "([^"]+)"', s)
    for group in re.findall(r"texts=\[([^\]]*)\]", s):
        found += re.findall(r'"([^"]+)"', group)
    return list(dict.fromkeys(found))


def test_readme_has_text_examples():
    texts = readme_texts()
    assert len(texts) >= 2, texts
    for t in texts:
        colour, shape = t.split()[-2:]
        assert colour in COLORS and shape in SHAPES, f"README example {t!r} is not a demo-world object"


@pytest.mark.parametrize("text", readme_texts())
def test_readme_text_example_picks_that_object(text):
    """The picked instance's mean colour in the example image is closest to the named colour."""
    model = FastSAM()
    result = model.segment(str(example_image()), texts=[text])
    assert len(result) == 1, f"{text!r} picked {len(result)} instances"
    img = result.orig_img.astype(np.float32)
    mean = img[result.mask(0)].mean(axis=0)
    colour = text.split()[-2]
    nearest = min(COLORS, key=lambda c: float(np.linalg.norm(mean - np.array(COLORS[c], np.float32))))
    assert nearest == colour, f"{text!r} picked an instance of mean BGR {mean.round()} ({nearest})"

"""Instance embeddings: ``Result.embeddings(clip)`` gives one L2-normalised CLIP row per instance (the masked crop
the text prompt uses, small instances included), cached on the result; ``segment --embeddings out.npy``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fastsam_onnx import BadArgumentError, FastSAM, Result
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.models import example_image


@pytest.fixture(scope="module")
def model():
    return FastSAM()


@pytest.fixture(scope="module")
def everything(model):
    return model.segment(str(example_image()))


def _with_small_instances(r: Result) -> Result:
    """``r`` plus a 25 px instance (no text candidate) and one whose box is under 1 px wide (an empty int box)."""
    tiny = MaskCrop(10, 12, np.ones((5, 5), bool))
    thin = MaskCrop(300, 40, np.ones((12, 1), bool))
    boxes = np.concatenate([r.boxes, [[10, 12, 15, 17], [300.2, 40, 300.8, 52]]]).astype(np.float32)
    scores = np.concatenate([r.scores, [0.5, 0.45]]).astype(np.float32)
    return Result(boxes, scores, [*r.crops, tiny, thin], r.mask_shape, r.orig_shape, orig_img=r.orig_img)


def test_a_row_for_every_instance(model, everything):
    r = _with_small_instances(everything)
    emb = r.embeddings(model.clip)
    assert emb.shape == (len(r), model.clip.embed_dim) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    feats, keep = r.text_crop_embeddings(model.clip)
    assert len(keep) < len(r) - 1  # the two added instances and the example's own small ones are no text candidates
    assert np.array_equal(emb[keep], feats)  # the text prompt's rows, as they are
    rgb = cv2.cvtColor(r.orig_img, cv2.COLOR_BGR2RGB)
    expected = model.clip.encode_images([rgb[12:17, 10:15], rgb[40:52, 300:301]])  # masks fill their crops
    assert np.allclose(emb[-2:], expected, atol=1e-6)
    assert not np.allclose(emb[-1], emb[-2])


def test_encoded_once_cached_and_returned_as_a_copy(model, everything, monkeypatch):
    r = _with_small_instances(everything)
    calls = []
    real = model.clip.encode_images
    monkeypatch.setattr(model.clip, "encode_images", lambda images, *a, **k: calls.append(len(images)) or real(images, *a, **k))
    first = r.embeddings(model.clip)
    n_keep = len(r.text_crop_embeddings(model.clip)[1])
    assert calls == [n_keep, len(r) - n_keep]  # the text candidates, then only the rest
    first[:] = 0
    again = r.embeddings(model.clip)
    model.prompt(r, texts=["blue rectangle"])  # a text prompt reuses the same crop embeddings
    assert len(calls) == 2 and np.allclose(np.linalg.norm(again, axis=1), 1, atol=1e-5)


def test_dot_products_are_the_text_prompt_similarities(model, everything):
    emb = everything.embeddings(model.clip)
    text = model.clip.encode_texts(["yellow pentagon"])[0]
    feats, keep = everything.text_crop_embeddings(model.clip)
    picked = model.prompt(everything, texts=["yellow pentagon"])
    best = keep[int(np.argmax(emb[keep] @ text))]  # cosine = dot product: rows are unit vectors
    assert picked.boxes.tolist() == [everything.boxes[best].tolist()]
    assert np.allclose(emb[keep] @ text, feats @ text, atol=1e-6)


def test_empty_results_and_results_without_an_image(model, everything):
    empty = everything.select([])
    assert empty.embeddings(model.clip).shape == (0, model.clip.embed_dim)
    no_image = Result(everything.boxes, everything.scores, everything.crops, everything.mask_shape, everything.orig_shape)
    with pytest.raises(BadArgumentError):
        no_image.embeddings(model.clip)


def test_cli_embeddings(model, everything, tmp_path):
    from fastsam_onnx.cli import main

    image, out, npy = str(example_image()), tmp_path / "r.json", tmp_path / "e.npy"
    assert main(["segment", image, "--json", str(out), "--embeddings", str(npy)]) == 0
    emb, data = np.load(npy), json.loads(out.read_text())
    assert emb.shape == (len(data["instances"]), model.clip.embed_dim) and emb.dtype == np.float32
    assert np.allclose(emb, everything.embeddings(model.clip), atol=1e-6)  # row i = instance i of the JSON
    assert main(["segment", image, "--json", str(out), "--embeddings", str(npy), "--text", "yellow pentagon"]) == 0
    (inst,) = json.loads(out.read_text())["instances"]
    i = int(np.argmin(np.abs(everything.boxes - np.array(inst["box"])).max(1)))  # the instance the text picked
    assert np.abs(everything.boxes[i] - inst["box"]).max() < 1e-2
    assert np.allclose(np.load(npy), everything.embeddings(model.clip)[[i]], atol=1e-6)  # the selected instance's row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "r.json"]  # atomic writes leave no temporary files
    assert main(["segment", image, "--embeddings", str(tmp_path / "missing" / "e.npy")]) == 2  # checked before the run
    assert main(["segment", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--embeddings", str(npy)]) == 2  # one image only

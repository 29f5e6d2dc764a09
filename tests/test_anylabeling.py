"""X-AnyLabeling's remote-server protocol: the translation in-process, then X-AnyLabeling's own client code
(``x-anylabeling-cvhub`` 4.x, ``RemoteServer``) driven headless against a real ``fastsam-onnx serve`` process.

The client runs in a separate virtualenv (it pins PyQt6 and would change this one's packages): ``.ci/run``
creates it and sets ``$FASTSAM_XAL_PYTHON``; without that variable the client test is skipped (CI sets it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.server.anylabeling import marks_to_prompts  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402
from serverkit import EXAMPLE, serve_process  # noqa: E402

URI = "data:image/jpeg;base64," + base64.b64encode(EXAMPLE.read_bytes()).decode()


@pytest.fixture(scope="module")
def model():
    return FastSAM()


@pytest.fixture(scope="module")
def everything(model):
    return model.segment(str(EXAMPLE))


@pytest.fixture()
def client(model):
    cfg = ServerConfig(api_key="k")
    return TestClient(create_app(cfg, Engine(cfg, model=model)), base_url="http://127.0.0.1", headers={"Token": "k"})


def predict(client, **params):
    r = client.post("/v1/predict", json={"model": "fastsam", "image": URI, "params": {
        "conf_threshold": 0.4, "iou_threshold": 0.9, "epsilon_factor": 0.001, **params}})
    assert r.status_code == 200, r.text
    return r.json()["data"]["shapes"]


def inside(result, i):
    ys, xs = np.nonzero(result.mask(i))
    return [int(xs[len(xs) // 2]), int(ys[len(ys) // 2])]


def test_models_advertise_fastsam_widgets(client):
    r = client.get("/v1/models")
    info = r.json()["data"]["fastsam"]
    names = {w["name"] for w in info["widgets"]}
    assert {"button_add_point", "button_add_rect", "edit_text", "edit_conf", "edit_iou", "mask_fineness_slider"} <= names
    assert [t["id"] for t in info["available_tasks"]] == ["segment", "detect"]
    assert TestClient(client.app, base_url="http://127.0.0.1").get("/v1/models").status_code == 401  # Token needed


def test_everything_point_box_text_shapes(client, model, everything):
    all_shapes = predict(client)
    assert len({s["group_id"] for s in all_shapes if s["group_id"] is not None}) + sum(
        s["group_id"] is None for s in all_shapes) == len(everything)
    assert all(s["shape_type"] == "polygon" and len(s["points"]) >= 3 and s["label"] == "AUTOLABEL_OBJECT" for s in all_shapes)
    p = inside(everything, 0)
    shapes = predict(client, marks=[{"type": "point", "data": p, "label": 1}])
    sel = model.prompt(everything, points=[p])
    assert len(shapes) >= len(sel) >= 1
    poly = np.array(shapes[0]["points"])
    x1, y1, x2, y2 = sel.boxes[0]
    assert x1 - 1 <= poly[:, 0].min() and poly[:, 0].max() <= x2 + 1 and y1 - 1 <= poly[:, 1].min() <= poly[:, 1].max() <= y2 + 1
    box = [float(v) for v in everything.boxes[1]]
    back = [box[2], box[3], box[0], box[1]]  # dragged from bottom-right to top-left
    rect = predict(client, marks=[{"type": "rectangle", "data": back, "label": 1}], current_task="detect")
    assert len(rect) == 1 and rect[0]["shape_type"] == "rectangle"
    assert rect[0]["points"] == [[round(box[0], 2), round(box[1], 2)], [round(box[2], 2), round(box[1], 2)],
                                 [round(box[2], 2), round(box[3], 2)], [round(box[0], 2), round(box[3], 2)]]
    text = predict(client, text_prompt="a blue rectangle, a yellow pentagon")
    assert {s["label"] for s in text} <= {"a blue rectangle", "a yellow pentagon"} and text
    coarse = predict(client, epsilon_factor=0.02)
    assert sum(len(s["points"]) for s in coarse) < sum(len(s["points"]) for s in all_shapes)


def test_bad_predicts_are_4xx_json(client):
    for params, code in (({"marks": [{"type": "rectangle", "data": [1, 2, 30, 40], "label": 0}]}, 422),
                         ({"marks": [{"type": "polygon", "data": [], "label": 1}]}, 422),
                         ({"conf_threshold": 3}, 422)):
        r = client.post("/v1/predict", json={"model": "fastsam", "image": URI, "params": params})
        assert r.status_code == code and r.json()["error"]["message"], r.text
    r = client.post("/v1/predict", json={"model": "sam3", "image": URI})
    assert r.status_code == 422
    r = client.post("/v1/predict", json={"model": "fastsam", "image": "data:image/png;base64,AAAA"})
    assert r.status_code == 400


def test_marks_translation():
    kw = marks_to_prompts([{"type": "point", "data": [1, 2], "label": 1}, {"type": "point", "data": [3, 4], "label": 0},
                           {"type": "rectangle", "data": [9, 8, 1, 2], "label": 1}], "cat, dog.,  ")
    assert kw == {"points": [[1, 2], [3, 4]], "labels": [1, 0], "bboxes": [[1, 2, 9, 8]], "texts": ["cat", "dog."]}
    assert marks_to_prompts([], None) == {}


@pytest.mark.slow
def test_the_real_x_anylabeling_client(everything, tmp_path):
    """X-AnyLabeling 4.x's RemoteServer class (its own code, PyQt6 offscreen) against `fastsam-onnx serve`."""
    python = os.environ.get("FASTSAM_XAL_PYTHON")
    if not python:
        pytest.skip("$FASTSAM_XAL_PYTHON (a virtualenv with x-anylabeling-cvhub 4.x) not set; .ci/run sets it")
    driver = Path(__file__).with_name("xal_driver.py")
    p = inside(everything, 0)
    box = [int(v) for v in everything.boxes[1]]
    with serve_process("--api-key", "xal-key") as (_proc, url):
        out = subprocess.run([python, str(driver), url, "xal-key", str(EXAMPLE), json.dumps(p), json.dumps(box)],
                             capture_output=True, text=True, timeout=240, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(res["models"]) == ["fastsam"]
    assert len(res["everything"]) >= len(everything) and all(s["shape_type"] == "polygon" for s in res["everything"])
    assert 1 <= len(res["point"]) < len(res["everything"])
    assert len(res["box"]) >= 1 and len(res["text"]) >= 1 and res["text"][0]["label"] == "a blue rectangle"
    assert [s["shape_type"] for s in res["box_as_rectangle"]] == ["rectangle"] and len(res["box_as_rectangle"][0]["points"]) == 4
    assert res["wrong_key"] == [] and any("401" in m for m in res["messages"])

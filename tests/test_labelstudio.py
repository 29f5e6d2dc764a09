"""Label Studio's ML-backend protocol under /labelstudio: the brush RLE, the config and smart-region translation,
image fetching rules and per-task errors in-process; then the real Label Studio server (``label-studio`` from PyPI in a
virtualenv of its own, ``$FASTSAM_LS_PYTHON``, made by .ci/run) driving a real ``fastsam-onnx serve``: its stored
predictions and interactive regions, decoded with ``label_studio_sdk``'s own decoder, equal the CLI's masks."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fastsam_onnx import FastSAM  # noqa: E402
from fastsam_onnx.outputs.brush import brush_mask, brush_rle  # noqa: E402
from fastsam_onnx.outputs.rle import decode_rle  # noqa: E402
from fastsam_onnx.server.app import create_app  # noqa: E402
from fastsam_onnx.server.engine import Engine, ServerConfig  # noqa: E402
from fastsam_onnx.server.lsimages import ImageRefusedError, resolve  # noqa: E402
from fastsam_onnx.server.lsregions import context_prompts, parse_config  # noqa: E402
from lskit import BRUSH_CONFIG, POLYGON_CONFIG, decode_with_sdk, keypoint, label_studio, ls_python, rectangle  # noqa: E402
from serverkit import EXAMPLE, serve_process  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"labelstudio:{key}".encode()).decode()}


@pytest.fixture(scope="module")
def model():
    return FastSAM()


@pytest.fixture(scope="module")
def everything(model):
    return model.segment(str(EXAMPLE))


@contextmanager
def image_host(folder: Path):
    """A stand-in for Label Studio's /data/upload/ files: serves ``folder`` to requests with ``Token TOKEN``."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_a):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != f"Token {TOKEN}":
                self.send_error(401)
                return
            self.path = self.path.replace("/data/upload/7", "", 1)
            super().do_GET()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_brush_rle_from_crops():
    rng = np.random.default_rng(7)
    for t in range(40):
        H, W = (400, 300) if t == 0 else (int(rng.integers(1, 120)), int(rng.integers(1, 120)))  # 0: runs > 65536 words
        h, w = int(rng.integers(0, H + 1)), int(rng.integers(0, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        m = rng.random((h, w)) < rng.choice([0.0, 0.4, 1.0])
        full = np.zeros((H, W), bool)
        full[y0:y0 + h, x0:x0 + w] = m
        assert (brush_mask(brush_rle(x0, y0, m, (H, W)), H, W) == full).all(), t
    # the header: 32-bit count of RGBA values, word size 8, field sizes 3, 4, 8, 16 (label_studio_sdk's encoder)
    rle = brush_rle(0, 0, np.ones((1, 1), bool), (2, 2))
    bits = "".join(f"{b:08b}" for b in rle)
    assert int(bits[:32], 2) == 16 and int(bits[32:37], 2) == 7 and [int(bits[37 + 4 * i:41 + 4 * i], 2) for i in range(4)] == [2, 3, 7, 15]


def test_config_and_smart_regions():
    cfg = parse_config(BRUSH_CONFIG)
    assert (cfg.image_key, cfg.image_name, cfg.control.name, cfg.control.type, cfg.control.labels) == ("image", "image", "tag", "brushlabels", ["Object"])
    poly = parse_config(POLYGON_CONFIG.replace('value="Shape"', 'value="Shape" prompt="a yellow pentagon"'))
    assert (poly.image_key, poly.control.type, poly.control.prompts) == ("photo", "polygonlabels", {"Shape": "a yellow pentagon"})
    for bad in ("", "<View", '<View><Image name="i" value="$i"/><Choices name="c" toName="i"/></View>'):
        with pytest.raises(ValueError):
            parse_config(bad)
    kw, label = context_prompts([keypoint(36, 40, 640, 480), keypoint(100, 7, 640, 480, positive=False),
                                 rectangle([300, 10, 20, 200], 640, 480)], 640, 480)
    assert kw == {"points": [[36.0, 40.0], [100.0, 7.0]], "labels": [1, 0], "bboxes": [[20.0, 10.0, 300.0, 200.0]]}
    assert label == "Object"
    for bad in ([], [{"type": "choices", "value": {}}], [{"type": "keypointlabels", "value": {"x": "1", "y": 2}}]):
        with pytest.raises(ValueError):
            context_prompts(bad, 10, 10)


def test_image_sources_refuse_other_hosts():
    ls = "http://localhost:8080"
    assert resolve("/data/upload/1/a.jpg", ls) == resolve("http://localhost:8080/data/upload/1/a.jpg", ls)
    assert resolve("/data/upload/1/a.jpg", ls).with_token
    assert resolve("/data/local-files/?d=x/a.jpg", ls).url == ls + "/data/local-files/?d=x/a.jpg"
    assert not resolve("https://img.example.org/a.jpg", ls, ("img.example.org",)).with_token
    assert resolve("data:image/png;base64,AAAA", None).data == base64.b64decode("AAAA")
    for ref, hosts in (("http://169.254.169.254/latest/meta-data", ()), ("http://localhost:8081/data/upload/a.jpg", ()),
                       ("//evil.example/a.jpg", ()), ("file:///etc/passwd", ("*",)), ("s3://bucket/a.jpg", ()),
                       ("http://localhost@evil.example/a.jpg", ("localhost",)), ("https://img.example.org.evil.example/a", ("img.example.org",))):
        with pytest.raises(ImageRefusedError):
            resolve(ref, ls, hosts)
    with pytest.raises(ImageRefusedError):
        resolve("/data/upload/1/a.jpg", None)  # no Label Studio host known


def test_predict_in_process(model, everything, tmp_path):
    """/setup then /predict with brush and polygon configs, interactive clicks, and per-task errors."""
    cfg = ServerConfig(api_key="k", max_upload_bytes=2 << 20)
    app = create_app(cfg, Engine(cfg, model=model))
    c = TestClient(app, base_url="http://127.0.0.1", headers=basic("k"))
    assert TestClient(app, base_url="http://127.0.0.1").get("/labelstudio/health").status_code == 401
    assert c.get("/labelstudio/health").json()["status"] == "UP"
    (tmp_path / "big.jpg").write_bytes(b"\xff" * (3 << 20))
    (tmp_path / "example.jpg").write_bytes(EXAMPLE.read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    h, w = everything.orig_shape
    with image_host(tmp_path) as host:
        r = c.post("/labelstudio/setup", json={"project": "3.17", "schema": BRUSH_CONFIG, "hostname": host, "access_token": TOKEN})
        assert r.status_code == 200 and r.json() == {"model_version": "demo"}
        tasks = [{"id": i, "data": {"image": ref}} for i, ref in enumerate([
            "/data/upload/7/example.jpg", "http://10.0.0.1/x.jpg", "/data/upload/7/missing.jpg", "/data/upload/7/big.jpg",
            "/data/upload/7/broken.jpg", "data:image/jpeg;base64," + base64.b64encode(EXAMPLE.read_bytes()).decode()])]
        out = c.post("/labelstudio/predict", json={"tasks": tasks, "project": "3.17", "label_config": BRUSH_CONFIG}).json()
        res = out["results"]
        assert out["model_version"] == "demo" and len(res) == len(tasks)
        assert [x.get("error", {}).get("code") for x in res] == [None, "image_refused", "image_unreachable", "too_large", "bad_image", None]
        assert all("result" not in x and x["task"] == i for i, x in enumerate(res) if "error" in x)
        for pred in (res[0], res[5]):
            regs = pred["result"]
            assert len(regs) == len(everything) and pred["model_version"] == "demo"
            assert all((r["type"], r["from_name"], r["to_name"], r["value"]["brushlabels"]) == ("brushlabels", "tag", "image", ["Object"]) for r in regs)
            for r, m, s in zip(regs, everything.masks, everything.scores):
                assert (brush_mask(r["value"]["rle"], h, w) == m).all() and r["score"] == round(float(s), 4)
        ys, xs = np.nonzero(everything.mask(1))
        p = [int(xs[len(xs) // 2]), int(ys[len(ys) // 2])]
        box = [float(v) for v in everything.boxes[3]]
        for smart, want in (([keypoint(*p, w, h)], model.prompt(everything, points=[p])),
                            ([rectangle(box, w, h)], model.prompt(everything, bboxes=[box]))):
            got = c.post("/labelstudio/predict", json={"tasks": tasks[:1], "project": "3.17", "label_config": BRUSH_CONFIG,
                                                       "params": {"context": {"result": smart}}}).json()["results"][0]["result"]
            assert len(got) == len(want) >= 1
            assert all((brush_mask(r["value"]["rle"], h, w) == m).all() for r, m in zip(got, want.masks))
        poly = c.post("/labelstudio/predict", json={"tasks": tasks[:1], "project": "3.17", "label_config": POLYGON_CONFIG.replace("$photo", "$image")}).json()
        regs = poly["results"][0]["result"]
        assert len(regs) >= len(everything) and all(r["type"] == "polygonlabels" and r["value"]["polygonlabels"] == ["Shape"] for r in regs)
        assert all(0 <= x <= 100 and 0 <= y <= 100 for r in regs for x, y in r["value"]["points"])
        c.post("/labelstudio/setup", json={"project": "5", "schema": BRUSH_CONFIG, "hostname": host, "access_token": TOKEN,
                                            "extra_params": {"texts": {"Object": "a blue rectangle"}, "conf": 0.4}})
        text = c.post("/labelstudio/predict", json={"tasks": tasks[:1], "project": "5", "label_config": BRUSH_CONFIG}).json()
        want = model.prompt(everything, texts=["a blue rectangle"])
        regs = text["results"][0]["result"]
        assert len(regs) == len(want) == 1 and (brush_mask(regs[0]["value"]["rle"], h, w) == want.masks[0]).all()
        wrong = c.post("/labelstudio/setup", json={"project": "4", "schema": BRUSH_CONFIG, "extra_params": {"conff": 1}})
        assert wrong.status_code == 422 and "conff" in wrong.json()["error"]["message"]
        assert c.post("/labelstudio/setup", json={"project": "4", "schema": "<View/>"}).status_code == 422
        assert c.post("/labelstudio/webhook", json={"action": "ANNOTATION_CREATED"}).json()["status"] == "acknowledged"


def cli_masks(image: Path, tmp: Path, *prompt: str) -> np.ndarray:
    """The (N, H, W) masks `fastsam-onnx segment IMAGE --json` writes (with a --point / --box prompt)."""
    out = tmp / f"cli-{image.stem}-{len(list(tmp.iterdir()))}.json"
    p = subprocess.run([sys.executable, "-m", "fastsam_onnx", "segment", str(image), "--json", str(out), *prompt],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return np.array([decode_rle(i["segmentation"]) for i in json.loads(out.read_text())["instances"]])


def second_image(tmp: Path) -> Path:
    """Another image: the example mirrored and resized to 512 × 384, as PNG."""
    img = cv2.resize(cv2.imread(str(EXAMPLE))[:, ::-1], (512, 384), interpolation=cv2.INTER_AREA)
    path = tmp / "mirrored.png"
    cv2.imwrite(str(path), img)
    return path


def inside(mask: np.ndarray) -> tuple[float, float]:
    """A pixel centre inside ``mask`` (x + 0.5, y + 0.5: the same pixel after the percent round trip)."""
    ys, xs = np.nonzero(mask)
    return float(xs[len(xs) // 2]) + 0.5, float(ys[len(ys) // 2]) + 0.5


@pytest.mark.slow
def test_the_real_label_studio(tmp_path):
    """Label Studio 1.2x (its own server, SQLite, offline on 127.0.0.1) with `fastsam-onnx serve` as ML backend."""
    python = ls_python()
    if not python:
        pytest.skip("$FASTSAM_LS_PYTHON (a virtualenv with label-studio) not set; .ci/run sets it")
    work = tmp_path / "work"
    work.mkdir()
    images = [EXAMPLE, second_image(tmp_path)]
    cli = {img: cli_masks(img, work) for img in images}
    with label_studio(python, tmp_path / "ls") as ls:
        pat = ls.personal_access_token()  # backend A fetches with it (refresh flow); B with the legacy token of /setup
        with serve_process("--api-key", "ls-key", "--label-studio-api-key", pat) as (_a, url_a), serve_process() as (_b, url_b):
            brush = ls.project("FastSAM brush", BRUSH_CONFIG)
            tasks = ls.upload(brush, images)
            assert all(t["data"]["image"].startswith("/data/upload/") for t in tasks)
            ml = ls.connect(brush, url_a + "/labelstudio", "ls-key")
            ls.retrieve_predictions(brush)
            for task, img in zip(tasks, images):
                preds = ls.predictions(task["id"])
                assert len(preds) == 1 and preds[0]["model_version"] == "demo", preds
                regs = preds[0]["result"]
                assert all(r["type"] == "brushlabels" and r["value"]["brushlabels"] == ["Object"] for r in regs)
                masks = decode_with_sdk(python, regs, work)
                assert len(masks) == len(cli[img]) >= 3
                assert all((a == b).all() for a, b in zip(masks, cli[img]))
            # interactive: smart keypoints (one, then one positive + one negative) and a smart rectangle
            for task, img in zip(tasks, images):
                h, w = cli[img].shape[1:]
                p, q = inside(cli[img][0]), inside(cli[img][1])
                ys, xs = np.nonzero(cli[img][2])
                box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
                cases = [([keypoint(*p, w, h)], ["--point", f"{p[0]},{p[1]}"]),
                         ([keypoint(*p, w, h), keypoint(*q, w, h, positive=False)], ["--point", f"{p[0]},{p[1]}", "--point", f"{q[0]},{q[1]},0"]),
                         ([rectangle(box, w, h)], ["--box", ",".join(f"{v:g}" for v in box)])]
                for smart, flags in cases:
                    answer = ls.interactive(ml, task["id"], smart)
                    assert "errors" not in answer, answer
                    regs = answer["data"]["result"]
                    want = cli_masks(img, work, *flags)
                    got = decode_with_sdk(python, regs, work)
                    assert len(got) == len(want) >= 1 and all((a == b).all() for a, b in zip(got, want)), flags
            poly = ls.project("FastSAM polygons", POLYGON_CONFIG)
            ptasks = ls.upload(poly, images)
            ls.connect(poly, url_b + "/labelstudio")
            ls.retrieve_predictions(poly)
            for task, img in zip(ptasks, images):
                preds = ls.predictions(task["id"])
                assert len(preds) == 1, preds
                regs = preds[0]["result"]
                assert all(r["type"] == "polygonlabels" and r["value"]["polygonlabels"] == ["Shape"] for r in regs)
                h, w = cli[img].shape[1:]
                best = np.zeros(len(cli[img]))
                for r in regs:  # each outline lies on one of the CLI's masks; each mask is outlined
                    filled = np.zeros((h, w), np.uint8)
                    pts = np.array(r["value"]["points"]) * [w / 100, h / 100]
                    cv2.fillPoly(filled, [np.round(pts).astype(np.int32)], 1)
                    inter = np.array([(filled.astype(bool) & m).sum() for m in cli[img]])
                    assert inter.max() > 0.5 * filled.sum()
                    best = np.maximum(best, inter / np.array([(filled.astype(bool) | m).sum() for m in cli[img]]))
                assert len(regs) >= len(cli[img]) and best.min() > 0.7, best

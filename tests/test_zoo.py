"""The model zoo: registry entries validate themselves; the downloader runs for real against a local HTTP
server on 127.0.0.1 (success, checksum mismatch, interrupted transfer, resume, HTTP 500, offline switch)."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.download import DownloadError, cache_dir, download, fetch_checkpoint
from fastsam_onnx.errors import BadModelError, FastSAMError
from fastsam_onnx.models import registry
from fastsam_onnx.models.registry import MODELS, ModelDescription, ModelSource, find_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """A local server of PAYLOAD at /m.pt with knobs: ``fail`` (HTTP 500), ``cut`` (close after N bytes,
    claiming the full length), ``ranges`` (honour Range), and the Range headers it saw."""

    def __init__(self):
        self.fail, self.cut, self.ranges, self.seen = False, None, True, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.seen.append(self.headers.get("Range"))
                if outer.fail or self.path != "/m.pt":
                    self.send_error(500 if outer.fail else 404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and outer.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(PAYLOAD):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut is not None:
                    self.wfile.write(body[: outer.cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/m.pt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTSAM_ONNX_OFFLINE", raising=False)


# --- registry ------------------------------------------------------------------------------------------


def test_registry_entries():
    names = [m.name for m in MODELS]
    assert {"fastsam-s", "fastsam-x", "clip-vit-b-32", "demo", "clip-demo"} <= set(names)
    assert find_model("FastSAM-s") is find_model("fastsam-s")
    s = find_model("fastsam-s").source
    assert s.url == "https://github.com/ultralytics/assets/releases/download/v8.4.0/FastSAM-s.pt" and s.filename == "FastSAM-s.pt"
    # pinned digests of the Ultralytics release files (sources: README "Model zoo"); every download is verified
    assert s.sha256 == "c9f78716a81c7aff0d608ccc73e1b82ab3aaad86005049f6a92106a0be6d0844" and s.size == 23_851_578
    x = find_model("fastsam-x").source
    assert x.sha256 == "752cadc2828edb1cd4bc4f9eb587100631af06ea2108f4c9ed56df4755701e76" and x.size == 144_972_346
    assert all(m.verifiable for m in MODELS if m.local is None)
    c = find_model("clip-vit-b-32").source
    assert c.sha256 in c.url and c.filename == "ViT-B-32.pt" and c.size == 353_976_522
    q = find_model("clip-vit-b-32-int8")  # the same checkpoint, exported with int8 towers
    assert q.source is c and q.recipe == {"int8": True} and q.kind == "clip"
    clip = pytest.importorskip("clip.clip")
    assert c.url == clip._MODELS["ViT-B/32"]
    assert find_model("demo").local == Path(registry.__file__).parent / "demo"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://x/y.pt"},
        {"sha256": "ABC"},
        {"sha256": "0" * 63},
        {"size": 0},
        {"size": 1.5},
        {"license": ""},
        {"approx_mb": -1.0},
    ],
)
def test_model_source_validates(kwargs):
    base = {"url": "https://example.org/m.pt", "sha256": "0" * 64, "size": 10, "license": "MIT"}
    with pytest.raises(ValueError):
        ModelSource(**{**base, **kwargs})


def test_model_description_validates():
    src = ModelSource("https://example.org/m.pt", None, None, "MIT")
    for kw in ({"name": "Bad Name"}, {"kind": "detector"}, {"local": Path("/x")}):
        with pytest.raises(ValueError):
            ModelDescription(**{"name": "m", "kind": "fastsam", "source": src, **kw})
    d = ModelDescription("m", "fastsam", src, recipe={"imgsz": 64})
    with pytest.raises(Exception):
        d.name = "other"  # frozen


# --- downloads -----------------------------------------------------------------------------------------


def test_download_success(server, tmp_path, capsys):
    dest = download(server.url, tmp_path / "d" / "m.pt", SHA, progress=True)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "d" / "m.pt.part").exists()
    assert server.seen == [None]
    download(server.url, dest, SHA)  # cached: no second request
    assert len(server.seen) == 1


def test_checksum_mismatch(server, tmp_path):
    dest = tmp_path / "m.pt"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(server.url, dest, "0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "m.pt.part").exists()


def test_unverifiable_refused_unless_no_verify(server, tmp_path):
    with pytest.raises(DownloadError, match="--no-verify"):
        download(server.url, tmp_path / "m.pt", None, progress=False)
    assert server.seen == []
    assert download(server.url, tmp_path / "m.pt", None, verify=False, progress=False).read_bytes() == PAYLOAD


def test_interrupted_then_resumed(server, tmp_path):
    dest = tmp_path / "m.pt"
    server.cut = 300_000
    with pytest.raises(DownloadError, match="interrupted.*resume"):
        download(server.url, dest, SHA, progress=False)
    part = tmp_path / "m.pt.part"
    assert not dest.exists() and part.stat().st_size == 300_000
    server.cut = None
    assert download(server.url, dest, SHA, progress=False).read_bytes() == PAYLOAD
    assert server.seen[-1] == "bytes=300000-" and not part.exists()


def test_resume_without_range_support_restarts(server, tmp_path):
    (tmp_path / "m.pt.part").write_bytes(PAYLOAD[:1000])
    server.ranges = False
    assert download(server.url, tmp_path / "m.pt", SHA, progress=False).read_bytes() == PAYLOAD


def test_resume_of_a_complete_part(server, tmp_path):
    (tmp_path / "m.pt.part").write_bytes(PAYLOAD)
    assert download(server.url, tmp_path / "m.pt", SHA, progress=False).read_bytes() == PAYLOAD  # 416 → verify


def test_server_error(server, tmp_path):
    server.fail = True
    with pytest.raises(DownloadError, match="HTTP 500"):
        download(server.url, tmp_path / "m.pt", SHA, progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_unreachable(tmp_path):
    with pytest.raises(DownloadError, match="cannot download"):
        download("http://127.0.0.1:9/m.pt", tmp_path / "m.pt", SHA, progress=False, timeout=5)


def test_offline_switch(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    with pytest.raises(FastSAMError, match="offline"):
        download(server.url, tmp_path / "m.pt", SHA, progress=False)
    assert server.seen == []


def test_progress_without_tqdm(server, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *a, **kw):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    download(server.url, tmp_path / "m.pt", SHA, progress=True)
    assert "m.pt:" in capsys.readouterr().err


# --- fetch and resolving names -------------------------------------------------------------------------


def test_cache_dir_from_env(tmp_path):
    assert cache_dir() == tmp_path / "cache"


@pytest.fixture
def fake_zoo(server, monkeypatch):
    """The registry's fastsam-s entry pointed at the local server (PAYLOAD, with its hash)."""
    entry = ModelDescription("fastsam-s", "fastsam", ModelSource(server.url, SHA, len(PAYLOAD), "test"), recipe={"imgsz": 64})
    monkeypatch.setitem(registry.REGISTRY, "fastsam-s", entry)
    return entry


def test_fetch_checkpoint(fake_zoo, tmp_path):
    path = fetch_checkpoint("fastsam-s", progress=False)
    assert path == tmp_path / "cache" / "checkpoints" / "m.pt" and path.read_bytes() == PAYLOAD
    with pytest.raises(FastSAMError, match="unknown model"):
        fetch_checkpoint("nope")


def test_fetch_cli_no_export_and_errors(fake_zoo, tmp_path, capsys):
    assert main(["fetch", "fastsam-s", "--no-export", "--quiet"]) == 0
    assert (tmp_path / "cache" / "checkpoints" / "m.pt").is_file()
    assert main(["fetch", "--list"]) == 0
    assert "fastsam-x" in capsys.readouterr().out
    assert main(["fetch", "nope"]) == 2
    assert main(["fetch", "demo"]) == 0


def test_fetch_cli_offline(fake_zoo, monkeypatch, capsys):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    assert main(["fetch", "fastsam-s", "--quiet"]) == 2
    assert "offline" in capsys.readouterr().err


def test_fastsam_by_name(demo, tmp_path):
    with pytest.raises(BadModelError, match="fastsam-onnx fetch fastsam-s"):
        FastSAM("fastsam-s")
    shutil.copytree(demo, tmp_path / "cache" / "fastsam-s", ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
    model = FastSAM("fastsam-s")
    assert model.onnx_path == tmp_path / "cache" / "fastsam-s" / "fastsam.onnx"
    assert FastSAM("demo").onnx_path == demo / "fastsam.onnx"
    with pytest.raises(BadModelError, match="not found"):
        FastSAM("no-such-model")


def test_clip_by_name(tmp_path):
    from fastsam_onnx.clip import CLIP
    from fastsam_onnx.models import demo_clip_bundle

    with pytest.raises(BadModelError, match="fastsam-onnx fetch clip-vit-b-32-int8"):
        CLIP("clip-vit-b-32-int8")
    shutil.copytree(demo_clip_bundle(), tmp_path / "cache" / "clip-vit-b-32-int8", ignore=shutil.ignore_patterns("*.pt"))
    assert CLIP("clip-vit-b-32-int8").bundle == tmp_path / "cache" / "clip-vit-b-32-int8"
    assert CLIP("clip-demo").bundle == demo_clip_bundle()
    with pytest.raises(BadModelError, match="not found"):
        CLIP("no-such-clip")
    with pytest.raises(BadModelError, match="not a CLIP model"):
        CLIP("demo")  # a FastSAM bundle


def test_cli_text_prompt_with_an_unfetched_clip(demo, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["segment", str(demo / "example.jpg"), "--text", "a red circle", "--json", str(out)]
    assert main(args + ["--clip", "clip-vit-b-32"]) == 2
    assert "fastsam-onnx fetch clip-vit-b-32" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--clip", "clip-demo"]) == 0 and out.is_file()


def test_fetch_cli_exports(fake_zoo, server, tmp_path, capsys):
    """Full fetch: the 'checkpoint' served is the demo checkpoint, exported at 64 × 64."""
    pytest.importorskip("ultralytics")
    from fastsam_onnx.models import demo_bundle

    global PAYLOAD, SHA
    weights = (demo_bundle() / "fastsam-demo.pt").read_bytes()
    old = PAYLOAD, SHA
    PAYLOAD, SHA = weights, hashlib.sha256(weights).hexdigest()
    try:
        registry.REGISTRY["fastsam-s"] = ModelDescription(
            "fastsam-s", "fastsam", ModelSource(server.url, SHA, len(PAYLOAD), "test"), recipe={"imgsz": 64, "dynamic": True}
        )
        assert main(["fetch", "fastsam-s", "--quiet"]) == 0
        assert len(FastSAM("fastsam-s").segment(os.fspath(demo_bundle() / "example.jpg"))) >= 0
        assert main(["fetch", "fastsam-s"]) == 0  # already fetched
        assert "already fetched" in capsys.readouterr().out
    finally:
        PAYLOAD, SHA = old

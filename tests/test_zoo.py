"""The model zoo: registry entries validate themselves; the downloader runs for real against a local HTTP
server on 127.0.0.1 (success, checksum mismatch, interrupted transfer, resume, HTTP 500, offline switch,
size overrun, bad Content-Length, a trickling server against the deadline, corrupt cached files, unusable
cache directories); ``fetch`` checks cached checkpoints. The rest of ``fetch`` and names resolved from the
zoo: test_fetch.py, which uses this module's server."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.download import DownloadError, cache_dir, download, fetch_checkpoint
from fastsam_onnx.errors import FastSAMError
from fastsam_onnx.image import read_image
from fastsam_onnx.models import registry
from fastsam_onnx.models.registry import MODELS, ModelDescription, ModelSource, find_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """A local server of PAYLOAD at /m.pt with knobs: ``fail`` (HTTP 500), ``cut`` (close after N bytes,
    claiming the full length), ``ranges`` (honour Range), ``length`` (the Content-Length header sent: None the
    true one, False none at all, else this string), ``extra`` (bytes sent after the body), ``trickle`` (seconds
    between single bytes, at most ~10 s in all), and the Range headers it saw."""

    def __init__(self):
        self.fail, self.cut, self.ranges, self.seen = False, None, True, []
        self.length, self.extra, self.trickle = None, b"", None
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
                if outer.length is None:
                    self.send_header("Content-Length", str(len(body)))
                elif outer.length is not False:
                    self.send_header("Content-Length", outer.length)
                self.end_headers()
                if outer.trickle is not None:
                    try:
                        for b in body[: int(10 / outer.trickle)]:
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                            time.sleep(outer.trickle)
                    except OSError:  # the client gave up
                        pass
                    self.close_connection = True
                    return
                if outer.cut is not None:
                    self.wfile.write(body[: outer.cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body + outer.extra)
                if outer.length is not None:
                    self.close_connection = True

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
    download(server.url, tmp_path / "m.pt", SHA, progress=True)  # stderr is no TTY here: plain lines, no tqdm
    assert "m.pt: 1048576/1048576 B" in capsys.readouterr().err
    download(server.url, tmp_path / "q.pt", SHA, progress=False)  # --quiet
    assert capsys.readouterr().err == ""


# --- fetch_checkpoint and a full fetch -----------------------------------------------------------------


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
        fetched = FastSAM("fastsam-s")
        assert fetched.dynamic and fetched.imgsz == (64, 64)  # the recipe's export, not the demo bundle's graph
        example = read_image(os.fspath(demo_bundle() / "example.jpg"))
        r = fetched.segment(example)
        assert r.orig_shape == example.shape[:2] and r.masks.shape == (len(r), *example.shape[:2])
        assert main(["fetch", "fastsam-s"]) == 0  # already fetched
        assert "already fetched" in capsys.readouterr().out
    finally:
        PAYLOAD, SHA = old


# --- verified cache, bounded transfers, unusable cache directories ----------------------------------------


def test_cached_garbage_checkpoint_refused(server, tmp_path):
    dest = tmp_path / "m.pt"
    dest.write_bytes(b"\0" * len(PAYLOAD))  # right size, wrong bytes: only the digest can tell
    with pytest.raises(DownloadError, match="cached file .* is corrupt.*moved to .*m.pt.corrupt.*run again"):
        download(server.url, dest, SHA, progress=False)
    assert not dest.exists() and (tmp_path / "m.pt.corrupt").is_file() and server.seen == []
    assert download(server.url, dest, SHA, progress=False).read_bytes() == PAYLOAD  # the next run downloads
    dest.write_bytes(b"short")
    with pytest.raises(DownloadError, match="corrupt .*5 bytes, expected"):  # the size alone tells
        download(server.url, dest, SHA, size=len(PAYLOAD), progress=False)
    dest.write_bytes(b"garbage")
    assert download(server.url, dest, SHA, verify=False).read_bytes() == b"garbage"  # --no-verify: used as is


def test_fetch_cli_refuses_a_corrupt_cached_checkpoint(fake_zoo, tmp_path, capsys):
    ckpt = tmp_path / "cache" / "checkpoints" / "m.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x" * len(PAYLOAD))
    assert main(["fetch", "fastsam-s", "--no-export", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and "run again" in err[0], err
    assert main(["fetch", "fastsam-s", "--no-export", "--quiet"]) == 0 and ckpt.read_bytes() == PAYLOAD


def test_size_overrun_stops(server, tmp_path):
    server.length, server.extra = False, b"x" * 100_000  # no Content-Length: only the declared size bounds it
    with pytest.raises(DownloadError, match="more than the expected 1,048,576 bytes"):
        download(server.url, tmp_path / "m.pt", SHA, size=len(PAYLOAD), progress=False)
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.part").exists()
    server.extra = b""
    assert download(server.url, tmp_path / "m.pt", SHA, size=len(PAYLOAD), progress=False).read_bytes() == PAYLOAD


def test_short_transfer_without_length_is_resumable(server, tmp_path):
    server.length, server.cut = False, 1000
    with pytest.raises(DownloadError, match="1,000 of 1,048,576 bytes; run again to resume"):
        download(server.url, tmp_path / "m.pt", SHA, size=len(PAYLOAD), progress=False)
    assert (tmp_path / "m.pt.part").stat().st_size == 1000


@pytest.mark.parametrize("length", ["abc", "-5", "1e6", "10, 10"])
def test_bad_content_length(server, tmp_path, length):
    server.length = length
    with pytest.raises(DownloadError, match="bad Content-Length"):
        download(server.url, tmp_path / "m.pt", SHA, progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_content_length_disagreeing_with_the_declared_size(server, tmp_path):
    with pytest.raises(DownloadError, match="announces 1,048,576 bytes, expected 1,048,577"):
        download(server.url, tmp_path / "m.pt", SHA, size=len(PAYLOAD) + 1, progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_trickling_server_hits_the_deadline(server, tmp_path, monkeypatch):
    server.trickle = 0.01  # one byte every 10 ms, for ~10 s: far beyond the deadline, never a socket timeout
    with pytest.raises(DownloadError, match="deadline of 0.3 s.*run again to resume"):
        download(server.url, tmp_path / "m.pt", SHA, progress=False, timeout=30, deadline=0.3)
    part = tmp_path / "m.pt.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)  # kept for the resume
    monkeypatch.setenv("FASTSAM_ONNX_DOWNLOAD_DEADLINE", "0.2")
    with pytest.raises(DownloadError, match="deadline of 0.2 s"):
        download(server.url, tmp_path / "m.pt", SHA, progress=False, timeout=30)
    for bad in ("abc", "0", "-1", "inf"):
        monkeypatch.setenv("FASTSAM_ONNX_DOWNLOAD_DEADLINE", bad)
        with pytest.raises(FastSAMError, match="FASTSAM_ONNX_DOWNLOAD_DEADLINE"):
            download(server.url, tmp_path / "m.pt", SHA, progress=False)


def test_cache_path_is_a_file(fake_zoo, tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "afile"))
    with pytest.raises(DownloadError, match="download directory .*afile"):
        fetch_checkpoint("fastsam-s", progress=False)
    assert main(["fetch", "fastsam-s", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FASTSAM_ONNX_CACHE" in err[0], err


def test_cache_dir_that_cannot_be_created(server, tmp_path):
    """Unwritable, simulated: the tests run as root, whom chmod does not stop; a path below a regular file cannot
    be created by anyone."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DownloadError, match="cannot create the download directory"):
        download(server.url, tmp_path / "afile" / "sub" / "m.pt", SHA, progress=False)
    (tmp_path / "adir.pt").mkdir()
    with pytest.raises(DownloadError, match="not a file"):
        download(server.url, tmp_path / "adir.pt", SHA, progress=False)
    assert server.seen == []


@pytest.mark.parametrize("root", ["/proc", "/sys", "/dev"])
def test_cache_under_a_pseudo_file_system(fake_zoo, server, monkeypatch, capsys, root):
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", f"{root}/fastsam-onnx-test")
    with pytest.raises(DownloadError, match=f"lies under {root}, a pseudo file system"):
        fetch_checkpoint("fastsam-s", progress=False)
    assert main(["fetch", "fastsam-s", "--no-export", "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert server.seen == [] and not os.path.exists(f"{root}/fastsam-onnx-test")

"""No silent toy (issue 24 item 6): the CLI says once when the demo model segments an image; a zoo model is
fetched and converted on first use (``FastSAM("fastsam-s")``, ``--model fastsam-s``), or refused offline with the
command to run; ``$FASTSAM_ONNX_MODEL`` / ``$FASTSAM_ONNX_CLIP`` set the default models of the API, the CLI, the
server and Ray. Downloads come from test_zoo.py's local server; the converter is replaced by a copy of the demo
bundle here (the real converter end to end: test_native_fetch.py)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
from test_zoo import PAYLOAD, env, fake_zoo, server  # noqa: F401  (fixtures: env is autouse)

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.cli.models import DEMO_NOTICE
from fastsam_onnx.errors import BadModelError, DownloadError
from fastsam_onnx.models import demo_clip_bundle
from fastsam_onnx.zoo import FetchError


@pytest.fixture
def fake_converter(monkeypatch, demo):
    """``fastsam_onnx.export.native_bundle`` replaced by a module whose convert_recipe copies the demo bundle;
    records its calls (kind, checkpoint, out, recipe, progress)."""
    calls = []

    def convert_recipe(kind, weights, out, recipe, *, progress=True, report=None):
        calls.append((kind, Path(weights), Path(out), dict(recipe), progress))
        shutil.copytree(demo, out, ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
        return Path(out)

    from fastsam_onnx.export import ExportError

    fake = types.ModuleType("fastsam_onnx.export.native_bundle")
    fake.convert_recipe, fake.ExportError = convert_recipe, ExportError
    monkeypatch.setitem(sys.modules, "fastsam_onnx.export.native_bundle", fake)
    return calls


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
    return dst


# --- the demo model says what it is ----------------------------------------------------------------------


def test_demo_notice_once_on_stderr(demo, tmp_path, capsys):
    image = str(demo / "example.jpg")
    assert main(["segment", image, "--json", str(tmp_path / "r.json")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count(DEMO_NOTICE) == 1 and DEMO_NOTICE not in captured.out
    assert "\n" not in DEMO_NOTICE and "fastsam-onnx fetch fastsam-s" in DEMO_NOTICE and "--model fastsam-s" in DEMO_NOTICE
    assert main(["segment", image, "--json", str(tmp_path / "q.json"), "--quiet"]) == 0
    assert DEMO_NOTICE not in capsys.readouterr().err
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        shutil.copyfile(image, folder / f"{n}.jpg")
    assert main(["segment", str(folder), "--out-dir", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err.count(DEMO_NOTICE) == 1  # once per run, not per image


def test_no_notice_for_another_model(demo, tmp_path, capsys):
    bundle = _copy(demo, tmp_path / "mine")
    assert main(["segment", str(demo / "example.jpg"), "--model", str(bundle), "--json", str(tmp_path / "r.json")]) == 0
    assert DEMO_NOTICE not in capsys.readouterr().err


# --- default models from the environment -------------------------------------------------------------------


def test_default_models_from_the_environment(demo, tmp_path, monkeypatch, capsys):
    bundle, clip = _copy(demo, tmp_path / "mine"), _copy(demo_clip_bundle(), tmp_path / "clip")
    monkeypatch.setenv("FASTSAM_ONNX_MODEL", str(bundle))
    monkeypatch.setenv("FASTSAM_ONNX_CLIP", str(clip))
    model = FastSAM()
    assert model.onnx_path == bundle / "fastsam.onnx" and model.clip.bundle == clip
    assert FastSAM(demo).clip.bundle == clip  # the CLIP default applies whatever the model
    assert main(["segment", str(demo / "example.jpg"), "--json", str(tmp_path / "r.json"), "--text", "a red circle"]) == 0
    assert DEMO_NOTICE not in capsys.readouterr().err  # the default is not the demo any more
    assert main(["doctor", "--runs", "1", "--model", str(bundle)]) == 0
    assert f"FASTSAM_ONNX_MODEL={bundle}" in capsys.readouterr().out
    monkeypatch.setenv("FASTSAM_ONNX_MODEL", " ")  # blank = unset
    assert FastSAM().onnx_path.resolve() == (demo / "fastsam.onnx").resolve()


def test_server_default_model_from_the_environment(demo, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from fastsam_onnx.server.engine import Engine, ServerConfig

    bundle = _copy(demo, tmp_path / "mine")
    monkeypatch.setenv("FASTSAM_ONNX_MODEL", str(bundle))
    engine = Engine(ServerConfig())
    try:
        engine.load()
        assert engine.model.onnx_path == bundle / "fastsam.onnx"
    finally:
        engine.close()


def test_ray_driver_passes_its_default_on(monkeypatch, tmp_path):
    """segment_dataset resolves $FASTSAM_ONNX_MODEL where it is called (the driver), not on the workers."""
    ray = pytest.importorskip("ray")
    import ray.data

    from fastsam_onnx.distributed import segment_dataset

    seen = {}

    class Dataset:
        def map_batches(self, fn, fn_constructor_kwargs, **kw):
            seen.update(fn_constructor_kwargs)
            return self

    monkeypatch.setattr(ray.data, "from_items", lambda items: Dataset())
    monkeypatch.setenv("FASTSAM_ONNX_MODEL", "fastsam-s")
    monkeypatch.setenv("FASTSAM_ONNX_CLIP", "clip-vit-b-32")
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    segment_dataset([(str(image), str(image))], workers=1)
    assert seen["model"] == "fastsam-s" and seen["clip"] == "clip-vit-b-32"
    monkeypatch.delenv("FASTSAM_ONNX_MODEL")
    segment_dataset([(str(image), str(image))], workers=1, model="/a/bundle")
    assert seen["model"] == "/a/bundle"


# --- fetched and converted on first use ----------------------------------------------------------------------


def test_first_use_fetches_and_converts(fake_zoo, fake_converter, server, tmp_path, capsys):
    model = FastSAM("fastsam-s")
    bundle = tmp_path / "cache" / "fastsam-s"
    assert model.onnx_path == bundle / "fastsam.onnx"
    assert fake_converter == [("fastsam", tmp_path / "cache" / "checkpoints" / "m.pt", bundle, {"imgsz": 64}, True)]
    assert (tmp_path / "cache" / "checkpoints" / "m.pt").read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "fastsam-s is not in the cache: downloading m.pt" in err and "fastsam-onnx fetch fastsam-s" in err
    FastSAM("fastsam-s")  # cached now: neither downloaded nor converted again
    assert len(fake_converter) == 1 and len(server.seen) == 1


def test_first_use_from_the_cli_is_quiet_with_quiet(fake_zoo, fake_converter, demo, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["segment", str(demo / "example.jpg"), "--model", "fastsam-s", "--json", str(out), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "instances" in err[0] and out.is_file(), err  # the summary only
    assert fake_converter[0][4] is False  # no progress asked of the converter


def test_first_use_offline_names_the_command(fake_zoo, fake_converter, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    with pytest.raises(FetchError, match=r"FASTSAM_ONNX_OFFLINE is set: run `fastsam-onnx fetch fastsam-s`") as e:
        FastSAM("fastsam-s")
    assert isinstance(e.value, BadModelError) and isinstance(e.value, DownloadError)
    assert server.seen == [] and fake_converter == [] and not (tmp_path / "cache").exists()
    assert main(["segment", "x.jpg", "--model", "fastsam-s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fastsam-onnx fetch fastsam-s" in err[0]
    # a checkpoint already downloaded (fetch --no-export) converts offline
    ckpt = tmp_path / "cache" / "checkpoints" / "m.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(PAYLOAD)
    assert FastSAM("fastsam-s").onnx_path.parent == tmp_path / "cache" / "fastsam-s" and len(fake_converter) == 1


def test_first_use_download_failure_names_the_command(fake_zoo, fake_converter, server):
    server.fail = True
    with pytest.raises(FetchError, match=r"HTTP 500.*or run `fastsam-onnx fetch fastsam-s` later"):
        FastSAM("fastsam-s")
    assert fake_converter == []


def test_first_use_conversion_failure(fake_zoo, fake_converter, tmp_path, monkeypatch):
    from fastsam_onnx.export import ExportError

    def fail(*a, **kw):
        raise ExportError("the self-check failed")

    monkeypatch.setattr(sys.modules["fastsam_onnx.export.native_bundle"], "convert_recipe", fail)
    with pytest.raises(FetchError, match="fastsam-s: the conversion of .* failed: the self-check failed"):
        FastSAM("fastsam-s")
    assert not (tmp_path / "cache" / "fastsam-s").exists()


def test_unfetched_names_offline_keep_their_old_message(monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    from fastsam_onnx.clip import CLIP

    with pytest.raises(BadModelError, match="fastsam-onnx fetch clip-vit-b-32-int8"):
        CLIP("clip-vit-b-32-int8")

"""``fastsam-onnx fetch`` (downloads from the local server of test_zoo.py, cached bundles validated, the zoo
list, a missing name or export extra) and model arguments resolved from zoo names (:mod:`fastsam_onnx.zoo`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_zoo import PAYLOAD, env, fake_zoo, server  # noqa: F401  (fixtures: env is autouse)

from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
from fastsam_onnx.errors import BadModelError
from fastsam_onnx.models import registry
from fastsam_onnx.models.registry import MODELS, ModelDescription, ModelSource

# --- fetch on the command line, names resolved from the zoo -------------------------------------------


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


def test_fastsam_by_name(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")  # not cached: fetched on first use, refused offline
    with pytest.raises(BadModelError, match="fastsam-onnx fetch fastsam-s"):
        FastSAM("fastsam-s")
    shutil.copytree(demo, tmp_path / "cache" / "fastsam-s", ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
    model = FastSAM("fastsam-s")
    assert model.onnx_path == tmp_path / "cache" / "fastsam-s" / "fastsam.onnx"
    assert FastSAM("demo").onnx_path == demo / "fastsam.onnx"
    with pytest.raises(BadModelError, match="not found"):
        FastSAM("no-such-model")


def test_clip_by_name(tmp_path, monkeypatch):
    from fastsam_onnx.clip import CLIP
    from fastsam_onnx.models import demo_clip_bundle

    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    with pytest.raises(BadModelError, match="fastsam-onnx fetch clip-vit-b-32-int8"):
        CLIP("clip-vit-b-32-int8")
    shutil.copytree(demo_clip_bundle(), tmp_path / "cache" / "clip-vit-b-32-int8", ignore=shutil.ignore_patterns("*.pt"))
    assert CLIP("clip-vit-b-32-int8").bundle == tmp_path / "cache" / "clip-vit-b-32-int8"
    assert CLIP("clip-demo").bundle == demo_clip_bundle()
    with pytest.raises(BadModelError, match="not found"):
        CLIP("no-such-clip")
    with pytest.raises(BadModelError, match="not a CLIP model"):
        CLIP("demo")  # a FastSAM bundle


def test_cli_text_prompt_with_an_unfetched_clip(demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")
    out = tmp_path / "r.json"
    args = ["segment", str(demo / "example.jpg"), "--text", "a red circle", "--json", str(out)]
    assert main(args + ["--clip", "clip-vit-b-32"]) == 2
    assert "fastsam-onnx fetch clip-vit-b-32" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--clip", "clip-demo"]) == 0 and out.is_file()


# --- fetch: cached bundles, the list, no name, the export extra ------------------------------------------


@pytest.fixture
def fake_export(monkeypatch, demo):
    """The native converter's convert_fastsam (fetch's default) replaced by a copy of the demo bundle; records its
    calls (checkpoint, out, the recipe's keyword arguments)."""
    import fastsam_onnx.export.native as native

    calls = []

    def export(checkpoint, out, progress=None, report=None, **kw):
        calls.append((Path(checkpoint), Path(out), kw))
        if Path(out).exists():
            shutil.rmtree(out)
        shutil.copytree(demo, out, ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
        return Path(out)

    monkeypatch.setattr(native, "convert_fastsam", export)
    return calls


def test_fetch_validates_a_cached_bundle(fake_zoo, fake_export, demo, server, tmp_path, capsys):
    bundle = tmp_path / "cache" / "fastsam-s"
    shutil.copytree(demo, bundle, ignore=shutil.ignore_patterns("*.pt", "*.jpg"))
    assert main(["fetch", "fastsam-s", "--quiet"]) == 0
    assert "already fetched" in capsys.readouterr().out and server.seen == [] and fake_export == []
    onnx = bundle / "fastsam.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")  # corrupt: its SHA-256 no longer matches
    assert main(["fetch", "fastsam-s", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "broken" in captured.err and "corrupt" in captured.err and "already fetched" not in captured.out
    assert len(fake_export) == 1 and fake_export[0][1] == bundle and fake_export[0][2] == {"imgsz": 64}
    assert main(["fetch", "fastsam-s", "--quiet"]) == 0 and "already fetched" in capsys.readouterr().out
    (bundle / "fastsam.onnx").unlink()
    assert main(["fetch", "fastsam-s", "--quiet"]) == 0
    assert "fastsam.onnx is missing" in capsys.readouterr().err and len(fake_export) == 2


def test_bundle_problem(tmp_path, demo):
    from fastsam_onnx.cli.fetch import bundle_problem
    from fastsam_onnx.models import demo_clip_bundle

    clip = tmp_path / "clip"
    shutil.copytree(demo_clip_bundle(), clip, ignore=shutil.ignore_patterns("*.pt"))
    assert bundle_problem(clip, "clip") is None
    assert "not a 'fastsam' model" in bundle_problem(clip, "fastsam")
    text = clip / "clip_text.onnx"
    text.write_bytes(text.read_bytes() + b"x")
    assert "corrupt" in bundle_problem(clip, "clip")
    (clip / "bpe_simple_vocab_16e6.txt.gz").unlink()
    assert "missing" in bundle_problem(clip, "clip")
    (clip / "manifest.json").write_text("{not json")
    assert "unreadable manifest" in bundle_problem(clip, "clip")
    assert "no manifest.json" in bundle_problem(tmp_path, "clip")
    assert "not a directory" in bundle_problem(tmp_path / "nothing", "fastsam")


def test_fetch_with_a_file_where_the_bundle_goes(fake_zoo, tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fastsam-s").write_text("x")
    assert main(["fetch", "fastsam-s", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]


def test_fetch_without_a_name(capsys):
    assert main(["fetch"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1
    assert "fastsam-onnx fetch fastsam-s" in err[0] and "fastsam-onnx fetch --list" in err[0]


def test_fetch_list_is_aligned_and_sanitized(monkeypatch, capsys):
    evil = ModelDescription(
        "a-rather-long-model-name", "clip", ModelSource("https://example.org/e.pt", "0" * 64, 10, "MIT", 1234.5),
        description="evil \x1b[31mred\x1b[0m\nsecond line",
    )
    models = (*MODELS, evil)
    monkeypatch.setattr(registry, "MODELS", models)
    assert main(["fetch", "--list"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert len(lines) == len(models) + 1 and "\x1b" not in "".join(lines)
    header = lines[0]
    assert header.split() == ["NAME", "KIND", "SIZE", "CHECK", "DESCRIPTION"]
    kind_at, desc_at = header.index("KIND"), header.index("DESCRIPTION")
    size_end = header.index("SIZE") + len("SIZE")
    for m, line in zip(models, lines[1:]):
        assert line.startswith(m.name + " ") and line[kind_at:].startswith(m.kind + " ")
        assert line[:size_end].endswith(" MB" if m.source.approx_mb else "shipped")  # right-aligned sizes
        assert line[desc_at:] == m.description.replace("\x1b", "\\x1b").replace("\n", "\\x0a")


def test_fetch_without_the_export_extra(fake_zoo, fake_export, tmp_path, monkeypatch, capsys):
    """The default native converter needs no torch; --converter torch is checked before the download (which could not
    be exported here); --no-export still downloads."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["fetch", "fastsam-s", "--quiet", "--converter", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "cache" / "checkpoints" / "m.pt").exists()  # nothing downloaded
    assert len(err) == 1, err  # no traceback
    assert "needs the [export] extra; missing: torch (pip install 'fastsam-onnx[export]'" in err[0]
    assert "fastsam-onnx fetch fastsam-s --no-export" in err[0] and "native converter" in err[0]
    assert main(["fetch", "fastsam-s", "--quiet", "--no-export"]) == 0
    assert (tmp_path / "cache" / "checkpoints" / "m.pt").read_bytes() == PAYLOAD
    assert main(["fetch", "fastsam-s", "--quiet"]) == 0 and len(fake_export) == 1  # native: no torch needed
    assert "converter: native" in capsys.readouterr().out

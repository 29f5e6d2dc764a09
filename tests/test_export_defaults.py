"""Export defaults and honesty: dynamic graphs by default (``--static`` for fixed shapes), the zoo's recipes,
doctor's note on static graphs on the CPU, progress and ``--quiet``, missing-extra and offline errors before any
work, and accuracy reports that say "not measured" when there is nothing to measure.

One real export (a random yolov8n-seg at 320: a few seconds); everything else monkeypatches the exporter."""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fastsam_onnx.cli import build_parser, main
from fastsam_onnx.models import MODELS

W = ["--weights", "ckpt.pt", "--out", "bundle"]


# ------------------------------------------------------------------------------------------ the CLI's defaults


def test_cli_parses_dynamic_by_default_and_static_on_request():
    p = build_parser()
    assert p.parse_args(["export", "fastsam", *W]).static is False
    assert p.parse_args(["export", "fastsam", *W, "--dynamic"]).static is False  # old instructions still parse
    assert p.parse_args(["export", "fastsam", *W, "--static"]).static is True
    assert p.parse_args(["export", "fastsam", *W]).quiet is False
    assert p.parse_args(["export", "clip", "--out", "c", "--quiet"]).quiet is True
    with pytest.raises(SystemExit) as e:
        p.parse_args(["export", "fastsam", *W, "--static", "--dynamic"])
    assert e.value.code == 2


class FakeExport(list):
    """The calls' kwargs; ``argv``: ``export fastsam`` with W and the converter; ``steps``: its step count."""

    argv: list[str]
    steps: int


@pytest.fixture(params=["native", "torch"])
def fake_export(request, monkeypatch, tmp_path):
    """Replace the converter's function (native: convert_fastsam, the default; torch: export_fastsam) by a recorder
    that reports two steps and a result; returns the calls' kwargs, with the argv and step count to expect."""
    calls = FakeExport()
    if request.param == "torch":
        pytest.importorskip("ultralytics")
        import fastsam_onnx.export.fastsam as module

        name, calls.steps, calls.argv = "export_fastsam", module.STEPS, ["export", "fastsam", *W, "--converter", "torch"]
    else:
        import fastsam_onnx.export.native as module

        name, calls.steps, calls.argv = "convert_fastsam", module.FASTSAM_STEPS, ["export", "fastsam", *W]

    def fake(weights, out, **kw):
        calls.append(kw)
        kw["progress"](1, "loading checkpoint")
        kw["progress"](2, "exporting to ONNX")
        kw["report"]("fp16 vs fp32: a result line")
        return Path(out)

    monkeypatch.setattr(module, name, fake)
    monkeypatch.chdir(tmp_path)
    return calls


def test_cli_exports_dynamic_by_default(fake_export, capsys):
    assert main(fake_export.argv) == 0
    assert main([*fake_export.argv, "--dynamic"]) == 0
    assert main([*fake_export.argv, "--static", "--batch", "2"]) == 0
    assert [(c["dynamic"], c["batch"]) for c in fake_export] == [(True, 1), (True, 1), (False, 2)]
    err = capsys.readouterr().err
    n = fake_export.steps
    assert f"[1/{n}] loading checkpoint" in err and f"[2/{n}] exporting to ONNX" in err  # plain lines: not a TTY
    assert "a result line" in err


def test_batch_needs_static(fake_export, capsys):
    assert main([*fake_export.argv, "--batch", "2"]) == 2
    err = capsys.readouterr().err
    assert "--static" in err and len(err.strip().splitlines()) == 1
    assert fake_export == []


def test_quiet_hides_progress_not_results(fake_export, capsys):
    pytest.importorskip("onnxconverter_common")
    assert main([*fake_export.argv, "--quiet", "--half"]) == 0
    err = capsys.readouterr().err
    assert "loading checkpoint" not in err and "[1/" not in err
    assert "a result line" in err


def test_progress_bar_on_a_terminal(fake_export, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert main(fake_export.argv) == 0
    text = tty.getvalue()
    n = fake_export.steps
    assert "export fastsam" in text and f"{n}/{n}" in text and "done" in text and f"[1/{n}]" not in text
    assert "a result line" in text


def test_python_default_is_dynamic():
    from fastsam_onnx.export.fastsam import export_fastsam
    from fastsam_onnx.export.native import convert_fastsam

    assert inspect.signature(export_fastsam).parameters["dynamic"].default is True
    assert inspect.signature(convert_fastsam).parameters["dynamic"].default is True


def test_zoo_recipes_are_dynamic():
    fastsam = [m for m in MODELS if m.kind == "fastsam" and m.local is None]
    assert {m.name for m in fastsam} >= {"fastsam-s", "fastsam-x"}
    assert all(m.recipe.get("dynamic") is True for m in fastsam), [m.recipe for m in fastsam]


# ----------------------------------------------------------------------------------------------------- doctor


def test_doctor_notes_a_static_graph_on_cpu(demo, capsys):
    assert json.loads((demo / "manifest.json").read_text())["dynamic"] is False  # the demo stays static
    assert main(["doctor", "--model", str(demo), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    import onnxruntime as ort

    if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        assert "note: static 512x512 graph on CPU: every photo is letterboxed to the full square" in out
        assert "without --static" in out


# ------------------------------------------------------------------------------- errors before any work starts


TORCH = ["--converter", "torch"]


@pytest.mark.parametrize(
    "missing, args",
    [
        ("onnxsim", ["fastsam", *W, *TORCH]),
        ("torch", ["fastsam", *W, *TORCH]),
        ("onnxconverter_common", ["fastsam", *W, "--half", *TORCH]),
        ("onnxconverter_common", ["fastsam", *W, "--half"]),  # native: the small [fp16] extra
        ("clip", ["clip", "--out", "bundle", *TORCH]),
        ("ultralytics", ["clip", "--out", "bundle", *TORCH]),
    ],
)
def test_missing_extra_is_one_line_exit_2_before_work(missing, args, monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.chdir(tmp_path)
    started = []
    import fastsam_onnx.export.clip as clip_export  # importable without the extra's modules
    import fastsam_onnx.export.fastsam as fastsam_export

    monkeypatch.setattr(fastsam_export, "export_fastsam", lambda *a, **k: started.append(a))
    monkeypatch.setattr(clip_export, "export_clip", lambda *a, **k: started.append(a))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    extra = "[export]" if "torch" in args else "[fp16]"
    assert len(err) == 1 and extra in err[0] and missing in err[0], err
    assert started == [] and list(tmp_path.iterdir()) == []


def test_only_half_needs_onnxconverter(monkeypatch):
    from fastsam_onnx.export import missing_modules

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxconverter_common" else real(name, *a))
    assert "onnxconverter_common" not in missing_modules("fastsam")
    assert "onnxconverter_common" in missing_modules("fastsam", half=True)


def _no_network(monkeypatch):
    clip = pytest.importorskip("clip")
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("network used while FASTSAM_ONNX_OFFLINE=1")

    monkeypatch.setattr(clip.clip, "_download", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("FASTSAM_ONNX_OFFLINE", "1")


def test_offline_export_clip_names_the_file_to_copy(monkeypatch, tmp_path, capsys):
    _no_network(monkeypatch)
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "clip-bundle"
    assert main(["export", "clip", "--weights", "ViT-B/32", "--out", str(out), "--quiet", *TORCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "FASTSAM_ONNX_OFFLINE" in err[0] and "ViT-B-32.pt" in err[0]
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-32.pt") in err[0] and "--weights PATH" in err[0]
    assert not out.exists() and not (tmp_path / ".cache" / "clip" / "ViT-B-32.pt").exists()
    # the native converter downloads ViT-B/32 into the zoo's cache
    monkeypatch.setenv("FASTSAM_ONNX_CACHE", str(tmp_path / "cache"))
    assert main(["export", "clip", "--weights", "ViT-B/32", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "FASTSAM_ONNX_OFFLINE" in err[0] and str(tmp_path / "cache" / "checkpoints" / "ViT-B-32.pt") in err[0]
    assert "--weights PATH" in err[0] and not out.exists()


def test_offline_export_clip_checks_a_copied_file(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    pytest.importorskip("ultralytics")
    from fastsam_onnx.export import ExportError
    from fastsam_onnx.export.clip import export_clip

    root = tmp_path / "downloads"
    root.mkdir()
    (root / "ViT-B-32.pt").write_bytes(b"not the weights")
    with pytest.raises(ExportError, match="does not match the SHA-256"):
        export_clip("ViT-B/32", tmp_path / "out", download_root=root, progress=lambda *a: None)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------- one real export: quiet, dynamic, honest about 0 instances


@pytest.fixture(scope="module")
def random_seg(tmp_path_factory) -> Path:
    """A randomly initialised one-class yolov8n-seg: its class scores stay far below conf 0.4, so it finds nothing."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    pytest.importorskip("onnxconverter_common")
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(0)
    m = SegmentationModel("yolov8n-seg.yaml", nc=1, verbose=False)
    m.names = {0: "object"}
    path = tmp_path_factory.mktemp("ckpt") / "random-seg.pt"
    torch.save({"model": m.half(), "train_args": {"task": "segment"}}, path)
    return path


@pytest.mark.parametrize("converter", ["native", "torch"])
def test_export_is_quiet_dynamic_and_honest_about_zero_instances(random_seg, tmp_path, capfd, converter):
    import cv2

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, value in enumerate((0, 128, 255)):  # blank photos: nothing to segment
        cv2.imwrite(str(calib / f"blank{i}.jpg"), np.full((240, 320, 3), value, np.uint8))
    out = tmp_path / "bundle"
    capfd.readouterr()
    status = main(["export", "fastsam", "--weights", str(random_seg), "--out", str(out), "--imgsz", "320",
                   "--half", "--calib", str(calib), "--converter", converter])
    cap = capfd.readouterr()
    text = cap.out + cap.err
    assert status == 0, text
    for noise in ("WARNING", "Warning", "Deprecat", "deprecat", "Predict:", "ProTip", "Ultralytics", ".tmp-", "model.onnx"):
        assert noise not in text, (noise, text)  # no third-party noise, no path of the deleted work files
    assert "[7/7] writing manifest" in cap.err  # the steps are still shown
    assert re.search(r"warning: fp16 vs fp32 on 3 images: no instances .*accuracy not measured", cap.err), cap.err
    assert "IoU 1.0" not in text and "100%" not in text

    m = json.loads((out / "manifest.json").read_text())
    assert m["dynamic"] is True and m["batch"] is None and m["variant"] == "fp16"
    assert [o["dtype"] for o in m["outputs"]] == ["float32", "float32"]  # a dynamic graph converts to fp16 too
    acc = m["accuracy"]
    assert acc["instances_fp32"] == 0 and acc["measured"] is False
    assert acc["mask_iou_mean"] is None and acc["count_agreement"] is None
    assert "accuracy not measured" in acc["note"]
    # the warning filters and ultralytics' logger are restored after the export
    import logging
    import warnings

    assert logging.getLogger("ultralytics").level == logging.INFO
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("still visible", UserWarning)
    assert len(caught) == 1

    from fastsam_onnx import FastSAM

    model = FastSAM(out, providers="cpu")
    assert model.dynamic
    assert main(["doctor", "--model", str(out), "--runs", "1"]) == 0
    assert "static" not in capfd.readouterr().out  # no note for a dynamic graph

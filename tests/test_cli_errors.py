"""The CLI's error contract: one sanitized line and exit 2 for what the user can fix (typed errors, OSErrors,
missing extras), one line plus a ``--debug`` hint and exit 1 for internal errors, the full traceback with
``--debug`` (before or after the sub-command) or ``FASTSAM_ONNX_DEBUG=1``."""

from __future__ import annotations

import errno
import sys

import pytest

import fastsam_onnx.cli.export as export_cmd
import fastsam_onnx.cli.fetch as fetch_cmd
from fastsam_onnx.cli import UsageError, main
from fastsam_onnx.cli.extras import extra_of, missing_modules, require
from fastsam_onnx.errors import BadArgumentError


@pytest.fixture(autouse=True)
def no_debug_env(monkeypatch):
    monkeypatch.delenv("FASTSAM_ONNX_DEBUG", raising=False)


def raising(exc: BaseException):
    def run(args):
        raise exc

    return run


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# --- require() -------------------------------------------------------------------------------------------


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "not installed"
    assert missing_modules("torch", "json", "no_such_pkg_xyz.sub") == ["torch", "no_such_pkg_xyz.sub"]
    with pytest.raises(UsageError) as e:
        require("export", "json", "torch", what="fastsam-onnx export")
    assert str(e.value) == "fastsam-onnx export needs the [export] extra (missing: torch): pip install 'fastsam-onnx[export]'"
    require("server", "json", "os.path")  # all there: no error
    assert extra_of("torch.nn") == "export" and extra_of("numpy") is None and extra_of(None) is None


def test_missing_extra_module_is_a_one_liner(monkeypatch, capsys):
    exc = ModuleNotFoundError("No module named 'ultralytics'", name="ultralytics")
    monkeypatch.setattr(export_cmd, "run_fastsam", raising(exc))
    assert main(["export", "fastsam", "--weights", "w.pt", "--out", "o"]) == 2
    err = err_lines(capsys)
    assert err == ["fastsam-onnx export: error: this needs the [export] extra (no module 'ultralytics'): "
                   "pip install 'fastsam-onnx[export]'"]


def test_an_unknown_missing_module_is_internal(monkeypatch, capsys):
    monkeypatch.setattr(fetch_cmd, "run", raising(ModuleNotFoundError("No module named 'zzz'", name="zzz")))
    assert main(["fetch", "x"]) == 1
    assert "internal error: ModuleNotFoundError" in err_lines(capsys)[0]


# --- internal errors and --debug -------------------------------------------------------------------------


def test_internal_error_one_line_and_hint(monkeypatch, capsys):
    monkeypatch.setattr(fetch_cmd, "run", raising(RuntimeError("boom \x1b[2J\nmore")))
    assert main(["fetch", "fastsam-s"]) == 1
    err = err_lines(capsys)
    assert err == [
        "fastsam-onnx fetch: internal error: RuntimeError: boom \\x1b[2J\\x0amore",
        "fastsam-onnx fetch: run with --debug (or FASTSAM_ONNX_DEBUG=1) for the traceback",
    ]


@pytest.mark.parametrize(
    "argv,env",
    [
        (["--debug", "fetch", "fastsam-s"], None),
        (["fetch", "fastsam-s", "--debug"], None),
        (["fetch", "fastsam-s"], "1"),
    ],
)
def test_debug_prints_the_traceback(monkeypatch, capsys, argv, env):
    if env:
        monkeypatch.setenv("FASTSAM_ONNX_DEBUG", env)
    monkeypatch.setattr(fetch_cmd, "run", raising(RuntimeError("boom")))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert err.rstrip().splitlines()[-1] == "fastsam-onnx fetch: internal error: RuntimeError: boom"
    assert "run with --debug" not in err


def test_debug_after_a_nested_sub_command(monkeypatch, capsys):
    monkeypatch.setattr(export_cmd, "run_clip", raising(ValueError("bad")))
    assert main(["export", "clip", "--out", "o", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["export", "clip", "--out", "o"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_debug_also_shows_user_errors(monkeypatch, capsys):
    monkeypatch.setattr(fetch_cmd, "run", raising(BadArgumentError("conf must be in [0, 1]")))
    assert main(["fetch", "x"]) == 2
    assert err_lines(capsys) == ["fastsam-onnx fetch: error: conf must be in [0, 1]"]
    assert main(["--debug", "fetch", "x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("fastsam-onnx fetch: error: conf must be in [0, 1]")


# --- OSErrors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc,expected",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/out/r.json"), "error: /out/r.json: Permission denied"),
        (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"), "error: /tmp: Is a directory"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), "error: /a -> /b: Invalid cross-device link"),
        (PermissionError(errno.EACCES, "Permission denied", "/out/\x1b[31mr\n.json"),
         "error: /out/\\x1b[31mr\\x0a.json: Permission denied"),
    ],
)
def test_os_errors_are_user_errors(monkeypatch, capsys, exc, expected):
    monkeypatch.setattr(fetch_cmd, "run", raising(exc))
    assert main(["fetch", "x"]) == 2
    assert err_lines(capsys) == [f"fastsam-onnx fetch: {expected}"]


def test_output_onto_a_directory_is_one_line(demo, tmp_path, capsys):
    (tmp_path / "r.json").mkdir()
    assert main(["segment", str(demo / "example.jpg"), "--json", str(tmp_path / "r.json")]) == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "r.json" in err[0] and "internal" not in err[0], err


# --- sanitized messages ----------------------------------------------------------------------------------


def test_file_names_cannot_inject_escapes(tmp_path, capsys):
    name = str(tmp_path / "evil\x1b]0;title\x07\nsecond\x9b.jpg")
    assert main(["segment", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not any(c in err for c in "\x1b\x07\x9b"), err
    assert main(["fetch", "evil\x1b[2Jname"]) == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "unknown model" in err[0] and "\x1b" not in err[0] and "\\x1b[2J" in err[0]


def test_opencv_log_lines_are_silenced_in_the_cli(tmp_path, capfd):
    """OpenCV prints its own decoder warnings to fd 2 for a broken PNG; the CLI reports the failure once itself."""
    from fastsam_onnx.cli import main

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
    assert main(["segment", str(bad), "--json", str(tmp_path / "r.json")]) == 2
    err = capfd.readouterr().err
    assert "global" not in err and "WARN" not in err and "imdecode" not in err, err
    assert err.count("\n") == 1 and "cannot decode image" in err


def test_warnings_are_one_clean_line(tmp_path, capsys):
    """A provider fallback in the CLI: one 'fastsam-onnx: warning:' line, no source location; restored after."""
    import warnings

    import onnxruntime as ort

    from fastsam_onnx.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is offered here: no fallback to warn about")
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = before
        assert main(["segment", str(_example()), "--providers", "cuda", "--json", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(lines) == 1 and lines[0].startswith("fastsam-onnx: warning: "), err
    assert ".py:" not in err and "runpy" not in err
    assert warnings.showwarning is before


def _example():
    from fastsam_onnx.models import example_image

    return example_image()

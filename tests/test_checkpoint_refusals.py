"""read_checkpoint refuses (issue 24 item 2): pickles that would run code under torch.load, with no side effect, and
corrupt, truncated, legacy or incomplete files, each with a one-line BadModelError naming the file.

The hostile pickles are written opcode by opcode (protocols 0 and 2) and zipped as torch.save zips them; the ones that
would create a file are first shown to do so under plain ``pickle.loads`` in a child process.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastsam_onnx.errors import BadModelError
from fastsam_onnx.export.checkpoint import read_checkpoint

P2, STOP, REDUCE, NEWOBJ, MARK, TUPLE, TUPLE1 = b"\x80\x02", b".", b"R", b"\x81", b"(", b"t", b"\x85"


def G(module: str, name: str) -> bytes:
    return b"c%s\n%s\n" % (module.encode(), name.encode())


def S(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def call(func: bytes, *args: bytes) -> bytes:
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def archive(path: Path, pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A zip laid out as torch.save writes it: ``archive/data.pkl``, ``archive/data/<key>``, byteorder, version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return path


def touch(t: str) -> bytes:
    return S(f"touch {t}")


def write_py(t: str) -> bytes:
    return S(f"open({t!r}, 'w').close()")


#: name → (pickle of a payload that creates the file ``t``, whether plain pickle.loads creates it)
HOSTILE = {
    "os.system, protocol 0": lambda t: b"cos\nsystem\n(S'touch %s'\ntR." % t.encode(),
    "posix.system, protocol 2": lambda t: P2 + call(G("posix", "system"), touch(t)) + STOP,
    "builtins.eval": lambda t: P2 + call(G("builtins", "eval"), write_py(t)) + STOP,
    "__builtin__.exec": lambda t: P2 + call(G("__builtin__", "exec"), write_py(t)) + STOP,
    "getattr(__import__('os'), 'system')": lambda t: P2 + call(
        call(G("builtins", "getattr"), call(G("builtins", "__import__"), S("os")), S("system")), touch(t)) + STOP,
    "subprocess.Popen": lambda t: P2 + call(G("subprocess", "Popen"), b"](" + S("touch") + S(t) + b"e") + STOP,
    "subprocess.check_call": lambda t: P2 + call(G("subprocess", "check_call"), b"](" + S("touch") + S(t) + b"e") + STOP,
    "INST os.system": lambda t: b"(S'touch %s'\nios\nsystem\n." % t.encode(),
    "OBJ os.system": lambda t: P2 + MARK + G("os", "system") + touch(t) + b"o" + STOP,
    "runpy._run_code": lambda t: P2 + call(G("runpy", "_run_code"), write_py(t), b"}") + STOP,
    "importlib.import_module": lambda t: P2 + call(G("importlib", "import_module"), S("os")) + STOP,
    "nt.system": lambda t: P2 + call(G("nt", "system"), touch(t)) + STOP,
    "webbrowser.open": lambda t: P2 + call(G("webbrowser", "open"), S("file:///dev/null")) + STOP,
    "torch.load": lambda t: P2 + call(G("torch", "load"), S("other.pt")) + STOP,
    "torch.storage._load_from_bytes": lambda t: P2 + call(G("torch.storage", "_load_from_bytes"), S("x")) + STOP,
    "a function of ultralytics": lambda t: P2 + call(G("ultralytics.utils.checks", "check_requirements"), S("x")) + STOP,
    "a class of ultralytics called with arguments": lambda t: P2 + call(G("ultralytics", "YOLO"), S(t)) + STOP,
    "types.FunctionType": lambda t: P2 + G("types", "FunctionType") + MARK + TUPLE + NEWOBJ + STOP,
    "subprocess.Popen, NEWOBJ": lambda t: P2 + G("subprocess", "Popen") + MARK + TUPLE + NEWOBJ + STOP,
    "a Record called": lambda t: P2 + call(G("ultralytics.nn.modules.conv", "Conv") + b")" + NEWOBJ, touch(t)) + STOP,
    "copyreg._reconstructor of os.system": lambda t: P2 + call(
        G("copy_reg", "_reconstructor"), G("os", "system"), G("__builtin__", "object"), touch(t)) + STOP,
    "_rebuild_from_type_v2 of os.system": lambda t: P2 + call(
        G("torch._tensor", "_rebuild_from_type_v2"), G("os", "system"), G("torch", "Tensor"),
        MARK + touch(t) + TUPLE, b"}") + STOP,
    "an extension code": lambda t: P2 + b"\x82\x01" + STOP,
}
LIVE = ("os.system, protocol 0", "posix.system, protocol 2", "builtins.eval", "__builtin__.exec",
        "getattr(__import__('os'), 'system')", "subprocess.Popen", "subprocess.check_call", "INST os.system",
        "OBJ os.system", "runpy._run_code")


@pytest.mark.parametrize("name", LIVE)
def test_hostile_payloads_are_live(name, tmp_path):
    """The payloads do create the file under plain pickle.loads (in a child process): refusing them matters."""
    target = tmp_path / "pwned"
    (tmp_path / "p.pkl").write_bytes(HOSTILE[name](str(target)))
    code = "import pickle, sys, time; pickle.loads(open(sys.argv[1], 'rb').read()); time.sleep(0.3)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.pkl")], cwd=tmp_path, capture_output=True, timeout=60)
    assert target.exists()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_pickle_refused_without_side_effect(name, tmp_path):
    target = tmp_path / "pwned"
    path = archive(tmp_path / "hostile.pt", HOSTILE[name](str(target)))
    with pytest.raises(BadModelError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "refused" in msg, msg
    assert not target.exists()


def test_refusal_message_names_the_callable(tmp_path):
    path = archive(tmp_path / "x.pt", HOSTILE["os.system, protocol 0"](str(tmp_path / "pwned")))
    with pytest.raises(BadModelError, match=r"x\.pt: would call os\.system when loaded with torch\.load: refused"):
        read_checkpoint(path)


def _pid(storage_type: bytes, key: str, numel: int) -> bytes:
    return MARK + S("storage") + storage_type + S(key) + S("cpu") + b"J" + struct.pack("<i", numel) + TUPLE + b"Q"


def _args(pid: bytes, size: int, offset: int = 0, stride: int = 1) -> bytes:
    return MARK + pid + b"J" + struct.pack("<i", offset) + b"J" + struct.pack("<i", size) + TUPLE1 + b"J" + struct.pack(
        "<i", stride) + TUPLE1 + b"\x89" + G("collections", "OrderedDict") + b")R" + TUPLE


def _tensor(pid: bytes, size: int, offset: int = 0, stride: int = 1) -> bytes:
    return G("torch._utils", "_rebuild_tensor_v2") + _args(pid, size, offset, stride) + REDUCE


def test_crafted_tensor_pickle_reads(tmp_path):
    """The hand-made tensor pickle of the storage tests reads when it is right (a check of the helpers)."""
    pkl = P2 + _tensor(_pid(G("torch", "FloatStorage"), "0", 4), 3, 1) + STOP
    got = read_checkpoint(archive(tmp_path / "ok.pt", pkl, {"0": np.arange(4, dtype="<f4").tobytes()}))
    assert got.dtype == np.float32 and got.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("pkl, storages, match", [
    (P2 + S("abc") + b"Q" + STOP, {}, "persistent id 'abc' is not a tensor storage: refused"),
    (b"Pabc\n.", {}, "is not a tensor storage: refused"),
    (P2 + _pid(G("os", "system"), "0", 4) + STOP, {"0": bytes(16)}, "is not a tensor storage: refused"),
    (P2 + _pid(G("torch", "FloatStorage"), "../x", 4) + STOP, {}, "is not a tensor storage: refused"),
    (P2 + _tensor(_pid(G("torch", "FloatStorage"), "0", 4), 10) + STOP, {"0": bytes(16)},
     r"a tensor of size \[10\] reaches past its storage 0 \(4 elements\)"),
    (P2 + _tensor(_pid(G("torch", "FloatStorage"), "0", 4), 2, 3) + STOP, {"0": bytes(16)}, "reaches past"),
    (P2 + _tensor(_pid(G("torch", "FloatStorage"), "0", 100), 10) + STOP, {"0": bytes(16)},
     "tensor data archive/data/0 holds 16 bytes where its storage needs 400"),
    (P2 + _tensor(_pid(G("torch", "HalfStorage"), "7", 4), 4) + STOP, {}, "missing tensor data archive/data/7"),
    (P2 + call(G("torch._utils", "_rebuild_tensor_v2"), S("x"), b"K\x00", b")", b")", b"\x89", b"}") + STOP, {},
     "tensor data is not a storage"),
    (P2 + _tensor(_pid(G("torch", "FloatStorage"), "0", 4), 1 << 26, 0, 0) + STOP, {"0": bytes(16)},
     r"a tensor of size \[67108864\] expands its storage 0 \(4 elements\)"),
    (P2 + b"]" + MARK + G("torch._utils", "_rebuild_tensor_v2") + b"q\x00" + _args(
        _pid(G("torch", "FloatStorage"), "0", 1 << 20), 1 << 20) + b"q\x01" + REDUCE + b"h\x00h\x01R" * 80 + b"e" + STOP,
     {"0": bytes(4 << 20)}, r"its tensors view their storages so often that copying them would take \d+ MB"),
    (P2 + REDUCE + STOP, {}, "corrupt pickle"),
    (b"\x80\x02garbage", {}, "corrupt pickle"),
    (P2 + G("ultralytics.nn.tasks", "DetectionModel") + b")" + NEWOBJ + b"K\x01" + b"a" + STOP, {},
     "adds items to a Record: refused"),
])
def test_bad_storages_and_pickles(tmp_path, pkl, storages, match):
    path = archive(tmp_path / "bad.pt", pkl, storages)
    with pytest.raises(BadModelError, match=match) as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("good") / "good.pt"
    torch.save({"w": torch.arange(4096, dtype=torch.float32), "b": torch.ones(3)}, path)
    return path


def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            data = change(info.filename, a.read(info))
            if data is not None:
                b.writestr(info.filename, data)
    return dst


def _corrupt(kind: str, good: Path, tmp: Path) -> Path:
    path = tmp / f"{kind}.pt"
    raw = good.read_bytes()
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    elif kind == "legacy":
        import torch

        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "flipped":  # one byte of tensor data changed: the entry's CRC-32 no longer matches
        at = raw.find(np.arange(4096, dtype="<f4").tobytes()) + 5000
        path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    elif kind == "no-storage":
        _rewrite(good, path, lambda n, d: None if n.endswith("/data/0") else d)
    elif kind == "short-storage":
        _rewrite(good, path, lambda n, d: d[:-4] if n.endswith("/data/0") else d)
    elif kind == "no-pickle":
        _rewrite(good, path, lambda n, d: None if n.endswith("data.pkl") else d)
    elif kind == "bad-byteorder":
        _rewrite(good, path, lambda n, d: b"middle" if n.endswith("/byteorder") else d)
    return path


@pytest.mark.parametrize("kind, match", [
    ("missing", "no such file"),
    ("directory", "not a file"),
    ("empty", "empty file"),
    ("text", r"not a PyTorch checkpoint \(not a zip archive\)"),
    ("legacy", r"legacy \(pre-1\.6\) torch\.save format: re-save it with torch\.save"),
    ("truncated", "truncated or corrupt zip archive"),
    ("flipped", "corrupt entry good/data/0"),
    ("no-storage", "missing tensor data good/data/0"),
    ("short-storage", "tensor data good/data/0 holds 16380 bytes where its storage needs 16384"),
    ("no-pickle", "no data.pkl in the zip archive"),
    ("bad-byteorder", "unknown byte order"),
])
def test_bad_files(kind, match, good, tmp_path):
    path = _corrupt(kind, good, tmp_path)
    with pytest.raises(BadModelError, match=match) as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: ")

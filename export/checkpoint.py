"""PyTorch checkpoints read without PyTorch and without running anything they name.

:func:`read_checkpoint` reads a ``.pt`` file (``torch.save``'s zip archive, or ``torch.jit.save``'s) with numpy and
the standard library only. The object tree of a checkpoint is given back with Python containers as they are, tensors
as numpy arrays (a C-contiguous copy of their view of the storage, dtype as stored, bfloat16 as float32), and every
other pickled object as an inert :class:`Record` (its class's module and name, its constructor arguments and its
state). Nothing named by the file is imported or called: the restricted unpickler of
:mod:`fastsam_onnx.export.unpickle` implements the few callables checkpoints need and refuses any other call with a
:class:`~fastsam_onnx.errors.BadModelError` (its docstring states the rule).

Layouts: an ultralytics training checkpoint (a dict; ``ckpt["ema"] or ckpt["model"]`` is the model's Record tree), a
TorchScript archive (the root is the module's Record; its attributes hold parameters and submodules), a plain state
dict. Match classes on ``Record.name``: the module paths differ between releases (ultralytics 8.0 pickled
``ultralytics.nn.modules.Conv``, later ones ``ultralytics.nn.modules.conv.Conv``).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadModelError
from .record import Record, state_dict

__all__ = ["Record", "read_checkpoint", "state_dict"]

MAX_PICKLE_BYTES = 1 << 30  # data.pkl larger than this is refused (a model's is well under 1 MB)
LEGACY = ("legacy (pre-1.6) torch.save format: re-save it with torch.save(obj, path) on PyTorch >= 1.6 "
          "(_use_new_zipfile_serialization=True)")


def read_checkpoint(path: str | Path) -> Any:
    """The object tree of a ``torch.save`` / ``torch.jit.save`` file, read without torch and without running any of
    it (see the module docstring). Raises a one-line :class:`BadModelError` naming the file and what is wrong: not a
    file, empty, not a zip, legacy format, truncated or corrupt, missing or short tensor data, or a pickle that would
    call something other than the data classes and tensor rebuilds of checkpoints (``os.system``, ``eval``, ...)."""
    path = Path(path)
    try:
        return _read(path)
    except BadModelError as e:
        raise BadModelError(" ".join(f"{path}: {e}".split())) from None


def _read(path: Path) -> Any:
    from .unpickle import unpickle

    if not path.exists():
        raise BadModelError("no such file")
    if not path.is_file():
        raise BadModelError("not a file")
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise BadModelError("empty file")
    if not head.startswith(b"PK"):
        if head[:1] == b"\x80" or head[257:262] == b"ustar":  # a pickle (magic number first) or a tar archive
            raise BadModelError(LEGACY)
        raise BadModelError("not a PyTorch checkpoint (not a zip archive)")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise BadModelError(f"truncated or corrupt zip archive ({e})") from None
    with zf:
        names = zf.namelist()
        prefix = names[0].split("/", 1)[0] if names and "/" in names[0] else ""
        if f"{prefix}/data.pkl" not in names:
            raise BadModelError("no data.pkl in the zip archive: not a torch.save or torch.jit.save file")
        archive = _Archive(zf, prefix)
        tree = unpickle(archive.entry(f"{prefix}/data.pkl", MAX_PICKLE_BYTES), archive)
        members = _torchscript_members(archive)
        if members:
            _annotate(tree, members)
        return tree


class _Archive:
    """The entries of an open zip archive; storages read once each (cached by key) and checked against their size."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str):
        self.zf, self.prefix = zf, prefix
        self.raw: dict[str, np.ndarray] = {}
        self.typed: dict[tuple[str, str], np.ndarray] = {}
        self.stored = self.spent = 0  # bytes of the storages read, of the tensors copied out of them
        order = self.entry(f"{prefix}/byteorder", 16).strip() if f"{prefix}/byteorder" in zf.NameToInfo else b"little"
        if order not in (b"little", b"big"):
            raise BadModelError(f"unknown byte order {order[:16]!r} in {prefix}/byteorder")
        self.order = "<" if order == b"little" else ">"

    def entry(self, name: str, limit: int | None = None) -> bytes:
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise BadModelError(f"missing entry {name}") from None
        if limit is not None and info.file_size > limit:
            raise BadModelError(f"entry {name} is too large ({info.file_size} bytes)")
        try:
            with self.zf.open(info) as f:
                if info.CRC == 0 and info.file_size and hasattr(f, "_expected_crc"):
                    f._expected_crc = None  # written without CRC-32 (torch.serialization.set_crc32_options(False))
                data = f.read()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
            raise BadModelError(f"corrupt entry {name} ({e})") from None
        if len(data) != info.file_size:
            raise BadModelError(f"truncated entry {name}")
        return data

    def spend(self, nbytes: int) -> None:
        """Count the bytes of a tensor about to be copied out of a storage: views may share storages (tied weights),
        but a file whose tensors would take far more memory than its storages (4x + 256 MB) is refused."""
        self.spent += nbytes
        if self.spent > 4 * self.stored + (256 << 20):
            raise BadModelError(f"its tensors view their storages so often that copying them would take "
                                f"{self.spent >> 20} MB (storages: {self.stored >> 20} MB): refused")

    def storage(self, key: str, dtype: str, numel: int, view: str | None = None) -> np.ndarray:
        """The elements of storage ``key`` (``dtype``: a numpy code, or "bf16"), 1-D, in the file's byte order;
        ``view``: an untyped (``"u1"``) storage seen as that dtype."""
        code = view or dtype
        if (key, code) in self.typed:
            return self.typed[(key, code)]
        name = f"{self.prefix}/data/{key}"
        nbytes = numel * (2 if dtype == "bf16" else np.dtype(dtype).itemsize)
        if key not in self.raw:
            if name not in self.zf.NameToInfo:
                raise BadModelError(f"missing tensor data {name}")
            if (size := self.zf.getinfo(name).file_size) != nbytes:
                raise BadModelError(f"tensor data {name} holds {size} bytes where its storage needs {nbytes}")
            self.raw[key] = np.frombuffer(self.entry(name), np.uint8)
            self.stored += nbytes
        raw = self.raw[key]
        if len(raw) != nbytes:
            raise BadModelError(f"tensor data {name} holds {len(raw)} bytes where a storage needs {nbytes}")
        dt = np.dtype("u2" if code == "bf16" else code)
        dt = dt.newbyteorder(self.order) if dt.itemsize > 1 else dt
        if len(raw) % dt.itemsize:
            raise BadModelError(f"tensor data {name} is not a whole number of {code} elements")
        arr = raw.view(dt)
        if code == "bf16":  # bfloat16 is the high half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        self.typed[(key, code)] = arr
        return arr


_SCRIPT_CLASS = re.compile(
    r"^class (\w+)\(Module\):\n  __parameters__ = \[([^\]]*)\]\n  __buffers__ = \[([^\]]*)\]", re.M)


def _torchscript_members(archive: _Archive) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """(module, class) → (parameter names, buffer names) of the module classes a TorchScript archive's code declares
    (``code/__torch__/clip/model.py``: ``class CLIP(Module):`` / ``__parameters__ = [...]``); read as text only."""
    base = f"{archive.prefix}/code/"
    out: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for name in archive.zf.namelist():
        if name.startswith(base + "__torch__") and name.endswith(".py"):
            module = name[len(base):-3].replace("/", ".")
            text = archive.entry(name, 64 << 20).decode("utf-8", "replace")
            for m in _SCRIPT_CLASS.finditer(text):
                out[(module, m[1])] = (re.findall(r'"(\w+)"', m[2]), re.findall(r'"(\w+)"', m[3]))
    return out


def _annotate(tree: Any, members: dict[tuple[str, str], tuple[list[str], list[str]]]) -> None:
    """Set ``__parameters__`` / ``__buffers__`` in the state of each TorchScript module Record of ``tree``."""
    todo, seen = [tree], set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Record):
            if isinstance(obj.state, dict) and (obj.module, obj.name) in members:
                obj.state["__parameters__"], obj.state["__buffers__"] = map(list, members[(obj.module, obj.name)])
            todo.append(obj.state)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)

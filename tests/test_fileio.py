"""Atomic writers: whole files or nothing, with the permissions a plain open() would give."""

import os
import stat

import numpy as np
import pytest

from fastsam_onnx.fileio import atomic_imwrite, atomic_path, atomic_write_json, atomic_write_text


def test_failure_leaves_the_old_file_and_no_temp(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_modes_follow_the_umask_or_the_replaced_file(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_json(tmp_path / "a.json", {"a": 1})
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        kept = tmp_path / "b.txt"
        kept.write_text("x")
        kept.chmod(0o600)
        atomic_write_text(kept, "y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "y"
    finally:
        os.umask(old)


def test_imwrite_by_extension(tmp_path):
    im = np.zeros((8, 8, 3), np.uint8)
    assert atomic_imwrite(tmp_path / "o.png", im) and (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
    assert not atomic_imwrite(tmp_path / "o.unknownext", im)
    assert not (tmp_path / "o.unknownext").exists()

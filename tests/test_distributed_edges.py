"""``segment --engine ray`` at its edges: an ``--out`` part with malformed rows stops ``--skip-existing`` with one
line (exit status 2) before any work; an ``--address`` where no cluster answers is given up within
``--connect-timeout`` (one line, exit status 2; a real process against a closed port and a port that accepts but
never answers); the local Ray instance that the command starts leaves no process behind (gcs_server, raylet,
agents, workers) when the command ends, and when Ctrl-C (SIGINT) stops it while Ray starts or while it works.

The processes of a run are found by a marker in their environment that the test gives the command (every Ray
process inherits it), not by anything the command itself reports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest

from fastsam_onnx.cli import main

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from fastsam_onnx.distributed.cluster import CONNECT_TIMEOUT, parse_address  # noqa: E402
from fastsam_onnx.distributed.parts import PartWriter, existing_paths  # noqa: E402
from fastsam_onnx.distributed.rows import row_of, to_table  # noqa: E402
from fastsam_onnx.errors import BadArgumentError  # noqa: E402

MARK = "FASTSAM_ONNX_TEST_RUN"
on_linux = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds a run's processes through /proc")
STORE_BYTES = 200 << 20  # the command's local instance: object store capped through Ray's share of available memory


def good_row(path: str) -> dict:
    return row_of({"image": {"path": path, "width": 4, "height": 3}, "mask_size": {"width": 4, "height": 3},
                   "instances": [], "timings_ms": {}}, path)


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("lines, words", [
    (['{"path": "a.jpg"'], "not JSON"),
    (["[1, 2]"], "a JSON list, not a row object"),
    (['"a.jpg"'], "a JSON str"),
    (['{"path": 5}'], "'path' is int"),
    (['{"path": null}'], "'path' is null"),
    (['{"path": ""}'], "(empty)"),
    (['{"width": 3}'], "'path' is null"),
    (['{"path": ["a", "b"]}'], "'path' is list"),
    (['{"path": "a.jpg", "width": "wide"}'], "wrong type"),
    (['{"path": "a.jpg", "instances": [{"id": "x"}]}'], "wrong type"),
    (["[" * 100_000 + "]" * 100_000], "nested too deeply"),
])
def test_skip_existing_over_malformed_jsonl_rows(tmp_path, capsys, lines, words):
    out = tmp_path / "r.jsonl"
    with PartWriter(out, "jsonl") as w:
        w.add(to_table([good_row("ok.jpg")]))
    bad = out / "part-0-00001.jsonl"
    bad.write_text(json.dumps(good_row("b.jpg")) + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(BadArgumentError, match="line 2|row 2"):
        existing_paths(out)
    src = tmp_path / "in"
    src.mkdir()
    assert cv2.imwrite(str(src / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["segment", str(src), "--engine", "ray", "--out", str(out), "--skip-existing", "-q"]) == 2
    one_line_error(capsys, str(bad), words, "fix or remove the part")


def test_skip_existing_over_malformed_parquet(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in"
    src.mkdir()
    assert cv2.imwrite(str(src / "a.png"), np.zeros((8, 8, 3), np.uint8))
    whole = to_table([good_row("ok.jpg")])
    cases = [
        (pa.table({"x": [1]}), "no column path"),  # another table altogether
        (whole.set_column(0, "path", pa.array([None], pa.string())), "'path' is null"),
        (whole.set_column(0, "path", pa.array([7], pa.int64())), "holds int64"),
    ]
    for i, (table, words) in enumerate(cases):
        out = tmp_path / f"r{i}.parquet"
        with PartWriter(out, "parquet") as w:
            w.add(whole)
        pq.write_table(table, out / "part-0-00001.parquet")
        assert main(["segment", str(src), "--engine", "ray", "--out", str(out), "--skip-existing", "-q"]) == 2
        one_line_error(capsys, words, "fix or remove the part")
    out = tmp_path / "junk.parquet"
    out.mkdir()
    (out / "part-0-00000.parquet").write_bytes(b"PAR1 not really")
    assert main(["segment", str(src), "--engine", "ray", "--out", str(out), "--skip-existing", "-q"]) == 2
    one_line_error(capsys, "cannot read results part")


def test_ray_connection_options_refused(tmp_path, capsys):
    base = ["segment", str(tmp_path), "--engine", "ray", "--out", str(tmp_path / "r.parquet")]
    cases = [
        (["--connect-timeout", "5"], "--connect-timeout needs --address"),
        (["--address", "h:1", "--connect-timeout", "inf"], "--connect-timeout must be"),
        (["--address", "h:1", "--connect-timeout", "nan"], "--connect-timeout must be"),
        (["--address", "h:1", "--connect-timeout", "0"], "--connect-timeout must be"),
        (["--address", "local"], "leave --address out"),
        (["--address", "nonsense"], "expected auto or HOST:PORT"),
        (["--address", "h:70000"], "expected auto or HOST:PORT"),
    ]
    for extra, words in cases:
        assert main(base + extra) == 2, extra
        one_line_error(capsys, words)
    assert main(["segment", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--connect-timeout", "5"]) == 2
    one_line_error(capsys, "needs --engine ray")
    assert parse_address("[::1]:6379") == ("::1", 6379) and parse_address("ray://head:10001") == ("head", 10001)
    assert parse_address("auto") is None and 0 < CONNECT_TIMEOUT <= 60  # the default the help states


def run_env(tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    with open("/proc/meminfo") as f:  # Ray sizes the store as a share of the memory available when it starts
        available = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
    env.update({MARK: tag, "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": f"{min(1.0, STORE_BYTES / available):.6f}"})
    return env


def marked(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every running process whose environment holds ``MARK=tag`` (zombies have none)."""
    found, mark = [], f"{MARK}={tag}".encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                found.append((int(p), f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return found


def gone(tag: str, proc: subprocess.Popen, seconds: float = 30.0) -> list[tuple[int, str]]:
    """Wait (at most ``seconds``) for every marked process but the command's own to end; returns those left, killed."""
    end = time.monotonic() + seconds
    left = [x for x in marked(tag) if x[0] != proc.pid]
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = [x for x in marked(tag) if x[0] != proc.pid]
    for pid, _ in left:  # leave nothing behind, whatever the verdict
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def cli(tag: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastsam_onnx", "segment", *args], env=run_env(tag),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@on_linux
def test_unreachable_address_is_given_up(tmp_path):
    """A closed port fails at once; a port that accepts and never answers (not a Ray GCS) after --connect-timeout."""
    (tmp_path / "in").mkdir()
    assert cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nothing is ever read or written
        for port, words in ((closed_port, "cannot reach a Ray cluster"), (silent.getsockname()[1], "within 3 s")):
            tag = uuid.uuid4().hex
            proc = cli(tag, str(tmp_path / "in"), "--engine", "ray", "--address", f"127.0.0.1:{port}",
                       "--connect-timeout", "3", "--out", str(tmp_path / f"r{port}.parquet"))
            try:
                _, err = proc.communicate(timeout=120)  # a hang fails here: Ray's own retries take minutes
            finally:
                proc.kill()
            assert proc.returncode == 2, err
            assert words in err and "Traceback" not in err and err.strip().count("\n") == 0, err
            assert gone(tag, proc, 10) == []  # the probe process was ended too
            assert not (tmp_path / f"r{port}.parquet").exists() or not any((tmp_path / f"r{port}.parquet").iterdir())


def synth_folder(d, n: int):
    from fastsam_onnx.models.synth import scene_for_seed

    d.mkdir()
    for i in range(n):
        cv2.imwrite(str(d / f"{i:02d}.png"), scene_for_seed(i, 256).image)
    return d


def wait_for(tag: str, proc: subprocess.Popen, words: str, seconds: float = 300.0) -> list[tuple[int, str]]:
    """Poll (at most ``seconds``) until a marked process's command line holds ``words``; the processes then."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        now = marked(tag)
        if any(words in cmd for _, cmd in now):
            return now
        time.sleep(0.1)
    proc.kill()
    err = proc.communicate()[1]
    gone(tag, proc, 10)
    pytest.fail(f"no process with {words!r} in its command line came up (exit status {proc.poll()}): {err[-2000:]}")


@on_linux
@pytest.mark.slow
@pytest.mark.parametrize("when", ["raylet", "ray::IDLE", "Segmenter"])  # Ray starting, its workers starting, at work
def test_ctrl_c_leaves_no_ray_process(tmp_path, when):
    """SIGINT as soon as a process with ``when`` in its command line runs: exit status 130 (not a crash of a
    half-made driver), and no process of the run left once the command has ended. "At work" means rows are
    coming back: in two CI runs a SIGINT sent as the actor's process appeared (still starting up) was lost and
    the run went on to the end with exit status 0 (noted on issue 26; not fixed). 160 images keep the run long
    enough for the signal to land in it."""
    photos = synth_folder(tmp_path / "photos", 160)
    tag = uuid.uuid4().hex
    proc = cli(tag, str(photos), "--engine", "ray", "--out", str(tmp_path / "r.parquet"), "--batch-size", "1", "-q")
    try:
        running = wait_for(tag, proc, when)
        if when == "Segmenter":  # at work: rows are coming back (the output folder has its first, hidden part)
            out, end = tmp_path / "r.parquet", time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < end and not (out.is_dir() and any(out.iterdir())):
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    left = gone(tag, proc)
    assert len(running) >= 3 and any("gcs_server" in cmd for _, cmd in running), running
    assert proc.returncode == 130, err
    assert "Traceback" not in err and ("stopped by Ctrl-C" in err or "interrupted" in err), err
    assert left == [], f"left running after Ctrl-C: {left}"


@on_linux
@pytest.mark.slow
def test_finished_run_leaves_no_ray_process(tmp_path):
    photos = synth_folder(tmp_path / "photos", 2)
    tag = uuid.uuid4().hex
    proc = cli(tag, str(photos), "--engine", "ray", "--out", str(tmp_path / "r.jsonl"), "-q")
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "2 segmented" in err and gone(tag, proc) == []

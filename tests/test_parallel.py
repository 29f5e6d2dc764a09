"""fastsam_onnx.parallel: the output pool maps in order, raises what a task raises, and nests without waiting."""

import threading

import pytest

from fastsam_onnx.parallel import chunks, parallel_imap, parallel_map, workers


def test_workers_setting(monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", "3")
    assert workers() == 3
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", "0")
    assert workers() == 1
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", "lots")
    assert 1 <= workers() <= 8
    monkeypatch.delenv("FASTSAM_ONNX_OUTPUT_THREADS")
    assert 1 <= workers() <= 8


def test_order_errors_and_nesting(monkeypatch):
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", "2")
    assert parallel_map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    names = set(parallel_map(lambda _: threading.current_thread().name, range(20)))
    assert any(n.startswith("fastsam-onnx-output") for n in names)

    def bad(x):
        if x == 7:
            raise ValueError("seven")
        return x

    with pytest.raises(ValueError, match="seven"):
        parallel_map(bad, range(10))
    # a task that maps again runs its inner map itself: no deadlock with every pool thread busy
    assert parallel_map(lambda x: sum(parallel_map(lambda y: y, range(x))), range(6)) == [0, 0, 1, 3, 6, 10]


def test_imap_streams_in_order_within_its_window(monkeypatch):
    """parallel_imap yields in input order while the pool works ahead, never more than ``window`` items started
    past what the consumer took; a task's error reaches the consumer; leaving early cancels what has not begun."""
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", "2")
    started, taken = [], []
    lock = threading.Lock()

    def work(x):
        with lock:
            started.append(x)
            assert len(started) - len(taken) <= 3  # window 3: at most 3 ahead of the consumer
        return x * 10

    for v in parallel_imap(work, range(40), window=3):
        taken.append(v)
    assert taken == [x * 10 for x in range(40)]

    def bad(x):
        if x == 5:
            raise ValueError("five")
        return x

    with pytest.raises(ValueError, match="five"):
        list(parallel_imap(bad, range(20)))
    seen = []
    gen = parallel_imap(lambda x: seen.append(x) or x, range(1000), window=4)
    assert next(gen) == 0
    gen.close()  # the rest is cancelled: far fewer than 1000 ran
    assert len(seen) < 50
    assert list(parallel_imap(lambda x: x + 1, [])) == [] and list(parallel_imap(lambda x: x + 1, [1])) == [2]


def test_chunks_cover_the_range():
    for n, parts, minimum in [(0, 3, 1), (1, 4, 1), (10, 3, 1), (100, 7, 20), (5, 0, 1)]:
        got = chunks(n, parts, minimum)
        assert [i for a, b in got for i in range(a, b)] == list(range(n))
        assert all(b - a >= min(minimum, n) for a, b in got[:-1])


def test_join_fixed_formats_as_python(monkeypatch):
    """Whole-array fixed-point text (fastsam_onnx.outputs.numtext) equals Python's formatting, in chunks too."""
    import json

    import numpy as np

    from fastsam_onnx.outputs import numtext

    monkeypatch.setattr(numtext, "_CHUNK", 97)  # many chunks, formatted on the pool
    rng = np.random.default_rng(0)
    table = (", ", "], [", "\n0 ")
    for d in (0, 1, 2, 6):
        q = np.concatenate([rng.integers(-10**7, 10**7, 3000), [0, 1, -1, 9, 10, 99, 100, -10**6, 10**17, -(10**17)]])
        seps = rng.integers(0, 3, q.size)
        text, ends = numtext.join_fixed(q, d, seps, table, with_ends=True)
        want = ["-" * (v < 0) + str(abs(v) // 10**d) + ("." + str(abs(v) % 10**d).zfill(d) if d else "") + table[s]
                for v, s in zip(q.tolist(), seps.tolist())]
        assert text == "".join(want)
        assert ends.tolist() == np.cumsum([len(w) for w in want]).tolist()
    x = rng.random(5000) * 5000
    assert numtext.join_fixed(np.rint(x * 10).astype(np.int64), 1, None, (", ",)) == "".join(
        json.dumps(v) + ", " for v in np.round(x, 1).tolist())
    assert numtext.join_fixed(np.zeros(0, np.int64), 3) == ""
    assert numtext.join_fixed(np.zeros(0, np.int64), 3, with_ends=True)[1].size == 0


def test_join_table_is_join_fixed_of_the_looked_up_values(monkeypatch):
    """join_table (one lookup per number in fixed_texts' table) writes what join_fixed writes for the same
    values: records with padding (zero bytes deleted) and full records (none), with their ends; texts over
    8 characters are refused."""
    import numpy as np
    import pytest

    from fastsam_onnx.outputs import numtext

    monkeypatch.setattr(numtext, "_CHUNK", 101)
    rng = np.random.default_rng(3)
    cases = [(rng.integers(-99999, 999999, 500), 1, (", ", "], [", "]]")),  # mixed widths
             (np.ceil(np.arange(4033) / 4032 * 1e6).astype(np.int64), 6, (" ", "\n")),  # all 8 characters
             (np.array([0, 7, 12345678]), 0, ("",)), (np.array([5, 10**6]), 6, ("ab", "c"))]
    for values, d, table in cases:
        texts = numtext.fixed_texts(values, d)
        index = rng.integers(0, values.size, 3000)
        seps = rng.integers(0, len(table), index.size)
        got = numtext.join_table(index, texts, seps, table, with_ends=True)
        want = numtext.join_fixed(values[index], d, seps, table, with_ends=True)
        assert got[0] == want[0] and got[1].tolist() == want[1].tolist()
        assert numtext.join_table(index[:0], texts, seps[:0], table) == ""
    with pytest.raises(ValueError, match="8 characters"):
        numtext.fixed_texts(np.array([123456789]), 1)


def test_malloc_arena_cap_is_set_once_and_respects_the_environment(monkeypatch):
    """share_malloc_arena calls glibc's mallopt(M_ARENA_MAX, 1) once, and never when $MALLOC_ARENA_MAX is set."""
    import sys

    from fastsam_onnx import parallel

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param.value, value.value))
            return 1

    monkeypatch.setattr(parallel.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(parallel, "_arena_capped", False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    parallel.share_malloc_arena()
    assert calls == []
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    parallel.share_malloc_arena()
    parallel.share_malloc_arena()
    assert calls == ([(-8, 1)] if sys.platform.startswith("linux") else [])

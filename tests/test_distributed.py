"""``segment --engine ray`` / ``fastsam_onnx.distributed``: rows equal the CLI's per-image JSON (real photographs,
synthetic images, a corrupt file), a killed actor loses and duplicates nothing, ``--skip-existing`` over a partial
output segments only what is missing, URIs decode to the same pixels with the same checks.

One local Ray instance (2 CPUs, an 80 MB object store) is shared by the module; the multi-node test is in
test_distributed_cluster.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import cv2
import numpy as np
import pytest
from test_image_bombs import write_bombs

from fastsam_onnx.cli import main
from fastsam_onnx.errors import BadArgumentError, BadImageError
from fastsam_onnx.image import read_image

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from fastsam_onnx.distributed import decode_bytes, list_source, segment_dataset, to_result_json  # noqa: E402
from fastsam_onnx.distributed.parts import PartWriter, part_files, read_results  # noqa: E402
from fastsam_onnx.distributed.rows import row_of, to_table  # noqa: E402
from fastsam_onnx.distributed.source import load_source, read_uri  # noqa: E402
from fastsam_onnx.distributed.worker import Segmenter  # noqa: E402

OBJECT_STORE = 80 << 20  # bytes; CI's /dev/shm may be 64 MB (Ray falls back to /tmp then)


def ray_init(**kwargs):
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=OBJECT_STORE, **kwargs)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray_init(num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


def make_folder(d, assets):
    """bus.jpg, zidane.jpg, synthetic scenes (jpg/png/bmp, one in a subfolder), a truncated JPEG, a fake PNG."""
    from fastsam_onnx.models.synth import scene_for_seed

    (d / "synth" / "deep").mkdir(parents=True)
    shutil.copy(assets / "bus.jpg", d / "bus.jpg")
    shutil.copy(assets / "zidane.jpg", d / "zidane.jpg")
    for seed, name in ((1, "synth/s1.png"), (2, "synth/s2.jpg"), (3, "synth/deep/s3.bmp")):
        assert cv2.imwrite(str(d / name), scene_for_seed(seed, 320).image)
    (d / "synth" / "broken.jpg").write_bytes((assets / "bus.jpg").read_bytes()[:2000])  # truncated
    (d / "fake.png").write_text("not an image")
    (d / "notes.txt").write_text("not listed")
    return d


@pytest.fixture(scope="module")
def photos(tmp_path_factory, assets):
    return make_folder(tmp_path_factory.mktemp("photos"), assets)


@pytest.fixture(scope="module")
def cli_json(photos, tmp_path_factory):
    """{path: the CLI folder mode's per-image JSON} (``segment FOLDER --out-dir``), and its stderr."""
    out = tmp_path_factory.mktemp("cli")
    assert main(["segment", str(photos), "--out-dir", str(out), "-q"]) == 1  # two bad files
    return {str(p.relative_to(out))[: -len(".json")]: json.loads(p.read_text()) for p in out.rglob("*.json")}


def strip(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "timings_ms"}


def check_rows(rows: list[dict], photos, cli_json: dict) -> None:
    """One row per listed image; each equals the CLI's JSON (timings aside); the bad files have an error."""
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(p for p, _ in list_source(photos)) and len(set(paths)) == len(paths) == 7
    assert set(cli_json) == set(paths) - {"fake.png", "synth/broken.jpg"}
    for r in rows:
        if r["path"] in cli_json:
            assert r["error"] is None, r["error"]
            assert strip(to_result_json(r)) == strip(cli_json[r["path"]]), r["path"]
            assert set(to_result_json(r)["timings_ms"]) == {"preprocess", "inference", "postprocess"}
        else:
            assert "cannot decode" in r["error"] and r["instances"] == [] and r["width"] is None
    assert sum(len(cli_json[p]["instances"]) for p in ("bus.jpg", "zidane.jpg")) > 0


def test_cli_ray_rows_equal_cli_json(local_ray, photos, cli_json, tmp_path, capsys):
    out = tmp_path / "rows.parquet"
    assert main(["segment", str(photos), "--engine", "ray", "--workers", "2", "--batch-size", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "5 segmented, 0 skipped (existing), 2 bad, 7 images" in err and "fake.png: skipped: cannot decode" in err
    assert part_files(out, "parquet") and not any(p.name.startswith(".") for p in out.iterdir())
    rows = read_results(out)
    check_rows(rows, photos, cli_json)
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 7  # the folder reads as one table
    pd = pytest.importorskip("pandas")
    assert {r["path"]: to_result_json(r) for r in pd.read_parquet(out).to_dict("records")} == {
        r["path"]: to_result_json(r) for r in rows}  # as the README reads it
    assert len({r["worker_pid"] for r in rows}) >= 1 and all(r["node_id"] for r in rows)


def test_uri_source_and_text_prompts_python_api(local_ray, photos, cli_json, tmp_path):
    """A ``file://`` URI goes through read_uri + decode_bytes: same rows as the CLI; prompts as the CLI gives them."""
    rows = segment_dataset(photos.resolve().as_uri(), workers=1, batch_size=3).take_all()
    check_rows(rows, photos, cli_json)
    assert all(r["source"].startswith("file://") for r in rows)
    out = tmp_path / "text"
    assert main(["segment", str(photos / "synth"), "--out-dir", str(out), "--text", "blue rectangle", "-q"]) == 1
    ds = segment_dataset(photos / "synth", workers=1, texts=["blue rectangle"])
    for r in ds.take_all():
        want = out / (r["path"] + ".json")
        assert (r["error"] is None) == want.is_file()
        if want.is_file():
            got = strip(to_result_json(r))
            assert got == strip(json.loads(want.read_text())) and all(i["selected_by"] for i in got["instances"])
            assert "prompt" in to_result_json(r)["timings_ms"]


def test_killed_actor_loses_and_duplicates_nothing(local_ray, photos, tmp_path):
    from fastsam_onnx.models.synth import scene_for_seed

    d = tmp_path / "many"
    d.mkdir()
    for i in range(36):
        cv2.imwrite(str(d / f"{i:02d}.png"), scene_for_seed(i, 128).image)
    want = {r["path"]: strip(to_result_json(r)) for r in map(lambda ps: Segmenter().segment_one(*ps), list_source(d))}
    ds = segment_dataset(d, workers=2, batch_size=1)
    rows, killed = [], None
    for row in ds.iter_rows():
        rows.append(row)
        if killed is None:
            killed = row["worker_pid"]
            os.kill(killed, signal.SIGKILL)  # mid-run: 35 images still to go
    assert killed is not None and len(rows) == 36
    assert sorted(r["path"] for r in rows) == sorted(want)  # none lost, none twice
    assert {r["path"]: strip(to_result_json(r)) for r in rows} == want
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    assert len({r["worker_pid"] for r in rows}) >= 2


def test_skip_existing_over_partial_output(local_ray, photos, cli_json, tmp_path, capsys):
    """A killed run left one whole part (3 images, one bad) and a half-written temporary file: the resumed run
    segments only the other 4 images, removes the temporary, and the output holds every image once."""
    out = tmp_path / "rows.jsonl"
    seg = Segmenter()
    items = list_source(photos)
    done = [seg.segment_one(p, s) for p, s in items[0::2][:3]]
    assert sum(r["error"] is not None for r in done) == 1
    with PartWriter(out, "jsonl") as w:
        w.add(to_table(done))
    (out / ".part-x-00001.jsonl.abc.tmp.jsonl").write_text('{"path": "bus.jp')
    first = part_files(out, "jsonl")
    assert main(["segment", str(photos), "--engine", "ray", "--out", str(out), "--skip-existing", "-q"]) == 1
    err = capsys.readouterr().err
    assert "3 segmented, 3 skipped (existing), 1 bad, 7 images" in err
    assert not list(out.glob(".*"))
    parts = part_files(out, "jsonl")
    assert len(parts) == 2 and first[0] in parts
    new = [json.loads(line) for p in set(parts) - set(first) for line in p.read_text().splitlines()]
    assert sorted(r["path"] for r in new) == sorted({p for p, _ in items} - {r["path"] for r in done})
    check_rows(read_results(out), photos, cli_json)
    assert main(["segment", str(photos), "--engine", "ray", "--out", str(out), "--skip-existing"]) == 0
    assert "0 segmented, 7 skipped (existing)" in capsys.readouterr().err
    assert len(part_files(out, "jsonl")) == 2


def test_txt_list_repeats_are_segmented_once(local_ray, photos, cli_json, tmp_path, capsys):
    """A path given twice in a .txt list (also as ./a and a) is one image: one row, and the summary says so."""
    from fastsam_onnx.cli.distributed import _items

    bus, zidane = photos / "bus.jpg", photos / "zidane.jpg"
    lines = [str(bus), f"  {bus}  ", "# a comment", "", str(zidane), f"{photos}/./bus.jpg", str(zidane)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    assert _items(str(tmp_path / "list.txt"), tmp_path / "r.jsonl") == ([(str(bus), str(bus)), (str(zidane), str(zidane))], 3)
    out = tmp_path / "r.jsonl"
    assert main(["segment", str(tmp_path / "list.txt"), "--engine", "ray", "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "2 segmented, 0 skipped (existing), 0 bad, 2 images (3 repeated lines of the list left out)" in err, err
    rows = read_results(out)
    assert sorted(r["path"] for r in rows) == sorted([str(bus), str(zidane)])
    for r in rows:
        assert strip(to_result_json(r))["instances"] == cli_json[os.path.basename(r["path"])]["instances"]


def test_error_that_fails_every_image_stops_the_job(local_ray, photos, tmp_path, capsys):
    """A CLIP bundle that does not exist fails in the workers at the first text prompt: one line, exit 2."""
    out = tmp_path / "r.parquet"
    argv = ["segment", str(photos / "synth"), "--engine", "ray", "--out", str(out), "--text", "x", "--clip", str(tmp_path / "nope")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nope" in err and err.strip().count("\n") == 0, err


def test_decode_bytes_equals_read_image(photos, tmp_path):
    for p in sorted(photos.rglob("*")):
        if p.suffix in (".jpg", ".png", ".bmp"):
            try:
                want = read_image(p)
            except BadImageError as e:
                with pytest.raises(BadImageError, match="cannot decode"):
                    decode_bytes(p.read_bytes(), str(p))
                assert "cannot decode" in str(e)
                continue
            assert np.array_equal(decode_bytes(p.read_bytes(), str(p)), want)
            assert np.array_equal(load_source(p.resolve().as_uri()), want)
    for bomb in write_bombs(tmp_path):  # refused from the header, as read_image refuses them
        with pytest.raises(BadImageError, match="limit|bomb|pixels"):
            decode_bytes(bomb.read_bytes(), str(bomb))
    with pytest.raises(BadImageError, match="not found"):
        read_uri((tmp_path / "missing.jpg").as_uri())
    with pytest.raises(BadImageError, match="empty"):
        decode_bytes(b"", "x.jpg")


def test_listing_and_refusals(photos, tmp_path, capsys):
    assert list_source(photos) == [(str(p.relative_to(photos)), str(p)) for p in sorted(
        q for q in photos.rglob("*") if q.suffix in (".jpg", ".png", ".bmp"))]
    assert [p for p, _ in list_source(photos.resolve().as_uri())] == [p for p, _ in list_source(photos)]
    assert list_source(["a.jpg", "s3://b/c.png"]) == [("a.jpg", "a.jpg"), ("s3://b/c.png", "s3://b/c.png")]
    with pytest.raises(BadArgumentError, match="not found"):
        list_source(tmp_path / "missing")
    with pytest.raises(BadArgumentError, match="workers"):
        segment_dataset(photos, workers=0)
    base = ["segment", str(photos), "--engine", "ray"]
    cases = [
        (base, "needs --out"),
        (base + ["--out", str(tmp_path / "r.csv")], ".parquet"),
        (base + ["--out", str(tmp_path / "r.parquet"), "--json", str(tmp_path / "j.json")], "--json does not apply"),
        (base + ["--out", str(tmp_path / "r.parquet"), "--workers", "0"], "--workers must be >= 1"),
        (base + ["--out", str(tmp_path / "r.parquet"), "--conf", "2"], "--conf"),
        (["segment", str(photos), "--out-dir", str(tmp_path / "o"), "--workers", "2"], "--workers needs --engine ray"),
        (base + ["--out", str(tmp_path / "r.parquet"), "--model", str(tmp_path / "none.onnx")], "not found"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and err.strip().count("\n") == 0, (argv, err)
    existing = tmp_path / "old.parquet"
    row = row_of({"image": {"path": "a", "width": 1, "height": 1}, "mask_size": {"width": 1, "height": 1},
                  "instances": [], "timings_ms": {}}, "a")
    with PartWriter(existing, "parquet") as w:
        w.add(to_table([row, row]))  # the second one is a duplicate path: dropped
    assert w.duplicates == 1 and read_results(existing) == [row]
    assert main(base + ["--out", str(existing)]) == 2
    assert "already holds results" in capsys.readouterr().err


def test_part_writer_flushes_by_time(tmp_path):
    """A slow run still puts its rows on disk (a part every ``seconds_per_part``), each part readable alone."""
    rows = [row_of({"image": {"path": f"p{i}", "width": 2, "height": 1}, "mask_size": {"width": 2, "height": 1},
                    "instances": [], "timings_ms": {"preprocess": 1.0}}, f"p{i}") for i in range(3)]
    w = PartWriter(tmp_path / "r.parquet", "parquet", rows_per_part=100, seconds_per_part=0.05)
    w.add(to_table(rows[:1]))
    time.sleep(0.1)
    w.add(to_table(rows[1:]))  # over the time: both batches go to part 0
    assert len(w.parts) == 1 and read_results(tmp_path / "r.parquet") == rows


def reader_rows(parquet, jsonl):
    """{reader: its rows} for every way the docs read an output folder back (pandas 2 semantics too, where the
    installed pandas can still be asked for them)."""
    import warnings

    import pandas as pd
    import pyarrow.parquet as pq

    got = {"read_results parquet": read_results(parquet), "read_results jsonl": read_results(jsonl),
           "pyarrow to_pylist": pq.read_table(parquet).to_pylist()}
    frames = {f"pandas {b}": pd.read_parquet(parquet, dtype_backend=b) for b in ("numpy_nullable", "pyarrow")}
    frames["pandas"] = pd.read_parquet(parquet)
    frames["pandas read_json"] = pd.concat(
        [pd.read_json(p, lines=True, precise_float=True) for p in part_files(jsonl, "jsonl")], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with pd.option_context("future.infer_string", False):  # pandas 2's object columns holding None
                frames["pandas object strings"] = pd.read_parquet(parquet)
        except (KeyError, ValueError):  # pandas 4: the option is gone
            pass
    for name, df in frames.items():
        assert df["error"].isna().sum() == 5, name  # the docs' filter: df[df["error"].isna()]
        got[name + " to_dict"] = df.to_dict("records")
        got[name + " iterrows"] = [r for _, r in df.iterrows()]
        got[name + " iloc"] = [df.iloc[i] for i in range(len(df))]
    return got


def test_every_reader_gives_the_folder_json(photos, cli_json, tmp_path):
    """pyarrow, pandas (each dtype backend, records / iterrows / iloc) and JSON lines: the rows of an output folder
    (several parts) give the folder mode's JSON for every good image and None for the bad ones (pandas 3 reads a
    null ``error`` as NaN, list columns as numpy arrays and integer columns with nulls as float64)."""
    pytest.importorskip("pandas")
    rows = [Segmenter().segment_one(p, s) for p, s in list_source(photos)]
    assert {r["path"]: strip(to_result_json(r)) for r in rows if r["error"] is None} == {
        p: strip(j) for p, j in cli_json.items()}
    for r in rows:  # prompt tags and a prompt timing, as a prompted run writes them
        if r["instances"]:
            r["instances"][0]["selected_by"] = ["text:0", "box:1"]
            r["timings_ms"]["prompt"] = 1.25
    want = {r["path"]: to_result_json(r) for r in rows}
    assert sorted(p for p, j in want.items() if j is None) == ["fake.png", "synth/broken.jpg"]
    for fmt in ("parquet", "jsonl"):
        with PartWriter(tmp_path / f"r.{fmt}", fmt, rows_per_part=3) as w:
            for r in rows:
                w.add(to_table([r]))
        assert len(part_files(tmp_path / f"r.{fmt}", fmt)) == 3
    for name, got in reader_rows(tmp_path / "r.parquet", tmp_path / "r.jsonl").items():
        assert len(got) == 7, name
        for r in got:
            assert to_result_json(r) == want[r["path"]], (name, r["path"])

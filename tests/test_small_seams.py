"""The small seams of the segment command, the prompts and the server (issue 25, item 7): a prompt mode without
its prompts is a usage error, point tags carry the point's index in every mode, text_mode="all" says each text's
best score, a cache hit reports its own timings, edge maps for folders (--edges-dir). The folder's proposals file
is tested in tests/test_proposals.py."""

from __future__ import annotations

import json

import pytest

from fastsam_onnx.models import example_image


# --- a prompt mode without its prompts is a usage error ----------------------------------------------------------


@pytest.mark.parametrize("mode", [
    ["--point-mode", "each"], ["--point-mode", "merge"], ["--point-mode", "each", "--box", "1,1,20,20"],
    ["--text-mode", "original"], ["--text-mode", "all", "--text-threshold", "0.5", "--point", "3,3"],
])
def test_a_mode_without_its_prompts_is_a_usage_error(tmp_path, capsys, mode):
    from fastsam_onnx.cli import main

    out = tmp_path / "r.json"
    assert main(["segment", str(example_image()), "--json", str(out), *mode]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and mode[0] in err and "needs" in err, err
    assert not out.exists()


def test_a_mode_with_its_prompts_from_a_file_is_accepted(tmp_path):
    from fastsam_onnx.cli import main

    prompts, out = tmp_path / "p.json", tmp_path / "r.json"
    prompts.write_text(json.dumps({"points": [[250, 200]]}))
    assert main(["segment", str(example_image()), "--json", str(out), "--prompts", str(prompts), "--point-mode", "each", "-q"]) == 0
    assert all(i["selected_by"] == ["point:0"] for i in json.loads(out.read_text())["instances"])


# --- point prompts carry their index in every mode ---------------------------------------------------------------


def test_point_tags_carry_the_point_index_in_every_mode():
    import numpy as np

    from fastsam_onnx import Result
    from fastsam_onnx.masks import MaskCrop
    from fastsam_onnx.prompts import apply_prompts

    rects = [(0, 0, 100, 80), (10, 10, 40, 40), (50, 50, 90, 70)]
    crops = [MaskCrop(x1, y1, np.ones((y2 - y1, x2 - x1), bool)) for x1, y1, x2, y2 in rects]
    r = Result(np.array(rects, np.float32), np.array([0.5, 0.9, 0.7], np.float32), crops, (100, 120), (100, 120),
               orig_img=np.zeros((100, 120, 3), np.uint8))

    def tags(**kw):
        return apply_prompts(r, lambda: None, **kw).selected_by

    # select: each positive point tags the instances it picks; a negative point (index 1) only excludes
    assert tags(points=[[20, 20], [60, 60], [30, 30]], labels=[1, 0, 1]) == [["point:0", "point:2"]]
    assert tags(points=[[20, 20], [5, 5]]) == [["point:0", "point:1"], ["point:0"]]
    assert tags(points=[[95, 90], [60, 60]], labels=[0, 0]) == [["point:0", "point:1"]]  # all negative: both tag
    # merge: the one mask carries the positive points that hit an instance (point 1 hits nothing)
    assert tags(points=[[20, 20], [110, 95], [60, 60]], point_mode="merge") == [["point:0", "point:2"]]
    # each: as before
    assert tags(points=[[20, 20], [60, 60]], point_mode="each") == [["point:0"], ["point:1"]]
    # boxes and texts keep theirs
    assert tags(bboxes=[[10, 10, 40, 40]], points=[[60, 60]]) == [["point:0"], ["box:0"], ["point:0"]]


# --- text_mode="all" that selects nothing says the best score it saw ---------------------------------------------


def test_text_all_reports_each_texts_best_score(tmp_path, capsys):
    import numpy as np

    from fastsam_onnx import FastSAM
    from fastsam_onnx.cli import main
    from fastsam_onnx.prompts import unmatched_texts

    model = FastSAM()
    everything = model.segment(example_image())
    texts = ["blue rectangle", "yellow pentagon"]
    loose = model.prompt(everything, texts=texts, text_mode="all", text_threshold=0.5)
    best = loose.best_prompt_scores
    assert set(best) == {f"text:{t}" for t in texts} and all(isinstance(v, float) for v in best.values())
    for tag, cos in best.items():  # the best of the picks is the best seen
        assert cos == pytest.approx(max(s[tag] for s in loose.prompt_scores if tag in s))
    assert unmatched_texts(loose, 0.5) == [] and loose.to_json()["best_prompt_scores"] == best
    top = max(best.values())
    none = model.prompt(everything, texts=texts, text_mode="all", text_threshold=float(np.nextafter(top, 2)))
    assert len(none) == 0 and none.best_prompt_scores == best and none.to_json()["best_prompt_scores"] == best
    lines = unmatched_texts(none, 0.99)
    assert len(lines) == 2 and all("selected nothing" in x and "< the threshold 0.99" in x for x in lines)
    assert f"{best['text:blue rectangle']:.3f}" in lines[0]
    assert model.prompt(everything, texts=texts).best_prompt_scores is None  # select mode: no threshold

    out = tmp_path / "r.json"
    args = ["segment", str(example_image()), "--json", str(out), "--text", "blue rectangle", "--text-mode", "all"]
    assert main([*args, "--text-threshold", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert f"'blue rectangle' selected nothing: best cosine similarity {best['text:blue rectangle']:.3f} < the threshold 1" in err
    assert json.loads(out.read_text())["best_prompt_scores"] == {"text:blue rectangle": best["text:blue rectangle"]}
    assert main([*args, "--text-threshold", "0.5", "-q"]) == 0
    assert "selected nothing" not in capsys.readouterr().err


# --- the server's cache hit reports its own timings --------------------------------------------------------------


def test_a_cache_hit_reports_its_own_timings():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fastsam_onnx import FastSAM
    from fastsam_onnx.server.app import create_app
    from fastsam_onnx.server.engine import Engine, ServerConfig

    cfg = ServerConfig()
    c = TestClient(create_app(cfg, Engine(cfg, model=FastSAM())), base_url="http://127.0.0.1")
    img = example_image().read_bytes()

    def post(**fields):
        r = c.post("/v1/segment", files={"image": ("example.jpg", img, "image/jpeg")}, data=fields)
        assert r.status_code == 200, r.text
        return r.json()

    miss, hit = post(), post()
    assert miss["cached"] is False and {"preprocess", "inference", "postprocess", "server_total"} <= set(miss["timings_ms"])
    assert hit["cached"] is True and set(hit["timings_ms"]) == {"decode", "lookup", "encode", "server_total"}
    t = hit["timings_ms"]
    assert all(v >= 0 for v in t.values()) and t["decode"] + t["lookup"] + t["encode"] <= t["server_total"] + 1e-3
    prompted = post(points="[[250, 200]]")
    assert set(prompted["timings_ms"]) == {"decode", "lookup", "prompt", "encode", "server_total"}
    r = c.post("/v1/prompt", json={"image_id": hit["image_id"], "points": [[250, 200]]}).json()
    assert set(r["timings_ms"]) == {"lookup", "prompt", "encode", "server_total"}
    assert [i["selected_by"] for i in r["instances"]] == [i["selected_by"] for i in prompted["instances"]]


# --- edge maps for folders ---------------------------------------------------------------------------------------


def test_edges_dir_writes_one_edge_map_per_image_the_tree_mirrored(tmp_path, capsys):
    import shutil

    import cv2
    import numpy as np

    from fastsam_onnx import FastSAM
    from fastsam_onnx.cli import main

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg"):
        shutil.copy(example_image(), folder / name)
    edges = folder / "edges"  # inside the folder: never read back as an input
    assert main(["segment", str(folder), "--edges-dir", str(edges), "-q"]) == 0
    written = sorted(p.relative_to(edges).as_posix() for p in edges.rglob("*") if p.is_file())
    assert written == ["a.jpg.png", "sub/b.jpg.png"]
    got = cv2.imread(str(edges / "sub/b.jpg.png"), cv2.IMREAD_UNCHANGED)
    expected = FastSAM().edges(str(example_image()))
    assert got.dtype == np.uint16 and got.shape == expected.shape
    np.testing.assert_array_equal(got, np.rint(np.clip(expected, 0, 1) * 65535).astype(np.uint16))
    (edges / "a.jpg.png").unlink()
    assert main(["segment", str(folder), "--edges-dir", str(edges), "--skip-existing"]) == 0
    assert "1 segmented, 1 skipped" in capsys.readouterr().err and (edges / "a.jpg.png").is_file()
    for bad, words in ((["segment", str(example_image()), "--edges-dir", str(edges)], "--edges-dir applies to a folder"),
                       (["segment", str(folder), "--edges", str(tmp_path / "e.png")], "--edges-dir DIR")):
        assert main(bad) == 2 and words in capsys.readouterr().err

"""`fastsam-onnx bench` tells the truth (issue 25 item 6):

- no end-to-end figure is smaller than its own bare ``session.run``: a real quick run of the demo model pairs
  the two round by round, and every statistic, round and ratio it reports says so;
- a goal is judged only when the run had the repetitions, instances and setting that
  ``figures.REQUIREMENTS`` asks of it — else it reads "not measured" with the reason;
- the figures the docs include (``benchmarks/results/summary.md``) are what the writers make of the committed
  ``benchmarks/results/results.json``, dated, with the machine and the command that measured them.

Timings are never compared with a bound: only with each other, where the construction orders them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

import run_benchmarks  # tools/ (conftest puts it on sys.path)
import update_readme
from fastsam_onnx.benchmarks import figures
from fastsam_onnx.benchmarks.cases import HEADLINE, HEADLINE_INT8, LARGE_CASE
from fastsam_onnx.benchmarks.figures import GOALS, MIN_INSTANCES, REQUIREMENTS, evaluate_goals
from fastsam_onnx.benchmarks.machine import machine_line
from fastsam_onnx.benchmarks.report import UNPAIRED, UNPAIRED_NOTE, render_markdown, suite_command, summary_markdown
from fastsam_onnx.cli import main
from test_bench_report_figures import synthetic_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ORDER_STATS = ("median", "p90", "mean", "min", "max")


def _row(md: str, heading: str, name: str) -> dict[str, str]:
    """The row of case ``name`` in the table under ``heading`` of a results.md, by column header."""
    lines = md[md.index(heading):].splitlines()
    header = next(line for line in lines if line.startswith("| case"))
    row = next(line for line in lines if line.startswith(f"| {name} |"))
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    return dict(zip(cells(header), cells(row)))


def _assert_paired(ours: dict) -> None:
    """Every end-to-end figure of one case is at least its bare session.run figure."""
    r = ours["rounds"]
    assert len(r["end_to_end"]) == len(r["bare"]) == ours["stages"]["end_to_end"]["n"]
    for e, inf, bare, alone in zip(r["end_to_end"], r["inference"], r["bare"], r["bare_alone"]):
        assert e >= inf >= bare and bare == min(inf, alone)
    for k in ORDER_STATS:
        assert ours["stages"]["end_to_end"][k] >= ours["bare_run"][k], k
        assert ours["stages"]["inference"][k] >= ours["bare_run"][k], k
    assert ours["bare_run"]["paired"] is True and ours["paired"]["e2e_over_bare"]["min"] >= 1.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    """(results.json, results.md) of ``fastsam-onnx bench --quick --no-prompts --cold-reps 0`` on the demo model."""
    out = tmp_path_factory.mktemp("quick")
    status = main(["bench", "--quick", "--no-prompts", "--cold-reps", "0", "--quiet", "--out", str(out), "--no-plots"])
    assert status == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_quick_end_to_end_is_never_below_the_bare_run(quick):
    report, md = quick
    (case,) = report["cases"]
    ours = case["ours"]
    assert "error" not in ours, ours
    _assert_paired(ours)
    row = _row(md, "## End to end", case["name"])
    e2e, bare = (float(row[k].split(" / ")[0]) for k in ("ours end to end", "bare session.run"))
    assert e2e >= bare and float(row["ours ÷ bare"].rstrip("×")) >= 1.0
    stages = _row(md, "## Stages", case["name"])
    assert float(stages["ours session.run"]) >= bare  # the session.run inside segment, same rounds
    assert "paired with the end-to-end runs" in md
    assert report["settings"]["command"].startswith("fastsam-onnx bench --model demo ") and "--reps 2" in report["settings"]["command"]
    assert report["created"] in md and machine_line(report["machine"]) in md


def test_quick_goals_are_not_measured(quick):
    """2 timed runs of a 512-px demo model: no goal is judged; the one it has a figure for says why."""
    report, md = quick
    goals = {g["id"]: g for g in report["goals"]}
    assert set(goals) == set(GOALS)
    assert all(g["met"] is None and g["value"] is None and g["measured"] == "not measured" for g in goals.values())
    o = goals["overhead"]
    assert o["figure"] is not None and o["figure"] > 0
    assert "2 timed runs (the goal needs ≥ 5)" in o["note"] and "imgsz 512" in o["note"]
    assert goals["e2e_fp32"]["note"] == "no reference run" and goals["large_time"]["note"] == "no 4512 × 4512 case"
    table = md[md.index("## Goals"):]
    rows = [line for line in table.splitlines()[4:] if line.startswith("| ")]
    assert len(rows) == len(GOALS) and all("| not measured | not measured |" in r for r in rows)
    assert "**met**" not in table and "**missed**" not in table


# ------------------------------------------------------------------------------------ the minimums, one place

def _case_of(report: dict, gid: str) -> dict:
    name = {"e2e_int8": HEADLINE_INT8, "large_time": LARGE_CASE, "large_memory": LARGE_CASE}.get(gid, HEADLINE)
    return next(c for c in report["cases"] if c["name"] == name)


def _stats_at(d: dict, keys: tuple[str, ...]) -> dict:
    for k in keys:
        d = d[k]
    return d


def _verdicts(report: dict) -> dict[str, dict]:
    return {g["id"]: g for g in evaluate_goals(report, headline=HEADLINE, int8=HEADLINE_INT8, large=LARGE_CASE)}


@pytest.mark.parametrize("met", [True, False], ids=["met", "missed"])
@pytest.mark.parametrize("gid", sorted(GOALS))
def test_each_goal_needs_its_repetitions_and_instances(gid, met):
    """At the minimums of ``REQUIREMENTS`` a goal is judged (met or missed as its figure says); one run fewer
    on either side, one instance fewer, another imgsz or letterboxed masks: "not measured", saying which."""
    base = synthetic_report(7, met)
    keys, min_reps = REQUIREMENTS[gid]
    case = _case_of(base, gid)
    ref = base["references"][case["reference"]]
    if keys is not None:
        _stats_at(case["ours"], keys)["n"] = min_reps
        if gid in figures.RATIO_GOALS:
            _stats_at(ref, figures.reference_keys(keys))["n"] = min_reps
    case["ours"]["instances"] = MIN_INSTANCES
    g = _verdicts(base)[gid]
    assert g["met"] is met and g["value"] == g["figure"] and g["measured"] != "not measured"

    def short_of(change, reason: str) -> None:
        r = copy.deepcopy(base)
        change(_case_of(r, gid), r)
        v = _verdicts(r)[gid]
        assert v["met"] is None and v["value"] is None and v["measured"] == "not measured", v
        assert v["figure"] == g["figure"] and reason in v["note"] and v["note"].startswith("not judged: "), v["note"]

    if keys is not None:
        short_of(lambda c, r: _stats_at(c["ours"], keys).update(n=min_reps - 1), f"{min_reps - 1} timed runs (the goal needs ≥ {min_reps})")
        if gid in figures.RATIO_GOALS:
            short_of(lambda c, r: _stats_at(r["references"][c["reference"]], figures.reference_keys(keys)).update(n=min_reps - 1),
                     f"reference: {min_reps - 1} timed runs")
    short_of(lambda c, r: c["ours"].update(instances=MIN_INSTANCES - 1), f"{MIN_INSTANCES - 1} instances (the goal needs ≥ {MIN_INSTANCES})")
    short_of(lambda c, r: c["labels"].update(imgsz=640), "imgsz 640 (the goal setting's is 1024)")
    short_of(lambda c, r: c["labels"].update(retina=False), "letterboxed masks")


def test_requirements_decide_in_one_place(monkeypatch):
    """Raising a goal's minimum in ``REQUIREMENTS`` alone turns its verdict into "not measured"; the rest stand."""
    report = synthetic_report(5, True)
    before = _verdicts(report)
    assert all(g["met"] is True for g in before.values())
    keys, _ = REQUIREMENTS["overhead"]
    monkeypatch.setitem(REQUIREMENTS, "overhead", (keys, 10_000))
    after = _verdicts(report)
    assert after["overhead"]["met"] is None and "(the goal needs ≥ 10000)" in after["overhead"]["note"]
    assert all(after[k]["met"] is True for k in GOALS if k != "overhead")
    assert set(REQUIREMENTS) == set(GOALS)


# ------------------------------------------------------------------------------ the committed figures, dated

def test_committed_summary_is_the_committed_results():
    """benchmarks/results/summary.md (what the docs include) and results.md are exactly what the writers make of
    results.json: a stale snippet fails here. It carries the date, the machine and the command of the run."""
    report = json.loads((RESULTS / "results.json").read_text())
    summary = (RESULTS / "summary.md").read_text()
    assert summary == summary_markdown(report), "stale: run python tools/run_benchmarks.py --summary"
    assert (RESULTS / "results.md").read_text() == render_markdown(report)
    assert f"Measured {report['created'][:10]} on **{machine_line(report['machine'])}**" in summary
    command = suite_command(report)  # recorded, or (older results) rebuilt from the settings
    assert f"made by `{command}`" in summary and command.startswith("python tools/run_benchmarks.py")
    assert command == report["settings"].get("command", command)


def test_committed_results_never_show_end_to_end_below_bare_unexplained():
    """In the committed results every case is either paired (end to end ≥ bare in every round, statistic and
    ratio) or, measured before pairing, its bare figure carries the ‡ mark and the note that says why in
    results.md and in the summary, and shows no "ours ÷ bare" below 1. Unmarked rows of the summary have end to end
    ≥ bare."""
    report = json.loads((RESULTS / "results.json").read_text())
    md, summary = (RESULTS / "results.md").read_text(), (RESULTS / "summary.md").read_text()
    assert report["cases"]
    marked = 0
    for c in report["cases"]:
        ours, row = c["ours"], _row(md, "## End to end", c["name"])
        if ours["bare_run"].get("paired"):
            _assert_paired(ours)
            assert not row["bare session.run"].endswith(UNPAIRED) and float(row["ours ÷ bare"].rstrip("×")) >= 1.0
        else:
            marked += 1
            assert row["bare session.run"].endswith(UNPAIRED)
            assert row["ours ÷ bare"] == "—" or float(row["ours ÷ bare"].rstrip("×")) >= 1.0
    assert (UNPAIRED_NOTE in md) == (marked > 0) and (UNPAIRED_NOTE in summary) == (marked > 0)
    rows = [line for line in summary.splitlines() if re.match(r"\| [sx]-", line)]
    assert rows
    for line in rows:
        cells = [x.strip() for x in line.strip("|").split("|")]
        if not cells[3].endswith(UNPAIRED):
            assert float(cells[2]) >= float(cells[3]), line  # ours end to end ms ≥ bare session.run ms


def test_an_unpaired_bare_run_above_end_to_end_is_marked():
    """The writers' handling of results from before pairing, on a copy whose bare median is above end to end."""
    report = json.loads((RESULTS / "results.json").read_text())
    case = next(c for c in report["cases"] if c["labels"].get("retina") and c["labels"].get("image") == "bus.jpg"
                and not c["labels"].get("large"))
    ours = case["ours"]
    ours.pop("paired", None)
    ours["bare_run"] = {k: v for k, v in ours["stages"]["end_to_end"].items() if k != "paired"}
    ours["bare_run"]["median"] = ours["stages"]["end_to_end"]["median"] * 1.01
    row = _row(render_markdown(report), "## End to end", case["name"])
    assert row["bare session.run"].endswith(UNPAIRED) and row["ours ÷ bare"] == "—"
    summary = summary_markdown(report)
    assert UNPAIRED_NOTE in summary and re.search(rf"\| {re.escape(case['name'])} \|[^\n]*{UNPAIRED} \|", summary)


def test_summary_is_rewritten_from_results_json(tmp_path, capsys):
    """``run_benchmarks.py --summary`` rewrites results.md and summary.md from a results.json, measuring nothing;
    the docs page may include the summary instead of carrying the generated block."""
    (tmp_path / "results.json").write_bytes((RESULTS / "results.json").read_bytes())
    assert run_benchmarks.main(["--summary", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.md").read_text() == (RESULTS / "summary.md").read_text()
    assert (tmp_path / "results.md").read_text() == (RESULTS / "results.md").read_text()
    assert run_benchmarks.main(["--summary", "--out", str(tmp_path / "none")]) == 2
    assert run_benchmarks.command(["--models", "s", "--out", "/x", "--work=/y", "--sizes", "1024"]) == \
        "python tools/run_benchmarks.py --models s --sizes 1024"
    assert update_readme.SUMMARY_INCLUDE == '--8<-- "benchmarks/results/summary.md"'


def test_every_timed_text_prompt_is_the_first_on_its_result(monkeypatch):
    """The text prompt caches its crops' CLIP embeddings on the result (a second text costs only the text tower);
    the reference encodes them on every call, so each timed run of ours starts from an uncached result."""
    import numpy as np

    from fastsam_onnx.benchmarks import timing
    from fastsam_onnx.masks import MaskCrop
    from fastsam_onnx.result import Result

    calls = {"images": 0}

    class FakeCLIP:
        precision = "fp32"

        def __init__(self, bundle):
            self._text_cache = {}

        def encode_images(self, images):
            calls["images"] += 1
            return np.ones((len(images), 4), np.float32) / 2

        def encode_texts(self, texts):
            return np.ones((len(texts), 4), np.float32) / 2

    class FakeModel:
        def prompt(self, result, texts):
            result.text_crop_embeddings(self._clip)
            return result

    monkeypatch.setattr("fastsam_onnx.clip.CLIP", FakeCLIP)
    crops = [MaskCrop(0, 0, np.ones((20, 20), bool)), MaskCrop(30, 10, np.ones((15, 25), bool))]
    boxes = np.array([[0, 0, 20, 20], [30, 10, 55, 25]], np.float32)
    img = np.zeros((40, 60, 3), np.uint8)
    result = Result(boxes, np.array([0.9, 0.8], np.float32), crops, (40, 60), (40, 60), orig_img=img)
    out = timing._text_timings(FakeModel(), result, "clip-bundle", ["a dog"], 3, [], False)
    assert out["text"]["n"] == 3
    assert calls["images"] == 1 + 3 + 1 + 4  # warm-up, 3 timed, the selection count, then clip_image (1 + 3)
    result.text_crop_embeddings(FakeCLIP(None))
    assert result._clip_cache
    result.clear_clip_cache()
    assert not result._clip_cache and result.nbytes() == sum(c.mask.nbytes for c in crops) + boxes.nbytes + 8 + img.nbytes

"""A real multi-node Ray cluster on one machine (``ray.cluster_utils.Cluster``: a head and a worker node, each with
its own CPU, one ``slot`` resource and an 80 MB object store): the job's rows come from both nodes and equal the
single-node results (the CLI's folder mode and one in-process worker).

Placement is deterministic, not a matter of timing: each actor needs a ``slot`` (one per node), so there is one
actor per node, and ``wait_for_workers`` holds the first batch until both are up, so the actor that starts first
cannot take every image. The test proves it by freezing the second node's raylet (SIGSTOP) for 4 s as the job
starts: its actor comes up last, and still gets images. (Before, a busy machine could leave every row to one node.)"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from test_distributed import OBJECT_STORE, check_rows, make_folder, strip

from fastsam_onnx.cli import main

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")
import ray.data  # noqa: E402

from fastsam_onnx.distributed import list_source, segment_dataset, to_result_json  # noqa: E402
from fastsam_onnx.distributed.worker import Segmenter  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"slot": 1, "head_node": 1}, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
    try:
        second = c.add_node(num_cpus=1, resources={"slot": 1, "second_node": 1}, object_store_memory=OBJECT_STORE)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield c, second
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture
def slow_second_node(cluster):
    """Freeze the second node's raylet for 4 s (its actor starts last), resumed whatever happens."""
    raylet = cluster[1].all_processes["raylet"][0].process.pid
    resume = threading.Timer(4.0, os.kill, (raylet, signal.SIGCONT))
    os.kill(raylet, signal.SIGSTOP)
    resume.start()
    try:
        yield cluster[1].node_id
    finally:
        resume.cancel()
        os.kill(raylet, signal.SIGCONT)


def test_two_nodes_rows_equal_single_node(cluster, slow_second_node, assets, tmp_path):
    photos = make_folder(tmp_path / "photos", assets)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {"head_node", "second_node"} <= {k for n in nodes for k in n["Resources"]}
    assert slow_second_node in {n["NodeID"] for n in nodes}
    ds = segment_dataset(photos, workers=2, threads_per_worker=1, batch_size=1,
                         ray_remote_args={"resources": {"slot": 1}}, wait_for_workers=120)
    rows = ds.take_all()
    per_node = {n["NodeID"]: sum(r["node_id"] == n["NodeID"] for r in rows) for n in nodes}
    assert all(per_node.values()), f"rows from both nodes: {per_node}"
    assert {r["node_id"] for r in rows} == {n["NodeID"] for n in nodes}
    assert len({r["worker_pid"] for r in rows}) == 2  # one actor per node
    out = tmp_path / "cli"
    assert main(["segment", str(photos), "--out-dir", str(out), "-q"]) == 1
    cli_json = {str(p.relative_to(out))[: -len(".json")]: json.loads(p.read_text()) for p in out.rglob("*.json")}
    check_rows(rows, photos, cli_json)
    seg = Segmenter()
    single = {p: seg.segment_one(p, s) for p, s in list_source(photos)}
    for r in rows:
        want = single[r["path"]]
        assert r["error"] == want["error"]
        if r["error"] is None:
            assert strip(to_result_json(r)) == strip(to_result_json(want))

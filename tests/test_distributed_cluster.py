"""A real multi-node Ray cluster on one machine (``ray.cluster_utils.Cluster``: a head and a worker node, each with
its own CPU and custom resources and an 80 MB object store): the job's rows come from both nodes and equal the
single-node results (the CLI's folder mode and one in-process worker)."""

from __future__ import annotations

import json
import os

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
        "num_cpus": 1, "resources": {"head_node": 1}, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1, resources={"second_node": 1}, object_store_memory=OBJECT_STORE)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def test_two_nodes_rows_equal_single_node(cluster, assets, tmp_path):
    photos = make_folder(tmp_path / "photos", assets)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {"head_node", "second_node"} <= {k for n in nodes for k in n["Resources"]}
    rows = segment_dataset(photos, workers=2, threads_per_worker=1, batch_size=1, spread=True).take_all()
    assert len({r["node_id"] for r in rows}) == 2, "rows from both nodes"
    assert {r["node_id"] for r in rows} == {n["NodeID"] for n in nodes}
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

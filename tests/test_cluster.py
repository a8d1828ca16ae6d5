"""Plans on a cluster (``graft.plan.cluster``, ``graft.planner.nodes``): the cluster file,
GPUs assigned to nodes with routes kept inside one where they can be, hand-offs across
nodes priced at the network and checked by the verifier."""

import json
from dataclasses import replace

import pytest

from graft.cli import main
from graft.cost.base import INTERCONNECT, NETWORK
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError
from graft.plan import rules
from graft.plan.cluster import Cluster, Node
from graft.plan.plan import Plan
from graft.plan.verify import verify
from graft.planner.graft_planner import GraftPlanner
from graft.planner.nodes import assign_nodes, network_priced, plan_on_cluster
from graft.workload.synthetic import HETEROGENEOUS, synthetic_workload

COST = make_cost_model("analytic:v100")


def _cluster(*gpus: int, gbps: float = 100.0) -> Cluster:
    return Cluster(tuple(Node(f"n{i}", g) for i, g in enumerate(gpus)), gbps)


def test_cluster_file_errors_name_the_field():
    ok = Cluster.from_json({"nodes": [{"name": "a", "gpus": 2}], "network_gbps": 25})
    assert ok.gpus == 2 and ok.network_bytes_per_s == 25e9 / 8
    for bad, field in (({"nodes": []}, "nodes"),
                       ({"nodes": [{"name": "a", "gpus": 0}]}, "nodes[0].gpus"),
                       ({"nodes": [{"name": "a", "gpus": "8"}]}, "nodes[0].gpus"),
                       ({"nodes": [{"name": "a", "gpus": 1}, {"name": "a", "gpus": 1}]},
                        "nodes"),
                       ({"nodes": [{"name": "a", "gpus": 1}], "speed": 1}, "speed"),
                       ({"nodes": [{"name": "a", "gpus": 1}], "network_gbps": 0},
                        "network_gbps")):
        with pytest.raises(GraftInputError) as e:
            Cluster.from_json(bad, where="")
        assert e.value.field == field


def test_plan_on_a_cluster_verifies_and_round_trips():
    w = synthetic_workload(COST, 300, HETEROGENEOUS, seed=3)
    single = GraftPlanner().plan(w, COST)
    cluster = _cluster(*([2] * (single.gpus // 2 + 1)))
    plan = plan_on_cluster(lambda c: GraftPlanner().plan(w, c), w, COST, cluster)
    assert verify(w, plan, COST) == []
    assert len(plan.gpu_nodes) == plan.gpus
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back.cluster == cluster and back.gpu_nodes == plan.gpu_nodes
    assert verify(w, back, COST) == []
    # a node holding more GPUs than it has, or a node the cluster lacks, is refused
    crowded = replace(plan, gpu_nodes=("n0",) * plan.gpus)
    assert any("GPUs placed" in e for e in verify(w, crowded, COST))
    unknown = replace(plan, gpu_nodes=("nx",) * plan.gpus)
    assert any("no node 'nx'" in e for e in verify(w, unknown, COST))


def test_chained_gpus_share_a_node():
    w = synthetic_workload(COST, 300, HETEROGENEOUS, seed=3)
    plan = GraftPlanner().plan(w, COST)
    nodes = assign_nodes(plan, _cluster(*([plan.gpus] * 2)),
                         {f.id: f.rate for f in w.flows})
    # one node can hold the whole plan: every route stays on it
    assert len(set(nodes)) == 1


def test_crossing_the_network_is_priced_and_checked():
    w = synthetic_workload(COST, 300, HETEROGENEOUS, seed=3)
    plan = GraftPlanner().plan(w, COST)
    stages = plan.stage_by_id()
    chained = next(r for r in plan.routes if len(r.stages) > 1
                   and set(stages[r.stages[0]].gpus) != set(stages[r.stages[1]].gpus))
    a, b = stages[chained.stages[0]], stages[chained.stages[1]]
    slow = _cluster(plan.gpus, plan.gpus, gbps=0.001)  # 1 Mbit/s between nodes
    # put every GPU of a on one node and every other GPU on the other
    gpu_nodes = tuple("n0" if g in a.gpus else "n1" for g in range(plan.gpus))
    placed = replace(plan, cluster=slow, gpu_nodes=gpu_nodes)
    assert rules.handoff_kind(a, b, placed.placement) == NETWORK
    assert rules.handoff_kind(a, b) == INTERCONNECT
    errors = verify(w, placed, COST)
    assert any(f"flow {chained.flow}:" in e for e in errors)
    # planning for that cluster keeps every route within its budget
    fitted = plan_on_cluster(lambda c: GraftPlanner().plan(w, c), w, COST,
                             _cluster(1, *([1] * plan.gpus), gbps=0.001))
    assert verify(w, fitted, COST) == []


def test_network_priced_view_leaves_the_cost_model_alone():
    view = network_priced(COST, _cluster(1, 1, gbps=8.0))
    assert view.links.interconnect_bytes_per_s == 1e9
    assert COST.links.interconnect_bytes_per_s > 1e9
    assert view.cache is not COST.cache


def test_cli_plan_with_a_cluster(tmp_path):
    w = synthetic_workload(COST, 60, HETEROGENEOUS, seed=1)
    (tmp_path / "w.json").write_text(json.dumps(w.to_json()))
    (tmp_path / "c.json").write_text(json.dumps(_cluster(4, 4).to_json()))
    out = tmp_path / "plan.json"
    assert main(["plan", str(tmp_path / "w.json"), "--cluster", str(tmp_path / "c.json"),
                 "-o", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert set(plan["gpu_nodes"]) <= {"n0", "n1"} and plan["cluster"]["nodes"][0]["gpus"] == 4
    assert main(["verify", str(tmp_path / "w.json"), str(out)]) == 0
    (tmp_path / "small.json").write_text(json.dumps(_cluster(1).to_json()))
    big = synthetic_workload(COST, 2000, HETEROGENEOUS, seed=1)
    (tmp_path / "big.json").write_text(json.dumps(big.to_json()))
    assert main(["plan", str(tmp_path / "big.json"), "--cluster",
                 str(tmp_path / "small.json")]) == 2


def test_a_ray_cluster_lists_its_gpu_nodes():
    from graft.plan.cluster import cluster_from_ray_nodes

    nodes = [{"NodeID": "b2", "Alive": True, "Resources": {"GPU": 2.0, "CPU": 4.0}},
             {"NodeID": "a1", "Alive": True, "Resources": {"GPU": 8.0}},
             {"NodeID": "c3", "Alive": False, "Resources": {"GPU": 8.0}},
             {"NodeID": "head", "Alive": True, "Resources": {"CPU": 1.0}}]
    assert cluster_from_ray_nodes(nodes).nodes == (Node("a1", 8), Node("b2", 2))
    with pytest.raises(GraftInputError, match="no alive node with GPUs"):
        cluster_from_ray_nodes(nodes[2:])


def test_plan_on_a_local_ray_cluster(tmp_path, monkeypatch):
    # runs where Ray is installed (pip install -e .[ray]; about 10 s), skipped elsewhere
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster as RayCluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray_cluster = RayCluster(initialize_head=True,
                             head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        ray_cluster.add_node(num_cpus=1, num_gpus=2)
        ray_cluster.add_node(num_cpus=1, num_gpus=3)
        w = synthetic_workload(COST, 60, HETEROGENEOUS, seed=1)
        (tmp_path / "w.json").write_text(json.dumps(w.to_json()))
        out = tmp_path / "plan.json"
        assert main(["plan", str(tmp_path / "w.json"), "--cluster",
                     f"ray:{ray_cluster.address}", "-o", str(out)]) == 0
        plan = json.loads(out.read_text())
        assert sorted(n["gpus"] for n in plan["cluster"]["nodes"]) == [2, 3]
        assert main(["verify", str(tmp_path / "w.json"), str(out)]) == 0
    finally:
        ray_cluster.shutdown()


@pytest.mark.parametrize("args, message", [
    (["--ray", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--ray", "nonsense"], "--ray takes auto or HOST:PORT"),
    (["--ray", "auto", "--replan-every", "5"], "the controller re-plans when nodes leave"),
    (["--ray", "auto", "--cluster-port", "70000"], "--cluster-port must be in"),
])
def test_serve_on_ray_refuses_bad_options_at_once(tmp_path, capsys, args, message):
    pytest.importorskip("ray")
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"flows": [{"id": "t0", "model": "tiny", "partition": 0,
                                        "rate": 5, "budget_ms": 500}]}))
    assert main(["serve", "--workload", str(w), *args]) == 2
    assert message in capsys.readouterr().err


def test_the_single_node_server_never_imports_ray():
    import subprocess
    import sys

    code = ("import sys, graft.cli, graft.runtime.server, graft.runtime.node, "
            "graft.runtime.forward, graft.runtime.http; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

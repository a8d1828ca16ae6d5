"""A hand-made plan of ``tiny`` whose three stages sit on three nodes of one GPU each, so
that every route crosses nodes: what the cluster-serving tests serve."""

from __future__ import annotations

from graft.plan.cluster import Cluster, Node
from graft.plan.plan import Plan, Route, Stage
from graft.workload.flows import Flow, Workload

COST_MODEL = "analytic:v100"
NODES = ("a", "b", "c")
#: flows entering at blocks 0, 2 and 4; generous budgets (CPU workers, shared cores)
WORKLOAD = Workload((Flow("t0", "tiny", 0, 10.0, 5000.0), Flow("t2", "tiny", 2, 10.0, 5000.0),
                     Flow("t4", "tiny", 4, 10.0, 5000.0)))


def crossing_plan(nodes: tuple[str, ...] = NODES) -> Plan:
    """Blocks 0-2 on the first node's GPU, 2-4 on the second's, 4-6 on the third's."""
    def stage(i: int, start: int, end: int) -> Stage:
        return Stage(f"s{i}", "tiny", start, end, 4, 0.1, 1, 1.0, 10.0, gpus=(i,))
    stages = (stage(0, 0, 2), stage(1, 2, 4), stage(2, 4, 6))
    routes = (Route("t0", ("s0", "s1", "s2"), 10.0), Route("t2", ("s1", "s2"), 10.0),
              Route("t4", ("s2",), 10.0))
    return Plan("hand", COST_MODEL, stages, routes,
                cluster=Cluster(tuple(Node(n, 1) for n in nodes)), gpu_nodes=nodes)

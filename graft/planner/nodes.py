"""Planning for a cluster: a plan's GPUs assigned to nodes, routes kept inside one node
where they can be.

``plan_on_cluster`` plans as for one machine (hand-offs between GPUs priced at the
interconnect), then assigns every GPU of the plan to a node (``assign_nodes``): GPUs that
routes chain together are grouped (heaviest traffic first) while a group fits the largest
node, and the groups are packed first-fit decreasing onto the nodes; a group that fits no
node's room is split over the nodes with room, next to its neighbours where it can be. A
hand-off between stages whose replicas end up on different nodes crosses the network
(``graft.plan.rules``). If a route then exceeds its budget, the workload is planned again
with every hand-off between GPUs priced at the slower of the interconnect and the network,
so that any assignment keeps every route within its budget.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

from graft.cost.base import NETWORK, CostModel
from graft.errors import GraftInputError
from graft.plan import rules
from graft.plan.cluster import Cluster
from graft.plan.plan import Plan, Route
from graft.workload.flows import Workload

log = logging.getLogger(__name__)


def _gpu_traffic(plan: Plan, rates: dict[str, float]) -> dict[tuple[int, int], float]:
    """Requests per second handed between each pair of GPUs along the plan's routes (each
    flow's rate spread evenly over the pairs of replicas it may pass)."""
    stages = plan.stage_by_id()
    traffic: dict[tuple[int, int], float] = defaultdict(float)
    for r in plan.routes:
        chain = [stages[s] for s in r.stages]
        for a, b in zip(chain, chain[1:]):
            pairs = [(g, h) for g in a.gpus for h in b.gpus if g != h]
            for g, h in pairs:
                traffic[(min(g, h), max(g, h))] += rates.get(r.flow, 1.0) / len(pairs)
    return traffic


def assign_nodes(plan: Plan, cluster: Cluster, rates: dict[str, float] | None = None
                 ) -> tuple[str, ...]:
    """The node of each of the plan's GPUs (by index); ``rates``: each flow's rate (the
    traffic routes carry between GPUs; 1 each when not given)."""
    n = plan.gpus
    if n > cluster.gpus:
        raise GraftInputError(f"the plan needs {n} GPUs; the cluster has {cluster.gpus} "
                              f"on {len(cluster.nodes)} nodes")
    biggest = max(node.gpus for node in cluster.nodes)
    parent = list(range(n))
    size = [1] * n

    def root(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    traffic = _gpu_traffic(plan, rates or {})
    for (g, h), _ in sorted(traffic.items(), key=lambda t: (-t[1], t[0])):
        a, b = root(g), root(h)
        if a != b and size[a] + size[b] <= biggest:
            parent[b] = a
            size[a] += size[b]
    groups: dict[int, list[int]] = defaultdict(list)
    for g in range(n):
        groups[root(g)].append(g)
    room = [node.gpus for node in cluster.nodes]
    where: list[int | None] = [None] * n
    neighbours: dict[int, dict[int, float]] = defaultdict(dict)
    for (g, h), w in traffic.items():
        neighbours[g][h] = neighbours[h][g] = w
    for members in sorted(groups.values(), key=lambda m: (-len(m), m[0])):
        fit = next((k for k, r in enumerate(room) if r >= len(members)), None)
        if fit is not None:
            for g in members:
                where[g] = fit
            room[fit] -= len(members)
            continue
        for g in members:  # split: each GPU beside the most traffic already placed
            pull = defaultdict(float)
            for h, w in neighbours[g].items():
                if where[h] is not None:
                    pull[where[h]] += w
            k = max((k for k, r in enumerate(room) if r > 0),
                    key=lambda k: (pull.get(k, 0.0), room[k], -k))
            where[g] = k
            room[k] -= 1
    return tuple(cluster.nodes[k].name for k in where if k is not None)


def place_on_cluster(plan: Plan, cluster: Cluster, cost: CostModel,
                     rates: dict[str, float] | None = None) -> Plan:
    """``plan`` with its GPUs on ``cluster``'s nodes, and its routes' times and hand-offs
    from that placement."""
    placed = replace(plan, cluster=cluster, gpu_nodes=assign_nodes(plan, cluster, rates))
    placement = placed.placement
    stages = placed.stage_by_id()
    routes, crossing = [], 0
    for r in placed.routes:
        chain = [stages[s] for s in r.stages]
        routes.append(Route(r.flow, r.stages, rules.route_time_ms(cost, chain, placement),
                            sum(rules.route_handoffs_ms(cost, chain, placement))))
        crossing += any(rules.handoff_kind(a, b, placement) == NETWORK
                        for a, b in zip(chain, chain[1:]))
    return replace(placed, routes=tuple(routes)).with_info(
        nodes=len(set(placed.gpu_nodes)), routes_crossing_nodes=crossing)


def network_priced(cost: CostModel, cluster: Cluster) -> CostModel:
    """``cost`` with every hand-off between GPUs priced no faster than ``cluster``'s
    network (a view with its own cache)."""
    view = copy.copy(cost)
    links = cost.links
    view.links = replace(
        links,
        interconnect_bytes_per_s=min(links.interconnect_bytes_per_s,
                                     cluster.network_bytes_per_s),
        latency_ms=max(links.latency_ms, cluster.network_latency_ms))
    view.cache = {}
    return view


def plan_on_cluster(make_plan: Callable[[CostModel], Plan], workload: Workload,
                    cost: CostModel, cluster: Cluster) -> Plan:
    """A plan of ``workload`` (``make_plan(cost)``: any planner, with its options) whose GPUs
    sit on ``cluster``'s nodes, every route within its budget (see the module docstring)."""
    rates = {f.id: f.rate for f in workload.flows}
    plan = place_on_cluster(make_plan(cost), cluster, cost, rates)
    budgets = {f.id: f.budget_ms for f in workload.flows}
    late = [r.flow for r in plan.routes if r.latency_ms > budgets[r.flow] * (1 + rules.EPS)]
    if not late or len(cluster.nodes) == 1:
        return plan
    log.info("%d routes cross nodes beyond their budget; planning again with hand-offs "
             "between GPUs priced at the network", len(late))
    safe = make_plan(network_priced(cost, cluster))
    return place_on_cluster(safe, cluster, cost, rates).with_info(network_priced=True)

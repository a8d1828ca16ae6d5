"""A plan placed on a cluster, cut into what each node serves.

Every node runs the single-node engine on a plan of its own (``NodePart.plan``): the
replicas of the stages that sit on its GPUs (renumbered to the node's GPUs ``0..k-1``), and
the *legs* of routes that run there. A route whose stages all have replicas on one node is
one leg on that node. A route that crosses nodes is cut where the next stage has no replica
on the node the request is on: the leg ends there, and its output is sent on (``Hop``) as a
new request to the fragment entry where the next stage starts, ``<model>.p<block>``, on a
node that serves it, with what is left of the request's budget.

A leg of flow ``f`` starting at its route's ``j``-th stage is a flow of the node's plan named
``f`` (``j = 0``) or ``f@j``, entering at that stage's first block, with ``f``'s budget less
what the route plans to spend before stage ``j`` (``rules.route_time_ms`` on the cluster's
placement). A node's router then picks, for a forwarded request, a leg whose budget fits
what the request has left, as it does for any request.

Pure: no Ray, no torch; ``graft serve --ray`` (``graft.runtime.cluster``) and the tests use
it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan import rules
from graft.plan.plan import Plan, Route, Stage
from graft.workload.flows import Flow, Workload


@dataclass(frozen=True)
class Hop:
    """Where a leg's output goes next: the entry (``model``, ``partition``) on one of
    ``nodes``."""

    model: str
    partition: int
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class NodePart:
    """What one node serves: its plan and the flows (legs) of it, where each leg's output
    goes next (no hop: the leg ends the route and its output is the answer), and the plan's
    GPU indices the node holds (local GPU ``i`` is ``gpus[i]``)."""

    node: str
    plan: Plan
    workload: Workload
    hops: dict[str, Hop]
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class ClusterParts:
    """A placed plan cut per node (``parts``; a node of the cluster with nothing to run has
    an empty part), and for every fragment entry the nodes with a leg entering there (a
    frontend forwards a request for an entry it does not serve to one of them)."""

    parts: dict[str, NodePart]
    entries: dict[tuple[str, int], tuple[str, ...]]

    def nodes_of(self, model: str, partition: int) -> tuple[str, ...]:
        return self.entries.get((model, partition), ())


def leg_id(flow: str, index: int) -> str:
    """The name of the leg of ``flow`` starting at its route's ``index``-th stage."""
    return flow if index == 0 else f"{flow}@{index}"


def split_plan(plan: Plan, workload: Workload, cost: CostModel) -> ClusterParts:
    """Cut ``plan`` (placed on a cluster: ``graft plan --cluster``) into one ``NodePart`` per
    node of its cluster (see the module docstring)."""
    placement = plan.placement
    if plan.cluster is None or placement is None:
        raise GraftInputError("the plan is not placed on a cluster: plan it with --cluster, "
                              "or serve it on one machine without --ray")
    names = [n.name for n in plan.cluster.nodes]
    node_of_gpu = {g: names[k] for g, k in enumerate(placement.gpu_nodes) if k >= 0}
    by_id = plan.stage_by_id()
    # per stage, per node, the replica indices there
    where: dict[str, dict[str, list[int]]] = {}
    for st in plan.stages:
        per: dict[str, list[int]] = defaultdict(list)
        for r in range(st.replicas):
            if r >= len(st.gpus) or st.gpus[r] not in node_of_gpu:
                raise GraftInputError(f"replica {r} of stage {st.id} has no GPU on a node of "
                                      "the cluster", field="gpu_nodes")
            per[node_of_gpu[st.gpus[r]]].append(r)
        where[st.id] = dict(per)
    node_gpus = {n: tuple(sorted(g for g, m in node_of_gpu.items() if m == n)) for n in names}

    flows = workload.by_id()
    legs: dict[str, list[tuple[Flow, Route]]] = defaultdict(list)
    hops: dict[str, dict[str, Hop]] = defaultdict(dict)
    entries: dict[tuple[str, int], set[str]] = defaultdict(set)
    for route in plan.routes:
        flow = flows.get(route.flow)
        if flow is None:
            raise GraftInputError(f"the plan routes flow {route.flow!r}, which the workload "
                                  "does not have")
        chain = [by_id[s] for s in route.stages]
        total = rules.route_time_ms(cost, chain, placement)
        # a leg may start at the first stage, or where some node holding the previous stage
        # does not hold this one (a request arrives there from another node)
        starts = [j for j in range(len(chain)) if j == 0
                  or set(where[chain[j - 1].id]) - set(where[chain[j].id])]
        for j in starts:
            left = flow.budget_ms - (total - rules.route_time_ms(cost, chain[j:], placement))
            for node in where[chain[j].id]:
                k = j
                while k + 1 < len(chain) and node in where[chain[k + 1].id]:
                    k += 1
                leg = chain[j:k + 1]
                name = leg_id(flow.id, j)
                share = len(where[chain[j].id][node]) / chain[j].replicas
                legs[node].append((
                    Flow(name, flow.model, chain[j].start, flow.rate * share, left),
                    Route(name, tuple(s.id for s in leg), rules.route_time_ms(cost, leg),
                          sum(rules.route_handoffs_ms(cost, leg)))))
                entries[(flow.model, chain[j].start)].add(node)
                if k + 1 < len(chain):
                    nxt = chain[k + 1]
                    hops[node][name] = Hop(nxt.model, nxt.start, tuple(
                        n for n in names if n in where[nxt.id]))

    parts = {}
    for node in names:
        local = {g: i for i, g in enumerate(node_gpus[node])}
        stages = tuple(_local_stage(st, where[st.id][node], local)
                       for st in plan.stages if node in where[st.id])
        node_legs = legs.get(node, [])
        sub = replace(plan, stages=stages, routes=tuple(r for _, r in node_legs), unserved=(),
                      cluster=None, gpu_nodes=(), declared_totals=None,
                      info={"node": node, "of_plan": plan.planner})
        parts[node] = NodePart(node, sub, Workload(tuple(f for f, _ in node_legs)),
                               dict(hops.get(node, {})), node_gpus[node])
    ordered = {key: tuple(n for n in names if n in nodes) for key, nodes in entries.items()}
    return ClusterParts(parts, ordered)


def _local_stage(st: Stage, replicas: list[int], local: dict[int, int]) -> Stage:
    """``st`` with only ``replicas`` (those on one node), its GPUs renumbered to the node's
    and its rate in proportion."""
    return replace(st, replicas=len(replicas), gpus=tuple(local[st.gpus[r]] for r in replicas),
                   rate=st.rate * len(replicas) / st.replicas)

"""Routing with admission control: every request to the route of a planned flow, or none.

A request takes the route of the routed flow of its (model, partition) with the largest
budget not above its own, else the tightest such flow; with no routed flow of its
(model, partition) it is rejected. Its deadline is its own budget. Admission control: a
request whose budget is below its route's least latency (the sum of its stages'
``exec_ms`` and hand-offs, ``Plan.least_latency_ms``) cannot be on time even on idle
stages, so it is rejected at once instead of taking capacity from requests that can still
make it. The simulator and the runtime route with these functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from graft.cost.base import CostModel
from graft.plan.plan import Plan
from graft.serving.arrivals import ArrivalColumns, ServerArrival
from graft.serving.observe import Arriving
from graft.workload.flows import Flow, Workload


def route_columns(requests: Sequence[Arriving], plan: Plan,
                  workload: Workload, cost: CostModel) -> ArrivalColumns:
    """``route_requests`` as columns (``simulate_requests`` reads either)."""
    least = plan.least_latency_ms(cost)
    by_fragment: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    for f in workload.flows:
        if f.id in least:
            by_fragment[(f.model, f.partition)].append(f)
    n = len(requests)
    arrival = np.fromiter([r.arrival_ms for r in requests], float, n)
    budget = np.fromiter([r.budget_ms for r in requests], float, n)
    models, parts = [r.model for r in requests], [r.partition for r in requests]
    codes = {key: c for c, key in enumerate(by_fragment)}
    fragment = np.fromiter([codes.get(k, -1) for k in zip(models, parts)], np.intp, n)
    flow = np.full(n, None, dtype=object)
    for key, c in codes.items():
        fl = sorted(by_fragment[key], key=lambda f: (f.budget_ms, f.id))
        at = np.flatnonzero(fragment == c)
        # the largest budget not above the request's (the last such), else the tightest
        pick = np.maximum(np.searchsorted([f.budget_ms for f in fl], budget[at],
                                          side="right") - 1, 0)
        # admission: a request that cannot finish in time even on idle stages is rejected
        floor = np.array([least[f.id] for f in fl])[pick]
        flow[at] = np.where(budget[at] >= floor, np.array([f.id for f in fl], dtype=object)[pick],
                            None)
    return ArrivalColumns(arrival.tolist(), flow.tolist(), (arrival + budget).tolist(), models,
                          parts)


def route_requests(requests: Sequence[Arriving], plan: Plan,
                   workload: Workload, cost: CostModel) -> list[ServerArrival]:
    """One ``ServerArrival`` per request (same order, ``tag`` = the request): the route of
    the routed flow of its (model, partition) with the largest budget not above its own, else
    the tightest such flow; None (rejected) when its (model, partition) has no routed flow,
    or when its budget is below that route's least latency under ``cost`` (it cannot be on
    time)."""
    c = route_columns(requests, plan, workload, cost)
    return [ServerArrival(arrival, flow, deadline, model, p, tag=r)
            for arrival, flow, deadline, model, p, r in zip(
                c.arrival_ms, c.flow, c.deadline_ms, c.model, c.partition, requests,
                strict=True)]

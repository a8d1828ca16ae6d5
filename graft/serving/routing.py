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
from dataclasses import dataclass

import numpy as np

from graft.cost.base import CostModel
from graft.plan.plan import Plan
from graft.serving.arrivals import ArrivalColumns, ServerArrival
from graft.serving.observe import Arriving
from graft.workload.flows import Flow, Workload


@dataclass(frozen=True)
class Fragment:
    """The routed flows of one (model, partition), sorted by (budget, id), with their
    budgets and their routes' least latencies (admission floors)."""

    flows: tuple[str, ...]
    budgets: np.ndarray
    floors: np.ndarray


class Router:
    """The routing rule of a plan, built once: ``route`` answers one request, ``route_many``
    many at once (the same answers)."""

    def __init__(self, plan: Plan, workload: Workload, cost: CostModel):
        least = plan.least_latency_ms(cost)
        by_fragment: dict[tuple[str, int], list[Flow]] = defaultdict(list)
        for f in workload.flows:
            if f.id in least:
                by_fragment[(f.model, f.partition)].append(f)
        self.fragments: dict[tuple[str, int], Fragment] = {}
        for key, flows in by_fragment.items():
            fl = sorted(flows, key=lambda f: (f.budget_ms, f.id))
            self.fragments[key] = Fragment(tuple(f.id for f in fl),
                                           np.array([f.budget_ms for f in fl]),
                                           np.array([least[f.id] for f in fl]))

    def route_many(self, model: str, partition: int, budgets: np.ndarray) -> list[str | None]:
        """The flow of each request of one (model, partition) with these budgets: the
        largest budget not above its own (the last such), else the tightest; None when the
        fragment has no routed flow, or the budget is below that route's least latency
        (admission: it cannot finish in time even on idle stages)."""
        fr = self.fragments.get((model, partition))
        if fr is None:
            return [None] * len(budgets)
        pick = np.maximum(np.searchsorted(fr.budgets, budgets, side="right") - 1, 0)
        names = np.array(fr.flows, dtype=object)[pick]
        return np.where(budgets >= fr.floors[pick], names, None).tolist()

    def route(self, model: str, partition: int, budget_ms: float) -> str | None:
        """``route_many`` for one request."""
        return self.route_many(model, partition, np.array([budget_ms]))[0]

    def least_latency_ms(self, model: str, partition: int, budget_ms: float) -> float | None:
        """The least latency of the route a request with ``budget_ms`` would take (its
        admission floor), or None when the fragment has no routed flow."""
        fr = self.fragments.get((model, partition))
        if fr is None:
            return None
        pick = max(int(np.searchsorted(fr.budgets, budget_ms, side="right")) - 1, 0)
        return float(fr.floors[pick])


def route_columns(requests: Sequence[Arriving], plan: Plan,
                  workload: Workload, cost: CostModel) -> ArrivalColumns:
    """``route_requests`` as columns (``simulate_requests`` reads either)."""
    router = Router(plan, workload, cost)
    n = len(requests)
    arrival = np.fromiter([r.arrival_ms for r in requests], float, n)
    budget = np.fromiter([r.budget_ms for r in requests], float, n)
    models, parts = [r.model for r in requests], [r.partition for r in requests]
    codes = {key: c for c, key in enumerate(router.fragments)}
    fragment = np.fromiter([codes.get(k, -1) for k in zip(models, parts)], np.intp, n)
    flow = np.full(n, None, dtype=object)
    for (model, p), c in codes.items():
        at = np.flatnonzero(fragment == c)
        flow[at] = router.route_many(model, p, budget[at])
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

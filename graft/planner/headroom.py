"""Headroom: plan every stage to run at most ``max_utilization`` of its capacity.

The planner's rules make a stage's capacity (``replicas * batch * 1000 / exec_ms``) at least
its rate, so a plan may run stages at 100% utilisation: fine for steady arrivals, but a
Poisson burst then queues and requests miss their deadlines (the simulator shows how often).
``plan_with_headroom`` plans for rates divided by ``max_utilization`` and then writes the true
rates back into the plan, so every stage keeps ``rate <= max_utilization * capacity`` and the
plan still passes the verifier. It works for every planner.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan.plan import Plan
from graft.planner.base import Planner
from graft.planner.lower_bound import lower_bound_share
from graft.workload.flows import Workload


def plan_with_headroom(planner: Planner, workload: Workload, cost: CostModel, *,
                       max_utilization: float = 1.0, allow_partial: bool = False) -> Plan:
    if not (math.isfinite(max_utilization) and 0 < max_utilization <= 1):
        raise GraftInputError(f"max utilization must be in (0, 1], got {max_utilization}",
                              field="max_utilization")
    if max_utilization == 1.0:
        return planner.plan(workload, cost, allow_partial=allow_partial)
    inflated = Workload(tuple(replace(f, rate=f.rate / max_utilization)
                              for f in workload.flows))
    plan = planner.plan(inflated, cost, allow_partial=allow_partial)
    flows = workload.by_id()
    rate: dict[str, float] = defaultdict(float)
    for r in plan.routes:
        for s in r.stages:
            rate[s] += flows[r.flow].rate
    served = [flows[r.flow] for r in plan.routes]
    return replace(
        plan,
        stages=tuple(replace(s, rate=round(rate[s.id], 9)) for s in plan.stages),
        lower_bound_share=lower_bound_share(served, cost),
        info={**plan.info, "max_utilization": max_utilization},
    )

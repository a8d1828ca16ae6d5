"""A plan as the executors that serve it, shared by the simulator and the runtime.

Every stage replica is one executor; the stages of one time-shared slice share one executor
per slice replica; in a temporal plan each GPU's sessions share one executor (they run at
share 1.0). ``route_handoffs`` gives, per route, the hand-off after each stage as a fixed
part and a part per request of the batch (``rules.handoff_ms`` over the slowest link
between the two stages' replicas).
"""

from __future__ import annotations

from collections import defaultdict

from graft.cost.base import CostModel
from graft.plan import rules
from graft.plan.plan import Plan
from graft.serving.batching import Executor
from graft.serving.lifecycle import Request


def build_executors(plan: Plan) -> tuple[list[Executor[Request]], dict[str, list[int]]]:
    """One executor per process of the plan (``Plan.processes``: a stage replica, a slice
    replica, or a GPU of a temporal plan), and per stage the indices of its executors."""
    batches = {st.id: st.batch for st in plan.stages}
    executors: list[Executor[Request]] = []
    replicas: dict[str, list[int]] = defaultdict(list)
    for members in (p.stages for p in plan.processes()):
        index = len(executors)
        executors.append(Executor(members, {m: batches[m] for m in set(members)}))
        for m in set(members):
            replicas[m].append(index)
    return executors, dict(replicas)


def route_handoffs(plan: Plan, cost: CostModel) -> dict[str, list[tuple[float, float]]]:
    """flow id -> for each stage of its route, the hand-off to the next stage as (fixed ms,
    ms per request of the batch); (0, 0) after the last stage."""
    by_id = plan.stage_by_id()
    placement = plan.placement
    out: dict[str, list[tuple[float, float]]] = {}
    for r in plan.routes:
        chain = [by_id[s] for s in r.stages]
        terms = []
        for a, b in zip(chain, chain[1:]):
            kind = rules.handoff_kind(a, b, placement)
            fixed = float(rules.handoff_ms(cost, a.model, a.end, 0, kind, placement))
            terms.append((fixed, float(rules.handoff_ms(cost, a.model, a.end, 1, kind,
                                                        placement)) - fixed))
        out[r.flow] = [*terms, (0.0, 0.0)]
    return out

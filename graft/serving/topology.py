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
from graft.plan.plan import TEMPORAL, Plan
from graft.serving.batching import Executor
from graft.serving.lifecycle import Request


def _groups(plan: Plan) -> tuple[dict[tuple, list[str]], dict[tuple, int | None]]:
    """The member stages of each executor, in executor order, and each executor's GPU."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    gpus: dict[tuple, int | None] = {}
    for st in plan.stages:
        for r in range(st.replicas):
            if plan.gpu_sharing == TEMPORAL and len(st.gpus) == st.replicas:
                key: tuple = ("gpu", st.gpus[r])
            elif st.slice is not None:
                key = ("slice", st.slice, r)
            else:
                key = ("stage", st.id, r)
            groups[key].append(st.id)
            gpus.setdefault(key, st.gpus[r] if r < len(st.gpus) else None)
    return groups, gpus


def executor_gpus(plan: Plan) -> list[int | None]:
    """The GPU each executor of ``build_executors`` runs on (None where the plan names
    none)."""
    groups, gpus = _groups(plan)
    return [gpus[key] for key in groups]


def build_executors(plan: Plan) -> tuple[list[Executor[Request]], dict[str, list[int]]]:
    """One executor per stage replica, per slice replica, or per GPU of a temporal plan."""
    groups, _ = _groups(plan)
    batches = {st.id: st.batch for st in plan.stages}
    executors: list[Executor[Request]] = []
    replicas: dict[str, list[int]] = defaultdict(list)
    for members in groups.values():
        index = len(executors)
        executors.append(Executor(members, {m: batches[m] for m in set(members)}))
        for m in set(members):
            replicas[m].append(index)
    return executors, dict(replicas)


def route_handoffs(plan: Plan, cost: CostModel) -> dict[str, list[tuple[float, float]]]:
    """flow id -> for each stage of its route, the hand-off to the next stage as (fixed ms,
    ms per request of the batch); (0, 0) after the last stage."""
    by_id = plan.stage_by_id()
    out: dict[str, list[tuple[float, float]]] = {}
    for r in plan.routes:
        chain = [by_id[s] for s in r.stages]
        terms = []
        for a, b in zip(chain, chain[1:]):
            kind = rules.handoff_kind(a, b)
            fixed = float(rules.handoff_ms(cost, a.model, a.end, 0, kind))
            terms.append((fixed, float(rules.handoff_ms(cost, a.model, a.end, 1, kind)) - fixed))
        out[r.flow] = [*terms, (0.0, 0.0)]
    return out

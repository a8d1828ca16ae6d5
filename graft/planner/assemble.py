"""Turning a planner's decisions into a ``Plan``: stage ids, routes, packing, lower bound.

Every spatial planner produces ``StageDraft``s (a segment, its configuration and the flows
routed through it, in route order) and hands them here, so ids, routes and packing are
built one way for all planners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graft.cost.base import CostModel
from graft.planner.configs import StageConfig
from graft.planner.lower_bound import lower_bound_share
from graft.planner.pack import pack, segment_memory_bytes
from graft.planner.plan import SPATIAL, Plan, Route, Stage, Unserved
from graft.workload.flows import Flow


@dataclass
class StageDraft:
    model: str
    start: int
    end: int
    config: StageConfig
    flows: list[Flow] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(f.rate for f in self.flows)


def assemble_plan(
    planner: str,
    cost: CostModel,
    drafts: list[StageDraft],
    served: list[Flow],
    unserved: tuple[Unserved, ...],
    **info: object,
) -> Plan:
    """Name, pack and route ``drafts``; every served flow must pass through a chain of them."""
    drafts = sorted(drafts, key=lambda d: (d.model, d.start, d.end, d.config.exec_ms))
    placements = pack(
        [(d.config.share, d.config.replicas,
          segment_memory_bytes(cost, d.model, d.start, d.end, d.config.batch)) for d in drafts],
        cost,
    )
    stages: list[Stage] = []
    by_flow: dict[str, list[Stage]] = {f.id: [] for f in served}
    for n, (d, gpus) in enumerate(zip(drafts, placements)):
        st = Stage(
            id=f"{d.model}/{d.start}-{d.end}/{n}",
            model=d.model,
            start=d.start,
            end=d.end,
            batch=d.config.batch,
            share=d.config.share,
            replicas=d.config.replicas,
            exec_ms=d.config.exec_ms,
            rate=round(d.rate, 9),
            gpus=tuple(gpus),
        )
        stages.append(st)
        for f in d.flows:
            by_flow[f.id].append(st)
    routes = []
    for f in served:
        chain = sorted(by_flow[f.id], key=lambda s: s.start)
        routes.append(Route(flow=f.id, stages=tuple(s.id for s in chain),
                            latency_ms=sum(2 * s.exec_ms for s in chain)))
    return Plan(
        planner=planner,
        cost_model=cost.name,
        stages=tuple(stages),
        routes=tuple(routes),
        unserved=unserved,
        gpu_sharing=SPATIAL,
        lower_bound_share=lower_bound_share(served, cost),
        info=dict(info),
    )

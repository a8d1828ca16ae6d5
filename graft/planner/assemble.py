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
from graft.planner.plan import SPATIAL, Plan, Route, Stage, Unserved, stage_time_ms
from graft.workload.flows import Flow


@dataclass
class StageDraft:
    """A stage a planner decided on.

    ``cap_ms`` is the time a request may spend in the stage without breaking any route's
    budget (at least ``2 * config.exec_ms``; None means exactly that). ``slice_key`` and
    ``duty_ms`` are set when the stage time-shares a GPU slice with others
    (``graft.planner.timeshare``): ``config.share`` is then the slice's share.
    """

    model: str
    start: int
    end: int
    config: StageConfig
    flows: list[Flow] = field(default_factory=list)
    cap_ms: float | None = None
    slice_key: int | None = None
    duty_ms: float | None = None

    @property
    def time_cap_ms(self) -> float:
        return self.cap_ms if self.cap_ms is not None else 2 * self.config.exec_ms

    rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.rate = sum(f.rate for f in self.flows)


def _pack_units(drafts: list[StageDraft]) -> list[tuple[float, int, list[StageDraft]]]:
    """What packing places: one process per stage replica, one per time-shared slice."""
    units: list[tuple[float, int, list[StageDraft]]] = []
    slices: dict[int, list[StageDraft]] = {}
    for d in drafts:
        if d.slice_key is None:
            units.append((d.config.share, d.config.replicas, [d]))
        else:
            slices.setdefault(d.slice_key, []).append(d)
    for members in slices.values():
        units.append((members[0].config.share, 1, members))
    return units


def assemble_plan(
    planner: str,
    cost: CostModel,
    drafts: list[StageDraft],
    served: list[Flow],
    unserved: tuple[Unserved, ...],
    **info: object,
) -> Plan:
    """Name, pack and route ``drafts``; every served flow must pass through a chain of them."""
    drafts = sorted(drafts, key=lambda d: (d.slice_key is not None, d.slice_key or 0,
                                           d.model, d.start, d.end, d.config.exec_ms))
    units = _pack_units(drafts)
    placements = pack([(share, reps, sum(segment_memory_bytes(cost, d.model, d.start, d.end,
                                                              d.config.batch) for d in members)
                        - (len(members) - 1) * cost.limits.context_bytes)
                       for share, reps, members in units], cost)
    gpus_of: dict[int, tuple[int, ...]] = {}
    for (_, _, members), gpus in zip(units, placements):
        for d in members:
            gpus_of[id(d)] = tuple(gpus)
    stages: list[Stage] = []
    by_flow: dict[str, list[Stage]] = {f.id: [] for f in served}
    for n, d in enumerate(drafts):
        c = d.config
        shared = d.slice_key is not None
        st = Stage(
            id=f"{d.model}/{d.start}-{d.end}/{n}",
            model=d.model,
            start=d.start,
            end=d.end,
            batch=c.batch,
            share=c.share * c.exec_ms / d.duty_ms if shared else c.share,
            replicas=c.replicas,
            exec_ms=c.exec_ms,
            rate=round(d.rate, 9),
            gpus=gpus_of[id(d)],
            duty_cycle_ms=d.duty_ms if shared else None,
            slice=f"slice{d.slice_key}" if shared else None,
            slice_share=c.share if shared else None,
        )
        stages.append(st)
        for f in d.flows:
            by_flow[f.id].append(st)
    routes = []
    for f in served:
        chain = sorted(by_flow[f.id], key=lambda s: s.start)
        routes.append(Route(flow=f.id, stages=tuple(s.id for s in chain),
                            latency_ms=sum(stage_time_ms(s) for s in chain)))
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

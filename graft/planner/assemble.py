"""Turning a planner's decisions into a ``Plan``: stage ids, routes, packing, lower bound.

Every spatial planner produces ``StageDraft``s (a segment, its configuration and the flows
routed through it, in route order) and hands them here, so ids, routes and packing are
built one way for all planners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graft.cost.base import CostModel
from graft.plan import rules
from graft.plan.plan import SPATIAL, Plan, Route, Stage, Unserved
from graft.planner.configs import StageConfig
from graft.planner.lower_bound import lower_bound_share
from graft.planner.pack import Unit, pack
from graft.workload.flows import Flow


@dataclass
class StageDraft:
    """A stage a planner decided on.

    ``cap_ms`` is the time a request may spend in the stage, its hand-off to the next stage
    included, without breaking any route's budget (at least ``time_ms``; None means exactly
    that). ``slice_key`` and ``duty_ms`` are set when the stage time-shares a GPU slice with
    others (``graft.planner.timeshare``): ``config.share`` is then the slice's share.
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
    def time_ms(self) -> float:
        """Planned time a request spends in the stage: its stage time (2e rule, or duty
        cycle) plus the planned hand-off of its batch."""
        return rules.stage_time_ms(self.config.exec_ms, self.duty_ms) + self.config.handoff_ms

    @property
    def time_cap_ms(self) -> float:
        return self.cap_ms if self.cap_ms is not None else self.time_ms

    rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.rate = sum(f.rate for f in self.flows)


def _pack_units(drafts: list[StageDraft]) -> list[list[StageDraft]]:
    """What packing places, as the drafts each process runs: one process per stage replica,
    one per time-shared slice."""
    units: list[list[StageDraft]] = []
    slices: dict[int, list[StageDraft]] = {}
    for d in drafts:
        if d.slice_key is None:
            units.append([d])
        else:
            slices.setdefault(d.slice_key, []).append(d)
    units.extend(slices.values())
    return units


def _chains(units: list[list[StageDraft]]) -> list[list[int]]:
    """Single-process units that routes chain together (connected through the routes that
    pass them), each list in block order: packing keeps them on one GPU where it can."""
    of_draft = {id(d): u for u, members in enumerate(units) for d in members
                if members[0].config.replicas == 1}
    parent = list(range(len(units)))

    def root(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    last_of_flow: dict[str, int] = {}
    for members in sorted(units, key=lambda m: m[0].start):
        for d in members:
            u = of_draft.get(id(d))
            if u is None:
                continue
            for f in d.flows:
                prev = last_of_flow.get(f.id)
                if prev is not None:
                    parent[root(prev)] = root(u)
                last_of_flow[f.id] = u
    groups: dict[int, list[int]] = {}
    for u in sorted(set(of_draft.values()), key=lambda u: (units[u][0].start, u)):
        groups.setdefault(root(u), []).append(u)
    return [g for g in groups.values() if len(g) > 1]


def assemble_plan(
    planner: str,
    cost: CostModel,
    drafts: list[StageDraft],
    served: list[Flow],
    unserved: tuple[Unserved, ...],
    **info: object,
) -> Plan:
    """Name, pack and route ``drafts``; every served flow must pass through a chain of them.
    Each route's time comes from the placement (``rules.route_time_ms``)."""
    drafts = sorted(drafts, key=lambda d: (d.slice_key is not None, d.slice_key or 0,
                                           d.model, d.start, d.end, d.config.exec_ms))
    units = _pack_units(drafts)
    sizes = [Unit(members[0].config.share, members[0].config.replicas,
                  rules.process_memory_bytes(cost, [(d.model, d.start, d.end, d.config.batch)
                                                    for d in members]))
             for members in units]
    placements = pack(sizes, cost, _chains(units))
    gpus_of: dict[int, tuple[int, ...]] = {}
    for members, gpus in zip(units, placements):
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
                            latency_ms=rules.route_time_ms(cost, chain),
                            handoff_ms=sum(rules.route_handoffs_ms(cost, chain))))
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
